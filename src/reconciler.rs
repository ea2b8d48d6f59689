//! The reconciler that `serve` runs: once at start, before any work could have been left
//! half-made by this process, then every `interval`. It asks the engine to bring Docker in
//! line with its labels (routes, orphans, expired previews). It never blocks the webhook path
//! and a failed pass (Docker down) is logged and retried at the next tick.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::engine::PreviewEngine;

/// How often the periodic pass runs unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

pub async fn run(engine: Arc<dyn PreviewEngine>, interval: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut startup = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match engine.reconcile(startup).await {
            Ok(summary) => {
                if !summary.expired.is_empty() || summary.orphans > 0 {
                    tracing::info!(
                        expired = summary.expired.len(),
                        orphans = summary.orphans,
                        startup,
                        "reconcile removed leftovers"
                    );
                }
                startup = false;
            }
            // The start-up pass is retried until it succeeds: it is the one that may remove
            // leftovers at once.
            Err(e) => tracing::warn!(error = %e, startup, "reconcile failed; retrying later"),
        }
    }
}
