//! Sleep marks: how Docker alone says that a preview sleeps. Labels cannot change on a
//! container, and a stopped container looks the same whether previewd stopped it or it
//! crashed, so a sleeping preview has one more container: created from the gateway's image,
//! never started, on no network, labelled with the preview, the generation that sleeps and
//! since when. It costs no memory and no process, survives a restart of previewd, and a
//! preview without it whose containers stopped has failed, never slept. A mark for a
//! generation that is no longer live (a push deployed a new one) means nothing and goes.
//! Nothing here stops or starts a service container.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptions;

use super::labels::{self, Observed};
use super::{DockerError, remove_container};
use crate::ids::{Instance, PreviewId};

/// One sleep mark, as read back from its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct SleepMark {
    pub preview: PreviewId,
    /// The generation that was put to sleep.
    pub generation: u64,
    /// When (RFC 3339).
    pub since: String,
}

/// Every sleep mark of `instance`.
pub async fn marks(docker: &Docker, instance: &Instance) -> Result<Vec<SleepMark>, DockerError> {
    let wanted = vec![
        format!("{}={instance}", labels::INSTANCE),
        format!("{}={}", labels::ROLE, labels::ROLE_SLEEP),
    ];
    Ok(super::labelled(docker, wanted)
        .await?
        .into_iter()
        .filter_map(|c| {
            let l = c.labels?;
            Some(SleepMark {
                preview: PreviewId::parse(l.get(labels::PREVIEW)?).ok()?,
                generation: l.get(labels::GENERATION)?.parse().ok()?,
                since: l.get(labels::SLEEPING).cloned().unwrap_or_default(),
            })
        })
        .collect())
}

/// Sets `asleep` on each preview whose live generation has a mark.
pub fn attach(previews: &mut [Observed], marks: &[SleepMark]) {
    for p in previews {
        let live = p.live();
        p.asleep = marks
            .iter()
            .find(|m| m.preview == p.id && Some(m.generation) == live)
            .map(|m| m.since.clone());
    }
}

/// Marks `id`'s `generation` asleep since `since`. `image` must be on the host (the gateway's
/// is, while there is anything to route). A mark already there is kept.
pub async fn mark(
    docker: &Docker,
    instance: &Instance,
    image: &str,
    id: &PreviewId,
    generation: u64,
    since: &str,
) -> Result<(), DockerError> {
    let name = labels::sleep_mark_name(instance, id);
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        // Never started; the command only has to exist on paper.
        cmd: Some(vec!["previewd-sleep-mark".to_owned()]),
        labels: Some(HashMap::from([
            (labels::INSTANCE.to_owned(), instance.to_string()),
            (labels::ROLE.to_owned(), labels::ROLE_SLEEP.to_owned()),
            (labels::PREVIEW.to_owned(), id.to_string()),
            (labels::GENERATION.to_owned(), generation.to_string()),
            (labels::SLEEPING.to_owned(), since.to_owned()),
        ])),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(name),
        platform: String::new(),
    };
    match docker.create_container(Some(opts), body).await {
        Ok(_) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes `id`'s sleep mark; none is fine.
pub async fn unmark(
    docker: &Docker,
    instance: &Instance,
    id: &PreviewId,
) -> Result<(), DockerError> {
    remove_container(docker, &labels::sleep_mark_name(instance, id)).await
}
