//! Traffic through the gateway while a preview is updated, shared by the single-host and the
//! Swarm update tests: a client polling the preview every 20 ms, and slow requests (3 s each,
//! the fixture's `/api/slow`) started every 250 ms, so some are in flight at the switch. It
//! only records what came back; each test decides what it requires. It must never retry a
//! failed request: a retry would hide exactly the downtime the tests look for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use previewd::preview::manager::{Event, Progress};
use tokio::task::JoinHandle;

/// A deployment's build log lines, by service.
pub type Lines = Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A progress callback that keeps the build log's lines, and the lines it keeps.
pub fn recorder() -> (Progress, Lines) {
    let lines: Lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let progress: Progress = {
        let lines = lines.clone();
        Arc::new(move |e| {
            if let Event::Line { service, line } = e {
                lines.lock().unwrap().push((service, line));
            }
        })
    };
    (progress, lines)
}

/// GET `path` through the gateway at `addr` with the `Host` header `host`: status (0 when no
/// answer came) and body.
pub async fn get(addr: &str, host: &str, path: &str) -> (u16, String) {
    match previewd::preview::http_client::tcp(addr, host, "GET", path, Duration::from_secs(5)).await
    {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e.to_string()),
    }
}

/// The polling client and the slow requests, running until [`UpdateLoad::finish`].
pub struct UpdateLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    poller: JoinHandle<Vec<String>>,
    slow: JoinHandle<Vec<String>>,
}

/// What the load saw: answers that were not `200` (with their bodies), by kind.
#[derive(Debug)]
pub struct LoadOutcome {
    /// Polls answered 200.
    pub ok: usize,
    /// Polls of `/api/health` that failed.
    pub failures: Vec<String>,
    /// Slow requests cut off or answered wrongly.
    pub slow_failures: Vec<String>,
}

impl UpdateLoad {
    /// Starts both clients against the preview served for `host` by the gateway at `addr`.
    pub fn start(addr: String, host: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let poller = {
            let (addr, host, stop, ok) = (addr.clone(), host.clone(), stop.clone(), ok.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match get(&addr, &host, "/api/health").await {
                        (200, _) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        (status, body) => failures.push(format!("{status} {body}")),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                failures
            })
        };
        let slow = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut running = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let (addr, host) = (addr.clone(), host.clone());
                    running.push(tokio::spawn(
                        async move { get(&addr, &host, "/api/slow").await },
                    ));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                let mut failures = Vec::new();
                for r in running {
                    let (status, body) = r.await.expect("slow request");
                    if status != 200 || body != "slow answer" {
                        failures.push(format!("{status} {body}"));
                    }
                }
                failures
            })
        };
        UpdateLoad {
            stop,
            ok,
            poller,
            slow,
        }
    }

    /// Stops both clients, waits for the slow requests still in flight, and says what they saw.
    pub async fn finish(self) -> LoadOutcome {
        self.stop.store(true, Ordering::SeqCst);
        let failures = self.poller.await.expect("poller");
        let slow_failures = self.slow.await.expect("slow requests");
        LoadOutcome {
            ok: self.ok.load(Ordering::SeqCst),
            failures,
            slow_failures,
        }
    }
}
