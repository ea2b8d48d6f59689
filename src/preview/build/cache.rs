//! `limits.build_cache`: the BuildKit cache the daemon keeps, bounded by each reconcile pass
//! (`previewd gc`, `serve`'s passes) with `POST /build/prune` and a size to keep. BuildKit
//! picks what goes by last use and use count (0.8: not strictly the oldest first), never a
//! record in use (a running build's) or one an image holds (not counted; it goes with the
//! image).
//!
//! On Docker 20.10 a cache record names no owner (no label; a cache mount's description names
//! neither its id nor the build), so this bounds the **daemon's whole** build cache, other
//! tools' included: the operator turns it off (`0`) where another tool owns that policy.
//! Nothing here removes images, containers or volumes, or prunes without the operator's size.

use serde::{Deserialize, Serialize};

use bollard::Docker;

use super::buildkit;
use crate::config::Config;
use crate::preview::docker::DockerError;

/// What one prune took.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Pruned {
    /// Cache records removed.
    pub records: usize,
    /// Bytes the daemon says it reclaimed.
    pub bytes: u64,
}

/// The daemon's answer to `POST /build/prune`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    caches_deleted: Option<Vec<String>>,
    space_reclaimed: Option<i64>,
}

/// The query of a prune down to `keep` bytes: `keep-storage` is what Docker 20.10 (API 1.41)
/// reads; API 1.48 renamed it `reserved-space` and added `max-used-space`, the cap itself.
fn query(keep: u64) -> String {
    format!("/build/prune?keep-storage={keep}&max-used-space={keep}")
}

/// Prunes the daemon's build cache down to `limits.build_cache`; `None` when the operator
/// turned that off.
pub async fn prune(docker: &Docker, config: &Config) -> Option<Result<Pruned, DockerError>> {
    let keep = config.limits.builds.cache?;
    Some(prune_to(docker, keep).await)
}

async fn prune_to(docker: &Docker, keep: u64) -> Result<Pruned, DockerError> {
    let (status, body) = buildkit::post(docker, &query(keep))
        .await
        .map_err(DockerError::Unavailable)?;
    if !(200..300).contains(&status) {
        return Err(DockerError::Api(format!(
            "the build cache prune was refused ({status}): {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|e| DockerError::Api(format!("the build cache prune's answer: {e}")))?;
    Ok(Pruned {
        records: answer.caches_deleted.map_or(0, |c| c.len()),
        bytes: answer
            .space_reclaimed
            .and_then(|b| u64::try_from(b).ok())
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_the_size_in_both_api_spellings() {
        assert_eq!(
            query(5 << 30),
            "/build/prune?keep-storage=5368709120&max-used-space=5368709120"
        );
    }

    #[test]
    fn the_answer_is_read_as_docker_writes_it() {
        let a: Answer =
            serde_json::from_str(r#"{"CachesDeleted":["a","b"],"SpaceReclaimed":35043225}"#)
                .expect("parses");
        assert_eq!(a.caches_deleted.map(|c| c.len()), Some(2));
        assert_eq!(a.space_reclaimed, Some(35_043_225));
        let none: Answer =
            serde_json::from_str(r#"{"CachesDeleted":null,"SpaceReclaimed":0}"#).expect("parses");
        assert!(none.caches_deleted.is_none());
    }
}
