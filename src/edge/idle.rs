//! The idle sweep: every few seconds, each running preview that nobody visited for
//! `limits.idle_sleep` (and that holds no request open at the gateway, such as a dev server's
//! live-reload WebSocket) is put to sleep. A preview counts as visited when it was deployed,
//! when it woke, and when `serve` started (it may have been visited just before). Whether a
//! preview may sleep at all (not deploying, not failed, not kept awake by its repository) is
//! the engine's to say; nothing here touches Docker. Time is the activity's clock (the one
//! `serve` shares with the engine), never read from the system here, so a test moves it
//! forward instead of waiting out `idle_sleep`; only the sweep's period is tokio's timer.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use time::OffsetDateTime;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::SleepSide;
use super::visits::{self, Activity};
use crate::config::Config;
use crate::engine::{PreviewEngine, PreviewState, PreviewStatus};
use crate::preview::gateway::{VISITS_SOCKET, admin_dir};

/// Starts reading the visit log and the sweep, until `shutdown`.
pub fn start(
    config: &Config,
    engine: Arc<dyn PreviewEngine>,
    activity: Activity,
    side: SleepSide,
    idle: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let socket = admin_dir(config).join(VISITS_SOCKET);
    let crawlers = config.limits.crawler_agents.clone();
    visits::listen(
        &socket,
        activity.clone(),
        engine.clone(),
        crawlers,
        shutdown.clone(),
    )?;
    tokio::spawn(sweep(engine, activity, side, idle, shutdown));
    Ok(())
}

/// How often the sweep looks: a few times per `idle`, within 1 and 30 seconds.
fn period(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

async fn sweep(
    engine: Arc<dyn PreviewEngine>,
    activity: Activity,
    side: SleepSide,
    idle: Duration,
    shutdown: CancellationToken,
) {
    let started = activity.now();
    let mut tick = tokio::time::interval(period(idle));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let list = match engine.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "idle sweep: cannot list previews");
                continue;
            }
        };
        for id in engine.in_flight().await {
            activity.touch(&id);
        }
        let now = activity.now();
        let sleepy = list
            .iter()
            .filter(|p| p.status == PreviewStatus::Running)
            .filter(|p| idle_for(p, &activity, started, now) >= idle)
            .map(|p| {
                let (engine, side) = (engine.clone(), side.clone());
                let id = p.id.clone();
                async move {
                    match engine.sleep(id.clone()).await {
                        Ok(true) => {
                            tracing::info!(preview = %id, idle = ?idle, "no visit: asleep");
                            side.told_asleep(engine.clone(), id.clone());
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(preview = %id, error = %e, "cannot put to sleep"),
                    }
                }
            });
        join_all(sleepy).await;
    }
}

/// How long `p` has gone without a visit: since its last visit, its deployment or the start
/// of this process, whichever came last.
fn idle_for(
    p: &PreviewState,
    activity: &Activity,
    started: OffsetDateTime,
    now: OffsetDateTime,
) -> Duration {
    let seen = activity.last(&p.id).map_or(started, |t| t.max(started));
    let unseen = Duration::try_from(now - seen).unwrap_or(Duration::ZERO);
    let deployed = p
        .created
        .as_deref()
        .and_then(|c| crate::clock::age(c, now))
        .unwrap_or(Duration::MAX);
    unseen.min(deployed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_looks_a_few_times_per_idle_time_within_bounds() {
        assert_eq!(period(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(period(Duration::from_secs(20)), Duration::from_secs(5));
        assert_eq!(period(Duration::from_secs(1800)), Duration::from_secs(30));
    }
}
