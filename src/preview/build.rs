//! Building a service's image through the Engine API from a tar of its context. A service whose
//! context (after `.dockerignore`), Dockerfile and build args hash to the same value as an
//! image already on the host reuses that image without calling the builder: the hash is a
//! label on the image, so the cache survives restarts and is shared between previews.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, ListImagesOptions, TagImageOptions};
use futures_util::StreamExt;

use super::context;
use super::docker::DockerError;
use super::labels;
use crate::config::Config;
use crate::ids::PreviewId;
use crate::spec::BuildSpec;

/// How many log lines a failure report carries.
pub const TAIL: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot pack the build context: {0}")]
    Context(String),
    #[error("the build failed: {reason}")]
    Failed { reason: String, tail: Vec<String> },
    #[error("the build took longer than {0:?} (limits.build_timeout)")]
    Timeout(std::time::Duration, Vec<String>),
    #[error(transparent)]
    Docker(#[from] DockerError),
}

impl BuildError {
    pub fn tail(&self) -> Vec<String> {
        match self {
            BuildError::Failed { tail, .. } | BuildError::Timeout(_, tail) => tail.clone(),
            _ => Vec::new(),
        }
    }
}

/// The image a service runs, and whether the builder was skipped.
#[derive(Debug, Clone)]
pub struct Built {
    pub tag: String,
    pub reused: bool,
}

/// Builds (or reuses) the image of `service`, streaming each log line to `on_line`.
pub async fn build(
    docker: &Docker,
    config: &Config,
    id: &PreviewId,
    service: &str,
    worktree: &Path,
    spec: &BuildSpec,
    on_line: &(dyn Fn(&str) + Send + Sync),
) -> Result<Built, BuildError> {
    let wt = worktree.to_path_buf();
    let bs = spec.clone();
    let ctx = tokio::task::spawn_blocking(move || context::pack(&wt, &bs))
        .await
        .map_err(|e| BuildError::Context(e.to_string()))?
        .map_err(|e| BuildError::Context(e.to_string()))?;
    let tag = labels::image_tag(&config.instance, id, service, &ctx.hash);
    if let Some(existing) = find_by_hash(docker, config, &ctx.hash).await? {
        let (repo, t) = tag.rsplit_once(':').unwrap_or((&tag, "latest"));
        let opts = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(t.to_owned()),
        };
        docker
            .tag_image(&existing, Some(opts))
            .await
            .map_err(DockerError::from)?;
        on_line(&format!(
            "unchanged (content {}), reusing image",
            &ctx.hash[..12]
        ));
        return Ok(Built { tag, reused: true });
    }

    // Only what cannot come from the tag: Docker's classic builder turns each label into a
    // build step of its own (a container created and committed: ~1 s each on this host's
    // fuse-overlayfs), and the tag already names the preview, the service and the content.
    // `instance` stays: every object carries it, and it is what attributes an untagged image
    // left by a cancelled build (`docker::prune_untagged`).
    let image_labels = HashMap::from([(labels::INSTANCE.to_owned(), config.instance.to_string())]);
    let opts = BuildImageOptions {
        dockerfile: ctx.dockerfile.clone(),
        t: Some(tag.clone()),
        rm: true,
        // The legacy builder otherwise leaves a failed step's container behind.
        forcerm: true,
        buildargs: Some(spec.args.clone().into_iter().collect()),
        labels: Some(image_labels),
        memory: i32::try_from(config.limits.memory).ok(),
        // The same CPU share as the containers: a build is untrusted code too.
        cpuperiod: Some(100_000),
        cpuquota: i32::try_from((config.limits.cpus * 100_000.0) as i64).ok(),
        ..Default::default()
    };
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL);
    let push = |line: &str, tail: &mut VecDeque<String>| {
        for l in line.lines().filter(|l| !l.trim().is_empty()) {
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(l.to_owned());
            on_line(l);
        }
    };
    let tar = bytes::Bytes::from(ctx.tar);
    let run = async {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = Some(bollard::body_full(tar.clone()));
            let mut stream = docker.build_image(opts.clone(), None, body);
            let mut failure = None;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(info) => {
                        if let Some(s) = info.stream.as_deref() {
                            push(s, &mut tail);
                        }
                        if let Some(detail) = info.error_detail {
                            let reason = detail.message.unwrap_or_else(|| "unknown error".into());
                            push(&reason, &mut tail);
                            failure = Some(reason);
                            break;
                        }
                    }
                    Err(bollard::errors::Error::DockerStreamError { error }) => {
                        push(&error, &mut tail);
                        failure = Some(error);
                        break;
                    }
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            }
            match failure {
                None => return Ok(()),
                Some(reason) if attempt == 1 && cache_vanished(&reason) => {
                    on_line(
                        "the build cache changed under this build (an image was removed meanwhile); building again",
                    );
                }
                Some(reason) => return Err(reason),
            }
        }
    };
    let limit = config.limits.build_timeout;
    let outcome = tokio::time::timeout(limit, run).await;
    let tail: Vec<String> = tail.into_iter().collect();
    match outcome {
        Ok(Ok(())) => Ok(Built { tag, reused: false }),
        Ok(Err(reason)) => Err(BuildError::Failed {
            reason: first_line(&reason),
            tail,
        }),
        Err(_) => Err(BuildError::Timeout(limit, tail)),
    }
}

/// The classic builder's answer when a cached layer it was about to reuse was removed at the
/// same moment (another preview's image went away): transient, so worth one more try.
fn cache_vanished(reason: &str) -> bool {
    reason.contains("failed to get digest")
        || (reason.contains("No such image") && reason.contains("sha256:"))
        || (reason.contains("no such file or directory") && reason.contains("/image/"))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

async fn find_by_hash(
    docker: &Docker,
    config: &Config,
    hash: &str,
) -> Result<Option<String>, DockerError> {
    let filters = HashMap::from([
        (
            "label".to_owned(),
            vec![format!("{}={}", labels::INSTANCE, config.instance)],
        ),
        (
            "reference".to_owned(),
            vec![labels::image_pattern(&config.instance, hash)],
        ),
    ]);
    let opts = ListImagesOptions {
        filters: Some(filters),
        ..Default::default()
    };
    Ok(docker
        .list_images(Some(opts))
        .await?
        .into_iter()
        .next()
        .map(|i| i.id))
}

#[cfg(test)]
mod tests {
    use super::cache_vanished;

    #[test]
    fn only_a_vanished_cache_layer_is_retried() {
        assert!(cache_vanished(
            "failed to get digest sha256:bb9a: open /var/lib/docker/image/overlay2/imagedb/content/sha256/bb9a: no such file or directory"
        ));
        assert!(cache_vanished("No such image: sha256:0123abcd"));
        for real in [
            "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
            "COPY failed: file not found in build context",
            "No such image: busybox:latest",
        ] {
            assert!(!cache_vanished(real), "{real}");
        }
    }
}
