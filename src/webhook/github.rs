//! `POST /webhooks/github`: an authentic delivery (see `verify`) is de-duplicated by its
//! delivery id, parsed into a `ForgeEvent`, mapped to an intent by the policy, and queued.
//! The answer follows the design's (docs/architecture.md) table and never waits for the work. When `limits.max_queued`
//! intents are waiting already, an intent is refused with 503 and `Retry-After` (outcome
//! `busy`), and its delivery id is given back so a redelivery is taken.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::deliveries::Record;
use super::verify::VerifiedWebhook;
use crate::forge::github::payload::parse_event;
use crate::forge::{CommentAction, ForgeEvent, PrAction};
use crate::intent::{Action, Decision, Subject};

/// Seconds a refused (503) sender is asked to wait before redelivering.
const RETRY_AFTER: &str = "30";

pub async fn receive(State(state): State<AppState>, hook: VerifiedWebhook) -> Response {
    let VerifiedWebhook {
        event,
        delivery,
        body,
        received,
    } = hook;
    let answer = |status: StatusCode,
                  outcome: &'static str,
                  action: Option<String>,
                  reason: String,
                  body: serde_json::Value| {
        state.metrics.webhook(&event, outcome);
        state.deliveries.record(Record::new(
            Some(delivery.clone()),
            Some(event.clone()),
            action,
            status,
            outcome,
            reason,
        ));
        (status, Json(body)).into_response()
    };

    if !state.deliveries.claim(&delivery) {
        return answer(
            StatusCode::OK,
            "duplicate",
            None,
            "delivery id seen before".into(),
            json!({ "duplicate": true }),
        );
    }
    let parsed = match parse_event(&event, &body) {
        Ok(e) => e,
        Err(e) => {
            state.deliveries.release(&delivery);
            let reason = e.to_string();
            return answer(
                StatusCode::BAD_REQUEST,
                "invalid",
                None,
                reason.clone(),
                json!({ "error": reason }),
            );
        }
    };
    let action = action_name(&parsed);
    match state.policy.decide(&parsed) {
        Decision::Ping => answer(
            StatusCode::OK,
            "ping",
            action,
            "ping".into(),
            json!({ "ping": "pong" }),
        ),
        Decision::Ignore(reason) => answer(
            StatusCode::OK,
            "ignored",
            action,
            reason.clone(),
            json!({ "ignored": reason }),
        ),
        Decision::Act(intent) => {
            let what = match intent.action {
                Action::Deploy => "deploy",
                Action::Stop => "stop",
                Action::Status => "status",
                Action::Help => "help",
            };
            let on = match &intent.subject {
                Subject::Branch { key, .. } => format!("{} {}", key.repo, key.branch),
                Subject::PullRequest { number } => format!("{}#{number}", intent.repo),
            };
            if let Err(full) = state.queue.try_submit(intent, received) {
                // Not acted on: a redelivery of this id must be taken once there is room.
                state.deliveries.release(&delivery);
                let reason = full.to_string();
                let mut resp = answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    action,
                    reason.clone(),
                    json!({ "error": reason }),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
                return resp;
            }
            answer(
                StatusCode::ACCEPTED,
                "queued",
                action,
                format!("{what} {on}"),
                json!({ "queued": what, "preview": on }),
            )
        }
    }
}

fn action_name(e: &ForgeEvent) -> Option<String> {
    Some(match e {
        ForgeEvent::PullRequest { action, .. } => match action {
            PrAction::Opened => "opened".into(),
            PrAction::Reopened => "reopened".into(),
            PrAction::Synchronize => "synchronize".into(),
            PrAction::Labeled(_) => "labeled".into(),
            PrAction::Unlabeled(_) => "unlabeled".into(),
            PrAction::LabelsChanged { .. } => "labels_changed".into(),
            PrAction::Closed { .. } => "closed".into(),
            PrAction::Other(a) => a.clone(),
        },
        ForgeEvent::Comment { action, .. } => match action {
            CommentAction::Created => "created".into(),
            CommentAction::Edited => "edited".into(),
            CommentAction::Deleted => "deleted".into(),
            CommentAction::Other(a) => a.clone(),
        },
        _ => return None,
    })
}
