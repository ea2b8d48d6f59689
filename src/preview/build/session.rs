//! A BuildKit session that hands the operator's build secrets to one build: the only way a
//! `RUN --mount=type=secret` step gets a value through the Engine API. previewd opens it with
//! `POST /session` (`Upgrade: h2c`), names the methods it serves in
//! `X-Docker-Expose-Session-Grpc-Method` headers, and after `101 Switching Protocols` the
//! daemon speaks gRPC to previewd over that connection (HTTP/2 with prior knowledge: the
//! daemon is the client, previewd the server). The build request names the session
//! (`session=<id>`); BuildKit then calls `moby.buildkit.secrets.v1.Secrets/GetSecret` for each
//! secret mount, and `grpc.health.v1.Health/Check` every second (a failed check ends the
//! session). Nothing here reads config, logs a secret's value or serves any other method.
//!
//! Why not bollard's session: 0.21's `build_image` (feature `buildkit`) starts a session that
//! serves registry auth only, and its set of services is a crate-private enum (`GrpcServer`)
//! with no way to add one; its secrets provider belongs to the gRPC solve path (BuildKit's
//! control API instead of `POST /build`), whose progress is not the `aux` trace `trace` reads.
//! Taking it on means tonic and a second build path for two small unary methods. The methods
//! here are a few bytes of protobuf each, framed as gRPC says (a flag byte, a 4-byte length,
//! the message; `grpc-status` in the trailers) on the `h2` crate hyper already brings.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use prost::Message;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::task::AbortOnDropHandle;

use super::buildkit::{Endpoint, endpoint};

const GET_SECRET: &str = "/moby.buildkit.secrets.v1.Secrets/GetSecret";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
/// gRPC status codes used here.
const NOT_FOUND: u32 = 5;
const UNIMPLEMENTED: u32 = 12;
const INVALID_ARGUMENT: u32 = 3;
/// The largest request message read (a secret's id; BuildKit sends a few dozen bytes).
const MAX_REQUEST: usize = 64 << 10;

#[derive(Clone, PartialEq, Message)]
struct GetSecretRequest {
    #[prost(string, tag = "1")]
    id: String,
}

#[derive(Clone, PartialEq, Message)]
struct GetSecretResponse {
    #[prost(bytes = "vec", tag = "1")]
    data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct HealthCheckResponse {
    /// 1: SERVING.
    #[prost(int32, tag = "1")]
    status: i32,
}

/// An open session; the daemon's connection to it closes when this is dropped.
pub struct Session {
    pub id: String,
    _serving: AbortOnDropHandle<()>,
}

/// Opens a session that serves `secrets` (id to value) and nothing else.
pub async fn open(
    docker: &bollard::Docker,
    secrets: HashMap<String, SecretString>,
) -> Result<Session, String> {
    let id = nanoid::nanoid!(25, &nanoid::alphabet::SAFE);
    let v = docker.client_version();
    let req = Request::post(format!("/v{}.{}/session", v.major_version, v.minor_version))
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "h2c")
        .header("X-Docker-Expose-Session-Uuid", &id)
        .header("X-Docker-Expose-Session-Name", "previewd")
        .header("X-Docker-Expose-Session-Grpc-Method", GET_SECRET)
        .header("X-Docker-Expose-Session-Grpc-Method", HEALTH_CHECK)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let upgraded = match endpoint()? {
        Endpoint::Unix(path) => upgrade(UnixStream::connect(path).await, req).await?,
        Endpoint::Tcp(addr) => upgrade(TcpStream::connect(addr).await, req).await?,
    };
    let serving = tokio::spawn(async move {
        if let Err(e) = serve(TokioIo::new(upgraded), secrets).await {
            tracing::debug!("build session ended: {e}");
        }
    });
    Ok(Session {
        id,
        _serving: AbortOnDropHandle::new(serving),
    })
}

/// Sends the upgrade request and returns the connection once the daemon switched protocols.
async fn upgrade<S>(
    stream: std::io::Result<S>,
    req: Request<Full<Bytes>>,
) -> Result<hyper::upgrade::Upgraded, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stream = stream.map_err(|e| format!("cannot reach the Docker engine: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!(
            "the Docker engine refused a build session ({})",
            response.status()
        ));
    }
    hyper::upgrade::on(response)
        .await
        .map_err(|e| e.to_string())
}

/// Serves the daemon's gRPC calls until it closes the connection.
async fn serve<T>(io: T, secrets: HashMap<String, SecretString>) -> Result<(), h2::Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = h2::server::handshake(io).await?;
    while let Some(call) = conn.accept().await {
        let (request, respond) = call?;
        let path = request.uri().path().to_owned();
        let body = request.into_body();
        // Each call is tiny: answered in turn, no task per call.
        let message = read_message(body).await;
        let outcome = match (path.as_str(), message) {
            (_, Err(e)) => Err((INVALID_ARGUMENT, e)),
            (HEALTH_CHECK, Ok(_)) => Ok(HealthCheckResponse { status: 1 }.encode_to_vec()),
            (GET_SECRET, Ok(m)) => match GetSecretRequest::decode(m.as_slice()) {
                Ok(r) => match secrets.get(&r.id) {
                    Some(value) => {
                        let data = value.expose_secret().as_bytes().to_vec();
                        Ok(GetSecretResponse { data }.encode_to_vec())
                    }
                    None => Err((NOT_FOUND, format!("secret {} not found", r.id))),
                },
                Err(e) => Err((INVALID_ARGUMENT, e.to_string())),
            },
            (other, Ok(_)) => Err((UNIMPLEMENTED, format!("{other} is not served"))),
        };
        let _ = answer(respond, outcome);
    }
    Ok(())
}

/// The one message of a unary call's request body (flag byte, 4-byte length, message).
async fn read_message(mut body: h2::RecvStream) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_REQUEST + 5 {
            return Err("request too large".into());
        }
    }
    let [flag, a, b, c, d, rest @ ..] = buf.as_slice() else {
        return Err("no message".into());
    };
    if *flag != 0 {
        return Err("compressed messages are not accepted".into());
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    rest.get(..len)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "truncated message".into())
}

/// Answers a call: the message and `grpc-status: 0`, or a trailers-only error.
fn answer(
    mut respond: h2::server::SendResponse<Bytes>,
    outcome: Result<Vec<u8>, (u32, String)>,
) -> Result<(), h2::Error> {
    let head = hyper::Response::builder()
        .status(200)
        .header(hyper::header::CONTENT_TYPE, "application/grpc");
    match outcome {
        Ok(message) => {
            let mut stream = respond.send_response(head.body(()).unwrap_or_default(), false)?;
            let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
            let framed = [&[0u8][..], &len.to_be_bytes(), &message].concat();
            stream.send_data(Bytes::from(framed), false)?;
            let mut trailers = hyper::HeaderMap::new();
            trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
            stream.send_trailers(trailers)
        }
        Err((code, message)) => {
            // grpc-message is percent-encoded; ids are plain, anything else is dropped.
            let text: String = message
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .map(|c| if c == '%' { '_' } else { c })
                .collect();
            let response = head
                .header("grpc-status", code.to_string())
                .header("grpc-message", text.replace(' ', "%20"))
                .body(())
                .unwrap_or_default();
            respond.send_response(response, true).map(|_| ())
        }
    }
}
