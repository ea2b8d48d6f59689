//! `previewd serve`: the webhook server, workers and reconciler, until SIGTERM or SIGINT.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{CliError, Outcome};
use crate::config::Config;
use crate::preview::manager::Manager;
use crate::serve::{LogDrops, ServeOptions};

/// `log_drops` reads the binary's count of log lines its non-blocking writer dropped.
pub async fn run(config: Config, log_drops: Option<LogDrops>) -> Result<Outcome, CliError> {
    let manager = Manager::connect(config.clone())
        .await?
        .with_git_credentials(crate::forge::git_credentials(&config));
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(
            "shutting down: no new work; running work finishes or is reconciled at the next start"
        );
        s.cancel();
    });
    let options = ServeOptions {
        log_drops,
        ..Default::default()
    };
    crate::serve::serve(config, Arc::new(manager), options, shutdown).await?;
    Ok(Outcome::Done)
}

/// SIGTERM (systemd, docker stop) or SIGINT (a terminal).
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
