//! The edge: the HTTP service previewd offers the gateway, on a unix socket in the directory
//! only previewd and the gateway share (`<admin_dir>/edge.sock`), never on a TCP port, so no
//! preview's code can reach it. Caddy asks it before proxying some requests, the way
//! `forward_auth` asks an auth service; each concern is a sub-router merged here: `auth`
//! (whether a visitor may see a protected preview, and signing in) and `wake` (a sleeping
//! preview's visitor). The sleeping side's own tasks (the visit log, the idle sweep) start
//! beside it. Nothing here proxies a preview's traffic, decides access itself or touches
//! Docker: what happens to previews goes through [`PreviewEngine`].

pub mod auth;
pub mod idle;
pub mod lookup;
mod signin;
pub mod visits;
pub mod wake;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::engine::{DeployFailure, PreviewEngine, PreviewState, SleepReport};
use crate::ids::PreviewId;
use crate::metrics::Metrics;
use crate::preview::gateway::admin_dir;

/// The socket's name in the shared directory (the gateway's config dials the same).
pub const SOCKET: &str = crate::preview::gateway::EDGE_SOCKET;

/// Where the edge listens, on this host.
pub fn socket_path(config: &Config) -> PathBuf {
    admin_dir(config).join(SOCKET)
}

/// Binds the edge's socket, replacing a stale one a previous `serve` left.
pub fn bind(config: &Config) -> std::io::Result<UnixListener> {
    bind_at(&socket_path(config))
}

/// Binds a unix socket at `path` that only this user (and the gateway, as root) may use, in
/// a directory only this user may enter, replacing one a killed process left.
pub fn bind_at(path: &std::path::Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// What the sleeping side is handed besides the engine: where "now" comes from (the clock
/// the engine uses, so a test moves it instead of waiting out `limits.idle_sleep`), and who
/// is told when a preview sleeps, wakes or fails to wake (the PRs, in `serve`).
#[derive(Clone)]
pub struct SleepSide {
    pub clock: SharedClock,
    pub report: Option<Arc<dyn SleepReport>>,
}

impl SleepSide {
    /// The system's clock, and nobody told.
    pub fn system() -> SleepSide {
        SleepSide {
            clock: Arc::new(crate::clock::SystemClock),
            report: None,
        }
    }

    /// Tells, in the background, that the preview `id` went to sleep.
    pub(crate) fn told_asleep(&self, engine: Arc<dyn PreviewEngine>, id: PreviewId) {
        self.tell(engine, id, |r, s| r.asleep(s));
    }

    /// Tells, in the background, that the preview `id` woke.
    pub(crate) fn told_awake(&self, engine: Arc<dyn PreviewEngine>, id: PreviewId) {
        self.tell(engine, id, |r, s| r.awake(s));
    }

    /// Tells, in the background, that the preview `id` did not wake.
    pub(crate) fn told_wake_failed(
        &self,
        engine: Arc<dyn PreviewEngine>,
        id: PreviewId,
        failure: DeployFailure,
    ) {
        self.tell(engine, id, move |r, s| r.wake_failed(s, failure));
    }

    /// Reads `id`'s state now and hands it to `say`; a visitor never waits for it.
    fn tell(
        &self,
        engine: Arc<dyn PreviewEngine>,
        id: PreviewId,
        say: impl FnOnce(&dyn SleepReport, PreviewState) -> crate::engine::BoxFuture<'_, ()>
        + Send
        + 'static,
    ) {
        let Some(report) = self.report.clone() else {
            return;
        };
        tokio::spawn(async move {
            match engine.list().await {
                Ok(list) => {
                    if let Some(state) = list.into_iter().find(|p| p.id == id) {
                        say(report.as_ref(), state).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(preview = %id, error = %e, "cannot read the preview to report its sleep or wake");
                }
            }
        });
    }
}

/// Every route the gateway asks: a sleeping preview's wake, and access (`forward_auth`,
/// sign-in). What `serve` serves; tests drive it in process with a fake engine and lookup.
pub fn app(wake: wake::WakeState, auth: auth::AuthState) -> Router {
    use crate::access::target::{CALLBACK_PATH, LOGIN_PATH};
    let access = Router::new()
        .route(auth::CHECK_PATH, axum::routing::get(auth::check))
        .route(LOGIN_PATH, axum::routing::get(signin::login))
        .route(CALLBACK_PATH, axum::routing::get(signin::callback))
        .with_state(auth);
    wake::router(wake).merge(access)
}

/// Serves `router` on `listener` until `shutdown`. Requests still waiting then (a visitor
/// waiting for a wake) are dropped: the gateway answers them 502, and `serve` need not wait
/// for a wake to end before it exits.
pub async fn serve(
    listener: UnixListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tokio::select! {
        r = axum::serve(listener, router).into_future() => r,
        () = shutdown.cancelled() => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("cannot listen on {path} for the gateway: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the edge for the gateway: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    #[error("access: {0}")]
    Forge(#[from] crate::forge::ForgeError),
    #[error("access: cannot use Docker to find previews' repositories: {0}")]
    Docker(String),
}

/// The edge as `serve` runs it: bound by `serve`'s `bind` (so a socket that cannot be made
/// stops `serve` at once), served by its `run`.
pub struct Edge {
    listener: UnixListener,
    /// Always there: a repository may protect its previews whatever the operator's mode.
    auth: auth::AuthState,
}

impl Edge {
    pub fn for_serve(config: &Config) -> Result<Edge, EdgeError> {
        let auth = access_state(config)?;
        let path = socket_path(config);
        let listener = bind(config).map_err(|source| EdgeError::Bind { path, source })?;
        Ok(Edge { listener, auth })
    }

    /// Serves every route, with the sleeping side's tasks when `limits.idle_sleep` is on.
    pub async fn run_with_wake(
        self,
        config: Arc<Config>,
        engine: Arc<dyn PreviewEngine>,
        metrics: Metrics,
        side: SleepSide,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let activity = visits::Activity::new(side.clock.clone());
        if let Some(idle) = config.limits.idle_sleep {
            idle::start(
                &config,
                engine.clone(),
                activity.clone(),
                side.clone(),
                idle,
                shutdown.clone(),
            )?;
        }
        let wake = wake::WakeState::new(&config, engine, metrics, activity, side);
        serve(self.listener, app(wake, self.auth), shutdown).await
    }
}

/// Binds and serves the whole edge for `config` until `shutdown`.
pub async fn run(
    config: Arc<Config>,
    engine: Arc<dyn PreviewEngine>,
    metrics: Metrics,
    side: SleepSide,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    let edge = Edge::for_serve(&config)?;
    Ok(edge
        .run_with_wake(config, engine, metrics, side, shutdown)
        .await?)
}

fn access_state(config: &Config) -> Result<auth::AuthState, EdgeError> {
    let keys = crate::access::Keys::load(config)?;
    let mut providers = Vec::new();
    for kind in crate::forge::ForgeKind::ALL {
        providers.extend(crate::forge::oauth::Provider::of(
            config,
            kind,
            crate::forge::retry::RetryPolicy::default(),
        )?);
    }
    // Connects lazily: the first preview lookup talks to Docker.
    let docker =
        bollard::Docker::connect_with_defaults().map_err(|e| EdgeError::Docker(e.to_string()))?;
    let lookup = Arc::new(lookup::DockerLookup::new(docker, config.instance.clone()));
    Ok(auth::AuthState::new(
        config.clone(),
        keys,
        providers,
        lookup,
        Arc::new(crate::clock::SystemClock),
    ))
}
