//! Marks: containers created from an image already on the host, never started, on no network,
//! that say something about a preview in their labels alone (it sleeps: [`super::sleep`]; how
//! long its live generation took to be ready: [`super::ready`]). A container's labels are
//! fixed when it is made, so what changes after a preview was deployed is written this way.
//! A mark costs no memory and no process and survives a restart of previewd and of Docker.
//! Nothing here starts a container or reads a mark's meaning.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptions;

use super::DockerError;
use super::labels::{self, Observed};
use crate::ids::{Instance, PreviewId};

/// One mark, as read back from its labels: the preview and generation it speaks of, and what
/// it says of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark<T> {
    pub preview: PreviewId,
    pub generation: u64,
    pub value: T,
}

impl<T> Mark<T> {
    /// Whether it speaks of `p`'s live generation (a mark of another one means nothing).
    pub fn is_of_live(&self, p: &Observed) -> bool {
        self.preview == p.id && Some(self.generation) == p.live()
    }
}

/// Every mark of `instance` with `role`, each with what `value` reads from its labels (a
/// mark it reads nothing from is left out).
pub async fn read<T>(
    docker: &Docker,
    instance: &Instance,
    role: &str,
    value: impl Fn(&HashMap<String, String>) -> Option<T>,
) -> Result<Vec<Mark<T>>, DockerError> {
    let wanted = vec![
        format!("{}={instance}", labels::INSTANCE),
        format!("{}={role}", labels::ROLE),
    ];
    Ok(super::labelled(docker, wanted)
        .await?
        .into_iter()
        .filter_map(|c| {
            let l = c.labels?;
            Some(Mark {
                preview: PreviewId::parse(l.get(labels::PREVIEW)?).ok()?,
                generation: l.get(labels::GENERATION)?.parse().ok()?,
                value: value(&l)?,
            })
        })
        .collect())
}

/// A mark to make: its name, which preview and generation it speaks of, and what it says
/// of them (its own labels).
pub struct New<'a> {
    pub name: String,
    pub instance: &'a Instance,
    pub role: &'static str,
    pub preview: &'a PreviewId,
    pub generation: u64,
    pub says: Vec<(&'static str, String)>,
}

/// Creates `new` from `image` (which must be on the host: the gateway's is, while there is
/// anything to route). A mark of that name already there is kept.
pub async fn create(docker: &Docker, image: &str, new: New<'_>) -> Result<(), DockerError> {
    let mut labels = HashMap::from([
        (labels::INSTANCE.to_owned(), new.instance.to_string()),
        (labels::ROLE.to_owned(), new.role.to_owned()),
        (labels::PREVIEW.to_owned(), new.preview.to_string()),
        (labels::GENERATION.to_owned(), new.generation.to_string()),
    ]);
    labels.extend(new.says.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        // Never started; the command only has to exist on paper.
        cmd: Some(vec!["previewd-mark".to_owned()]),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(new.name),
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
