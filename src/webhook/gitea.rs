//! `POST /webhooks/gitea`, for Gitea and Forgejo: `VerifiedGitea` makes an unsigned request
//! unreachable (404 unread when Gitea is not configured; 400 to another forge's delivery;
//! 413 over 25 MiB; 401 unless `X-Forgejo-Signature` or `X-Gitea-Signature`, the bare hex
//! HMAC-SHA256 of the payload, matches one of the secrets, an empty one being a missing one).
//! `receive` reads the event (`forge::gitea::payload`) and hands it to `accept`. A label
//! change carries the PR's whole label set: whether a trigger label came or went is read
//! from it and from whether the PR's preview exists (the engine's list, or the queue busy
//! with it). It never waits for the work, and never logs a secret or a signature.

use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use super::accept::Delivery;
use super::verify::{Refused, Refuser, digest_matches, header_str};
use super::{AppState, form};
use crate::forge::gitea::payload::{self, Parsed};
use crate::forge::{ForgeEvent, ForgeKind};
use crate::intent::pull_request_key;

/// How long a label change waits for the engine's list before it assumes the label decides.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// The headers that name a Gitea or Forgejo delivery, Forgejo's first (it sends both).
const EVENT_TYPE: [&str; 2] = ["x-forgejo-event-type", "x-gitea-event-type"];
const EVENT: [&str; 2] = ["x-forgejo-event", "x-gitea-event"];
const DELIVERY: [&str; 2] = ["x-forgejo-delivery", "x-gitea-delivery"];
const SIGNATURE: [&str; 2] = ["x-forgejo-signature", "x-gitea-signature"];

/// An authentic Gitea or Forgejo delivery.
#[derive(Debug)]
pub struct VerifiedGitea {
    /// The precise event type (`pull_request_sync`, ...), or the family on an old Gitea.
    pub event: String,
    pub delivery: String,
    /// The JSON payload (a form's `payload` field, over which Gitea signs).
    pub body: Bytes,
    pub received: std::time::Instant,
}

fn first<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| header_str(headers, n))
}

/// A bare hex digest of 32 bytes (Gitea writes it lower-case; case does not matter to bytes).
fn digest_of(signature: &str) -> Option<Vec<u8>> {
    hex::decode(signature).ok().filter(|d| d.len() == 32)
}

impl FromRequest<AppState> for VerifiedGitea {
    type Rejection = Refused;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let received = std::time::Instant::now();
        let (parts, body) = req.into_parts();
        let headers = parts.headers;
        let event = first(&headers, &EVENT_TYPE)
            .or_else(|| first(&headers, &EVENT))
            .map(|s| s.chars().take(64).collect::<String>());
        let delivery = first(&headers, &DELIVERY).map(|s| s.chars().take(80).collect::<String>());
        let refuser = Refuser {
            state,
            forge: ForgeKind::Gitea,
            event: event.clone(),
            delivery: delivery.clone(),
        };
        let route = refuser.configured()?;
        let own: Vec<&str> = EVENT_TYPE
            .iter()
            .chain(&EVENT)
            .chain(&SIGNATURE)
            .copied()
            .collect();
        refuser.foreign(&headers, &own)?;
        refuser.declared_size(&headers)?;
        let signatures: Vec<&str> = SIGNATURE
            .iter()
            .filter_map(|n| header_str(&headers, n))
            .collect();
        if signatures.is_empty() {
            return Err(refuser.refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "X-Gitea-Signature (or X-Forgejo-Signature) header missing or empty",
            ));
        }
        let unauthentic = || {
            refuser.refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "signature does not match any configured secret",
            )
        };
        let digests: Vec<Vec<u8>> = signatures.iter().filter_map(|s| digest_of(s)).collect();
        if digests.is_empty() {
            return Err(unauthentic());
        }
        let body = refuser.read_body(body).await?;
        // Gitea signs the JSON payload, also when it posts it as a form's `payload` field.
        let body = if form::is_form(header_str(&headers, "content-type")) {
            form::payload(&body)
                .map_err(|e| refuser.refuse(StatusCode::BAD_REQUEST, "invalid", e.reason()))?
        } else {
            body
        };
        if !digests
            .iter()
            .any(|d| digest_matches(&route.secrets, d, &body))
        {
            return Err(unauthentic());
        }
        let (Some(event), Some(delivery)) = (event, delivery) else {
            return Err(refuser.refuse(
                StatusCode::BAD_REQUEST,
                "invalid",
                "X-Gitea-Event-Type (or X-Gitea-Event) or X-Gitea-Delivery header missing",
            ));
        };
        Ok(VerifiedGitea {
            event,
            delivery,
            body,
            received,
        })
    }
}

pub async fn receive(State(state): State<AppState>, hook: VerifiedGitea) -> Response {
    let VerifiedGitea {
        event,
        delivery,
        body,
        received,
    } = hook;
    let Some(route) = state.routes.get(&ForgeKind::Gitea) else {
        return super::not_configured(ForgeKind::Gitea);
    };
    let d = Delivery {
        state: &state,
        forge: ForgeKind::Gitea,
        event,
        delivery,
        received,
    };
    if let Some(duplicate) = d.duplicate() {
        return duplicate;
    }
    let event = match payload::parse_event(&d.event, &body) {
        Ok(Parsed::Event(e)) => e,
        Ok(Parsed::Labels {
            repo,
            sender,
            action,
            pr,
        }) => {
            let has_preview = match pull_request_key(ForgeKind::Gitea, &repo, &pr) {
                Some(key) => {
                    has_preview(&state, &key, route.policy.has_trigger_label(&pr.labels)).await
                }
                None => false,
            };
            let action =
                payload::label_action(&pr.labels, route.policy.labels(), has_preview, &action);
            ForgeEvent::PullRequest {
                repo,
                sender,
                action,
                pr,
            }
        }
        Err(e) => return d.invalid(&e),
    };
    d.decide(route, event)
}

/// Whether the preview of `key` exists or is on its way. When the engine cannot say, the
/// label set decides alone (`labelled`: a trigger label asks for a deploy, its absence for a
/// stop, and either is harmless when it was not needed).
async fn has_preview(state: &AppState, key: &crate::engine::PreviewKey, labelled: bool) -> bool {
    if state.queue.busy_keys().contains(key) {
        return true;
    }
    match tokio::time::timeout(LIST_TIMEOUT, state.engine.list()).await {
        Ok(Ok(list)) => list.iter().any(|p| &p.key == key),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "label change: cannot list previews; the labels decide");
            !labelled
        }
        Err(_) => {
            tracing::warn!("label change: listing previews timed out; the labels decide");
            !labelled
        }
    }
}
