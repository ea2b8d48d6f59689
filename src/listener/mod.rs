//! How previewd's own listeners (`listen`, `admin_listen`) hold connections, so that slow or
//! abusive clients cannot keep a real delivery from being answered: every connection is in
//! one phase at a time (idle: no byte of a request yet; reading a request's headers, from its
//! first byte; inside a request), each phase has a deadline from `[server]`, and each listener holds at
//! most `max_connections`. At the cap a new connection is still accepted and served: the one
//! that has kept previewd waiting longest is closed for it (see [`table`] for the rule).
//! Closures for being slow are counted on `/metrics`.
//!
//! axum's own `serve` has no header or body deadline and no cap, so this serves the same
//! routers with hyper-util's connection builder directly (as axum's serve-with-hyper
//! example does).
//! Nothing here knows the routes, the forge or Docker.

mod nofile;
mod table;
mod watched;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerLimits;
use crate::metrics::Metrics;
pub use nofile::{FD_RESERVE, FdBudget, connection_cap};
use table::{Phase, Slot, Table};
use watched::Watched;

/// Which listener a connection came to: a label on the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Webhook,
    Admin,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Webhook => "webhook",
            Listener::Admin => "admin",
        }
    }
}

/// Why previewd closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// A request's headers did not all arrive within `header_timeout` of its first byte.
    SlowHeaders,
    /// A request's body and answer did not finish within `body_timeout`.
    SlowBody,
    /// No byte of a request for `idle_timeout` (after connecting or after an answer): normal,
    /// counted apart from the attacks.
    Idle,
    /// Closed for a newer connection at the cap (or when the process ran out of files).
    OverCapacity,
}

impl Closed {
    pub const ALL: [Closed; 4] = [
        Closed::SlowHeaders,
        Closed::SlowBody,
        Closed::Idle,
        Closed::OverCapacity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Closed::SlowHeaders => "slow_headers",
            Closed::SlowBody => "slow_body",
            Closed::Idle => "idle",
            Closed::OverCapacity => "over_capacity",
        }
    }
}

/// Why an accept failed: counted on `/metrics` beside the closures, so that running out of
/// files is seen as an attack's sign, not only logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The process (EMFILE) or the system (ENFILE) is out of file descriptors.
    OutOfFiles,
    /// Any other failure of the listener's accept: out of memory or socket buffers.
    Other,
}

impl Refused {
    pub const ALL: [Refused; 2] = [Refused::OutOfFiles, Refused::Other];

    /// EMFILE and ENFILE have these numbers on Linux and the BSDs; std has no `ErrorKind`
    /// for them yet.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;

    /// Why an accept failed with `e`, an error of the listener (not of one connection).
    pub fn of(e: &io::Error) -> Refused {
        match e.raw_os_error() {
            Some(Refused::EMFILE | Refused::ENFILE) => Refused::OutOfFiles,
            _ => Refused::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Refused::OutOfFiles => "out_of_files",
            Refused::Other => "other",
        }
    }
}

/// One listener's settings: the deadlines and its share of the open-files budget.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub limits: ServerLimits,
    /// `server.max_connections`, lowered to what the open-files limit allows.
    pub cap: usize,
}

impl Bounds {
    fn deadline(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Headers => self.limits.header_timeout,
            Phase::Request => self.limits.body_timeout,
            Phase::Idle => self.limits.idle_timeout,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets requests in progress
/// finish (each still within its deadline).
pub async fn serve(
    listener: TcpListener,
    which: Listener,
    app: Router,
    bounds: Bounds,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let table = Arc::new(Table::default());
    let tasks = TaskTracker::new();
    metrics.connection_cap(
        which.as_str(),
        bounds.cap,
        Closed::ALL.iter().map(|c| c.as_str()),
        Refused::ALL.iter().map(|r| r.as_str()),
    );
    let mut warned: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // The peer gave up before we took it: nothing to do.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                metrics.connection_refused(which.as_str(), Refused::of(&e).as_str());
                // Out of files (EMFILE/ENFILE) or memory: free the slowest connection so the
                // next accept can succeed, and say why once in a while, not per attempt.
                if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(listener = which.as_str(), error = %e,
                        "cannot accept a connection; closing the slowest open one \
                         (raise the open-files limit, or lower server.max_connections)");
                    warned = Some(Instant::now());
                }
                if let Some(victim) = table.evict() {
                    victim.evict.cancel();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if table.len() >= bounds.cap
            && let Some(victim) = table.evict()
        {
            victim.evict.cancel();
        }
        let slot = table.insert();
        metrics.connection_opened(which.as_str());
        let (table, app, metrics, shutdown) = (
            table.clone(),
            app.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            let closed = connection(stream, &slot, app, bounds, shutdown).await;
            table.remove(slot.id);
            metrics.connection_closed(which.as_str(), closed.map(Closed::as_str));
        });
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Serves one connection until the client closes it, a deadline passes or it is evicted.
async fn connection(
    stream: TcpStream,
    slot: &Arc<Slot>,
    app: Router,
    bounds: Bounds,
    shutdown: CancellationToken,
) -> Option<Closed> {
    let router = TowerToHyperService::new(app);
    let here = slot.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let slot = here.clone();
        slot.phase.send_replace((Phase::Request, Instant::now()));
        let answer = router.call(req);
        async move {
            let res = answer.await;
            slot.phase.send_replace((Phase::Idle, Instant::now()));
            res
        }
    });
    // hyper-util's HTTP/1-or-2 builder, as axum's serve uses: with hyper's HTTP/1 builder
    // alone, pooled clients lost answers given before a body was read (tests/load_flood.rs,
    // about one run in three). No hyper timer: its header timeout would also end idle
    // keep-alive connections at the header deadline; the phases below give each its own.
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(
        TokioIo::new(Watched {
            stream,
            slot: slot.clone(),
        }),
        service,
    );
    let mut conn = std::pin::pin!(conn);
    let mut phases: watch::Receiver<(Phase, Instant)> = slot.phase.subscribe();
    let mut stopping = false;
    loop {
        let (phase, since) = *phases.borrow_and_update();
        let deadline = tokio::time::Instant::from_std(since + bounds.deadline(phase));
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return None;
            }
            _ = phases.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {
                // Dropping the connection closes the socket (and any handler still running).
                return Some(match phase {
                    Phase::Headers => Closed::SlowHeaders,
                    Phase::Request => Closed::SlowBody,
                    Phase::Idle => Closed::Idle,
                });
            }
            _ = slot.evict.cancelled() => return Some(Closed::OverCapacity),
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Errors of one connection, not of the listener (as hyper's and axum's accept loops treat
/// them): skip it and accept the next.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
