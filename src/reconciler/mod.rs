//! The reconciler that `serve` runs: once at start, then every `interval`. It compares the
//! previews with the forge and the Docker side with its labels:
//! - a preview whose PR was closed while previewd was down is stopped (and reported, by the
//!   queue, as any stop is);
//! - an open PR that carries a trigger label but has no preview gets one (through the queue,
//!   which applies the same rules as a webhook: a fork PR needs `allow_forks`);
//!   which PRs should have a preview and which previews should go is `Policy`'s to say
//!   (`src/intent.rs`), never decided here a second time;
//! - a preview near the end of `limits.ttl` gets a warning comment, and one whose PR carries
//!   `limits.keep_label` is exempt from the ttl;
//! - a final report (ready, failed, removed) a forge outage kept from a PR is sent again;
//! - then the engine removes orphans and expired previews and reloads the routes; an expired
//!   preview's PR is told, and is not started again (as a labelled PR without a preview
//!   otherwise would be) until its head commit moves on.
//!
//! It does so on every configured forge: a preview is compared with the forge its `forge`
//! label names. Which repositories it looks at: those with previews, and those previewd has
//! cloned (its clones under `data_dir` remember their URL, which names the forge), so a PR
//! labelled while previewd was down is found too. A failed pass (forge or Docker down) is logged and retried at the next tick; it
//! never blocks the webhook path.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::engine::{
    BoxFuture, EngineError, GitCredentials, PreviewEngine, PreviewKey, PreviewState,
};
use crate::forge::{Forge, ForgeKind, ForgeResult, Forges, PullRequest, Repo};
use crate::intent::{Action, Cause, Intent, Policies, Policy, Subject, exempt_from_ttl};
use crate::queue::Queue;

mod ttl;

/// A PR to read back: the preview's index, its repository and number, and its forge.
type Read = (usize, Repo, u64, Arc<dyn Forge>);
/// What `read_back` gives: the same, with the PR as the forge answered.
type ReadBack = (usize, Repo, u64, ForgeResult<PullRequest>, Arc<dyn Forge>);

/// How often the periodic pass runs unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// How many PRs a pass reads from the forge at once: well under GitHub's secondary rate
/// limit on concurrent requests (100), enough to hide the round trips.
const FORGE_READS: usize = 8;

pub struct Reconciler {
    pub engine: Arc<dyn PreviewEngine>,
    pub forges: Forges,
    pub queue: Queue,
    pub config: Config,
    /// The trigger rules, per forge: which PRs should have a preview, which previews should go.
    pub policies: Policies,
    /// Tokens for asking a forge's git server whether a branch still exists.
    git: Arc<dyn GitCredentials>,
    /// Warnings already given, by (forge, repository, PR, the times the ttl counts from): a cache, so a
    /// restart costs at most one more (identical) edit of the warning comment.
    warned: Mutex<HashSet<(String, String, u64, String)>>,
    /// "Now" for a preview's age against `limits.ttl`: the engine's clock.
    clock: SharedClock,
    /// The previews the last pass found kept by `limits.keep_label`, for the status page.
    kept: Kept,
}

/// Previews exempt from `limits.ttl` by their PR's keep label, as the reconciler last read
/// the forges: a cache the status page reads, rebuilt by every pass.
pub type Kept = Arc<Mutex<HashSet<PreviewKey>>>;

/// What one pass did, for the log and the tests.
#[derive(Debug, Default)]
pub struct Pass {
    pub stopped: Vec<PreviewKey>,
    pub started: Vec<(String, u64)>,
    pub warned: Vec<(String, u64)>,
    pub kept: Vec<PreviewKey>,
    /// Previews whose PR could not be read (the forge down): nothing is changed for them, not
    /// even their expiry, as `previewd gc` does.
    pub unread: Vec<PreviewKey>,
    pub expired: Vec<PreviewKey>,
    /// Labelled PRs without a preview because it expired at their head commit: they wait for
    /// a push or a command, not for the next pass.
    pub left_expired: Vec<(String, u64)>,
    pub orphans: usize,
}

impl Reconciler {
    /// Compares previews with the forges in both `forges` and `policies`; previews of other
    /// forges are left as they are.
    pub fn new(
        engine: Arc<dyn PreviewEngine>,
        forges: Forges,
        queue: Queue,
        config: Config,
        policies: Policies,
    ) -> Reconciler {
        Reconciler {
            git: crate::forge::git_credentials(&config),
            engine,
            forges,
            queue,
            config,
            policies,
            warned: Mutex::default(),
            clock: Arc::new(SystemClock),
            kept: Kept::default(),
        }
    }

    /// Each pass writes the previews it found kept into `kept`.
    pub fn with_kept(mut self, kept: Kept) -> Reconciler {
        self.kept = kept;
        self
    }

    /// Ages follow `clock` (the engine's) instead of the system's.
    pub fn with_clock(mut self, clock: SharedClock) -> Reconciler {
        self.clock = clock;
        self
    }

    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut startup = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.pass(startup).await {
                Ok(p) => {
                    tracing::debug!(?p, startup, "reconciled");
                    // The start-up pass is retried until it succeeds: it is the one that may
                    // remove leftovers at once.
                    startup = false;
                }
                Err(e) => tracing::warn!(error = %e, startup, "reconcile failed; retrying later"),
            }
        }
    }

    /// The forge a preview's key names and its policy, when that forge is configured.
    fn side(&self, key: &PreviewKey) -> Option<(&Arc<dyn Forge>, &Policy)> {
        let kind = ForgeKind::parse(&key.forge)?;
        Some((self.forges.get(kind)?, self.policies.get(kind)?))
    }

    /// One pass: the forges' view of existing previews, the engine's own reconcile, then
    /// previews that should exist and do not.
    pub async fn pass(&self, startup: bool) -> Result<Pass, EngineError> {
        let mut out = Pass::default();
        // Reports an outage kept from their PRs, said again now that the forge may answer.
        for (kind, _) in self.forges.iter() {
            if let Some(reporter) = self.queue.reporter(kind) {
                reporter.resend_owed().await;
            }
        }
        let previews = self.engine.list().await?;
        for p in previews
            .iter()
            .filter(|p| p.pr.is_none() && !p.key.branch.is_empty())
        {
            let Some((forge, policy)) = self.side(&p.key) else {
                continue;
            };
            if self.branch_deleted(forge, policy, p).await {
                let Some(repo) = Repo::parse(&p.key.repo) else {
                    continue;
                };
                self.queue.submit(Intent {
                    forge: policy.forge,
                    repo: repo.clone(),
                    subject: Subject::Branch {
                        key: p.key.clone(),
                        source: policy.clone_url(&repo),
                        pr: None,
                    },
                    action: Action::Stop,
                    cause: Cause::BranchDeleted,
                    sha: None,
                    sender: "previewd".into(),
                    sender_id: None,
                    needs_permission: false,
                    comment_id: None,
                });
                out.stopped.push(p.key.clone());
            }
        }
        // The PRs are read a few at a time: one after another, a start-up pass with 50
        // previews waited for 50 round trips in a row.
        let ours: Vec<Read> = previews
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let (forge, _) = self.side(&p.key)?;
                Some((i, Repo::parse(&p.key.repo)?, p.pr?, forge.clone()))
            })
            .collect();
        // Boxed before the stream: a stream of `read_back`'s futures trips the compiler's
        // check that `run`'s future is `Send` (rust-lang/rust#102211).
        let jobs: Vec<BoxFuture<'static, ReadBack>> = ours
            .into_iter()
            .map(|r| Box::pin(read_back(r)) as BoxFuture<'static, ReadBack>)
            .collect();
        let read: Vec<ReadBack> = futures_util::stream::iter(jobs)
            .buffered(FORGE_READS)
            .collect()
            .await;
        for (i, repo, number, pr, forge) in read {
            let p = &previews[i];
            let Some((_, policy)) = self.side(&p.key) else {
                continue;
            };
            let pr = match pr {
                Ok(pr) => pr,
                Err(e) => {
                    // The forge is down or the PR unreadable: change nothing for it. Its keep
                    // label cannot be read either, so it is not expired: a forge outage must
                    // not remove previews.
                    tracing::warn!(repo = %repo, pr = number, error = %e, "reconcile: cannot read PR");
                    out.unread.push(p.key.clone());
                    continue;
                }
            };
            if policy.should_stop(&p.key, &repo, &pr) {
                self.queue.submit(intent(
                    policy.forge,
                    &repo,
                    number,
                    Action::Stop,
                    Cause::Closed,
                ));
                out.stopped.push(p.key.clone());
                continue;
            }
            if exempt_from_ttl(&pr.labels, &self.config.limits) {
                out.kept.push(p.key.clone());
                continue;
            }
            if self.warn_if_expiring(&forge, &repo, number, p).await {
                out.warned.push((repo.full_name(), number));
            }
        }

        if let Ok(mut kept) = self.kept.lock() {
            *kept = out.kept.iter().cloned().collect();
        }
        // Previews just handed to the queue to stop are left to it, not expired here as well.
        let exempt: Vec<PreviewKey> = (out.kept.iter().chain(&out.stopped).chain(&out.unread))
            .cloned()
            .collect();
        let summary = self.engine.clean_up(startup, exempt).await?;
        out.expired = summary.expired;
        out.orphans = summary.orphans;
        for key in &out.expired {
            self.report_expired(key, &previews).await;
        }
        // New deployments are queued only after the engine has cleaned up, so nothing a
        // previous process left behind is mistaken for them.
        // A preview counts as present when it exists or the queue is working on its key (a
        // deployment on its way has no containers yet).
        // Listed again after the cleanup: a preview a killed process left half-made (staging
        // containers, no live generation) was just removed and must be deployed again.
        let remaining = self.engine.list().await?;
        let have: HashSet<PreviewKey> = remaining
            .iter()
            .map(|p| p.key.clone())
            .chain(self.queue.busy_keys())
            .collect();
        for (kind, repo) in self.repositories(&previews).await {
            let (Some(forge), Some(policy)) = (self.forges.get(kind), self.policies.get(kind))
            else {
                continue;
            };
            let open = match forge.open_pull_requests(&repo).await {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!(repo = %repo, error = %e, "reconcile: cannot list PRs");
                    continue;
                }
            };
            for pr in open {
                let (Some(head), Some(key)) =
                    (pr.head_repo.as_ref(), policy.wanted_preview(&repo, &pr))
                else {
                    continue;
                };
                let missing = !have.contains(&key);
                if missing && self.expired_at_head(forge, &repo, &pr).await {
                    out.left_expired.push((repo.full_name(), pr.number));
                    continue;
                }
                if missing {
                    // As if the PR had just been updated: the queue re-reads it and applies the
                    // fork rule, so a fork PR starts here only with `allow_forks`. The key is
                    // given at once, so the next pass sees the queue busy with it.
                    self.queue.submit(Intent {
                        forge: kind,
                        repo: repo.clone(),
                        subject: Subject::Branch {
                            key,
                            source: policy.clone_url(head),
                            pr: Some(pr.number),
                        },
                        action: Action::Deploy,
                        cause: Cause::PullRequestUpdate,
                        sha: Some(pr.head_sha.clone()),
                        sender: "previewd".into(),
                        sender_id: None,
                        needs_permission: false,
                        comment_id: None,
                    });
                    out.started.push((repo.full_name(), pr.number));
                }
            }
        }

        if !out.stopped.is_empty() || !out.started.is_empty() || !out.expired.is_empty() {
            tracing::info!(
                stopped = out.stopped.len(),
                started = out.started.len(),
                expired = out.expired.len(),
                orphans = out.orphans,
                "reconcile acted"
            );
        }
        Ok(out)
    }

    /// A branch preview (a push, no PR) whose branch is gone from the forge. Only a clear "no"
    /// from the remote counts: an unreachable forge removes nothing.
    async fn branch_deleted(
        &self,
        forge: &Arc<dyn Forge>,
        policy: &Policy,
        p: &PreviewState,
    ) -> bool {
        let Some(repo) = Repo::parse(&p.key.repo) else {
            return false;
        };
        match forge.branch_exists(&repo, &p.key.branch).await {
            Ok(Some(exists)) => return !exists,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(repo = %repo, error = %e, "reconcile: cannot read the branch");
                return false;
            }
        }
        let url = policy.clone_url(&repo);
        let token = match self.git.git_token(&url, Some(&p.key.repo)).await {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(repo = %repo, error = %e, "reconcile: no token to list branches");
                return false;
            }
        };
        match self.engine.branch_exists(&url, &p.key.branch, token).await {
            Ok(Some(exists)) => !exists,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(repo = %repo, error = %e, "reconcile: cannot list branches");
                false
            }
        }
    }

    /// Repositories to compare, with their forge: those with previews and those previewd
    /// has cloned from a configured forge's `git_url`.
    async fn repositories(&self, previews: &[PreviewState]) -> BTreeSet<(ForgeKind, Repo)> {
        let mut repos: BTreeSet<(ForgeKind, Repo)> = previews
            .iter()
            .filter_map(|p| Some((ForgeKind::parse(&p.key.forge)?, Repo::parse(&p.key.repo)?)))
            .collect();
        for url in self.engine.cloned_urls().await {
            for policy in self.policies.iter() {
                if let Some(repo) = policy.repo_of(&url) {
                    repos.insert((policy.forge, repo));
                }
            }
        }
        repos
    }
}

/// Reads a PR back from its forge, keeping what it was read for.
async fn read_back((i, repo, number, forge): Read) -> ReadBack {
    let pr = forge.pull_request(&repo, number).await;
    (i, repo, number, pr, forge)
}

fn intent(forge: ForgeKind, repo: &Repo, number: u64, action: Action, cause: Cause) -> Intent {
    Intent {
        forge,
        repo: repo.clone(),
        subject: Subject::PullRequest { number },
        action,
        cause,
        sha: None,
        sender: "previewd".into(),
        sender_id: None,
        needs_permission: false,
        comment_id: None,
    }
}
