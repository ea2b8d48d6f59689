//! The preview manager and its parts: source (git2), build context, Docker, gateway, health,
//! reconcile. The same manager serves the CLI and the webhook path.

pub mod context;
