//! The preview manager and its parts, one folder per responsibility: `source` (git2), `build/`
//! (the build context, Dockerfile stamping, image builds), `docker/` (the Engine API calls,
//! names and labels, networks, locks), `manager/` (the deployment's phases), `gateway/`,
//! `firewall` (the egress policy in the kernel), `health` and `http_client` (checks through the gateway), `cleanup` (the Docker side of a
//! reconcile pass), and `adapter` (the manager behind the queue's `PreviewEngine` seam, which
//! is `crate::engine`; "engine" names only that seam, never Docker's engine or this folder).
//! The same manager serves the CLI and the webhook path. Never calls a forge's API: what a
//! forge hears goes through `crate::engine`.

pub mod adapter;
pub mod build;
pub mod docker;
#[cfg(feature = "fault-injection")]
pub mod fault;
/// Without the `fault-injection` feature (every shipped build) the hook is a no-op.
#[cfg(not(feature = "fault-injection"))]
pub(crate) mod fault {
    pub async fn pause(_: crate::engine::Phase) {}
}
pub mod cleanup;
pub mod firewall;
pub mod gateway;
pub mod health;
pub mod http_client;
pub mod manager;
pub mod source;

/// The paths from before the grouping, for the tests, benchmarks and fuzz targets that use them.
pub use build::{context, dockerfile};
pub use docker::{labels, lockfile, network};
