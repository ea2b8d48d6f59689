//! The instance's build lock and the prune of what failed or cancelled classic builds leave:
//! builds hold a shared `flock` on the instance's `builds.lock`, and a prune runs only when it
//! gets the lock alone (see the module above). Nothing here builds.

use std::fs::File;
use std::path::PathBuf;

use bollard::Docker;

use super::BuildError;
use crate::config::Config;
use crate::preview::docker::{self, lockfile};

/// The file whose `flock` builds share and a prune of leftovers takes alone.
fn lock_path(config: &Config) -> PathBuf {
    config.instance_dir().join("builds.lock")
}

/// Held for a whole build: waits only while a prune runs (at most `PRUNE_FOR`).
pub(super) async fn shared_lock(config: &Config) -> Result<File, BuildError> {
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
        let file = lockfile::open(&lock_path(&c))?;
        file.lock_shared()?;
        Ok(file)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    .map_err(|source| BuildError::Lock {
        path: lock_path(config),
        source,
    })
}

/// Removes the instance's untagged images: the steps a failed or cancelled build committed
/// (a cancelled one may still commit the step it was in), and images whose tag went to a newer
/// build. Each goes with its untagged parents that nothing else builds on; an image a container
/// uses is kept. Only images with the instance label, so another instance's are never touched.
/// Only while no build of the instance runs, in any process: a running build's newest step is
/// untagged too, and a build may tag an untagged image (its content was built before) between
/// a listing and a removal, which removing by id would then take with its new tag. So the
/// lock is held from the listing to the last removal, for at most `PRUNE_FOR` (what is left
/// goes next time). `None` when a build was running (nothing listed); else the ids removed.
/// Best effort: a leftover is only disk, and the next deployment, removal or reconcile tries
/// again, so nothing fails for it.
pub async fn prune_leftovers(docker: &Docker, config: &Config) -> Option<Vec<String>> {
    let c = config.clone();
    let alone = tokio::task::spawn_blocking(move || {
        let file = lockfile::open(&lock_path(&c)).ok()?;
        file.try_lock().ok()?;
        Some(file)
    })
    .await
    .ok()
    .flatten();
    let Some(_alone) = alone else {
        tracing::debug!("a build is running: untagged images are pruned another time");
        return None;
    };
    let leftovers = match docker::untagged_images(docker, &config.instance).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::debug!(error = %e, "untagged images not listed this time");
            return Some(Vec::new());
        }
    };
    let until = tokio::time::Instant::now() + PRUNE_FOR;
    let mut removed = Vec::new();
    for id in leftovers {
        if tokio::time::Instant::now() >= until {
            break;
        }
        match docker::remove_image(docker, &id).await {
            Ok(true) => removed.push(id),
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(image = %id, error = %e, "untagged image not removed this time")
            }
        }
    }
    Some(removed)
}

/// How long a prune may keep the instance's builds waiting.
const PRUNE_FOR: std::time::Duration = std::time::Duration::from_secs(5);
