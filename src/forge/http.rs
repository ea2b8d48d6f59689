//! One REST call to a forge, with the bounded retry of `forge::retry`: the request carries the
//! auth header it is given (the client holds no credentials), and an error carries the call's
//! name and the forge's message, never a header. The client is octocrab's: the HTTP client
//! (hyper, rustls, timeouts) previewd already ships for GitHub serves Gitea's and GitLab's
//! REST APIs as well, with none of GitHub's headers added (`client`), rather than a second
//! HTTP and TLS stack in the binary.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, StatusCode, request};
use bytes::Bytes;
use http_body_util::BodyExt;
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::Value;

use crate::forge::retry::{Attempt, RetryPolicy, classify, retry};
use crate::forge::{ForgeError, ForgeResult};

/// A client for the API at `base` (e.g. `https://gitea.example.com/api/v1`), with timeouts and
/// no credentials; `forge` names the config section in errors.
pub fn client(forge: &str, base: &str) -> ForgeResult<Octocrab> {
    Octocrab::builder()
        .base_uri(base)
        .map_err(|e| ForgeError::Setup(format!("{forge}.url {base:?}: {e}")))?
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(30)))
        .build()
        .map_err(|e| ForgeError::Setup(e.to_string()))
}

/// One REST call with the bounded retry; returns the body of a 2xx answer. `auth` is the
/// header that authenticates it (`Authorization`, or GitLab's `PRIVATE-TOKEN`), if any.
pub async fn send(
    client: &Octocrab,
    policy: &RetryPolicy,
    call: &'static str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    auth: Option<(&HeaderName, &HeaderValue)>,
) -> ForgeResult<Bytes> {
    retry(policy, || {
        let method = method.clone();
        async move {
            let transport = |reason: String| Attempt::Retry {
                error: ForgeError::Transport {
                    call,
                    reason: short(&reason),
                },
                after: None,
            };
            let mut builder = request::Builder::new().method(method).uri(path);
            if let Some((name, value)) = auth {
                builder = builder.header(name, value.clone());
            }
            let req = match client.build_request(builder, body) {
                Ok(r) => r,
                Err(e) => {
                    return Attempt::Fail(ForgeError::Setup(format!(
                        "{call}: {}",
                        short(&e.to_string())
                    )));
                }
            };
            let resp = match client.execute(req).await {
                Ok(r) => r,
                Err(e) => return transport(e.to_string()),
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = match resp.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return transport(e.to_string()),
            };
            if status.is_success() {
                return Attempt::Done(bytes);
            }
            let error = ForgeError::Status {
                call,
                status: status.as_u16(),
                message: forge_message(status, &bytes),
            };
            match classify(status.as_u16(), &headers) {
                Some(after) => Attempt::Retry { error, after },
                None => Attempt::Fail(error),
            }
        }
    })
    .await
}

/// The `message` of a forge's error body (GitHub, Gitea and GitLab all send one), else the
/// status's reason.
fn forge_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Msg {
        message: String,
    }
    match serde_json::from_slice::<Msg>(body) {
        Ok(m) => short(&m.message),
        Err(_) => status.canonical_reason().unwrap_or("error").to_owned(),
    }
}

pub fn decode<'a, T: serde::Deserialize<'a>>(call: &'static str, body: &'a [u8]) -> ForgeResult<T> {
    serde_json::from_slice(body).map_err(|e| ForgeError::Decode {
        call,
        reason: short(&e.to_string()),
    })
}

/// Percent-encodes `s` for a query value or one path segment (a branch may hold `/`): only
/// unreserved characters stay as they are.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn short(s: &str) -> String {
    s.chars().take(200).collect()
}
