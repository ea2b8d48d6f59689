//! The one shared Caddy gateway of an instance. Its routes are a pure function of the
//! containers' labels, kept as a table of files that Caddy reads per request ([`routes`]);
//! [`Gateway::sync`] recomputes the table from Docker, joins the gateway to the networks it
//! must reach and writes the table, so no preview's change ever reloads Caddy or drops another
//! preview's requests. Caddy's config ([`caddy_config`]) depends on the gateway's settings
//! only. The admin API listens on a unix socket in a directory shared only by previewd and the
//! gateway: no preview container can reach it. The config and the table live in that
//! directory, so a gateway that Docker restarts comes back with every route before previewd
//! even notices.
//!
//! One file per job: `caddy.rs` (the config, pure), `routes.rs` (the table of files, and how a
//! request finds its entry), `hosts.rs` (host names, pure), `sync.rs` (the table and the
//! networks from the labels, draining), `admin.rs` (the shared directory, the lock, the admin
//! API) and `container.rs` (the gateway container's life). This file holds the [`Gateway`]
//! value, the error and the public names; nothing here may talk to Docker or reload Caddy
//! itself.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bollard::Docker;

use super::docker::DockerError;
use crate::config::Config;

mod admin;
mod caddy;
mod caddy_access;
mod container;
mod hosts;
pub mod routes;
mod sync;
#[cfg(test)]
mod tests;

pub use admin::{admin_dir, lock_path, routes_dir};
pub use caddy::{EDGE_SOCKET, VISITS_SOCKET, caddy_config};
pub use caddy_access::{CHECK_PATH, COOKIE, PREVIEW_HEADER};
pub use hosts::{live_host, service_host, service_url, staging_host, staging_service_host};
pub use sync::routed_networks;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("gateway admin directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the gateway image {0} is not on this Docker host; build it (deploy/offline-images) or pull it"
    )]
    NoImage(String),
    #[error("the gateway did not start: {0}")]
    NotReady(String),
    #[error("the gateway refused its config: {0}")]
    Refused(String),
    /// Docker's own words bury the address past the 140 characters a commit status shows.
    #[error(
        "the gateway cannot listen on {0}: another program has that port (gateway.port, gateway.tls_port)"
    )]
    PortInUse(String),
}

/// The instance's gateway, built once beside the manager's Docker connection: every change to
/// the gateway (sync, drain, leaving a network, removal) goes through it, so callers hold one
/// value instead of handing a Docker connection and the config to each step.
#[derive(Clone)]
pub struct Gateway {
    docker: Docker,
    config: Arc<Config>,
    /// Networks [`Gateway::join`] joined ahead of their containers: a sync does not leave
    /// them for having no container yet. Cleared when a sync finds a container there or the
    /// gateway leaves the network ([`Gateway::leave`], before every network removal).
    ahead: Arc<Mutex<BTreeSet<String>>>,
}

impl Gateway {
    pub fn new(docker: Docker, config: Arc<Config>) -> Gateway {
        Gateway {
            docker,
            config,
            ahead: Default::default(),
        }
    }
}
