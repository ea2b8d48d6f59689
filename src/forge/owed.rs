//! What a forge outage made previewd leave unsaid: the last final report (a preview ready,
//! failed or removed) of each preview whose status or sticky comment could not be delivered
//! after its retries. The reconciler asks the reporter to say it again at each pass, so once
//! the forge answers again the PR ends with the true status. Memory is bounded: one entry
//! per (repository, branch), newest wins, at most `CAPACITY`. Nothing here talks to a forge.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::forge::{CommitState, Repo};
use crate::ids::CommitSha;

/// Previews whose last word is kept at most; beyond, the oldest is forgotten (and logged).
const CAPACITY: usize = 1000;

/// A final report to say again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    pub repo: Repo,
    /// The commit status, when the report sets one (a removal does not).
    pub status: Option<StatusReport>,
    /// The PR and its sticky comment's body, when there is a PR.
    pub comment: Option<(u64, String)>,
}

/// A commit status as a final report sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub sha: CommitSha,
    pub state: CommitState,
    pub description: String,
    pub url: Option<String>,
}

/// Owed reports by (repository, branch), each with its ticket (newer is larger).
type ByBranch = BTreeMap<(Repo, String), (u64, Owed)>;

/// The owed reports of one forge's reporter; clones share them.
#[derive(Clone, Default)]
pub struct OwedReports {
    map: Arc<Mutex<ByBranch>>,
    next: Arc<Mutex<u64>>,
}

impl OwedReports {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByBranch> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `owed` as the last word on `branch`; returns its ticket for `settle`.
    pub fn owe(&self, branch: &str, owed: Owed) -> u64 {
        let ticket = {
            let mut n = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            *n += 1;
            *n
        };
        let mut map = self.lock();
        let key = (owed.repo.clone(), branch.to_owned());
        if !map.contains_key(&key)
            && map.len() >= CAPACITY
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
        {
            tracing::warn!(repo = %oldest.0, branch = %oldest.1, "too many undelivered reports; the oldest is dropped");
            map.remove(&oldest);
        }
        map.insert(key, (ticket, owed));
        ticket
    }

    /// A later report on `branch` was delivered whole: nothing is owed for it any more.
    pub fn delivered(&self, repo: &Repo, branch: &str) {
        self.lock().remove(&(repo.clone(), branch.to_owned()));
    }

    /// The reports owed now, with their tickets.
    pub fn pending(&self) -> Vec<(String, u64, Owed)> {
        self.lock()
            .iter()
            .map(|((_, branch), (t, o))| (branch.clone(), *t, o.clone()))
            .collect()
    }

    /// `ticket`'s report was said again: forgotten, unless a newer one took its place.
    pub fn settle(&self, repo: &Repo, branch: &str, ticket: u64) {
        let mut map = self.lock();
        let key = (repo.clone(), branch.to_owned());
        if map.get(&key).is_some_and(|(t, _)| *t == ticket) {
            map.remove(&key);
        }
    }
}
