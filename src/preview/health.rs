//! Health checks through the gateway: the request a user's browser would make, with the
//! preview's host name, so a check passes only when routing works too.

use std::time::{Duration, Instant};

use super::http_client as http;

/// One answer (or the lack of one) from a service.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub status: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
}

impl Probe {
    pub fn ok(&self, expected: u16) -> bool {
        self.status == Some(expected)
    }
}

/// The address health checks connect to: the gateway's published port on this host.
pub fn gateway_addr(bind: &str, port: u16) -> String {
    let host = match bind {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" => "[::1]",
        h => h,
    };
    format!("{host}:{port}")
}

/// One request; `pass` is the gateway pass (`access::gateway_pass`) that lets previewd's own
/// checks past a protected preview's sign-in.
pub async fn probe(addr: &str, host: &str, path: &str, pass: Option<&str>) -> Probe {
    probe_within(addr, host, path, pass, PROBE_TIMEOUT).await
}

/// A deployment's and `status`'s patience with one probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// [`probe`] with its own patience: the status page's is shorter, for a page that must load.
pub async fn probe_within(
    addr: &str,
    host: &str,
    path: &str,
    pass: Option<&str>,
    timeout: Duration,
) -> Probe {
    let start = Instant::now();
    let headers: Vec<(&str, &str)> = pass
        .map(|p| (crate::access::PASS_HEADER, p))
        .into_iter()
        .collect();
    match http::tcp_with(addr, host, "GET", path, &headers, timeout).await {
        Ok(r) => Probe {
            status: Some(r.status),
            latency: start.elapsed(),
            error: None,
        },
        Err(e) => Probe {
            status: None,
            latency: start.elapsed(),
            error: Some(e.to_string()),
        },
    }
}

/// The longest pause between a deployment's probes: its services were just built and
/// created, and may take a while.
pub const DEPLOY_POLL: Duration = Duration::from_millis(500);
/// The longest pause between a wake's probes: its services started before and answer
/// within moments, and a visitor is waiting; every pause past their start is the visitor's.
pub const WAKE_POLL: Duration = Duration::from_millis(50);

/// How often at most a wait asks Docker whether the containers are still up: each ask is an
/// inspect per container, and on a busy daemon those slow the very starts being waited for.
pub const ALIVE_EVERY: Duration = Duration::from_millis(250);

/// Polls (from a fifth of `poll` apart, at most 50 ms, doubling up to `poll`) until the service answers `expected`,
/// `alive` reports its container gone (asked after a failed probe, at most every
/// [`ALIVE_EVERY`]), or `timeout` passes. Returns the last probe either way.
#[allow(clippy::too_many_arguments)]
pub async fn wait(
    addr: &str,
    host: &str,
    path: &str,
    expected: u16,
    timeout: Duration,
    poll: Duration,
    pass: Option<&str>,
    alive: impl Fn() -> crate::engine::BoxFuture<'static, Result<(), String>>,
) -> Result<Probe, (Probe, String)> {
    let deadline = Instant::now() + timeout;
    // A wake's service has just started and listens within moments: its second probe soon.
    let mut delay = Duration::from_millis(50).min(poll / 5);
    let mut asked: Option<Instant> = None;
    loop {
        let p = probe(addr, host, path, pass).await;
        if p.ok(expected) {
            return Ok(p);
        }
        if asked.is_none_or(|t| t.elapsed() >= ALIVE_EVERY) {
            asked = Some(Instant::now());
            if let Err(why) = alive().await {
                return Err((p, why));
            }
        }
        if Instant::now() >= deadline {
            let seen = match (&p.status, &p.error) {
                (Some(s), _) => format!("answered {s}"),
                (None, Some(e)) => e.clone(),
                (None, None) => "no answer".into(),
            };
            let why =
                format!("GET {path} did not answer {expected} within {timeout:?} (last: {seen})");
            return Err((p, why));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(poll);
    }
}
