//! One listener's open connections and the rule for who loses at the cap: the connection that
//! has kept previewd waiting longest with nothing in progress (half-sent headers, or idle:
//! connected or answered, with no byte of a request since) goes first; only when every connection is inside a request does the
//! oldest request go. A sender that sends its whole request at once (GitHub, a keep-alive
//! client) is always the newest in its phase, so a flood of slow connections loses to it.
//! Nothing here does I/O or reads a clock; the connection tasks act on what it decides.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where a connection is, as its deadlines see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No byte of a request yet: just accepted, or answered and kept alive.
    Idle,
    /// A request's first bytes are in; its headers are not complete yet.
    Headers,
    /// Headers in; the body is read and the handler answers.
    Request,
}

/// One open connection: its phase and since when, and how to close it from outside.
pub struct Slot {
    pub id: u64,
    pub phase: watch::Sender<(Phase, Instant)>,
    pub evict: CancellationToken,
}

#[derive(Default)]
pub struct Table {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
}

impl Table {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        // A panic while holding this lock leaves the map consistent: keep using it.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.open().len()
    }

    /// A new connection, idle (no byte of a request yet) from now.
    pub fn insert(&self) -> Arc<Slot> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            id,
            phase: watch::Sender::new((Phase::Idle, Instant::now())),
            evict: CancellationToken::new(),
        });
        self.open().insert(id, slot.clone());
        slot
    }

    pub fn remove(&self, id: u64) {
        self.open().remove(&id);
    }

    /// Takes the connection that loses at the cap out of the table (so it is not chosen twice
    /// while it closes), or `None` when the table is empty. The caller cancels its `evict`.
    pub fn evict(&self) -> Option<Arc<Slot>> {
        let mut open = self.open();
        let id = open
            .values()
            .min_by_key(|s| {
                let (phase, since) = *s.phase.borrow();
                (phase == Phase::Request, since)
            })?
            .id;
        open.remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(table: &Table, phase: Phase, ago_ms: u64) -> u64 {
        let slot = table.insert();
        let when = Instant::now() - Duration::from_millis(ago_ms);
        slot.phase.send_replace((phase, when));
        slot.id
    }

    #[test]
    fn the_oldest_connection_with_nothing_in_progress_loses_first_then_the_oldest_request() {
        let t = Table::default();
        let old_request = at(&t, Phase::Request, 9_000);
        let idle = at(&t, Phase::Idle, 3_000);
        let slow_headers = at(&t, Phase::Headers, 5_000);
        let fresh = at(&t, Phase::Headers, 0);
        let order: Vec<u64> = std::iter::from_fn(|| t.evict().map(|s| s.id)).collect();
        assert_eq!(order, [slow_headers, idle, fresh, old_request]);
        assert_eq!(t.len(), 0);
    }
}
