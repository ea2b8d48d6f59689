//! One REST call to GitLab, with the bounded retry of `forge::retry`. The transport is the
//! HTTPS client octocrab already brings into the binary (hyper, rustls, timeouts), built
//! without credentials and pointed at `{url}/api/v4`: GitLab's API is plain REST, and a second
//! TLS stack would buy nothing. Each request carries the token in `PRIVATE-TOKEN`; an error
//! carries the call's name and GitLab's message, never a header.

use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode, header, request};
use bytes::Bytes;
use http_body_util::BodyExt;
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::Value;

use crate::forge::retry::{Attempt, RetryPolicy, classify, retry};
use crate::forge::{ForgeError, ForgeResult};

/// A client for `{url}/api/v4` that holds no credentials.
pub(super) fn client(url: &str) -> ForgeResult<Octocrab> {
    let api = format!("{}/api/v4", url.trim_end_matches('/'));
    Octocrab::builder()
        .base_uri(api.as_str())
        .map_err(|e| ForgeError::Setup(format!("gitlab.url {url:?}: {e}")))?
        .add_header(header::ACCEPT, "application/json".into())
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(30)))
        .build()
        .map_err(|e| ForgeError::Setup(e.to_string()))
}

/// One REST call with the bounded retry; returns the body of a 2xx answer.
pub(super) async fn send(
    client: &Octocrab,
    policy: &RetryPolicy,
    call: &'static str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&HeaderValue>,
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
            if let Some(token) = token {
                builder = builder.header("private-token", token.clone());
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
                message: gitlab_message(status, &bytes),
            };
            // 409: "another update to this commit status is in progress": worth a retry.
            let conflict = status == StatusCode::CONFLICT;
            match classify(status.as_u16(), &headers) {
                Some(after) => Attempt::Retry { error, after },
                None if conflict => Attempt::Retry { error, after: None },
                None => Attempt::Fail(error),
            }
        }
    })
    .await
}

/// GitLab's error text: `{"message": "..."}`, `{"message": {"field": ["..."]}}` for a
/// validation error, or `{"error": "..."}`.
pub(super) fn gitlab_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Msg {
        #[serde(default)]
        message: Option<Value>,
        #[serde(default)]
        error: Option<String>,
    }
    let text = match serde_json::from_slice::<Msg>(body) {
        Ok(Msg {
            message: Some(Value::String(m)),
            ..
        }) => m,
        Ok(Msg {
            message: Some(other),
            ..
        }) => other.to_string(),
        Ok(Msg { error: Some(e), .. }) => e,
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    short(&text)
}

pub(super) fn decode<'a, T: serde::Deserialize<'a>>(
    call: &'static str,
    body: &'a [u8],
) -> ForgeResult<T> {
    serde_json::from_slice(body).map_err(|e| ForgeError::Decode {
        call,
        reason: short(&e.to_string()),
    })
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}
