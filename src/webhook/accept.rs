//! What every forge's receiver does with an authentic delivery once its forge has read it:
//! de-duplicate by the forge's delivery id, decide by the policy, queue, and answer by the
//! design's table (docs/architecture.md), recording each answer on `/deliveries`. When
//! `limits.max_queued` intents are waiting already, an intent is refused with 503 and
//! `Retry-After` (outcome `busy`), and its delivery id is given back so a redelivery is taken.
//! Nothing here reads a forge's headers or payloads, and nothing waits for the work.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::deliveries::Record;
use super::{AppState, Route};
use crate::forge::{CommentAction, ForgeEvent, ForgeKind, PayloadError, PrAction};
use crate::intent::{Action, Decision, Subject};

/// Seconds a refused (503) sender is asked to wait before redelivering.
const RETRY_AFTER: &str = "30";

/// An authentic delivery of `forge`, on its way to an answer.
pub(super) struct Delivery<'a> {
    pub state: &'a AppState,
    pub forge: ForgeKind,
    pub event: String,
    pub delivery: String,
    /// When the request arrived: a preview's time to ready counts from here.
    pub received: std::time::Instant,
}

impl Delivery<'_> {
    fn answer(
        &self,
        status: StatusCode,
        outcome: &'static str,
        action: Option<String>,
        reason: String,
        body: serde_json::Value,
    ) -> Response {
        self.state.metrics.webhook(&self.event, outcome);
        self.state.deliveries.record(Record::new(
            self.forge,
            Some(self.delivery.clone()),
            Some(self.event.clone()),
            action,
            status,
            outcome,
            reason,
        ));
        (status, Json(body)).into_response()
    }

    /// Claims the delivery id; the answer when it was seen before.
    pub fn duplicate(&self) -> Option<Response> {
        if self.state.deliveries.claim(self.forge, &self.delivery) {
            return None;
        }
        Some(self.answer(
            StatusCode::OK,
            "duplicate",
            None,
            "delivery id seen before".into(),
            json!({ "duplicate": true }),
        ))
    }

    /// The body could not be read as the event: 400, and the id may be delivered again.
    pub fn invalid(&self, e: &PayloadError) -> Response {
        self.state.deliveries.release(self.forge, &self.delivery);
        let reason = e.to_string();
        self.answer(
            StatusCode::BAD_REQUEST,
            "invalid",
            None,
            reason.clone(),
            json!({ "error": reason }),
        )
    }

    /// Decides on `event` by the route's policy and queues what it asks for. A comment by
    /// previewd's own user on this forge is read as a bot's: never a command.
    pub fn decide(&self, route: &Route, mut event: ForgeEvent) -> Response {
        if let ForgeEvent::Comment { author, .. } = &mut event
            && route.is_self(&author.login)
        {
            author.is_bot = true;
        }
        let action = action_name(&event);
        match route.policy.decide(&event) {
            Decision::Ping => self.answer(
                StatusCode::OK,
                "ping",
                action,
                "ping".into(),
                json!({ "ping": "pong" }),
            ),
            Decision::Ignore(reason) => self.answer(
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
                if let Err(full) = self.state.queue.try_submit(intent, self.received) {
                    // Not acted on: a redelivery of this id must be taken once there is room.
                    self.state.deliveries.release(self.forge, &self.delivery);
                    let reason = full.to_string();
                    let mut resp = self.answer(
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
                self.answer(
                    StatusCode::ACCEPTED,
                    "queued",
                    action,
                    format!("{what} {on}"),
                    json!({ "queued": what, "preview": on }),
                )
            }
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
