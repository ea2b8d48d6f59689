//! `previewd serve`: binds the public webhook listener and the admin listener, builds the
//! GitHub client, the policy and the queue, and runs until `shutdown` is cancelled, then
//! drains the workers. It refuses to start without a webhook secret: unsigned webhooks are
//! never accepted. How the listeners hold connections (deadlines, the cap, the open-files
//! budget) is `listener`'s. Nothing here decides policy or talks to Docker itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::PreviewEngine;
use crate::forge::retry::RetryPolicy;
use crate::forge::{Forge, ForgeError, github::GitHub};
use crate::intent::{Policy, PolicyError};
use crate::listener::{self, Bounds, FdBudget, Listener};
pub use crate::metrics::LogDrops;
use crate::metrics::Metrics;
use crate::queue::{Queue, QueueOptions};
use crate::reconciler::Reconciler;
use crate::webhook::deliveries::Deliveries;
use crate::webhook::{AppState, admin_router, router};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "no webhook secret configured: set github.webhook_secret (or PREVIEWD_GITHUB_WEBHOOK_SECRET); \
         previewd never accepts unsigned webhooks"
    )]
    NoWebhookSecret,
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Forge(#[from] ForgeError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Knobs that are not in `previewd.toml` (tests shorten the retries). The queue's `parallel`
/// and `max_queued` are replaced by the config's `limits.parallel` and `limits.max_queued`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub queue: QueueOptions,
    pub retry: RetryPolicy,
    /// How often the reconciler runs; `None` for [`crate::reconciler::DEFAULT_INTERVAL`].
    pub reconcile_interval: Option<Duration>,
    /// The log writer's count of dropped lines, shown on `/metrics`; `None` when the binary
    /// logs synchronously (nothing is ever dropped).
    pub log_drops: Option<LogDrops>,
}

/// A bound, not yet running server: its addresses are known (useful with port 0).
pub struct Server {
    webhook: TcpListener,
    admin: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    reconciler: Reconciler,
    reconcile_interval: Duration,
    bounds: Bounds,
    budget: FdBudget,
}

/// Runs `previewd serve` until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    engine: Arc<dyn PreviewEngine>,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let server = bind(config, engine, options, shutdown).await?;
    let budget = server.budget();
    let limit = budget.limit.map_or("unknown".to_owned(), |l| l.to_string());
    if budget.cap < budget.wanted {
        tracing::warn!(
            open_files_limit = %limit,
            max_connections = budget.wanted,
            cap = budget.cap,
            needed = FdBudget::needed(budget.wanted, 2),
            "the open-files limit is too low for server.max_connections: each listener holds \
             fewer connections (raise LimitNOFILE / ulimit -n, see docs/operations.md)"
        );
    }
    tracing::info!(
        listen = %server.webhook_addr()?,
        admin = %server.admin_addr()?,
        open_files_limit = %limit,
        connection_cap = budget.cap,
        "previewd serving webhooks"
    );
    server.run().await
}

/// Checks the config, builds everything and binds both listeners.
pub async fn bind(
    config: Config,
    engine: Arc<dyn PreviewEngine>,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> Result<Server, ServeError> {
    if config.github.webhook_secrets.is_empty() {
        return Err(ServeError::NoWebhookSecret);
    }
    let github = GitHub::with_policy(&config.github, options.retry.clone())?;
    let forge: Arc<dyn Forge> = Arc::new(github);
    let reconcile_forge = forge.clone();
    let policy = Policy::new(&config.triggers, &config.github.git_url)?;
    let metrics = Metrics::new().map_err(|e| ServeError::Metrics(e.to_string()))?;
    let queue = Queue::new(
        engine.clone(),
        forge,
        policy.clone(),
        metrics.clone(),
        QueueOptions {
            parallel: config.limits.parallel,
            max_queued: config.limits.max_queued,
            ..options.queue
        },
        shutdown.clone(),
    );
    let reconciler = Reconciler::new(
        engine.clone(),
        reconcile_forge,
        queue.clone(),
        config.clone(),
        policy.clone(),
    );
    let state = AppState {
        secrets: Arc::new(config.github.webhook_secrets.clone()),
        deliveries: Arc::new(Deliveries::default()),
        metrics,
        policy: Arc::new(policy),
        queue,
        engine,
        log_drops: options.log_drops,
    };
    let listen = |what, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { what, addr, source })
    };
    let budget = FdBudget::for_process(config.server.max_connections, 2);
    let webhook = listen("listen", config.listen).await?;
    let admin = listen("admin_listen", config.admin_listen).await?;
    Ok(Server {
        webhook,
        admin,
        state,
        shutdown,
        reconciler,
        reconcile_interval: options
            .reconcile_interval
            .unwrap_or(crate::reconciler::DEFAULT_INTERVAL),
        bounds: Bounds {
            limits: config.server,
            cap: budget.cap,
        },
        budget,
    })
}

impl Server {
    pub fn webhook_addr(&self) -> Result<SocketAddr, ServeError> {
        Ok(self.webhook.local_addr()?)
    }

    pub fn admin_addr(&self) -> Result<SocketAddr, ServeError> {
        Ok(self.admin.local_addr()?)
    }

    /// The open-files limit found at bind time and the connection cap chosen from it.
    pub fn budget(&self) -> FdBudget {
        self.budget
    }

    /// Serves until `shutdown` is cancelled, then waits for the workers to finish.
    pub async fn run(self) -> Result<(), ServeError> {
        let Server {
            webhook,
            admin,
            state,
            shutdown,
            reconciler,
            reconcile_interval,
            bounds,
            budget: _,
        } = self;
        let queue = state.queue.clone();
        let metrics = state.metrics.clone();
        let reconciler = tokio::spawn(reconciler.run(reconcile_interval, shutdown.clone()));
        let public = listener::serve(
            webhook,
            Listener::Webhook,
            router(state.clone()),
            bounds,
            metrics.clone(),
            shutdown.clone(),
        );
        let private = listener::serve(
            admin,
            Listener::Admin,
            admin_router(state),
            bounds,
            metrics,
            shutdown.clone(),
        );
        let served = tokio::try_join!(public, private);
        if served.is_err() {
            // One listener failed: stop the workers too rather than run half a server.
            shutdown.cancel();
        }
        queue.drained().await;
        let _ = reconciler.await;
        served?;
        Ok(())
    }
}
