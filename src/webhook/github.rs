//! `POST /webhooks/github`: an authentic delivery (see `verify`) is de-duplicated by its
//! delivery id, parsed into a `ForgeEvent` and handed to `accept`, which decides, queues and
//! answers by the design's table. The answer never waits for the work.

use axum::extract::State;
use axum::response::Response;

use super::AppState;
use super::accept::Delivery;
use super::verify::VerifiedWebhook;
use crate::forge::ForgeKind;
use crate::forge::github::payload::parse_event;

pub async fn receive(State(state): State<AppState>, hook: VerifiedWebhook) -> Response {
    let VerifiedWebhook {
        event,
        delivery,
        body,
        received,
    } = hook;
    let d = Delivery {
        state: &state,
        forge: ForgeKind::GitHub,
        event,
        delivery,
        received,
    };
    // The extractor answered 404 already when GitHub is not configured.
    let Some(route) = state.routes.get(&ForgeKind::GitHub) else {
        return super::not_configured(ForgeKind::GitHub);
    };
    if let Some(duplicate) = d.duplicate() {
        return duplicate;
    }
    match parse_event(&d.event, &body) {
        Ok(parsed) => d.decide(route, parsed),
        Err(e) => d.invalid(&e),
    }
}
