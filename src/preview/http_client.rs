//! A minimal HTTP/1.1 client over a TCP or unix stream, for the two places previewd speaks HTTP
//! to things it runs itself: Caddy's admin API (a unix socket) and health checks through the
//! gateway (a TCP port with a chosen `Host` header). Nothing here talks to the forge.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// The User-Agent of every request previewd makes here. Through the gateway, such a request
/// is no visit and passes a sleeping preview's wake route untouched (`gateway/caddy.rs`).
pub const PROBE_AGENT: &str = "previewd-probe";

/// Bodies we read are small (a health page, an admin answer); a bigger one is cut off here.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("request to {target} failed: {reason}")]
    Request { target: String, reason: String },
    #[error("request to {target} timed out after {after:?}")]
    Timeout { target: String, after: Duration },
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request on a fresh connection to a unix socket.
pub async fn unix(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let target = socket.display().to_string();
    let fut = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| HttpError::Connect {
                target: target.clone(),
                source,
            })?;
        send(stream, &target, method, "localhost", path, body, &[]).await
    };
    with_timeout(fut, &target, timeout).await
}

/// Sends one request on a fresh TCP connection, with `host` as the `Host` header (the gateway
/// routes by it, so health checks need no DNS).
pub async fn tcp(
    addr: &str,
    host: &str,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<Response, HttpError> {
    tcp_with(addr, host, method, path, &[], timeout).await
}

/// [`tcp`] with extra request headers (the gateway pass of health checks).
pub async fn tcp_with(
    addr: &str,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Response, HttpError> {
    let fut = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| HttpError::Connect {
                target: addr.to_owned(),
                source,
            })?;
        send(stream, addr, method, host, path, None, headers).await
    };
    with_timeout(fut, addr, timeout).await
}

async fn with_timeout<F>(fut: F, target: &str, after: Duration) -> Result<Response, HttpError>
where
    F: std::future::Future<Output = Result<Response, HttpError>>,
{
    tokio::time::timeout(after, fut)
        .await
        .map_err(|_| HttpError::Timeout {
            target: target.to_owned(),
            after,
        })?
}

async fn send<S>(
    stream: S,
    target: &str,
    method: &str,
    host: &str,
    path: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let err = |reason: String| HttpError::Request {
        target: target.to_owned(),
        reason,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| err(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("user-agent", PROBE_AGENT)
        .header("connection", "close");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| err(e.to_string()))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = res.status().as_u16();
    let body = Limited::new(res.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| err(e.to_string()))?
        .to_bytes();
    conn.abort();
    Ok(Response { status, body })
}
