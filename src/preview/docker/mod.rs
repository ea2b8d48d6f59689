//! The Docker Engine API through bollard: connecting, reading previewd's objects back by label,
//! and the small operations the manager, gateway and reconciler share. Never shells out to the
//! docker CLI. Errors say whether Docker itself is unreachable, because that changes what a
//! caller should tell the user.
//!
//! Beside it: `labels` names and labels every object (and never calls Docker), `network` makes
//! preview networks, `volumes` a preview's named volumes, `lifecycle` waits on a container's
//! health and exit, `lockfile` holds the instance's `flock` files, `swarm` runs services on a
//! Docker Swarm (`swarm_tasks` reads them back), and `placed` is the one switch between a swarm and one host.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    CreateImageOptions, InspectContainerOptions, ListContainersOptions, ListImagesOptions,
    ListNetworksOptions, LogsOptions, RemoveContainerOptions, RemoveImageOptions,
    RenameContainerOptions,
};
use futures_util::StreamExt;

use crate::ids::Instance;
use labels::Member;

pub mod hooks;
pub mod labels;
pub mod lifecycle;
pub mod lockfile;
pub mod marks;
pub mod network;
pub mod placed;
pub mod ready;
pub mod sleep;
pub mod swarm;
pub mod swarm_tasks;
pub mod volumes;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine ({0}); is it running, and may this user use its socket?"
    )]
    Unavailable(String),
    #[error("Docker: {0}")]
    Api(String),
}

impl From<bollard::errors::Error> for DockerError {
    fn from(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        match e {
            E::IOError { .. } | E::HyperResponseError { .. } | E::SocketNotFoundError(_) => {
                DockerError::Unavailable(e.to_string())
            }
            // A socket that is gone or refuses connections (the daemon died or restarts).
            E::HyperLegacyError { ref err } if err.is_connect() => {
                DockerError::Unavailable(e.to_string())
            }
            E::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Api(format!("{message} ({status_code})")),
            other => DockerError::Api(other.to_string()),
        }
    }
}

/// `true` for Docker's "no such object" answers, which cleanup treats as done.
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Connects to the engine named by `DOCKER_HOST` (default: the local socket) and agrees on an
/// API version both sides speak, so an older engine (20.10 speaks 1.41) works too.
pub async fn connect() -> Result<Docker, DockerError> {
    let docker =
        Docker::connect_with_defaults().map_err(|e| DockerError::Unavailable(e.to_string()))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| DockerError::Unavailable(e.to_string()))
}

pub fn instance_filter(instance: &Instance) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("{}={}", labels::INSTANCE, instance)],
    )])
}

/// Every container of the instance, running or not.
pub async fn containers(
    docker: &Docker,
    instance: &Instance,
) -> Result<Vec<ContainerSummary>, DockerError> {
    let opts = ListContainersOptions {
        all: true,
        filters: Some(instance_filter(instance)),
        ..Default::default()
    };
    Ok(docker.list_containers(Some(opts)).await?)
}

/// Every container, running or not, that carries all of `labels` (`key=value` each).
pub async fn labelled(
    docker: &Docker,
    labels: Vec<String>,
) -> Result<Vec<ContainerSummary>, DockerError> {
    let opts = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_owned(), labels)])),
        ..Default::default()
    };
    Ok(docker.list_containers(Some(opts)).await?)
}

/// Every service container of the instance, parsed from its labels.
pub async fn members(docker: &Docker, instance: &Instance) -> Result<Vec<Member>, DockerError> {
    Ok(containers(docker, instance)
        .await?
        .into_iter()
        .filter_map(|c| {
            labels::parse_member(
                instance,
                c.id.as_deref()?,
                c.names.as_deref().unwrap_or(&[]),
                c.labels.as_ref()?,
                &c.state.map(|s| s.to_string()).unwrap_or_default(),
                c.image.as_deref().unwrap_or(""),
            )
        })
        .collect())
}

/// Names of the instance's networks with their labels.
pub async fn networks(
    docker: &Docker,
    instance: &Instance,
) -> Result<Vec<(String, HashMap<String, String>)>, DockerError> {
    let opts = ListNetworksOptions {
        filters: Some(instance_filter(instance)),
    };
    Ok(docker
        .list_networks(Some(opts))
        .await?
        .into_iter()
        .filter_map(|n| Some((n.name?, n.labels.unwrap_or_default())))
        .collect())
}

/// The instance's images: (id, tags, labels).
pub async fn images(
    docker: &Docker,
    instance: &Instance,
) -> Result<Vec<(String, Vec<String>, HashMap<String, String>)>, DockerError> {
    let opts = ListImagesOptions {
        all: false,
        filters: Some(instance_filter(instance)),
        ..Default::default()
    };
    Ok(docker
        .list_images(Some(opts))
        .await?
        .into_iter()
        .map(|i| (i.id, i.repo_tags, i.labels))
        .collect())
}

/// Removes a container whatever its state; a container already gone is not an error.
pub async fn remove_container(docker: &Docker, name_or_id: &str) -> Result<(), DockerError> {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(name_or_id, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // Someone else (a stop and a ttl expiry at once) is already removing it.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message,
        }) if message.contains("already in progress") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_network(docker: &Docker, name: &str) -> Result<(), DockerError> {
    match docker.remove_network(name).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes an image tag (the image itself goes with its last tag), or an untagged image by id;
/// either way with its untagged parents that nothing else builds on. An image still used by a
/// container is kept: Docker refuses, and that refusal is not an error here. `true` when
/// Docker removed something; `false` when it kept the image or it was gone already.
pub async fn remove_image(docker: &Docker, tag: &str) -> Result<bool, DockerError> {
    let opts = RemoveImageOptions {
        force: false,
        noprune: false,
        ..Default::default()
    };
    match docker.remove_image(tag, Some(opts), None).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        // Another removal of the same image (two previews built identical content, so their
        // tags share one image) won the race: Docker answers 500 for the id it just deleted.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message,
        }) if message.contains("unrecognized image ID") => Ok(false),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The instance's untagged images that no other image builds on: what a failed or cancelled
/// build committed, and images whose tag went to a newer build (and, while a build runs, its
/// newest step: see `build::prune_leftovers`).
pub async fn untagged_images(
    docker: &Docker,
    instance: &Instance,
) -> Result<Vec<String>, DockerError> {
    let mut filters = instance_filter(instance);
    filters.insert("dangling".to_owned(), vec!["true".to_owned()]);
    image_ids(docker, filters).await
}

/// Ids of the images (not intermediate layers) that match `filters`.
pub async fn image_ids(
    docker: &Docker,
    filters: HashMap<String, Vec<String>>,
) -> Result<Vec<String>, DockerError> {
    let opts = ListImagesOptions {
        all: false,
        filters: Some(filters),
        ..Default::default()
    };
    Ok(docker
        .list_images(Some(opts))
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect())
}

/// `None` when `image` is not on this host; else whether previewd built it (it carries one of
/// previewd's labels).
pub async fn built_by_previewd(docker: &Docker, image: &str) -> Option<bool> {
    let info = docker.inspect_image(image).await.ok()?;
    Some(
        info.config
            .and_then(|c| c.labels)
            .is_some_and(|l| l.keys().any(|k| k.starts_with(labels::PREFIX))),
    )
}

/// When the host's copy of `image` became what it is, as far as Docker says: the later of its
/// `Created` and its `Metadata.LastTagTime` (set when the image is tagged on this host, under
/// any name; Docker leaves it empty on a plain pull). `None` when the image is absent or Docker gives neither.
pub async fn image_time(docker: &Docker, image: &str) -> Option<time::OffsetDateTime> {
    let info = docker.inspect_image(image).await.ok()?;
    let parse = |t: Option<String>| {
        let t = t?;
        time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
    };
    let tagged = parse(info.metadata.and_then(|m| m.last_tag_time));
    parse(info.created).max(tagged)
}

/// Pulls `image` from its registry, to the end of Docker's progress stream; the first error
/// the stream reports is returned as Docker said it.
pub async fn pull_image(docker: &Docker, image: &str) -> Result<(), bollard::errors::Error> {
    let opts = CreateImageOptions {
        from_image: Some(image.to_owned()),
        ..Default::default()
    };
    let mut pull = docker.create_image(Some(opts), None, None);
    while let Some(item) = pull.next().await {
        item?;
    }
    Ok(())
}

/// `Err("<service> exited with code N")` for the first container that is not running.
pub async fn all_running(docker: &Docker, containers: &[String]) -> Result<(), String> {
    // Side by side: one round trip to the daemon for all of them, not one per container.
    let inspected = futures_util::future::join_all(
        containers
            .iter()
            .map(|c| docker.inspect_container(c, None::<InspectContainerOptions>)),
    )
    .await;
    for (c, info) in containers.iter().zip(inspected) {
        if let Ok(info) = info {
            let st = info.state.unwrap_or_default();
            let restarting = st.restarting.unwrap_or(false);
            if !st.running.unwrap_or(false) || restarting {
                let service = info
                    .config
                    .and_then(|c| c.labels)
                    .and_then(|l| l.get(labels::SERVICE).cloned())
                    .unwrap_or_else(|| c.clone());
                return Err(format!(
                    "{service} exited with code {}",
                    st.exit_code.unwrap_or(-1)
                ));
            }
        }
    }
    Ok(())
}

pub async fn rename_container(
    docker: &Docker,
    container: &str,
    to: &str,
) -> Result<(), DockerError> {
    let opts = RenameContainerOptions {
        name: to.to_owned(),
    };
    docker.rename_container(container, opts).await?;
    Ok(())
}

/// The last `n` lines a container wrote (stdout and stderr), for failure reports.
pub async fn log_tail(docker: &Docker, container: &str, n: usize) -> Vec<String> {
    let opts = LogsOptions {
        stdout: true,
        stderr: true,
        tail: n.to_string(),
        ..Default::default()
    };
    read_tail(docker.logs(container, Some(opts)), n).await
}

/// The last `n` lines of a log stream (a container's or a Swarm service's), made printable;
/// a read error ends it with what came before.
pub async fn read_tail(
    stream: impl futures_util::Stream<
        Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
    >,
    n: usize,
) -> Vec<String> {
    let mut out = String::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => out.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
            Err(_) => break,
        }
    }
    tail_lines(&out, n)
}

/// The last `n` non-empty lines of `text`, made [`printable`].
pub fn tail_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<String> = text
        .lines()
        .map(printable)
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// A log line as people may read it: without terminal escape sequences or other control
/// characters. Docker's classic builder colours a step's stderr, and an untrusted build or
/// container can write anything: raw, it garbles a PR comment, and it could drive the terminal
/// of whoever runs `previewd up` or `previewd logs` (set its title, write to its clipboard).
pub fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in `@`..=`~`.
                Some('[') => {
                    for n in chars.by_ref() {
                        if ('@'..='~').contains(&n) {
                            break;
                        }
                    }
                }
                // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (`ESC \`).
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    while let Some(n) = chars.next() {
                        if n == '\u{7}' {
                            break;
                        }
                        if n == '\u{1b}' {
                            chars.next_if_eq(&'\\');
                            break;
                        }
                    }
                }
                // Any other escape is two characters long.
                _ => {}
            },
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{printable, tail_lines};

    #[test]
    fn escape_sequences_and_control_characters_are_removed() {
        assert_eq!(printable("\u{1b}[91merror: broke\u{1b}[0m"), "error: broke");
        assert_eq!(printable("\u{1b}[1;31;48;5;200mred"), "red");
        assert_eq!(printable("a\u{1b}]0;pwned title\u{7}b"), "ab");
        assert_eq!(printable("a\u{1b}]52;c;aGk=\u{1b}\\b"), "ab");
        assert_eq!(printable("a\u{1b}Pq#0;2;0\u{1b}\\b\u{1b}cc"), "abc");
        assert_eq!(
            printable("tab\tkept\r\u{8}\u{9b}31m é ✓"),
            "tab\tkept31m é ✓"
        );
        assert_eq!(printable("unterminated \u{1b}[12"), "unterminated ");
        assert_eq!(printable("\u{1b}"), "");
    }

    #[test]
    fn a_tail_skips_lines_that_were_only_escape_codes() {
        let text = "one\n\u{1b}[0m\ntwo\n\n\u{1b}[91mthree\u{1b}[0m\n";
        assert_eq!(tail_lines(text, 2), ["two", "three"]);
        assert_eq!(tail_lines(text, 9), ["one", "two", "three"]);
    }
}
