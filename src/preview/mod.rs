//! The preview manager and its parts: source (git2), build context, Docker, gateway, health,
//! reconcile. The same manager serves the CLI and the webhook path.

pub mod build;
pub mod context;
pub mod docker;
pub mod dockerfile;
pub mod engine_impl;
#[cfg(feature = "fault-injection")]
pub mod fault;
/// Without the `fault-injection` feature (every shipped build) the hook is a no-op.
#[cfg(not(feature = "fault-injection"))]
pub(crate) mod fault {
    pub async fn pause(_: crate::engine::Phase) {}
}
pub mod gateway;
pub mod health;
pub mod http;
pub mod labels;
pub mod lockfile;
pub mod manager;
pub mod network;
pub mod reconcile;
pub mod source;
