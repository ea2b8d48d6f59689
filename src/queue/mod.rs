//! The work queue: one worker per preview key (repository, branch), intents for a key run in
//! order, a newer deploy or stop cancels an older deploy still queued or running (reported as
//! `error` "superseded by <short sha>"), and different keys run in parallel up to a limit.
//! Before acting a worker checks the sender's permission and reads the pull request back from
//! the forge, so a late or replayed delivery never deploys a closed PR or an old commit.
//! `submit` never waits for work, and a forge failure never stops the Docker side.
//!
//! Memory is bounded: a deploy that a newer deploy or stop of its key supersedes before it
//! started is dropped from its key's queue at once (what is owed to the forge about it is one
//! short notice per commit), and `try_submit` refuses an intent once `max_queued` intents are
//! waiting or running, so a flood of deliveries meets a 503, not a growing heap.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{DeployRequest, PreviewEngine, PreviewKey};
use crate::forge::report::{Reporter, Target};
use crate::forge::{Forge, ForgeResult, Permission, PullRequest, Reaction, Repo, comment};
use crate::intent::{Action, Cause, Intent, Policy, Subject, pull_request_key, refusal};
use crate::metrics::Metrics;

/// The default of `limits.max_queued`.
pub const DEFAULT_MAX_QUEUED: usize = 1000;
/// Pull requests read from the forge at once to learn a command's branch.
const RESOLVERS: usize = 4;
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
    engine: Arc<dyn PreviewEngine>,
    reporter: Reporter,
    policy: Policy,
    metrics: Metrics,
    permits: Arc<Semaphore>,
    resolvers: Semaphore,
    keys: Mutex<HashMap<PreviewKey, KeyState>>,
    /// Intents accepted and not finished: queued, being resolved, or running.
    total: AtomicUsize,
    permissions: Mutex<HashMap<(String, String), (Permission, Instant)>>,
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
    target: Target,
    by: String,
}

struct Control {
    cancel: CancellationToken,
    superseded_by: Mutex<Option<String>>,
}

struct Job {
    intent: Intent,
    key: PreviewKey,
    source: String,
    pr: Option<u64>,
    control: Arc<Control>,
}

enum Recheck {
    /// Act; with the PR as read back, when there is one.
    Go(Option<PullRequest>),
    /// The intent no longer holds (closed, label gone, reopened...).
    Stale,
    /// The forge could not be read.
    Unknown,
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
    pub fn new(
        engine: Arc<dyn PreviewEngine>,
        forge: Arc<dyn Forge>,
        policy: Policy,
        metrics: Metrics,
        options: QueueOptions,
        shutdown: CancellationToken,
    ) -> Queue {
        Queue {
            inner: Arc::new(Inner {
                engine,
                reporter: Reporter::new(forge, metrics.clone()),
                policy,
                metrics,
                permits: Arc::new(Semaphore::new(options.parallel.max(1))),
                resolvers: Semaphore::new(RESOLVERS),
                keys: Mutex::new(HashMap::new()),
                total: AtomicUsize::new(0),
                permissions: Mutex::new(HashMap::new()),
                options,
                tracker: TaskTracker::new(),
                shutdown,
            }),
        }
    }

    /// Queues `intent` and returns at once, however many intents wait (the reconciler's
    /// own, bounded by the open pull requests). Deliveries go through `try_submit`.
    pub fn submit(&self, intent: Intent) {
        let _ = self.inner.clone().admit(intent, usize::MAX);
    }

    /// Queues `intent` and returns at once, or refuses it when `max_queued` intents are
    /// queued or running already (an intent that supersedes a queued one is always taken:
    /// it does not add to the queue).
    pub fn try_submit(&self, intent: Intent) -> Result<(), QueueFull> {
        let limit = self.inner.options.max_queued.max(1);
        self.inner.clone().admit(intent, limit)
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

    /// How the queue reports to the forge (and counts failed reports): the reconciler reports
    /// the removals it makes itself through it too.
    pub fn reporter(&self) -> &Reporter {
        &self.inner.reporter
    }
}

impl Inner {
    fn admit(self: Arc<Self>, intent: Intent, limit: usize) -> Result<(), QueueFull> {
        match intent.subject.clone() {
            Subject::Branch { key, source, pr } => {
                self.enqueue(intent, key, source, pr, Some(limit))
            }
            Subject::PullRequest { number } => {
                self.count_one(limit)?;
                let inner = self.clone();
                self.tracker
                    .spawn(async move { inner.resolve(intent, number).await });
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
    async fn resolve(self: Arc<Self>, mut intent: Intent, number: u64) {
        if let Some(id) = intent.comment_id {
            self.reporter.react(&intent.repo, id, Reaction::Eyes).await;
        }
        let read = {
            let _slot = self.resolvers.acquire().await.ok();
            self.reporter
                .forge()
                .pull_request(&intent.repo, number)
                .await
        };
        let pr = match read {
            Ok(pr) => pr,
            Err(e) => {
                tracing::warn!(error = %e, pr = number, "cannot read the pull request");
                self.metrics.forge_error("pulls/get");
                self.done_command(&intent, false).await;
                self.uncount(1);
                return;
            }
        };
        let (Some(head), Some(key)) = (pr.head_repo.clone(), pull_request_key(&intent.repo, &pr))
        else {
            self.reply(
                &intent,
                number,
                &comment::refused("the PR's head repository was deleted"),
            )
            .await;
            self.done_command(&intent, false).await;
            self.uncount(1);
            return;
        };
        intent.sha = Some(pr.head_sha.clone());
        let source = self.policy.clone_url(&head);
        // Counted when it was submitted: nothing to refuse now.
        let _ = self.enqueue(intent, key, source, Some(number), None);
    }

    /// Puts a job on its key's queue, starting the key's worker if it has none. `limit` is
    /// `None` for an intent counted already.
    fn enqueue(
        self: &Arc<Self>,
        intent: Intent,
        key: PreviewKey,
        source: String,
        pr: Option<u64>,
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
                .spawn(async move { inner.worker(worker_key).await });
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
        });
        Ok(())
    }

    async fn worker(self: Arc<Self>, key: PreviewKey) {
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
                self.reporter.superseded(&n.target, None, &n.by).await;
            }
            let Some(job) = job else { continue };
            let control = job.control.clone();
            self.run(job).await;
            self.uncount(1);
            if let Some(state) = lock(&self.keys).get_mut(&key) {
                state.deploys.retain(|c| !Arc::ptr_eq(c, &control));
            }
        }
    }

    async fn run(&self, job: Job) {
        let cancel = job.control.cancel.clone();
        let permit = tokio::select! {
            p = self.permits.clone().acquire_owned() => p.ok(),
            _ = cancel.cancelled() => None,
        };
        let Some(_permit) = permit else {
            if job.intent.action == Action::Deploy
                && let Some(sha) = job.intent.sha.clone()
            {
                let target = Target {
                    repo: job.intent.repo.clone(),
                    pr: job.pr,
                    branch: job.key.branch.clone(),
                    sha,
                };
                self.superseded(&job, &target, None).await;
            }
            return;
        };
        if job.intent.needs_permission && !self.permitted(&job).await {
            return;
        }
        match job.intent.action {
            Action::Deploy => self.deploy(&job).await,
            Action::Stop => self.stop(&job).await,
            Action::Status => {
                let state = self.engine.status(job.key.clone()).await;
                let number = job.pr.unwrap_or_default();
                match state {
                    Ok(s) => {
                        self.reporter
                            .status_reply(&job.intent.repo, number, s.as_ref())
                            .await;
                        self.done_command(&job.intent, true).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "engine status failed");
                        self.done_command(&job.intent, false).await;
                    }
                }
            }
            Action::Help => {
                if let Some(n) = job.pr {
                    self.reply(&job.intent, n, &comment::help(&self.policy.command))
                        .await;
                }
                self.done_command(&job.intent, false).await;
            }
        }
    }

    async fn permitted(&self, job: &Job) -> bool {
        let i = &job.intent;
        match self.permission(&i.repo, &i.sender).await {
            Ok(p) if p.may_trigger() => true,
            Ok(p) => {
                tracing::info!(sender = %i.sender, permission = p.as_str(), "refused: no write permission");
                if let Some(n) = job.pr {
                    self.reply(i, n, &refusal(&i.sender, p.as_str())).await;
                }
                self.done_command(i, false).await;
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the sender's permission; doing nothing");
                self.metrics
                    .forge_error("get-collaborator-permission-level");
                self.done_command(i, false).await;
                false
            }
        }
    }

    async fn permission(&self, repo: &Repo, user: &str) -> ForgeResult<Permission> {
        let k = (repo.full_name(), user.to_owned());
        if let Some((p, at)) = lock(&self.permissions).get(&k)
            && at.elapsed() < self.options.permission_ttl
        {
            return Ok(*p);
        }
        let p = self.reporter.forge().permission(repo, user).await?;
        let mut cache = lock(&self.permissions);
        cache.retain(|_, (_, at)| at.elapsed() < self.options.permission_ttl);
        cache.insert(k, (p, Instant::now()));
        Ok(p)
    }

    /// Reads the PR back and checks the intent still holds.
    async fn recheck(&self, job: &Job) -> Recheck {
        let Some(number) = job.pr else {
            return Recheck::Go(None);
        };
        let i = &job.intent;
        let pr = match self.reporter.forge().pull_request(&i.repo, number).await {
            Ok(pr) => pr,
            Err(e) => {
                tracing::warn!(error = %e, pr = number, "cannot read the pull request back");
                self.metrics.forge_error("pulls/get");
                if i.action == Action::Deploy {
                    self.done_command(i, false).await;
                }
                return Recheck::Unknown;
            }
        };
        let labelled = self.policy.has_trigger_label(&pr.labels);
        let head_key = pull_request_key(&i.repo, &pr);
        let stale = match (i.action, i.cause) {
            (Action::Deploy, _) if !pr.open => Some("the PR is closed"),
            (Action::Deploy, _) if head_key.is_none() => {
                Some("the PR's head repository was deleted")
            }
            (Action::Deploy, _) if head_key.as_ref() != Some(&job.key) => {
                Some("the PR's branch changed")
            }
            (Action::Deploy, Cause::Label | Cause::PullRequestUpdate) if !labelled => {
                Some("the PR no longer carries a trigger label")
            }
            (Action::Deploy, Cause::PullRequestUpdate) if pr.fork && !self.policy.allow_forks => {
                Some("the PR comes from a fork")
            }
            (Action::Stop, Cause::Unlabeled) if pr.open && labelled => {
                Some("a trigger label was added again")
            }
            (Action::Stop, Cause::Closed) if pr.open => Some("the PR was reopened"),
            _ => None,
        };
        match stale {
            Some(reason) => {
                tracing::info!(pr = number, reason, "intent no longer holds; skipped");
                if i.cause == Cause::Command {
                    self.reply(i, number, &comment::refused(reason)).await;
                    self.done_command(i, false).await;
                }
                Recheck::Stale
            }
            None => Recheck::Go(Some(pr)),
        }
    }

    async fn deploy(&self, job: &Job) {
        let Recheck::Go(pr) = self.recheck(job).await else {
            return;
        };
        let is_push = pr.is_none();
        // A PR deploys its head as read just now; a push deploys the branch's current head
        // (GitHub gives no order, so the push named may be older than the branch).
        let sha = pr.map(|p| p.head_sha).or_else(|| job.intent.sha.clone());
        let Some(sha) = sha else {
            tracing::warn!(key = ?job.key, "deploy without a commit; skipped");
            return;
        };
        let mut target = Target {
            repo: job.intent.repo.clone(),
            pr: job.pr,
            branch: job.key.branch.clone(),
            sha: sha.clone(),
        };
        if job.control.cancel.is_cancelled() {
            self.superseded(job, &target, None).await;
            return;
        }
        let deployment = self.reporter.building(&target).await;
        let req = DeployRequest {
            key: job.key.clone(),
            source: job.source.clone(),
            sha: if is_push { None } else { Some(sha) },
            pr: job.pr,
            forge: self.reporter.forge().name().to_owned(),
        };
        let result = self.engine.deploy(req, job.control.cancel.clone()).await;
        match result {
            Ok(d) => {
                if let Some(actual) = d.state.sha.clone().filter(|s| *s != target.sha) {
                    // The branch moved on since this push: the newer commit is what runs.
                    self.reporter
                        .superseded(&target, None, actual.short())
                        .await;
                    target.sha = actual;
                }
                self.metrics.deploy("ready");
                self.metrics.timings(&d.timings);
                self.reporter.ready(&target, deployment, &d).await;
                self.done_command(&job.intent, true).await;
            }
            Err(f) if f.cancelled || job.control.cancel.is_cancelled() => {
                self.superseded(job, &target, deployment).await;
            }
            Err(f) => {
                self.metrics.deploy("failed");
                self.reporter.failed(&target, deployment, &f).await;
                self.done_command(&job.intent, false).await;
            }
        }
    }

    async fn superseded(&self, job: &Job, target: &Target, deployment: Option<u64>) {
        self.metrics.deploy("superseded");
        let by = lock(&job.control.superseded_by).clone();
        let by = match by {
            Some(by) => by,
            None if self.shutdown.is_cancelled() => "previewd shutting down".to_owned(),
            None => "a newer request".to_owned(),
        };
        self.reporter.superseded(target, deployment, &by).await;
        self.done_command(&job.intent, false).await;
    }

    async fn stop(&self, job: &Job) {
        match self.recheck(job).await {
            Recheck::Go(_) => {}
            Recheck::Stale => return,
            // A closed PR is stopped even when it cannot be read back: removing is the safe side.
            Recheck::Unknown if job.intent.cause == Cause::Closed => {}
            Recheck::Unknown => return,
        }
        match self.engine.remove(job.key.clone()).await {
            Ok(Some(id)) => {
                tracing::info!(%id, key = ?job.key, "preview removed");
                self.reporter
                    .removed(
                        &job.intent.repo,
                        job.pr,
                        &job.key.branch,
                        &comment::Removal::Stopped,
                    )
                    .await;
                self.done_command(&job.intent, true).await;
            }
            Ok(None) => {
                if job.intent.cause == Cause::Command
                    && let Some(n) = job.pr
                {
                    self.reply(&job.intent, n, &comment::status_reply(None))
                        .await;
                }
                self.done_command(&job.intent, true).await;
            }
            Err(e) => {
                tracing::error!(error = %e, key = ?job.key, "engine could not remove the preview");
                self.done_command(&job.intent, false).await;
            }
        }
    }

    async fn reply(&self, intent: &Intent, number: u64, body: &str) {
        self.reporter.reply(&intent.repo, number, body).await;
    }

    /// The final reaction on a command.
    async fn done_command(&self, intent: &Intent, ok: bool) {
        if let Some(id) = intent.comment_id {
            let r = if ok {
                Reaction::Rocket
            } else {
                Reaction::Confused
            };
            self.reporter.react(&intent.repo, id, r).await;
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
        target: Target {
            repo: dropped.intent.repo.clone(),
            pr: dropped.pr,
            branch: dropped.key.branch.clone(),
            sha,
        },
        by: by.to_owned(),
    });
}
