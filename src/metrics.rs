//! Prometheus metrics for `/metrics` on the admin listener: webhooks by event and outcome,
//! connections previewd closed for being slow or over the cap, queue depth, previews by state
//! (read from the engine at scrape time, so nothing here is a second source of truth), forge
//! errors, and histograms of the deploy phases. Labels only take values from small fixed
//! sets; nothing from a payload becomes a label value unchecked.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::engine::{Phase, PreviewState, PreviewStatus, Timings};

/// Cheap to clone; every clone feeds the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    webhooks: IntCounterVec,
    queue_depth: IntGauge,
    previews: IntGaugeVec,
    forge_errors: IntCounterVec,
    deploys: IntCounterVec,
    log_dropped: IntCounter,
    connections_closed: IntCounterVec,
    connections_refused: IntCounterVec,
    connections_open: IntGaugeVec,
    connections_max: IntGaugeVec,
    /// The writer's count already added to `log_dropped`.
    log_dropped_seen: AtomicU64,
    build: Histogram,
    start: Histogram,
    health: Histogram,
    ready: Histogram,
    wakes: IntCounterVec,
    wake: Histogram,
}

/// Events counted under their own name; the rest are `other`.
const KNOWN_EVENTS: &[&str] = &["ping", "pull_request", "push", "issue_comment"];

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("previewd".into()), None)?;
        let webhooks = IntCounterVec::new(
            Opts::new("webhooks_total", "Webhook deliveries by event and outcome"),
            &["event", "outcome"],
        )?;
        let queue_depth = IntGauge::new("queue_depth", "Intents queued or running")?;
        let previews = IntGaugeVec::new(Opts::new("previews", "Previews by state"), &["state"])?;
        let forge_errors = IntCounterVec::new(
            Opts::new(
                "forge_errors_total",
                "Forge calls that failed after retries",
            ),
            &["call"],
        )?;
        let deploys = IntCounterVec::new(
            Opts::new("deploys_total", "Deployments by outcome"),
            &["outcome"],
        )?;
        let log_dropped = IntCounter::new(
            "log_lines_dropped_total",
            "Log lines dropped because stderr did not keep up",
        )?;
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "connections_closed_total",
                "Connections previewd closed itself, by listener and reason \
                 (slow_headers, slow_body, over_capacity: a client too slow or too many; idle: normal)",
            ),
            &["listener", "reason"],
        )?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "connections_refused_total",
                "Accepts that failed, by listener and reason (out_of_files: the open-files \
                 limit was reached, and the slowest connection was closed to make room; \
                 other: out of memory or buffers)",
            ),
            &["listener", "reason"],
        )?;
        let connections_open = IntGaugeVec::new(
            Opts::new("connections_open", "Open connections by listener"),
            &["listener"],
        )?;
        let connections_max = IntGaugeVec::new(
            Opts::new(
                "connections_max",
                "The connection cap by listener (server.max_connections, or less when the \
                 open-files limit is lower)",
            ),
            &["listener"],
        )?;
        let buckets = vec![
            0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0,
        ];
        let hist = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.clone()))
        };
        let build = hist("build_seconds", "Time to build a preview's images")?;
        let start = hist("start_seconds", "Time to start a preview's containers")?;
        let health = hist(
            "health_seconds",
            "Time until every public service is healthy",
        )?;
        let ready = hist("time_to_ready_seconds", "Time from intent to a healthy URL")?;
        let wakes = IntCounterVec::new(
            Opts::new(
                "wakes_total",
                "Sleeping previews woken by a visit, by outcome (ok, failed)",
            ),
            &["outcome"],
        )?;
        let wake = Histogram::with_opts(
            HistogramOpts::new(
                "wake_seconds",
                "Time from a sleeping preview's first visit until it answers",
            )
            .buckets(vec![0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0]),
        )?;
        for outcome in ["ok", "failed"] {
            wakes.with_label_values(&[outcome]);
        }
        registry.register(Box::new(wakes.clone()))?;
        registry.register(Box::new(wake.clone()))?;
        registry.register(Box::new(webhooks.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(previews.clone()))?;
        registry.register(Box::new(forge_errors.clone()))?;
        registry.register(Box::new(deploys.clone()))?;
        registry.register(Box::new(log_dropped.clone()))?;
        registry.register(Box::new(connections_closed.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_max.clone()))?;
        for h in [&build, &start, &health, &ready] {
            registry.register(Box::new(h.clone()))?;
        }
        Ok(Metrics {
            inner: Arc::new(Inner {
                registry,
                webhooks,
                queue_depth,
                previews,
                forge_errors,
                deploys,
                log_dropped,
                connections_closed,
                connections_refused,
                connections_open,
                connections_max,
                log_dropped_seen: AtomicU64::new(0),
                build,
                start,
                health,
                ready,
                wakes,
                wake,
            }),
        })
    }

    pub fn webhook(&self, event: &str, outcome: &'static str) {
        let event = if KNOWN_EVENTS.contains(&event) {
            event
        } else {
            "other"
        };
        self.inner
            .webhooks
            .with_label_values(&[event, outcome])
            .inc();
    }

    /// `total` is the log writer's own running count, read at scrape time: the counter is
    /// brought up to it. `fetch_max` hands each step to one caller only, so two scrapes at
    /// once cannot count the same lines twice.
    pub fn log_lines_dropped(&self, total: u64) {
        let before = self
            .inner
            .log_dropped_seen
            .fetch_max(total, Ordering::AcqRel);
        if total > before {
            self.inner.log_dropped.inc_by(total - before);
        }
    }

    /// Sets the listener's cap and shows every closing and refusing reason at 0 from the
    /// start, so a dashboard's rate of them exists before the first attack.
    pub fn connection_cap(
        &self,
        listener: &'static str,
        cap: usize,
        reasons: impl IntoIterator<Item = &'static str>,
        refusals: impl IntoIterator<Item = &'static str>,
    ) {
        let i = &self.inner;
        i.connections_max
            .with_label_values(&[listener])
            .set(i64::try_from(cap).unwrap_or(i64::MAX));
        i.connections_open.with_label_values(&[listener]).add(0);
        for reason in reasons {
            i.connections_closed
                .with_label_values(&[listener, reason])
                .inc_by(0);
        }
        for reason in refusals {
            i.connections_refused
                .with_label_values(&[listener, reason])
                .inc_by(0);
        }
    }

    /// An accept that failed (the connection stays in the kernel's queue for the next one).
    pub fn connection_refused(&self, listener: &'static str, reason: &'static str) {
        self.inner
            .connections_refused
            .with_label_values(&[listener, reason])
            .inc();
    }

    pub fn connection_opened(&self, listener: &'static str) {
        self.inner
            .connections_open
            .with_label_values(&[listener])
            .inc();
    }

    /// `reason` is `None` when the client closed it or it ended normally.
    pub fn connection_closed(&self, listener: &'static str, reason: Option<&'static str>) {
        let i = &self.inner;
        i.connections_open.with_label_values(&[listener]).dec();
        if let Some(reason) = reason {
            i.connections_closed
                .with_label_values(&[listener, reason])
                .inc();
        }
    }

    pub fn queue_changed(&self, delta: i64) {
        self.inner.queue_depth.add(delta);
    }

    pub fn forge_error(&self, call: &'static str) {
        self.inner.forge_errors.with_label_values(&[call]).inc();
    }

    pub fn deploy(&self, outcome: &'static str) {
        self.inner.deploys.with_label_values(&[outcome]).inc();
    }

    pub fn timings(&self, t: &Timings) {
        for (phase, d) in &t.phases {
            match phase {
                Phase::Build => self.inner.build.observe(secs(*d)),
                Phase::Start => self.inner.start.observe(secs(*d)),
                Phase::Health => self.inner.health.observe(secs(*d)),
                _ => {}
            }
        }
        self.inner.ready.observe(secs(t.total));
    }

    /// A wake that ended: `ok` or `failed`, and how long it took.
    pub fn wake(&self, outcome: &'static str, took: Duration) {
        self.inner.wakes.with_label_values(&[outcome]).inc();
        if outcome == "ok" {
            self.inner.wake.observe(secs(took));
        }
    }

    /// Sets the previews gauge from the engine's list (called at scrape time).
    pub fn previews(&self, list: &[PreviewState]) {
        for state in PreviewStatus::ALL {
            let n = list.iter().filter(|p| p.status == state).count();
            self.inner
                .previews
                .with_label_values(&[state.as_str()])
                .set(n as i64);
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.inner.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scrapes may run at once: each dropped line is counted once, whatever the interleaving.
    #[test]
    fn dropped_log_lines_are_counted_once_under_concurrent_scrapes() {
        let m = Metrics::new().expect("metrics");
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for total in 0..=2000 {
                        m.log_lines_dropped(total);
                    }
                });
            }
        });
        assert!(
            m.render()
                .contains("\npreviewd_log_lines_dropped_total 2000\n"),
            "{}",
            m.render()
        );
    }
}

/// Reads how many log lines the binary's non-blocking writer has dropped so far. The writer
/// is set up by the binary before `serve` exists, so the library only gets a way to read it.
#[derive(Clone)]
pub struct LogDrops(Arc<dyn Fn() -> u64 + Send + Sync>);

impl LogDrops {
    pub fn new(read: impl Fn() -> u64 + Send + Sync + 'static) -> LogDrops {
        LogDrops(Arc::new(read))
    }

    pub fn get(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for LogDrops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LogDrops").field(&self.get()).finish()
    }
}
