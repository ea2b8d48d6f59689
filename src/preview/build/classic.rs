//! The classic builder, the fallback for a Docker engine without BuildKit: `POST /build` with
//! `version=1` through bollard. It commits an image and runs a container per step, so an
//! aborted build is waited for until Docker removed its step container, and a build whose
//! cached layer vanished under it (another preview's image removed meanwhile) is tried once
//! more. Nothing here prunes: `prune_leftovers` does, under the instance's build lock.

use bollard::Docker;
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;

use super::{Ended, Log};
use crate::config::Config;
use crate::preview::docker::labels;

/// Builds with `opts` (the classic builder's) until `deadline`.
pub(super) async fn build(
    docker: &Docker,
    config: &Config,
    opts: BuildImageOptions,
    tar: bytes::Bytes,
    log: &mut Log<'_>,
    deadline: tokio::time::Instant,
) -> Ended {
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
                            log.push(s);
                            if let Ok(mut step) = step.lock() {
                                track_step_container(s, &mut step);
                            }
                        }
                        if let Some(detail) = info.error_detail {
                            let reason = detail.message.unwrap_or_else(|| "unknown error".into());
                            log.push(&reason);
                            failure = Some(reason);
                            break;
                        }
                    }
                    Err(bollard::errors::Error::DockerStreamError { error }) => {
                        log.push(&error);
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
                    log.push(
                        "the build cache changed under this build (an image was removed meanwhile); building again",
                    );
                }
                Some(reason) => return Err(reason),
            }
        }
    };
    let outcome = tokio::time::timeout_at(deadline, run).await;
    if outcome.is_err() {
        // Docker aborts the build once the request is gone: it kills and removes the step's
        // container a moment later. Until then the step it started from is in use and cannot
        // be pruned by the cleanup that follows, so that moment is waited for.
        let running = step.lock().ok().and_then(|mut s| s.take());
        if let Some(id) = running {
            step_container_gone(docker, config, &id).await;
        }
    }
    match outcome {
        Ok(Ok(())) => Ended::Built,
        Ok(Err(reason)) => Ended::Failed(reason),
        Err(_) => Ended::TimedOut,
    }
}

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
