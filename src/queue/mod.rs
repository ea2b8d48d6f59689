//! The work queue: one worker per preview key (forge, repository, branch), intents for a key run in
//! order, a newer deploy or stop cancels an older deploy still queued or running (reported as
//! `error` "superseded by `<short sha>`"), and different keys run in parallel up to a limit.
//! What a worker does with one intent (permission, reading the PR back, the engine, the
//! reports) is `worker.rs`'s; this file only decides which intent runs when, and never talks
//! to the forge or the engine itself. `submit` never waits for work.
//!
//! Memory is bounded: a deploy that a newer deploy or stop of its key supersedes before it
//! started is dropped from its key's queue at once (what is owed to the forge about it is one
//! short notice per commit), and `try_submit` refuses an intent once `max_queued` intents are
//! waiting or running, so a flood of deliveries meets a 503, not a growing heap.

mod permissions;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::DEFAULT_MAX_QUEUED;
use crate::engine::{PreviewEngine, PreviewKey};
use crate::forge::report::{Reporter, Target};
use crate::forge::{ForgeKind, Forges};
use crate::intent::{Action, Intent, Policies, Subject};
use crate::metrics::Metrics;
use worker::{Control, Job, Worker};

/// Superseded notices kept per key; older ones are only logged.
const NOTICES_PER_KEY: usize = 8;

#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Keys worked on at once.
    pub parallel: usize,
    /// How long a collaborator's permission is trusted.
    pub permission_ttl: Duration,
    /// Intents queued or running beyond which `try_submit` refuses more.
    pub max_queued: usize,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            parallel: 2,
            permission_ttl: Duration::from_secs(60),
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }
}

/// `try_submit` refused an intent: `limit` intents are already queued or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the queue is full ({limit} intents waiting or running); try again later")]
pub struct QueueFull {
    pub limit: usize,
}

/// Cheap to clone; every clone feeds the same workers.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    worker: Worker,
    metrics: Metrics,
    keys: Mutex<HashMap<PreviewKey, KeyState>>,
    /// Intents accepted and not finished: queued, being resolved, or running.
    total: AtomicUsize,
    options: QueueOptions,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// A key's work; present while its worker lives (so a key in the map is busy).
#[derive(Default)]
struct KeyState {
    jobs: VecDeque<Job>,
    /// Deploys of this key started, or commands queued: a newer deploy or stop cancels them.
    deploys: Vec<Arc<Control>>,
    /// Deploys dropped before they started, to be reported superseded by the worker.
    notices: Vec<Notice>,
}

struct Notice {
    forge: ForgeKind,
    target: Target,
    by: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What "superseded by ..." says for a newer intent.
fn superseder(intent: &Intent) -> String {
    match (&intent.action, &intent.sha) {
        (Action::Deploy, Some(sha)) => sha.short().to_owned(),
        (Action::Deploy, None) => "a newer request".to_owned(),
        _ => "a stop request".to_owned(),
    }
}

impl Queue {
    /// Works for the forges that are in both `forges` and `policies`.
    pub fn new(
        engine: Arc<dyn PreviewEngine>,
        forges: &Forges,
        policies: &Policies,
        metrics: Metrics,
        options: QueueOptions,
        shutdown: CancellationToken,
    ) -> Queue {
        Queue {
            inner: Arc::new(Inner {
                worker: Worker::new(
                    engine,
                    forges,
                    policies,
                    metrics.clone(),
                    options.parallel,
                    options.permission_ttl,
                    shutdown.clone(),
                ),
                metrics,
                keys: Mutex::new(HashMap::new()),
                total: AtomicUsize::new(0),
                options,
                tracker: TaskTracker::new(),
                shutdown,
            }),
        }
    }

    /// Queues `intent` and returns at once, however many intents wait (the reconciler's
    /// own, bounded by the open pull requests). Deliveries go through `try_submit`.
    pub fn submit(&self, intent: Intent) {
        let _ = self.inner.clone().admit(intent, usize::MAX, None);
    }

    /// Queues `intent` and returns at once, or refuses it when `max_queued` intents are
    /// queued or running already (an intent that supersedes a queued one is always taken:
    /// it does not add to the queue).
    /// `received` is when its webhook arrived: the preview's time to ready counts from there.
    pub fn try_submit(&self, intent: Intent, received: Instant) -> Result<(), QueueFull> {
        let limit = self.inner.options.max_queued.max(1);
        self.inner.clone().admit(intent, limit, Some(received))
    }

    /// Waits until every worker and report has finished (after `shutdown` was cancelled).
    pub async fn drained(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Keys with work queued or running: the reconciler leaves them to the queue, so a
    /// deployment still on its way is not mistaken for a missing preview.
    pub fn busy_keys(&self) -> std::collections::HashSet<PreviewKey> {
        lock(&self.inner.keys).keys().cloned().collect()
    }

    /// Intents queued, being resolved, or running.
    pub fn depth(&self) -> usize {
        self.inner.total.load(Ordering::SeqCst)
    }

    /// How the queue reports to `forge` (and counts failed reports), when it is configured:
    /// the reconciler reports the removals it makes itself through it too.
    pub fn reporter(&self, forge: ForgeKind) -> Option<&Reporter> {
        self.inner.worker.reporter(forge)
    }
}

impl Inner {
    fn admit(
        self: Arc<Self>,
        intent: Intent,
        limit: usize,
        received: Option<Instant>,
    ) -> Result<(), QueueFull> {
        match intent.subject.clone() {
            Subject::Branch { key, source, pr } => {
                self.enqueue(intent, key, source, pr, received, Some(limit))
            }
            Subject::PullRequest { number } => {
                self.count_one(limit)?;
                let inner = self.clone();
                self.tracker
                    .spawn(async move { inner.resolve(intent, number, received).await });
                Ok(())
            }
        }
    }

    /// Counts one more intent, unless `limit` are counted already.
    fn count_one(&self, limit: usize) -> Result<(), QueueFull> {
        self.total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                (t < limit).then_some(t + 1)
            })
            .map_err(|_| QueueFull { limit })?;
        self.metrics.queue_changed(1);
        Ok(())
    }

    /// `n` intents finished or were dropped.
    fn uncount(&self, n: usize) {
        if n > 0 {
            self.total.fetch_sub(n, Ordering::SeqCst);
            self.metrics.queue_changed(-(n as i64));
        }
    }

    /// A command names a PR; its branch comes from the forge. Already counted.
    async fn resolve(self: Arc<Self>, mut intent: Intent, number: u64, received: Option<Instant>) {
        let Some((key, source)) = self.worker.resolve(&mut intent, number).await else {
            self.uncount(1);
            return;
        };
        // Counted when it was submitted: nothing to refuse now.
        let _ = self.enqueue(intent, key, source, Some(number), received, None);
    }

    /// Puts a job on its key's queue, starting the key's worker if it has none. `limit` is
    /// `None` for an intent counted already.
    fn enqueue(
        self: &Arc<Self>,
        intent: Intent,
        key: PreviewKey,
        source: String,
        pr: Option<u64>,
        received: Option<Instant>,
        limit: Option<usize>,
    ) -> Result<(), QueueFull> {
        let supersedes = matches!(intent.action, Action::Deploy | Action::Stop);
        let mut keys = lock(&self.keys);
        // Queued deploys this intent makes pointless: dropped rather than kept until run.
        // A command's deploy stays, cancelled, so that its comment gets its reaction.
        let droppable =
            |j: &Job| j.intent.action == Action::Deploy && j.intent.comment_id.is_none();
        let dropping = match keys.get(&key) {
            Some(state) if supersedes => state.jobs.iter().filter(|j| droppable(j)).count(),
            _ => 0,
        };
        match (limit, dropping) {
            (Some(limit), 0) => self.count_one(limit)?,
            (None, 0) => {}
            // The new intent takes the place of one it drops.
            (Some(_), n) => self.uncount(n - 1),
            (None, n) => self.uncount(n),
        }
        let state = keys.entry(key.clone()).or_insert_with(|| {
            let inner = self.clone();
            let worker_key = key.clone();
            self.tracker
                .spawn(async move { inner.run_key(worker_key).await });
            KeyState::default()
        });
        if supersedes {
            let by = superseder(&intent);
            for older in state.deploys.drain(..) {
                *lock(&older.superseded_by) = Some(by.clone());
                older.cancel.cancel();
            }
            if dropping > 0 {
                let jobs = std::mem::take(&mut state.jobs);
                for job in jobs {
                    if droppable(&job) {
                        self.metrics.deploy("superseded");
                        push_notice(&mut state.notices, &job, &intent, &by);
                    } else {
                        state.jobs.push_back(job);
                    }
                }
            }
        }
        let control = Arc::new(Control {
            cancel: self.shutdown.child_token(),
            superseded_by: Mutex::new(None),
        });
        if intent.action == Action::Deploy && intent.comment_id.is_some() {
            // Cancellable while it waits; a plain deploy is dropped instead.
            state.deploys.push(control.clone());
        }
        state.jobs.push_back(Job {
            intent,
            key,
            source,
            pr,
            control,
            received,
        });
        Ok(())
    }

    /// The key's worker: carries out its jobs one after another, then ends.
    async fn run_key(self: Arc<Self>, key: PreviewKey) {
        loop {
            let (job, notices) = {
                let mut keys = lock(&self.keys);
                let Some(state) = keys.get_mut(&key) else {
                    return;
                };
                let notices = std::mem::take(&mut state.notices);
                let job = state.jobs.pop_front();
                if job.is_none() && notices.is_empty() {
                    keys.remove(&key);
                    return;
                }
                if let Some(job) = &job
                    && job.intent.action == Action::Deploy
                    && job.intent.comment_id.is_none()
                {
                    // Started: from now on a newer intent cancels it.
                    state.deploys.push(job.control.clone());
                }
                (job, notices)
            };
            for n in notices {
                if let Some(reporter) = self.worker.reporter(n.forge) {
                    reporter.superseded(&n.target, None, &n.by).await;
                }
            }
            let Some(job) = job else { continue };
            let control = job.control.clone();
            self.worker.run(job).await;
            self.uncount(1);
            if let Some(state) = lock(&self.keys).get_mut(&key) {
                state.deploys.retain(|c| !Arc::ptr_eq(c, &control));
            }
        }
    }
}

/// Owes the forge "superseded" on a deploy dropped before it started: one notice per commit,
/// none when the newer deploy is for the same commit (it reports on it itself).
fn push_notice(notices: &mut Vec<Notice>, dropped: &Job, newer: &Intent, by: &str) {
    let Some(sha) = dropped.intent.sha.clone() else {
        return;
    };
    if newer.action == Action::Deploy && newer.sha.as_ref() == Some(&sha) {
        return;
    }
    notices.retain(|n| n.target.sha != sha);
    if notices.len() >= NOTICES_PER_KEY {
        let old = notices.remove(0);
        tracing::info!(
            sha = old.target.sha.short(),
            "too many superseded commits on one branch; not reported"
        );
    }
    notices.push(Notice {
        forge: dropped.intent.forge,
        target: Target {
            repo: dropped.intent.repo.clone(),
            pr: dropped.pr,
            branch: dropped.key.branch.clone(),
            sha,
        },
        by: by.to_owned(),
    });
}
