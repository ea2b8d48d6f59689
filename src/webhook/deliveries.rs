//! Recent deliveries, in bounded memory: the ids already acted on (so a redelivery is answered
//! `{"duplicate": true}` and not queued twice), and the last few deliveries with their outcome
//! and the reason nothing happened, for `GET /deliveries`. Holds no payload and no secret.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::Serialize;

use crate::forge::ForgeKind;

/// Delivery ids remembered for de-duplication.
pub const SEEN_CAPACITY: usize = 10_000;
/// Deliveries listed on `/deliveries`.
pub const LOG_CAPACITY: usize = 200;
/// Refused deliveries logged per second at most; the rest are counted in one line.
pub const REFUSALS_LOGGED_PER_SECOND: u64 = 10;

/// One delivery as `/deliveries` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The forge whose route the delivery came to: `github`, `gitea`, `gitlab`.
    pub forge: &'static str,
    pub delivery: Option<String>,
    pub event: Option<String>,
    pub action: Option<String>,
    pub status: u16,
    /// `queued`, `ignored`, `duplicate`, `ping`, `unauthorized`, `too_large`, `invalid`.
    pub outcome: &'static str,
    pub reason: String,
    /// RFC 3339.
    pub at: String,
}

impl Record {
    pub fn new(
        forge: ForgeKind,
        delivery: Option<String>,
        event: Option<String>,
        action: Option<String>,
        status: StatusCode,
        outcome: &'static str,
        reason: String,
    ) -> Record {
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Record {
            forge: forge.as_str(),
            delivery,
            event,
            action,
            status: status.as_u16(),
            outcome,
            reason,
            at,
        }
    }
}

#[derive(Default)]
pub struct Deliveries {
    seen: Mutex<Seen>,
    log: Mutex<VecDeque<Record>>,
    refusals: Mutex<Refusals>,
}

/// Refusals logged in the current second, and those left out.
#[derive(Default)]
struct Refusals {
    since: Option<Instant>,
    logged: u64,
    suppressed: u64,
}

#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

fn seen_key(forge: ForgeKind, id: &str) -> String {
    format!("{}:{id}", forge.as_str())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Deliveries {
    /// Claims delivery `id` of `forge`: `false` when it was seen before. Ids are the forge's
    /// own, so one forge's id never hides another's delivery. The oldest are forgotten first.
    pub fn claim(&self, forge: ForgeKind, id: &str) -> bool {
        self.claim_key(&seen_key(forge, id))
    }

    /// Gives a claim back (the delivery was refused, so a redelivery may be tried again).
    pub fn release(&self, forge: ForgeKind, id: &str) {
        self.release_key(&seen_key(forge, id))
    }

    fn claim_key(&self, id: &str) -> bool {
        let mut seen = lock(&self.seen);
        if seen.ids.contains(id) {
            return false;
        }
        if seen.order.len() >= SEEN_CAPACITY
            && let Some(old) = seen.order.pop_front()
        {
            seen.ids.remove(&old);
        }
        seen.ids.insert(id.to_owned());
        seen.order.push_back(id.to_owned());
        true
    }

    fn release_key(&self, id: &str) {
        let mut seen = lock(&self.seen);
        if seen.ids.remove(id) {
            seen.order.retain(|x| x != id);
        }
    }

    /// Logs `r` and keeps it for `/deliveries`. Only queued deliveries are logged at info
    /// (ignored ones, duplicates and pings at debug: most of a busy repository's traffic), and
    /// refusals at warn, at most `REFUSALS_LOGGED_PER_SECOND` a second: a flood of forged
    /// requests must not become a flood of synchronous log writes on the request path.
    pub fn record(&self, r: Record) {
        match r.outcome {
            "queued" => {
                tracing::info!(forge = r.forge, delivery = ?r.delivery, event = ?r.event, outcome = r.outcome, reason = %r.reason, "webhook")
            }
            "ignored" | "duplicate" | "ping" => {
                tracing::debug!(forge = r.forge, delivery = ?r.delivery, event = ?r.event, outcome = r.outcome, reason = %r.reason, "webhook")
            }
            _ => {
                if self.may_log_refusal() {
                    tracing::warn!(forge = r.forge, delivery = ?r.delivery, event = ?r.event, outcome = r.outcome, reason = %r.reason, "webhook refused")
                }
            }
        }
        let mut log = lock(&self.log);
        if log.len() >= LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(r);
    }

    fn may_log_refusal(&self) -> bool {
        let now = Instant::now();
        let mut r = lock(&self.refusals);
        if r.since
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            if r.suppressed > 0 {
                tracing::warn!(
                    suppressed = r.suppressed,
                    "more webhooks refused in the last second than logged; see /deliveries and previewd_webhooks_total"
                );
            }
            *r = Refusals {
                since: Some(now),
                logged: 0,
                suppressed: 0,
            };
        }
        if r.logged < REFUSALS_LOGGED_PER_SECOND {
            r.logged += 1;
            true
        } else {
            r.suppressed += 1;
            false
        }
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<Record> {
        lock(&self.log).iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_bounded_and_oldest_forgotten() {
        let d = Deliveries::default();
        let gh = ForgeKind::GitHub;
        for i in 0..SEEN_CAPACITY + 5 {
            assert!(d.claim(gh, &i.to_string()));
        }
        assert!(d.claim(gh, "0"), "the oldest id was forgotten");
        assert!(!d.claim(gh, &(SEEN_CAPACITY + 4).to_string()));
        assert!(lock(&d.seen).ids.len() <= SEEN_CAPACITY);
        d.release(gh, "0");
        assert!(d.claim(gh, "0"));
    }

    #[test]
    fn ids_are_per_forge() {
        let d = Deliveries::default();
        assert!(d.claim(ForgeKind::GitHub, "same"));
        assert!(d.claim(ForgeKind::Gitea, "same"), "another forge's id");
        assert!(!d.claim(ForgeKind::Gitea, "same"));
    }

    #[test]
    fn refusals_are_logged_at_most_ten_a_second() {
        let d = Deliveries::default();
        let logged = (0..100).filter(|_| d.may_log_refusal()).count();
        assert_eq!(logged as u64, REFUSALS_LOGGED_PER_SECOND);
        assert_eq!(lock(&d.refusals).suppressed, 90);
        lock(&d.refusals).since = Instant::now().checked_sub(Duration::from_secs(2));
        assert!(d.may_log_refusal(), "a new second logs again");
        assert_eq!(lock(&d.refusals).suppressed, 0);
    }
}
