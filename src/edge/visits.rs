//! Which previews were visited, and when: the gateway writes an access-log line per request to
//! a unix socket in the shared directory (Caddy's `net` log writer, `gateway/caddy.rs`), and
//! this reads the host out of each. Nothing runs on a request's path for it: the line is
//! written after the answer, and the only cost to an awake preview is Caddy's log encoding.
//! previewd's own probes and crawlers are no visit. Kept in memory only: after a restart every
//! awake preview counts as visited at the start (it may have been), a sleeping one's time is
//! in Docker already. Nothing here decides anything or touches Docker; lines are never logged.

use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::engine::PreviewEngine;
use crate::ids::{PREVIEW_ID_LEN, PreviewId};
use crate::preview::http_client::PROBE_AGENT;

/// When each preview was last visited, in this process, on the clock `serve` shares with the
/// engine (the system's in the shipped binary).
#[derive(Clone)]
pub struct Activity {
    clock: SharedClock,
    seen: Arc<Mutex<HashMap<PreviewId, OffsetDateTime>>>,
}

impl Activity {
    pub fn new(clock: SharedClock) -> Activity {
        Activity {
            clock,
            seen: Arc::default(),
        }
    }

    /// Now, on this activity's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn touch(&self, id: &PreviewId) {
        let now = self.clock.now();
        let mut map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(id.clone(), now);
    }

    pub fn last(&self, id: &PreviewId) -> Option<OffsetDateTime> {
        let map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).copied()
    }
}

/// The part of a Caddy access-log line that is read.
#[derive(Deserialize)]
struct Line {
    request: Request,
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    host: String,
    #[serde(default)]
    headers: HashMap<String, Vec<String>>,
}

/// Words that mark a User-Agent as a crawler, a link unfurler or an uptime checker: such a
/// request never wakes a preview and is no visit. `limits.crawler_agents` adds to them;
/// docs/operations.md lists them.
pub const CRAWLERS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "facebookexternalhit",
    "embedly",
    "uptime",
    "pingdom",
    "statuscake",
    "site24x7",
    "monitor",
    "check_http",
    "nagios",
    "zabbix",
    "datadog",
    "newrelic",
    "blackbox",
    "healthcheck",
    "kube-probe",
    "googlehc",
];

/// Whether `agent` is a crawler's or checker's (built-in words or `extra`, lower case).
pub fn is_crawler(agent: &str, extra: &[String]) -> bool {
    let agent = agent.to_ascii_lowercase();
    CRAWLERS.iter().any(|w| agent.contains(w)) || extra.iter().any(|w| agent.contains(w.as_str()))
}

/// The preview a visit's line names: the id starts the first label of the host (`<id>`,
/// `<id>-<service>`, `<id>-<generation>`), whatever the port. `None` for no visit: one of
/// previewd's probes, a crawler, or a host that names no preview.
fn visited(line: &str, crawlers: &[String]) -> Option<PreviewId> {
    let line: Line = serde_json::from_str(line).ok()?;
    let agent = line
        .request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
        .unwrap_or("");
    if agent == PROBE_AGENT || is_crawler(agent, crawlers) {
        return None;
    }
    let label = line.request.host.split(['.', ':']).next()?;
    PreviewId::parse(label.get(..PREVIEW_ID_LEN)?).ok()
}

/// Reads visit lines on the socket `path` until `shutdown`, touching `activity` and telling
/// `engine` (the ttl counts from a visit).
pub fn listen(
    path: &Path,
    activity: Activity,
    engine: Arc<dyn PreviewEngine>,
    crawlers: Vec<String>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = super::bind_at(path)?;
    let crawlers = Arc::new(crawlers);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "visit log: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => return,
            };
            let (activity, crawlers, shutdown, engine) = (
                activity.clone(),
                crawlers.clone(),
                shutdown.clone(),
                engine.clone(),
            );
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stream).lines();
                loop {
                    let line = tokio::select! {
                        l = lines.next_line() => l,
                        () = shutdown.cancelled() => return,
                    };
                    match line {
                        Ok(Some(line)) => {
                            if let Some(id) = visited(&line, &crawlers) {
                                activity.touch(&id);
                                engine.visited(&id);
                            }
                        }
                        Ok(None) | Err(_) => return,
                    }
                }
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(host: &str, agent: &str) -> String {
        serde_json::json!({
            "level": "info",
            "logger": "http.log.access.previewd_visits",
            "request": {"host": host, "uri": "/", "headers": {"User-Agent": [agent]}},
            "status": 200,
        })
        .to_string()
    }

    #[test]
    fn a_visit_names_its_preview_and_probes_and_crawlers_are_none() {
        let id = PreviewId::parse("abcdefghij").unwrap();
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";
        assert_eq!(
            visited(&line("abcdefghij.localhost:8000", firefox), &[]),
            Some(id.clone())
        );
        assert_eq!(
            visited(&line("abcdefghij-api.example.com", "curl/8"), &[]),
            Some(id)
        );
        assert_eq!(
            visited(&line("abcdefghij.localhost", PROBE_AGENT), &[]),
            None
        );
        let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        assert_eq!(visited(&line("abcdefghij.localhost", google), &[]), None);
        let mine = vec!["my-checker".to_owned()];
        assert_eq!(
            visited(&line("abcdefghij.localhost", "My-Checker/1"), &mine),
            None
        );
        assert_eq!(visited(&line("short.localhost", "curl/8"), &[]), None);
        assert_eq!(visited("not json", &[]), None);
    }
}
