//! HTTP in: the public webhook router (`POST /webhooks/{github,gitea,gitlab}`, `GET
//! /healthz`) and the operators' admin router (`GET /` the status page, `GET /metrics`, `GET
//! /deliveries`, `GET /healthz`). Handlers only verify, parse, record and enqueue, and answer before any work
//! starts; a forge's route answers 404, unread, when that forge is not configured. Nothing
//! here talks to a forge, nor to Docker except `/metrics` asking the engine for its list and
//! a Gitea label change asking whether its PR has a preview.

mod accept;
pub mod deliveries;
pub mod form;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod status_page;
pub mod tls_ask;
pub mod verify;
pub mod verify_gitlab;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use secrecy::SecretString;

use crate::clock::SharedClock;
use crate::engine::PreviewEngine;
use crate::forge::ForgeKind;
use crate::intent::Policy;
use crate::metrics::LogDrops;
use crate::metrics::Metrics;
use crate::queue::Queue;
use deliveries::Deliveries;

/// One configured forge's webhook route: what checks its deliveries and decides on them.
pub struct Route {
    /// Every one is accepted, so a secret can be rotated without downtime.
    pub secrets: Vec<SecretString>,
    pub policy: Policy,
    /// The login previewd's token acts as on this forge (`GET /user`), once known: its
    /// comments are never read as commands.
    pub self_user: RwLock<Option<String>>,
}

impl Route {
    pub fn new(secrets: Vec<SecretString>, policy: Policy) -> Route {
        Route {
            secrets,
            policy,
            self_user: RwLock::new(None),
        }
    }

    /// Whether `login` is previewd's own user here (logins compare without case, as Gitea's
    /// and GitLab's do).
    pub fn is_self(&self, login: &str) -> bool {
        self.self_user
            .read()
            .map(|u| {
                u.as_deref()
                    .is_some_and(|me| me.eq_ignore_ascii_case(login))
            })
            .unwrap_or(false)
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The configured forges' routes; a forge not here answers 404.
    pub routes: Arc<BTreeMap<ForgeKind, Route>>,
    pub deliveries: Arc<Deliveries>,
    pub metrics: Metrics,
    pub queue: Queue,
    pub engine: Arc<dyn PreviewEngine>,
    pub log_drops: Option<LogDrops>,
    /// What the admin listener's status page shows besides the engine's list.
    pub page: Arc<status_page::PageSettings>,
    /// Now, for the signature windows of forges that sign a timestamp (GitLab's Standard
    /// Webhooks signatures).
    pub clock: SharedClock,
}

/// The public router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/github", post(github::receive))
        .route("/webhooks/gitea", post(gitea::receive))
        .route("/webhooks/gitlab", post(gitlab::receive))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// The operators' router: never expose it publicly.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page::page))
        .route("/metrics", get(metrics))
        .route("/deliveries", get(deliveries))
        .route("/healthz", get(healthz))
        .route("/tls/ask", get(tls_ask::ask))
        .with_state(state)
}

/// The answer of a forge's route when that forge is not configured: nothing is read.
pub fn not_configured(forge: ForgeKind) -> axum::response::Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "error": format!("{} is not configured on this previewd", forge.title())
        })),
    )
        .into_response()
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
