//! `VerifiedWebhook`: the axum extractor that makes an unsigned GitHub request unreachable,
//! and the pieces every forge's extractor shares (`Refuser`, `read_body`, `digest_matches`).
//! It answers 404, unread, when GitHub is not configured, and 400 to another forge's
//! delivery (its own headers name it), before anything else. It reads
//! the raw body (at most 25 MiB, else 413; one cut short is a 400), checks
//! `X-Hub-Signature-256` with HMAC-SHA256 against every configured secret in constant time
//! (`Mac::verify_slice`), and only then hands the bytes on: a JSON body as it came, a form
//! body (`application/x-www-form-urlencoded`) as its `payload` field, the signature having been
//! checked over the raw form. It never parses the JSON, and never logs a secret or a signature.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::deliveries::Record;
use super::{AppState, form};
use crate::forge::ForgeKind;

/// The largest body GitHub sends (25 MiB); anything larger is refused with 413.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

/// An authentic delivery: the signature matched one of the configured secrets.
#[derive(Debug)]
pub struct VerifiedWebhook {
    /// `X-GitHub-Event`.
    pub event: String,
    /// `X-GitHub-Delivery`.
    pub delivery: String,
    pub body: Bytes,
    /// When the request arrived, before its body was read: a preview's time to ready counts
    /// from here.
    pub received: std::time::Instant,
}

/// A refused request: the answer, already recorded on `/deliveries`.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.reason })),
        )
            .into_response()
    }
}

pub(super) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)?
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The digest in a signature header (`sha256=<64 hex digits>`), if it is one.
fn digest_of(signature: &str) -> Option<Vec<u8>> {
    let hex_digest = signature.strip_prefix("sha256=")?;
    // hex accepts both cases: digests are compared as bytes, not as text.
    hex::decode(hex_digest).ok().filter(|d| d.len() == 32)
}

/// Whether reading the body failed on the size limit rather than on the connection or framing.
fn is_over_limit(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Checks `signature` (the header's value, `sha256=<hex>`) over `body` against each secret.
pub fn signature_matches(secrets: &[SecretString], signature: &str, body: &[u8]) -> bool {
    digest_of(signature).is_some_and(|digest| digest_matches(secrets, &digest, body))
}

/// Checks a parsed `digest` over `body` against each secret.
pub(super) fn digest_matches(secrets: &[SecretString], digest: &[u8], body: &[u8]) -> bool {
    let mut ok = false;
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
            continue;
        };
        mac.update(body);
        // Every secret is tried, so the time taken does not tell which one matched.
        ok |= mac.verify_slice(digest).is_ok();
    }
    ok
}

/// Records and builds the refusals of one request to `forge`'s route.
pub(super) struct Refuser<'a> {
    pub state: &'a AppState,
    pub forge: ForgeKind,
    pub event: Option<String>,
    pub delivery: Option<String>,
}

impl Refuser<'_> {
    pub fn refuse(
        &self,
        status: StatusCode,
        outcome: &'static str,
        reason: &'static str,
    ) -> Refused {
        self.state.deliveries.record(Record::new(
            self.forge,
            self.delivery.clone(),
            self.event.clone(),
            None,
            status,
            outcome,
            reason.to_owned(),
        ));
        self.state.metrics.webhook("unverified", outcome);
        Refused { status, reason }
    }

    /// 404 when the forge is not configured: nothing of the request is read.
    pub fn configured(&self) -> Result<&super::Route, Refused> {
        self.state.routes.get(&self.forge).ok_or(Refused {
            status: StatusCode::NOT_FOUND,
            reason: match self.forge {
                ForgeKind::GitHub => "GitHub is not configured on this previewd",
                ForgeKind::Gitea => "Gitea is not configured on this previewd",
                ForgeKind::GitLab => "GitLab is not configured on this previewd",
            },
        })
    }

    /// 400 when the request carries another forge's event header and none of this one's:
    /// a webhook pointed at the wrong route.
    pub fn foreign(&self, headers: &HeaderMap, own: &[&str]) -> Result<(), Refused> {
        if own.iter().any(|h| header_str(headers, h).is_some()) {
            return Ok(());
        }
        let foreign = [
            ("x-gitea-event", ForgeKind::Gitea),
            ("x-forgejo-event", ForgeKind::Gitea),
            ("x-gitlab-event", ForgeKind::GitLab),
            ("x-github-event", ForgeKind::GitHub),
        ];
        match foreign
            .iter()
            .find(|(h, kind)| *kind != self.forge && header_str(headers, h).is_some())
        {
            None => Ok(()),
            Some((_, ForgeKind::Gitea)) => Err(self.refuse(
                StatusCode::BAD_REQUEST,
                "invalid",
                "a Gitea or Forgejo delivery: point its webhook at /webhooks/gitea",
            )),
            Some((_, ForgeKind::GitLab)) => Err(self.refuse(
                StatusCode::BAD_REQUEST,
                "invalid",
                "a GitLab delivery: point its webhook at /webhooks/gitlab",
            )),
            Some((_, ForgeKind::GitHub)) => Err(self.refuse(
                StatusCode::BAD_REQUEST,
                "invalid",
                "a GitHub delivery: point its webhook at /webhooks/github",
            )),
        }
    }

    /// 413 when the declared length is over the limit, before the body is read.
    pub fn declared_size(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(self.refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "body over 25 MiB",
            ));
        }
        Ok(())
    }

    /// The whole body, at most [`MAX_BODY`].
    pub async fn read_body(&self, body: axum::body::Body) -> Result<Bytes, Refused> {
        match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(b) => Ok(b),
            Err(e) if is_over_limit(&e) => Err(self.refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "body over 25 MiB",
            )),
            Err(_) => Err(self.refuse(
                StatusCode::BAD_REQUEST,
                "invalid",
                "body cut short or badly framed",
            )),
        }
    }
}

impl FromRequest<AppState> for VerifiedWebhook {
    type Rejection = Refused;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let received = std::time::Instant::now();
        let (parts, body) = req.into_parts();
        let headers = parts.headers;
        let event = header_str(&headers, "x-github-event").map(|s| s.chars().take(64).collect());
        let delivery =
            header_str(&headers, "x-github-delivery").map(|s| s.chars().take(80).collect());
        let refuser = Refuser {
            state,
            forge: ForgeKind::GitHub,
            event: event.clone(),
            delivery: delivery.clone(),
        };
        let route = refuser.configured()?;
        // Gitea sends GitHub's headers too, beside its own: its own name it.
        refuser.foreign(&headers, &[])?;
        refuser.declared_size(&headers)?;
        let Some(signature) = header_str(&headers, "x-hub-signature-256") else {
            return Err(refuser.refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "X-Hub-Signature-256 header missing",
            ));
        };
        let unauthentic = || {
            refuser.refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "signature does not match any configured secret",
            )
        };
        // A header that is not `sha256=<64 hex digits>` can match nothing: refused unread.
        let Some(digest) = digest_of(signature) else {
            return Err(unauthentic());
        };
        let body = refuser.read_body(body).await?;
        if !digest_matches(&route.secrets, &digest, &body) {
            return Err(unauthentic());
        }
        let body = if form::is_form(header_str(&headers, "content-type")) {
            form::payload(&body)
                .map_err(|e| refuser.refuse(StatusCode::BAD_REQUEST, "invalid", e.reason()))?
        } else {
            body
        };
        let (Some(event), Some(delivery)) = (event, delivery) else {
            return Err(refuser.refuse(
                StatusCode::BAD_REQUEST,
                "invalid",
                "X-GitHub-Event or X-GitHub-Delivery header missing",
            ));
        };
        Ok(VerifiedWebhook {
            event,
            delivery,
            body,
            received,
        })
    }
}
