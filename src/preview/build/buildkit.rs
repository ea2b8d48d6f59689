//! One build with Docker's BuildKit builder through the Engine API: `POST /build` with
//! `version=2` and the context as a plain tar, no session. The answer streams JSON lines: the
//! progress as `aux` trace messages (decoded by `trace`), the image id, or an error. A daemon
//! that refuses `version=2` before building is reported as such, so the caller can fall back
//! to the classic builder. Nothing here retries, falls back or touches images.
//!
//! Why not bollard's `build_image`: with its `buildkit` feature it insists on a gRPC session
//! (`MissingSessionBuildkitError` without one), and the session it starts is served by a task
//! that outlives the build (a connection held per build for as long as the daemon keeps the
//! session); without the feature it cannot read the `aux` trace lines (a string where it
//! expects an image id ends its stream at the first progress message). The request itself is
//! bollard's: the query is its `BuildImageOptions`, URL-encoded as bollard does, sent to the
//! endpoint `DOCKER_HOST` names as bollard reads it.

use std::path::PathBuf;

use base64::Engine as _;
use bollard::Docker;
use bollard::query_parameters::BuildImageOptions;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::task::AbortOnDropHandle;

use super::trace::Trace;
use crate::preview::docker::DockerError;

/// How one BuildKit build ended.
#[derive(Debug)]
pub enum Outcome {
    Built,
    /// The build ran and failed: the reason, naming the failing step when BuildKit said it.
    Failed(String),
    /// The daemon refused BuildKit before building (no BuildKit there): the daemon's words.
    Refused(String),
}

/// Where the Engine API listens, as bollard's `connect_with_defaults` reads `DOCKER_HOST`.
#[derive(Debug, Clone)]
pub(super) enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

pub(super) fn endpoint() -> Result<Endpoint, String> {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    if host.is_empty() {
        return Ok(Endpoint::Unix("/var/run/docker.sock".into()));
    }
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(Endpoint::Unix(path.into()));
    }
    for scheme in ["tcp://", "http://"] {
        if let Some(addr) = host.strip_prefix(scheme) {
            return Ok(Endpoint::Tcp(addr.trim_end_matches('/').to_owned()));
        }
    }
    Err("DOCKER_HOST is neither unix:// nor tcp://".to_owned())
}

/// One line of the build answer. Classic output (`stream`) can come too: an engine older than
/// API 1.38 ignores `version`.
#[derive(Deserialize)]
struct Line {
    id: Option<String>,
    stream: Option<String>,
    aux: Option<serde_json::Value>,
    #[serde(rename = "errorDetail")]
    error_detail: Option<ErrorDetail>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

/// The longest answer line kept in memory (a step's output arrives in chunks far smaller).
const MAX_LINE: usize = 16 << 20;

/// Runs the build `opts` describes (its `version` must say BuildKit) on the context `tar`,
/// giving each readable progress line to `on_line`; `session` names an open BuildKit session
/// (`session::open`) that serves the build's secrets.
///
/// The request runs in a task of its own. Dropping this future (a newer push superseded the
/// deployment, or the build timed out) does not just close the connection: a build that had
/// finished solving would still be exported and tagged after the caller cleaned up, leaving
/// an image of a cancelled attempt. Instead the task asks the daemon to cancel the build
/// (`POST /build/cancel`), reads the answer to its end, and removes the tag if the build made
/// it anyway; [`settled`] waits for such tasks, so a cleanup that follows finds everything.
pub async fn build(
    docker: &Docker,
    opts: &BuildImageOptions,
    session: Option<String>,
    tar: Bytes,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> Result<Outcome, DockerError> {
    let build_id = nanoid::nanoid!(16, &nanoid::alphabet::SAFE);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (d, o, id) = (docker.clone(), opts.clone(), build_id.clone());
    let driver = tokio::spawn(async move {
        let _ = done_tx.send(drive(d, o, id, session, tar, tx).await);
    });
    let mut guard = CancelOnDrop {
        docker: Some(docker.clone()),
        build_id,
        tag: opts.t.clone(),
        driver: Some(driver),
    };
    while let Some(line) = rx.recv().await {
        on_line(&line);
    }
    let outcome = done_rx
        .await
        .map_err(|_| DockerError::Api("the build task ended without an answer".into()))?;
    guard.docker = None;
    outcome
}

/// Cancels a build whose caller went away, and cleans up after it (see [`build`]).
struct CancelOnDrop {
    /// `None` once the build ended while its caller was there.
    docker: Option<Docker>,
    build_id: String,
    tag: Option<String>,
    driver: Option<tokio::task::JoinHandle<()>>,
}

/// Builds cancelled in this process whose answer is still being read.
static FINISHING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static FINISHED: tokio::sync::Notify = tokio::sync::Notify::const_new();

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(docker) = self.docker.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (id, tag, driver) = (self.build_id.clone(), self.tag.take(), self.driver.take());
        FINISHING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        rt.spawn(async move {
            let _ = post(&docker, &format!("/build/cancel?id={id}")).await;
            if let Some(driver) = driver {
                let _ = tokio::time::timeout(CANCEL_WAIT, driver).await;
            }
            if let Some(tag) = tag {
                let _ = docker
                    .remove_image(
                        &tag,
                        None::<bollard::query_parameters::RemoveImageOptions>,
                        None,
                    )
                    .await;
            }
            FINISHING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            FINISHED.notify_waiters();
        });
    }
}

/// How long a cancelled build's answer is read before its task gives up on it.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits (at most `max`) until no build cancelled in this process is still finishing, so a
/// cleanup after a cancellation sees what that build made.
pub async fn settled(max: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + max;
    loop {
        let notified = FINISHED.notified();
        if FINISHING.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            return;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return;
        }
    }
}

/// A bodiless POST to the daemon on a connection of its own: the answer's status and body.
pub(super) async fn post(docker: &Docker, path: &str) -> Result<(u16, Bytes), String> {
    let endpoint = endpoint()?;
    let v = docker.client_version();
    let req = Request::post(format!("/v{}.{}{path}", v.major_version, v.minor_version))
        .header(hyper::header::HOST, "docker")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let (response, _connection) = match &endpoint {
        Endpoint::Unix(path) => send(UnixStream::connect(path).await, req).await?,
        Endpoint::Tcp(addr) => send(TcpStream::connect(addr).await, req).await?,
    };
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, body.to_bytes()))
}

/// The build request itself, read to its end whether or not anyone still listens.
async fn drive(
    docker: Docker,
    opts: BuildImageOptions,
    build_id: String,
    session: Option<String>,
    tar: Bytes,
    lines: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<Outcome, DockerError> {
    let docker = &docker;
    let opts = &opts;
    let mut send_line = |l: &str| {
        let _ = lines.send(l.to_owned());
    };
    let on_line: &mut (dyn FnMut(&str) + Send) = &mut send_line;
    let endpoint = endpoint().map_err(|reason| DockerError::Api(reason.clone()))?;
    let query = serde_urlencoded::to_string(opts).map_err(|e| DockerError::Api(e.to_string()))?;
    // The id `POST /build/cancel` names the build by, and the session that serves its secrets
    // (Engine API parameters bollard's options do not carry without its `buildkit` feature).
    let mut query = format!("{query}&buildid={build_id}");
    if let Some(session) = session {
        query.push_str(&format!("&session={session}"));
    }
    let v = docker.client_version();
    let uri = format!("/v{}.{}/build?{query}", v.major_version, v.minor_version);
    let req = Request::post(uri)
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONTENT_TYPE, "application/x-tar")
        .body(Full::new(tar))
        .map_err(|e| DockerError::Api(e.to_string()))?;
    let unavailable = |e: &dyn std::fmt::Display| DockerError::Unavailable(e.to_string());
    let (response, _connection) = match &endpoint {
        Endpoint::Unix(path) => send(UnixStream::connect(path).await, req).await,
        Endpoint::Tcp(addr) => send(TcpStream::connect(addr).await, req).await,
    }
    .map_err(|e| unavailable(&e))?;

    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        let lower = message.to_ascii_lowercase();
        if lower.contains("buildkit") || lower.contains("version") {
            return Ok(Outcome::Refused(message));
        }
        return Err(DockerError::Api(format!("{message} ({status})")));
    }

    let mut trace = Trace::default();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| unavailable(&e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if let Some(failure) = read_line(&line, &mut trace, on_line) {
                return Ok(Outcome::Failed(failure));
            }
        }
        if buf.len() > MAX_LINE {
            return Err(DockerError::Api(
                "the build answer has a line over 16 MiB".into(),
            ));
        }
    }
    if let Some(failure) = read_line(&buf, &mut trace, on_line) {
        return Ok(Outcome::Failed(failure));
    }
    Ok(Outcome::Built)
}

/// Shows one answer line; `Some(reason)` when it reports the build's failure.
fn read_line(
    raw: &[u8],
    trace: &mut Trace,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> Option<String> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let Ok(line) = serde_json::from_slice::<Line>(raw) else {
        on_line(&String::from_utf8_lossy(raw));
        return None;
    };
    if let Some(text) = &line.stream {
        on_line(text);
    }
    if line.id.as_deref() == Some("moby.buildkit.trace")
        && let Some(serde_json::Value::String(b64)) = &line.aux
    {
        match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(bytes) => trace.feed(&bytes).iter().for_each(|l| on_line(l)),
            Err(e) => on_line(&format!("(unreadable BuildKit progress: {e})")),
        }
    }
    let error = explain(line.error_detail.and_then(|d| d.message).or(line.error)?);
    Some(match trace.failed_step() {
        Some(step) => {
            on_line(&format!("failed step: {step}"));
            format!("step `{step}` failed: {error}")
        }
        None => error,
    })
}

/// BuildKit's words, with what to do where they do not say it.
fn explain(error: String) -> String {
    if error.contains("no active sessions") {
        format!(
            "{error}: the Dockerfile mounts an ssh agent (RUN --mount=type=ssh), which previewd does not provide, or a build secret previewd did not see in it (only `RUN --mount=type=secret` flags of the Dockerfile itself are given a session)"
        )
    } else {
        error
    }
}

type Connection = AbortOnDropHandle<()>;

/// Sends `req` on a new HTTP/1 connection; the connection lives as long as the returned handle.
async fn send<S>(
    stream: std::io::Result<S>,
    req: Request<Full<Bytes>>,
) -> Result<(hyper::Response<hyper::body::Incoming>, Connection), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stream = stream.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let connection = AbortOnDropHandle::new(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok((response, connection))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_bollards_with_version_2() {
        let opts = BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            version: bollard::query_parameters::BuilderVersion::BuilderBuildKit,
            target: "app".into(),
            labels: Some([("k".to_owned(), "v".to_owned())].into()),
            ..Default::default()
        };
        let q = serde_urlencoded::to_string(&opts).expect("encodes");
        assert!(q.contains("version=2"), "{q}");
        assert!(q.contains("target=app"), "{q}");
        assert!(q.contains("labels=%7B%22k%22%3A%22v%22%7D"), "{q}");
    }

    #[test]
    fn an_error_line_names_the_failing_step() {
        let mut trace = Trace::default();
        let mut lines = Vec::new();
        let reason = read_line(
            br#"{"errorDetail":{"message":"exit code: 3"},"error":"exit code: 3"}"#,
            &mut trace,
            &mut |l| lines.push(l.to_owned()),
        );
        assert_eq!(reason.as_deref(), Some("exit code: 3"));
        let reason = read_line(
            br#"{"errorDetail":{"message":"no active sessions"}}"#,
            &mut trace,
            &mut |_| {},
        );
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("build secret")),
            "{reason:?}"
        );
        assert!(read_line(b"{\"stream\":\"Step 1/2\\n\"}", &mut trace, &mut |_| {}).is_none());
    }
}
