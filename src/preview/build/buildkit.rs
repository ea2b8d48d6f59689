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
enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

fn endpoint() -> Result<Endpoint, String> {
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
/// giving each readable progress line to `on_line`. Dropping the future closes the connection,
/// which cancels the build in the daemon.
pub async fn build(
    docker: &Docker,
    opts: &BuildImageOptions,
    tar: Bytes,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> Result<Outcome, DockerError> {
    let endpoint = endpoint().map_err(|reason| DockerError::Api(reason.clone()))?;
    let query = serde_urlencoded::to_string(opts).map_err(|e| DockerError::Api(e.to_string()))?;
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
            "{error}: the Dockerfile mounts a build secret or an ssh agent (RUN --mount=type=secret or type=ssh), which previewd does not provide yet"
        )
    } else if error.contains("Unknown flag: link") {
        format!("{error}: COPY --link needs a newer Docker engine (23+) on the preview host")
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
