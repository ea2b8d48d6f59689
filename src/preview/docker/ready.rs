//! Ready marks: how Docker alone keeps a preview's time to ready. The labels of a service
//! container are fixed before its generation is ready, and the switch that makes it ready only
//! renames containers, which Docker does not timestamp; so a ready preview has one more mark
//! (see [`super::marks`]), `<instance>-<id>.ready`, labelled with the preview, the generation
//! it was measured for and the milliseconds it took. A new generation's replaces it; a mark
//! whose generation is not live means nothing (`gc` removes it); `down` removes it with the
//! preview. Nothing here measures anything or touches a service container.

use std::time::Duration;

use bollard::Docker;

use super::labels::{self, Observed};
use super::marks::Mark;
use super::{DockerError, remove_container};
use crate::ids::{Instance, PreviewId};

/// What a ready mark keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    pub took: Duration,
    /// When the mark was made (RFC 3339), for `gc`'s grace.
    pub created: String,
}

/// One ready mark.
pub type ReadyMark = Mark<Ready>;

/// Every ready mark of `instance`.
pub async fn marks(docker: &Docker, instance: &Instance) -> Result<Vec<ReadyMark>, DockerError> {
    super::marks::read(docker, instance, labels::ROLE_READY, |l| {
        Some(Ready {
            took: Duration::from_millis(l.get(labels::READY_IN)?.parse().ok()?),
            created: l.get(labels::CREATED).cloned().unwrap_or_default(),
        })
    })
    .await
}

/// Sets `ready_in` on each preview whose live generation has a mark.
pub fn attach(previews: &mut [Observed], marks: &[ReadyMark]) {
    for p in previews {
        p.ready_in = marks.iter().find(|m| m.is_of_live(p)).map(|m| m.value.took);
    }
}

/// Keeps that `id`'s `generation` took `took` to be ready, in place of the mark of a
/// generation before it. `image` must be on the host (the gateway's is: it routes `id`).
pub async fn mark(
    docker: &Docker,
    instance: &Instance,
    image: &str,
    id: &PreviewId,
    generation: u64,
    took: Duration,
    now: &str,
) -> Result<(), DockerError> {
    unmark(docker, instance, id).await?;
    let new = super::marks::New {
        name: labels::ready_mark_name(instance, id),
        instance,
        role: labels::ROLE_READY,
        preview: id,
        generation,
        says: vec![
            (labels::READY_IN, took.as_millis().to_string()),
            (labels::CREATED, now.to_owned()),
        ],
    };
    super::marks::create(docker, image, new).await
}

/// Removes `id`'s ready mark; none is fine.
pub async fn unmark(
    docker: &Docker,
    instance: &Instance,
    id: &PreviewId,
) -> Result<(), DockerError> {
    remove_container(docker, &labels::ready_mark_name(instance, id)).await
}
