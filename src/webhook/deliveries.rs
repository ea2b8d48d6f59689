//! Recent deliveries, in bounded memory: the ids already acted on (so a redelivery is answered
//! `{"duplicate": true}` and not queued twice), and the last few deliveries with their outcome
//! and the reason nothing happened, for `GET /deliveries`. Holds no payload and no secret.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use axum::http::StatusCode;
use serde::Serialize;

/// Delivery ids remembered for de-duplication.
pub const SEEN_CAPACITY: usize = 10_000;
/// Deliveries listed on `/deliveries`.
pub const LOG_CAPACITY: usize = 200;

/// One delivery as `/deliveries` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
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
}

#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Deliveries {
    /// Claims `id`: `false` when it was seen before. The oldest ids are forgotten first.
    pub fn claim(&self, id: &str) -> bool {
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

    /// Gives a claim back (the delivery was refused, so a redelivery may be tried again).
    pub fn release(&self, id: &str) {
        let mut seen = lock(&self.seen);
        if seen.ids.remove(id) {
            seen.order.retain(|x| x != id);
        }
    }

    pub fn record(&self, r: Record) {
        match r.outcome {
            "queued" | "ignored" | "duplicate" | "ping" => {
                tracing::info!(delivery = ?r.delivery, event = ?r.event, outcome = r.outcome, reason = %r.reason, "webhook")
            }
            _ => {
                tracing::warn!(delivery = ?r.delivery, event = ?r.event, outcome = r.outcome, reason = %r.reason, "webhook refused")
            }
        }
        let mut log = lock(&self.log);
        if log.len() >= LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(r);
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
        for i in 0..SEEN_CAPACITY + 5 {
            assert!(d.claim(&i.to_string()));
        }
        assert!(d.claim("0"), "the oldest id was forgotten");
        assert!(!d.claim(&(SEEN_CAPACITY + 4).to_string()));
        assert!(lock(&d.seen).ids.len() <= SEEN_CAPACITY);
        d.release("0");
        assert!(d.claim("0"));
    }
}
