//! The edge: the HTTP service previewd offers the gateway, on a unix socket in the directory
//! only previewd and the gateway share (`<admin_dir>/edge.sock`), never on a port a preview
//! could reach. Caddy asks it before proxying some requests, the way `forward_auth` asks an
//! auth service; each question is a sub-router merged here: `wake` (a sleeping preview's
//! visitor). The sleeping side's own tasks (the visit log, the idle sweep) start beside it.
//! Nothing here proxies a preview's traffic or touches Docker: what happens to previews goes
//! through [`PreviewEngine`].

use std::future::IntoFuture;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::PreviewEngine;
use crate::metrics::Metrics;
use crate::preview::gateway::{EDGE_SOCKET, admin_dir};

pub mod idle;
pub mod visits;
pub mod wake;

/// Every question the gateway may ask, one sub-router each.
pub fn router(wake: wake::WakeState) -> Router {
    Router::new().merge(wake::router(wake))
}

/// Serves the edge until `shutdown`, with the sleeping side's tasks when `limits.idle_sleep`
/// is on. An error means the socket could not be made; `serve` goes on without the edge.
pub async fn run(
    config: Arc<Config>,
    engine: Arc<dyn PreviewEngine>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let dir = admin_dir(&config);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let activity = visits::Activity::default();
    if let Some(idle) = config.limits.idle_sleep {
        idle::start(
            &config,
            engine.clone(),
            activity.clone(),
            idle,
            shutdown.clone(),
        )?;
    }
    let wake = wake::WakeState::new(&config, engine, metrics, activity);
    serve(&dir.join(EDGE_SOCKET), router(wake), shutdown).await
}

/// Serves `router` on the unix socket `path` (a stale one from a killed process is replaced)
/// until `shutdown`. Requests still waiting then are dropped: the gateway answers them 502.
pub async fn serve(
    path: &Path,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = bind(path)?;
    tokio::select! {
        r = axum::serve(listener, router).into_future() => r,
        () = shutdown.cancelled() => Ok(()),
    }
}

/// Binds a unix socket at `path`, replacing one a killed process left.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    tokio::net::UnixListener::bind(path)
}
