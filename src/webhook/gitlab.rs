//! `POST /webhooks/gitlab`: `VerifiedGitLab` makes an unauthenticated request unreachable
//! (404 unread when GitLab is not configured; 400 to another forge's delivery; 413 over
//! 25 MiB; 401 unless `X-Gitlab-Token` is one of the secrets, or, when the Standard Webhooks
//! headers are there, their signature holds: see `verify_gitlab`). The delivery id is
//! `Idempotency-Key` (the same on GitLab's retries of one event), else `X-Gitlab-Event-UUID`
//! (GitLab before 17.4). `receive` reads the event (`forge::gitlab::payload`) and hands it to
//! `accept`. It never waits for the work, and never logs a secret, a token or a signature.

use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;

use super::AppState;
use super::accept::Delivery;
use super::verify::{Refused, Refuser, header_str};
use super::verify_gitlab::{Unauthentic, check, proof};
use crate::forge::ForgeKind;
use crate::forge::gitlab::payload;

/// The headers only GitLab sends.
const OWN: [&str; 4] = [
    "x-gitlab-event",
    "x-gitlab-token",
    "x-gitlab-event-uuid",
    "x-gitlab-instance",
];

/// An authentic GitLab delivery.
#[derive(Debug)]
pub struct VerifiedGitLab {
    /// `X-Gitlab-Event` (`Merge Request Hook`, ...).
    pub event: String,
    pub delivery: String,
    pub body: Bytes,
    pub received: std::time::Instant,
}

impl FromRequest<AppState> for VerifiedGitLab {
    type Rejection = Refused;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let received = std::time::Instant::now();
        let (parts, body) = req.into_parts();
        let headers = parts.headers;
        let event = header_str(&headers, "x-gitlab-event").map(|s| s.chars().take(64).collect());
        let delivery = header_str(&headers, "idempotency-key")
            .or_else(|| header_str(&headers, "x-gitlab-event-uuid"))
            .map(|s| s.chars().take(80).collect::<String>());
        let refuser = Refuser {
            state,
            forge: ForgeKind::GitLab,
            event: Option::clone(&event),
            delivery: delivery.clone(),
        };
        let route = refuser.configured()?;
        refuser.foreign(&headers, &OWN)?;
        refuser.declared_size(&headers)?;
        let unauthentic =
            |e: Unauthentic| refuser.refuse(StatusCode::UNAUTHORIZED, "unauthorized", e.reason());
        let proof = proof(&headers).map_err(unauthentic)?;
        let body = refuser.read_body(body).await?;
        check(&route.secrets, &proof, &body, state.clock.now()).map_err(unauthentic)?;
        let (Some(event), Some(delivery)) = (event, delivery) else {
            return Err(refuser.refuse(
                StatusCode::BAD_REQUEST,
                "invalid",
                "X-Gitlab-Event, or Idempotency-Key and X-Gitlab-Event-UUID, header missing",
            ));
        };
        Ok(VerifiedGitLab {
            event,
            delivery,
            body,
            received,
        })
    }
}

pub async fn receive(State(state): State<AppState>, hook: VerifiedGitLab) -> Response {
    let VerifiedGitLab {
        event,
        delivery,
        body,
        received,
    } = hook;
    let Some(route) = state.routes.get(&ForgeKind::GitLab) else {
        return super::not_configured(ForgeKind::GitLab);
    };
    let d = Delivery {
        state: &state,
        forge: ForgeKind::GitLab,
        event,
        delivery,
        received,
    };
    if let Some(duplicate) = d.duplicate() {
        return duplicate;
    }
    match payload::parse_event(&d.event, &body) {
        Ok(event) => d.decide(route, event),
        Err(e) => d.invalid(&e),
    }
}
