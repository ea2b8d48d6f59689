//! Sleep marks: how Docker alone says that a preview sleeps. Labels cannot change on a
//! container, and a stopped container looks the same whether previewd stopped it or it
//! crashed, so a sleeping preview has one more container, a mark (see [`super::marks`]):
//! labelled with the preview, the generation that sleeps and since when. A preview without
//! it whose containers stopped has failed, never slept. A mark for a
//! generation that is no longer live (a push deployed a new one) means nothing and goes.
//! Nothing here stops or starts a service container.

use bollard::Docker;

use super::labels::{self, Observed};
use super::marks::Mark;
use super::{DockerError, remove_container};
use crate::ids::{Instance, PreviewId};

/// One sleep mark: its value is since when the generation sleeps (RFC 3339).
pub type SleepMark = Mark<String>;

/// Every sleep mark of `instance`.
pub async fn marks(docker: &Docker, instance: &Instance) -> Result<Vec<SleepMark>, DockerError> {
    super::marks::read(docker, instance, labels::ROLE_SLEEP, |l| {
        Some(l.get(labels::SLEEPING).cloned().unwrap_or_default())
    })
    .await
}

/// Sets `asleep` on each preview whose live generation has a mark.
pub fn attach(previews: &mut [Observed], marks: &[SleepMark]) {
    for p in previews {
        p.asleep = marks
            .iter()
            .find(|m| m.is_of_live(p))
            .map(|m| m.value.clone());
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
    let new = super::marks::New {
        name: labels::sleep_mark_name(instance, id),
        instance,
        role: labels::ROLE_SLEEP,
        preview: id,
        generation,
        says: vec![(labels::SLEEPING, since.to_owned())],
    };
    super::marks::create(docker, image, new).await
}

/// Removes `id`'s sleep mark; none is fine.
pub async fn unmark(
    docker: &Docker,
    instance: &Instance,
    id: &PreviewId,
) -> Result<(), DockerError> {
    remove_container(docker, &labels::sleep_mark_name(instance, id)).await
}
