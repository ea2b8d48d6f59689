//! Wall-clock time, passed in wherever an age or an expiry is computed (a preview's `created`
//! label against `limits.ttl`, the reconcile grace, the ttl warning), so that tests move time
//! forward instead of sleeping through a ttl. Nothing here sleeps or schedules: timers and
//! timeouts stay tokio's, and file times (a worktree's) stay the file system's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> OffsetDateTime;
}

pub type SharedClock = Arc<dyn Clock>;

/// The system's clock: what every shipped command uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that starts at the system's time and then moves only when told to: what a test of
/// ttls and expiry hands the manager and the reconciler.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock(Mutex::new(OffsetDateTime::now_utc()))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `t` as the `created` label writes it (RFC 3339).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// How old a label's RFC 3339 timestamp is at `now`; `None` when it does not parse. A time in
/// the future is age zero.
pub fn age(created: &str, now: OffsetDateTime) -> Option<Duration> {
    let t = OffsetDateTime::parse(created, &Rfc3339).ok()?;
    let secs = (now - t).whole_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_ages_follow_it() {
        let c = ManualClock::new();
        let created = rfc3339(c.now());
        assert_eq!(age(&created, c.now()), Some(Duration::ZERO));
        c.advance(Duration::from_secs(90));
        assert_eq!(age(&created, c.now()), Some(Duration::from_secs(90)));
        assert_eq!(age("not a time", c.now()), None);
        // A label from the future (another host's clock) is not negative.
        let later = rfc3339(c.now() + Duration::from_secs(60));
        assert_eq!(age(&later, c.now()), Some(Duration::ZERO));
    }
}
