//! `previewd serve`: binds the public webhook listener and the admin listener, builds each
//! configured forge's client and policy, and the queue, and runs until `shutdown` is
//! cancelled, then drains the workers. It refuses to start without a forge, or with a forge
//! set up without a webhook secret (unsigned webhooks are never accepted), and it reads each
//! forge's token user at start, so a missing or wrong token shows before the first PR. How
//! the listeners hold connections (deadlines, the cap, the open-files budget) is
//! `listener`'s. Nothing here decides policy or talks to Docker itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::PreviewEngine;
use crate::forge::retry::RetryPolicy;
use crate::forge::{Forge, ForgeError, ForgeKind, Forges, github::GitHub};
use crate::intent::{Policies, PolicyError};
use crate::listener::{self, Bounds, FdBudget, Listener};
pub use crate::metrics::LogDrops;
use crate::metrics::Metrics;
use crate::queue::{Queue, QueueOptions};
use crate::reconciler::Reconciler;
use crate::webhook::deliveries::Deliveries;
use crate::webhook::{AppState, Route, admin_router, router};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "no webhook secret configured: set github.webhook_secret (or PREVIEWD_GITHUB_WEBHOOK_SECRET), \
         or gitea.url and gitea.webhook_secret, or gitlab.url and gitlab.webhook_secret; \
         previewd never accepts unsigned webhooks"
    )]
    NoWebhookSecret,
    #[error(
        "{forge} is set up ({section}.url or its token is set) but has no webhook secret: set \
         {section}.webhook_secret (or PREVIEWD_{env}_WEBHOOK_SECRET); previewd never accepts \
         unsigned webhooks"
    )]
    ForgeWithoutSecret {
        forge: &'static str,
        section: &'static str,
        env: String,
    },
    #[error(
        "{section}.token is not set: previewd cannot report to {forge} without it; set it (or \
         PREVIEWD_{env}_TOKEN) to a token of previewd's own user (docs/{section}.md)"
    )]
    NoToken {
        forge: &'static str,
        section: &'static str,
        env: String,
    },
    #[error("{section}.token was refused by {forge} ({reason}); {hint}")]
    BadToken {
        forge: &'static str,
        section: &'static str,
        reason: String,
        hint: &'static str,
    },
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
    #[error(transparent)]
    Edge(#[from] crate::edge::EdgeError),
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
    /// "Now" for the reconciler's ttls, the status page and the idle sweep; `None` for the
    /// system's. Hand the engine's own clock here (tests move a `ManualClock`).
    pub clock: Option<crate::clock::SharedClock>,
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
    /// For the edge service the gateway asks (`crate::edge`).
    config: Arc<Config>,
    /// What the gateway asks previewd (access to previews, waking them), bound at start.
    edge: crate::edge::Edge,
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
    let enabled = check_forges(&config)?;
    let mut forges = Forges::from_config(&config, &options.retry)?;
    if enabled.contains(&ForgeKind::GitHub) && forges.get(ForgeKind::GitHub).is_none() {
        // GitHub without a token still reads public pull requests (and is refused reports).
        forges.insert(Arc::new(GitHub::with_policy(
            &config.github,
            options.retry.clone(),
        )?));
    }
    let sections: Vec<(ForgeKind, String)> = enabled
        .iter()
        .filter_map(|k| Some((*k, config.forge_section(*k)?.git_url.to_owned())))
        .collect();
    let policies = Policies::new(&config.triggers, &sections)?;
    let mut routes = std::collections::BTreeMap::new();
    for kind in &enabled {
        let (Some(section), Some(policy)) = (config.forge_section(*kind), policies.get(*kind))
        else {
            continue;
        };
        routes.insert(
            *kind,
            Route::new(section.webhook_secrets.to_vec(), policy.clone()),
        );
    }
    for (kind, route) in &routes {
        if let Some(forge) = forges.get(*kind) {
            *route.self_user.write().unwrap_or_else(|p| p.into_inner()) =
                token_user(*kind, forge.as_ref()).await?;
        }
    }
    let metrics = Metrics::new().map_err(|e| ServeError::Metrics(e.to_string()))?;
    let queue = Queue::new(
        engine.clone(),
        &forges,
        &policies,
        metrics.clone(),
        QueueOptions {
            parallel: config.limits.parallel,
            max_queued: config.limits.max_queued,
            ..options.queue
        },
        shutdown.clone(),
    );
    let clock = options
        .clock
        .unwrap_or_else(|| Arc::new(crate::clock::SystemClock));
    let reconciler = Reconciler::new(
        engine.clone(),
        forges,
        queue.clone(),
        config.clone(),
        policies,
    )
    .with_clock(clock.clone());
    let page = crate::webhook::status_page::settings(&config);
    let reconciler = reconciler.with_kept(page.kept.clone());
    let state = AppState {
        routes: Arc::new(routes),
        deliveries: Arc::new(Deliveries::default()),
        metrics,
        queue,
        engine,
        log_drops: options.log_drops,
        page,
        clock,
    };
    let listen = |what, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { what, addr, source })
    };
    let budget = FdBudget::for_process(config.server.max_connections, 2);
    let webhook = listen("listen", config.listen).await?;
    let admin = listen("admin_listen", config.admin_listen).await?;
    let edge = crate::edge::Edge::for_serve(&config)?;
    Ok(Server {
        edge,
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
        config: Arc::new(config),
    })
}

/// The forges whose routes are on; refuses a config with none, or with a forge set up
/// without a webhook secret or (but for GitHub, which works read-only) without a token.
/// `previewd doctor` asks the same, so that it fails where `serve` would refuse to start.
pub fn check_forges(config: &Config) -> Result<Vec<ForgeKind>, ServeError> {
    for kind in [ForgeKind::Gitea, ForgeKind::GitLab] {
        let Some(section) = config.forge_section(kind) else {
            continue;
        };
        let names = (
            kind.title(),
            kind.as_str(),
            kind.as_str().to_ascii_uppercase(),
        );
        if section.webhook_secrets.is_empty() {
            return Err(ServeError::ForgeWithoutSecret {
                forge: names.0,
                section: names.1,
                env: names.2,
            });
        }
        if !section.token_set {
            return Err(ServeError::NoToken {
                forge: names.0,
                section: names.1,
                env: names.2,
            });
        }
    }
    let enabled = config.enabled_forges();
    if enabled.is_empty() {
        return Err(ServeError::NoWebhookSecret);
    }
    Ok(enabled)
}

/// The login `forge`'s token acts as (`GET /user`), read at start so that a wrong token is
/// seen now rather than in the first failed report. A refused token stops `serve`; a forge
/// that cannot be reached only warns (its comments are still told apart by their marker).
async fn token_user(kind: ForgeKind, forge: &dyn Forge) -> Result<Option<String>, ServeError> {
    let refused = |reason: String, hint: &'static str| ServeError::BadToken {
        forge: kind.title(),
        section: kind.as_str(),
        reason,
        hint,
    };
    match forge.self_user().await {
        Ok(Some(login)) => {
            tracing::info!(forge = %kind, user = %login, "forge token user");
            Ok(Some(login))
        }
        Ok(None) => Ok(None),
        Err(ForgeError::Status { status: 401, .. }) => Err(refused(
            "401: the token is wrong, expired or revoked".into(),
            "create a new one for previewd's user",
        )),
        Err(ForgeError::Status {
            status: 403,
            message,
            ..
        }) => Err(refused(
            format!("403: {message}"),
            "the token lacks a scope previewd needs (Gitea: read:user, write:repository, write:issue; GitLab: api)",
        )),
        Err(e) => {
            tracing::warn!(forge = %kind, error = %e, "cannot read the forge token's user; going on (check the forge's url)");
            Ok(None)
        }
    }
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

    /// Serves until `shutdown` is cancelled, then waits for the workers to finish and for the
    /// old generations they switched away from to be retired.
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
            config,
            edge,
        } = self;
        let queue = state.queue.clone();
        let engine = state.engine.clone();
        let metrics = state.metrics.clone();
        let reconciler = tokio::spawn(reconciler.run(reconcile_interval, shutdown.clone()));
        let report = crate::forge::sleep_report::SleepReports::new(|k| queue.reporter(k).cloned());
        let side = crate::edge::SleepSide {
            clock: state.clock.clone(),
            report: Some(Arc::new(report)),
        };
        let edge = edge.run_with_wake(
            config,
            state.engine.clone(),
            metrics.clone(),
            side,
            shutdown.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = edge.await {
                tracing::error!(error = %e, "the edge socket failed: sleeping previews do not wake and protected previews refuse visitors");
            }
        });
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
        engine.retired().await;
        served?;
        Ok(())
    }
}
