//! HTTP in: the public webhook router (`POST /webhooks/github`, `GET /healthz`) and the
//! operators' admin router (`GET /metrics`, `GET /deliveries`, `GET /healthz`). Handlers only
//! verify, parse, record and enqueue, and answer before any work starts; nothing here talks
//! to the forge or to Docker, except `/metrics` asking the engine for its list.

pub mod deliveries;
pub mod form;
pub mod github;
pub mod tls_ask;
pub mod verify;
pub mod verify_gitlab;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use secrecy::SecretString;

use crate::engine::PreviewEngine;
use crate::intent::Policy;
use crate::metrics::LogDrops;
use crate::metrics::Metrics;
use crate::queue::Queue;
use deliveries::Deliveries;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub secrets: Arc<Vec<SecretString>>,
    pub deliveries: Arc<Deliveries>,
    pub metrics: Metrics,
    pub policy: Arc<Policy>,
    pub queue: Queue,
    pub engine: Arc<dyn PreviewEngine>,
    pub log_drops: Option<LogDrops>,
}

/// The public router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/github", post(github::receive))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// The operators' router: never expose it publicly.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/deliveries", get(deliveries))
        .route("/healthz", get(healthz))
        .route("/tls/ask", get(tls_ask::ask))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Previews by state come from the engine (Docker labels), bounded in time.
    match tokio::time::timeout(Duration::from_secs(5), state.engine.list()).await {
        Ok(Ok(list)) => state.metrics.previews(&list),
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: engine list failed"),
        Err(_) => tracing::warn!("metrics: engine list timed out"),
    }
    if let Some(drops) = &state.log_drops {
        state.metrics.log_lines_dropped(drops.get());
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn deliveries(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(state.deliveries.recent())
}
