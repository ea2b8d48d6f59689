//! The HTTP service the gateway asks on behalf of visitors (whether one may see a protected
//! preview, signing in), served on `edge.sock` in the directory shared only by previewd and
//! the gateway: never on a TCP port, so no preview's code can reach it. `router` merges each
//! concern's routes; nothing here decides access itself.

pub mod auth;
pub mod lookup;
mod signin;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use axum::Router;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::preview::gateway::admin_dir;

/// The socket's name in the shared directory.
pub const SOCKET: &str = "edge.sock";

/// Where the edge listens, on this host.
pub fn socket_path(config: &Config) -> PathBuf {
    admin_dir(config).join(SOCKET)
}

/// Binds the edge's socket, replacing a stale one a previous `serve` left.
pub fn bind(config: &Config) -> std::io::Result<UnixListener> {
    let path = socket_path(config);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Every route the gateway may ask.
pub fn router(auth: auth::AuthState) -> Router {
    Router::new().merge(auth::router(auth))
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: UnixListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("cannot listen on {path} for the gateway: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    #[error("access: {0}")]
    Forge(#[from] crate::forge::ForgeError),
    #[error("access: cannot use Docker to find previews' repositories: {0}")]
    Docker(String),
}

/// The edge as `serve` runs it: bound by `serve`'s `bind`, served by its `run`.
pub struct Edge {
    listener: UnixListener,
    router: Router,
}

impl Edge {
    /// The edge for `config`, or `None` when no preview can be protected (nothing to ask).
    pub fn for_serve(config: &Config) -> Result<Option<Edge>, EdgeError> {
        if !crate::access::gateway_checks(config) {
            return Ok(None);
        }
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
        let docker = bollard::Docker::connect_with_defaults()
            .map_err(|e| EdgeError::Docker(e.to_string()))?;
        let lookup =
            std::sync::Arc::new(lookup::DockerLookup::new(docker, config.instance.clone()));
        let state = auth::AuthState::new(
            config.clone(),
            keys,
            providers,
            lookup,
            std::sync::Arc::new(crate::clock::SystemClock),
        );
        let path = socket_path(config);
        let listener = bind(config).map_err(|source| EdgeError::Bind { path, source })?;
        Ok(Some(Edge {
            listener,
            router: router(state),
        }))
    }

    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        serve(self.listener, self.router, shutdown).await
    }
}
