//! `GET /wake`: the gateway's question for a request to a sleeping preview ("may it go on?").
//! One wake per preview runs however many requests ask; each request waits for it and is then
//! let through (`200`: Caddy proxies the original request, so the visitor gets the preview's
//! own answer), up to `limits.health_timeout`. A browser (`Accept: text/html`) that has
//! waited about a second gets a small page that reloads itself instead. Crawlers and uptime
//! checkers never wake a preview (`503`, `Retry-After`); a failed wake is a `502` that says
//! why in one line. The preview id comes from a header the gateway sets itself, never from
//! the visitor. Nothing here touches Docker or knows about access control: a check placed
//! before this route in the gateway has already run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use super::SleepSide;
use super::visits::{self, Activity};
use crate::config::Config;
use crate::engine::PreviewEngine;
use crate::ids::PreviewId;
use crate::metrics::Metrics;
use crate::preview::gateway::PREVIEW_HEADER;

/// How long a browser waits before it is shown the waking page.
const PAGE_AFTER: Duration = Duration::from_secs(1);
/// What a crawler is told to wait before it asks again.
const CRAWLER_RETRY_AFTER: &str = "300";

/// A wake's end: `Ok` or the one-line reason it failed.
type Outcome = Option<Result<(), String>>;

#[derive(Clone)]
pub struct WakeState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<dyn PreviewEngine>,
    metrics: Metrics,
    activity: Activity,
    side: SleepSide,
    crawlers: Vec<String>,
    /// The longest a request waits for a wake.
    timeout: Duration,
    waking: Mutex<HashMap<PreviewId, watch::Receiver<Outcome>>>,
}

impl WakeState {
    pub fn new(
        config: &Config,
        engine: Arc<dyn PreviewEngine>,
        metrics: Metrics,
        activity: Activity,
        side: SleepSide,
    ) -> WakeState {
        WakeState {
            inner: Arc::new(Inner {
                engine,
                metrics,
                activity,
                side,
                crawlers: config.limits.crawler_agents.clone(),
                // The services' start comes before their health checks.
                timeout: config.limits.health_timeout + Duration::from_secs(30),
                waking: Mutex::default(),
            }),
        }
    }

    /// The running wake of `id`, started if none runs.
    fn waking(&self, id: &PreviewId) -> watch::Receiver<Outcome> {
        let mut map = self.inner.waking.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(id) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        map.insert(id.clone(), rx.clone());
        let (state, id) = (self.clone(), id.clone());
        tokio::spawn(async move {
            let inner = &state.inner;
            let start = Instant::now();
            // The visitors go on as soon as the preview answers; the wake's last steps (the
            // sleep mark's removal, the routes) finish behind them.
            let (answering, answered) = tokio::sync::oneshot::channel();
            let wake = inner.engine.wake(id.clone(), Some(answering));
            tokio::pin!(wake);
            let woke = tokio::select! {
                r = &mut wake => r,
                Ok(()) = answered => {
                    let _ = tx.send(Some(Ok(())));
                    let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                    tracing::debug!(preview = %id, ms, "wake: the waiting requests go on");
                    wake.await
                }
            };
            let outcome = match woke {
                Ok(slept) => {
                    if slept {
                        inner.metrics.wake("ok", start.elapsed());
                        inner.side.told_awake(inner.engine.clone(), id.clone());
                    }
                    inner.activity.touch(&id);
                    inner.engine.visited(&id);
                    Ok(())
                }
                Err(f) => {
                    tracing::warn!(preview = %id, failure = %f, "wake failed");
                    inner.metrics.wake("failed", start.elapsed());
                    let why = f.to_string();
                    inner
                        .side
                        .told_wake_failed(inner.engine.clone(), id.clone(), f);
                    Err(why)
                }
            };
            // Requests that came after the early answer and still wait get the end.
            tx.send_replace(Some(outcome));
            let mut map = inner.waking.lock().unwrap_or_else(|p| p.into_inner());
            map.remove(&id);
        });
        rx
    }
}

pub fn router(state: WakeState) -> Router {
    Router::new().route("/wake", get(wake)).with_state(state)
}

async fn wake(State(state): State<WakeState>, headers: HeaderMap) -> Response {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let Ok(id) = PreviewId::parse(text(PREVIEW_HEADER)) else {
        return (StatusCode::BAD_REQUEST, "previewd: no preview named\n").into_response();
    };
    if visits::is_crawler(text(header::USER_AGENT.as_str()), &state.inner.crawlers) {
        return crawler();
    }
    let browser = text(header::ACCEPT.as_str()).contains("text/html");
    let wait = if browser {
        PAGE_AFTER
    } else {
        state.inner.timeout
    };
    let mut rx = state.waking(&id);
    let ended = tokio::time::timeout(wait, async {
        rx.wait_for(Option::is_some).await.map(|v| v.clone())
    })
    .await;
    match ended {
        Ok(Ok(Some(Ok(())))) => StatusCode::OK.into_response(),
        Ok(Ok(Some(Err(why)))) => failed(&why),
        // The wake's task ended without a word (it panicked).
        Ok(Ok(None)) | Ok(Err(_)) => failed("the wake stopped half-way; reload to try again"),
        Err(_) if browser => waking_page(),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            "previewd: the preview did not wake in time\n",
        )
            .into_response(),
    }
}

fn crawler() -> Response {
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        "previewd: this preview is asleep; crawlers and uptime checks do not wake it\n",
    )
        .into_response();
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(CRAWLER_RETRY_AFTER),
    );
    r
}

fn failed(why: &str) -> Response {
    let line: String = why.lines().next().unwrap_or("").chars().take(300).collect();
    (
        StatusCode::BAD_GATEWAY,
        format!("previewd: the preview did not wake: {line}\n"),
    )
        .into_response()
}

/// A page that says what is going on and reloads itself until the preview answers.
fn waking_page() -> Response {
    const PAGE: &str = "<!doctype html><html><head><meta charset=utf-8>\
        <meta http-equiv=refresh content=1><meta name=robots content=noindex>\
        <title>Waking up…</title></head>\
        <body style=\"font-family:system-ui,sans-serif;text-align:center;margin-top:20vh\">\
        <h1>Waking up…</h1><p>Nobody had visited this preview for a while, so it was asleep.\
        It is starting again; this page reloads itself.</p></body></html>\n";
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, PAGE).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
