//! Building a service's image through the Engine API from a tar of its context. A service whose
//! context (after `.dockerignore`), Dockerfile and build args hash to the same value as an
//! image already on the host reuses that image without calling the builder: the hash is in
//! the image's tag, so the cache survives restarts and is shared between previews.
//!
//! Every step image a build commits carries the instance label (`dockerfile::label_stages`),
//! so what a failed or cancelled build leaves can be pruned ([`prune_leftovers`]). A prune must
//! not take the step a running build has just committed (untagged until its next step starts
//! from it), nor an image a build tags meanwhile: builds hold a shared `flock` on the
//! instance's `builds.lock` and a prune runs only when it gets the lock alone, in this process
//! or any other of the instance.
//!
//! Beside it: `context` packs the build context, `dockerfile` stamps the label.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, TagImageOptions};
use futures_util::StreamExt;

use super::docker::{self, DockerError, labels, lockfile};
use crate::config::Config;
use crate::ids::PreviewId;
use crate::spec::BuildSpec;

pub mod context;
pub mod dockerfile;

/// How many log lines a failure report carries.
pub const TAIL: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot pack the build context: {0}")]
    Context(String),
    #[error("cannot lock `{path}`: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    let instance = config.instance.to_string();
    let ctx = tokio::task::spawn_blocking(move || {
        let stamp = |d: &[u8]| dockerfile::label_stages(d, labels::INSTANCE, &instance);
        context::pack(&wt, &bs, &stamp)
    })
    .await
    .map_err(|e| BuildError::Context(e.to_string()))?
    .map_err(|e| BuildError::Context(e.to_string()))?;
    let tag = labels::image_tag(&config.instance, id, service, &ctx.hash);
    // Held while this build looks for, tags or commits images: see `prune_leftovers`.
    let _building = shared_lock(config).await?;
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

    // No `labels` option: the classic builder turns it into a step of its own at the end (a
    // container created and committed, ~1 s here) and the Dockerfile carries the instance label
    // from each `FROM` on; the tag names the preview, the service and the content.
    let opts = BuildImageOptions {
        dockerfile: ctx.dockerfile.clone(),
        t: Some(tag.clone()),
        rm: true,
        // The legacy builder otherwise leaves a failed step's container behind.
        forcerm: true,
        buildargs: Some(spec.args.clone().into_iter().collect()),
        target: spec.target.clone().unwrap_or_default(),
        memory: i32::try_from(config.limits.memory).ok(),
        // The same CPU share as the containers: a build is untrusted code too.
        cpuperiod: Some(100_000),
        cpuquota: i32::try_from((config.limits.cpus * 100_000.0) as i64).ok(),
        ..Default::default()
    };
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL);
    let push = |line: &str, tail: &mut VecDeque<String>| {
        for l in line.lines().map(docker::printable) {
            if l.trim().is_empty() {
                continue;
            }
            if tail.len() == TAIL {
                tail.pop_front();
            }
            on_line(&l);
            tail.push_back(l);
        }
    };
    let tar = bytes::Bytes::from(ctx.tar);
    // The container of the step running now, if any, as the log names it.
    let step = std::sync::Mutex::new(None::<String>);
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
                            if let Ok(mut step) = step.lock() {
                                track_step_container(s, &mut step);
                            }
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
    if outcome.is_err() {
        // Docker aborts the build once the request is gone: it kills and removes the step's
        // container a moment later. Until then the step it started from is in use and cannot
        // be pruned by the cleanup that follows, so that moment is waited for.
        let running = step.lock().ok().and_then(|mut s| s.take());
        if let Some(id) = running {
            step_container_gone(docker, config, &id).await;
        }
    }
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

/// The file whose `flock` builds share and a prune of leftovers takes alone.
fn lock_path(config: &Config) -> PathBuf {
    config.instance_dir().join("builds.lock")
}

/// Held for a whole build: waits only while a prune runs (at most `PRUNE_FOR`).
async fn shared_lock(config: &Config) -> Result<File, BuildError> {
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

/// Follows the classic builder's log: ` ---> Running in <id>` starts a step's container,
/// `Removing intermediate container <id>` ends it. A step's own output can imitate these
/// lines, so the id is only ever waited for, never acted on.
fn track_step_container(chunk: &str, running: &mut Option<String>) {
    for line in chunk.lines().map(str::trim) {
        if let Some(id) = line.strip_prefix("---> Running in ") {
            let id = id.trim();
            if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                *running = Some(id.to_owned());
            }
        } else if let Some(id) = line.strip_prefix("Removing intermediate container ")
            && running.as_deref() == Some(id.trim())
        {
            *running = None;
        }
    }
}

/// Waits (up to 10 s) for an aborted build's step container to go, if `id` names one: a
/// container with the instance label and no `role` (previewd's own containers have one).
async fn step_container_gone(docker: &Docker, config: &Config, id: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let Ok(c) = docker.inspect_container(id, None).await else {
            return;
        };
        let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
        let step = labels.get(labels::INSTANCE).map(String::as_str)
            == Some(config.instance.as_str())
            && !labels.contains_key(labels::ROLE);
        if !step || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
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
    docker::printable(s.lines().next().unwrap_or(""))
        .chars()
        .take(300)
        .collect()
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
    Ok(docker::image_ids(docker, filters).await?.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::{cache_vanished, track_step_container};

    #[test]
    fn the_running_step_container_is_followed_in_the_log() {
        let mut running = None;
        let run = "Step 2/3 : RUN make\n ---> Running in 4d6105159a5e\n";
        track_step_container(run, &mut running);
        assert_eq!(running.as_deref(), Some("4d6105159a5e"));
        track_step_container("building...\n", &mut running);
        assert_eq!(running.as_deref(), Some("4d6105159a5e"));
        let done = "Removing intermediate container 4d6105159a5e\n ---> f1dd2678d693\n";
        track_step_container(done, &mut running);
        assert_eq!(running, None);
        track_step_container(" ---> Running in $(reboot)\n", &mut running);
        assert_eq!(running, None);
    }

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
