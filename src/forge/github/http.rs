//! One REST call to GitHub through octocrab, with the bounded retry of `forge::retry`: the
//! request carries the `Authorization` header it is given (octocrab's own client holds no
//! credentials), and an error carries the call's name and GitHub's message, never a header.

use axum::http::{HeaderValue, Method, StatusCode, header, request};
use bytes::Bytes;
use http_body_util::BodyExt;
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::Value;

use crate::forge::retry::{Attempt, RetryPolicy, classify, retry};
use crate::forge::{ForgeError, ForgeResult};

/// One REST call with the bounded retry; returns the body of a 2xx answer.
pub(super) async fn send(
    client: &Octocrab,
    policy: &RetryPolicy,
    call: &'static str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    auth: Option<&HeaderValue>,
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
            if let Some(auth) = auth {
                builder = builder.header(header::AUTHORIZATION, auth.clone());
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
                message: github_message(status, &bytes),
            };
            match classify(status.as_u16(), &headers) {
                Some(after) => Attempt::Retry { error, after },
                None => Attempt::Fail(error),
            }
        }
    })
    .await
}

fn github_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Msg {
        message: String,
    }
    match serde_json::from_slice::<Msg>(body) {
        Ok(m) => short(&m.message),
        Err(_) => status.canonical_reason().unwrap_or("error").to_owned(),
    }
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

pub(super) fn short(s: &str) -> String {
    s.chars().take(200).collect()
}
