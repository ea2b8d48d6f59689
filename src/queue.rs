//! The work queue: one worker per preview key (repository, branch), intents for a key run in
//! order, a newer deploy or stop cancels an older deploy still queued or running (reported as
//! `error` "superseded by <short sha>"), and different keys run in parallel up to a limit.
//! Before acting a worker checks the sender's permission and reads the pull request back from
//! the forge, so a late or replayed delivery never deploys a closed PR or an old commit.
//! `submit` never waits for work, and a forge failure never stops the Docker side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{DeployRequest, PreviewEngine, PreviewKey};
use crate::forge::report::{Reporter, Target};
use crate::forge::{Forge, ForgeResult, Permission, PullRequest, Reaction, Repo, comment};
use crate::intent::{Action, Cause, Intent, Policy, Subject, refusal};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Keys worked on at once.
    pub parallel: usize,
    /// How long a collaborator's permission is trusted.
    pub permission_ttl: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            parallel: 2,
            permission_ttl: Duration::from_secs(60),
        }
    }
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
    keys: Mutex<HashMap<PreviewKey, KeyState>>,
    permissions: Mutex<HashMap<(String, String), (Permission, Instant)>>,
    options: QueueOptions,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

struct KeyState {
    tx: mpsc::UnboundedSender<Job>,
    pending: usize,
    /// Deploys of this key not finished yet; a newer deploy or stop cancels them.
    deploys: Vec<Arc<Control>>,
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
                keys: Mutex::new(HashMap::new()),
                permissions: Mutex::new(HashMap::new()),
                options,
                tracker: TaskTracker::new(),
                shutdown,
            }),
        }
    }

    /// Queues `intent` and returns at once.
    pub fn submit(&self, intent: Intent) {
        let inner = self.inner.clone();
        inner.metrics.queue_changed(1);
        if let Some(id) = intent.comment_id {
            let (reporter, repo) = (inner.reporter.clone(), intent.repo.clone());
            inner.tracker.spawn(async move {
                reporter.react(&repo, id, Reaction::Eyes).await;
            });
        }
        match intent.subject.clone() {
            Subject::Branch { key, source, pr } => inner.enqueue(intent, key, source, pr),
            Subject::PullRequest { number } => {
                let inner2 = inner.clone();
                inner
                    .tracker
                    .spawn(async move { inner2.resolve(intent, number).await });
            }
        }
    }

    /// Waits until every worker and report has finished (after `shutdown` was cancelled).
    pub async fn drained(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Keys with work queued or running: the reconciler leaves them to the queue, so a
    /// deployment still on its way is not mistaken for a missing preview.
    pub fn busy_keys(&self) -> std::collections::HashSet<PreviewKey> {
        lock(&self.inner.keys)
            .iter()
            .filter(|(_, k)| k.pending > 0)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Intents queued or running.
    pub fn depth(&self) -> usize {
        lock(&self.inner.keys).values().map(|k| k.pending).sum()
    }
}

impl Inner {
    /// A command names a PR; its branch comes from the forge.
    async fn resolve(self: Arc<Self>, mut intent: Intent, number: u64) {
        let pr = match self
            .reporter
            .forge()
            .pull_request(&intent.repo, number)
            .await
        {
            Ok(pr) => pr,
            Err(e) => {
                tracing::warn!(error = %e, pr = number, "cannot read the pull request");
                self.metrics.forge_error("pulls/get");
                self.done_command(&intent, false).await;
                self.metrics.queue_changed(-1);
                return;
            }
        };
        let Some(head) = pr.head_repo.clone() else {
            self.reply(
                &intent,
                number,
                &comment::refused("the PR's head repository was deleted"),
            )
            .await;
            self.done_command(&intent, false).await;
            self.metrics.queue_changed(-1);
            return;
        };
        let key = PreviewKey {
            repo: intent.repo.full_name(),
            branch: pr.head_branch.clone(),
        };
        intent.sha = Some(pr.head_sha.clone());
        let source = self.policy.clone_url(&head);
        self.enqueue(intent, key, source, Some(number));
    }

    fn enqueue(self: &Arc<Self>, intent: Intent, key: PreviewKey, source: String, pr: Option<u64>) {
        let control = Arc::new(Control {
            cancel: self.shutdown.child_token(),
            superseded_by: Mutex::new(None),
        });
        let mut keys = lock(&self.keys);
        let state = keys.entry(key.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let inner = self.clone();
            let worker_key = key.clone();
            self.tracker
                .spawn(async move { inner.worker(worker_key, rx).await });
            KeyState {
                tx,
                pending: 0,
                deploys: Vec::new(),
            }
        });
        if matches!(intent.action, Action::Deploy | Action::Stop) {
            let by = match (&intent.action, &intent.sha) {
                (Action::Deploy, Some(sha)) => sha.short().to_owned(),
                (Action::Deploy, None) => "a newer request".to_owned(),
                _ => "a stop request".to_owned(),
            };
            for older in state.deploys.drain(..) {
                *lock(&older.superseded_by) = Some(by.clone());
                older.cancel.cancel();
            }
        }
        if intent.action == Action::Deploy {
            state.deploys.push(control.clone());
        }
        state.pending += 1;
        let job = Job {
            intent,
            key,
            source,
            pr,
            control,
        };
        if state.tx.send(job).is_err() {
            // The worker is gone only when shutting down.
            state.pending -= 1;
            self.metrics.queue_changed(-1);
        }
    }

    async fn worker(self: Arc<Self>, key: PreviewKey, mut rx: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = rx.recv().await {
            let control = job.control.clone();
            self.run(job).await;
            self.metrics.queue_changed(-1);
            let mut keys = lock(&self.keys);
            if let Some(state) = keys.get_mut(&key) {
                state.deploys.retain(|c| !Arc::ptr_eq(c, &control));
                state.pending = state.pending.saturating_sub(1);
                if state.pending == 0 {
                    keys.remove(&key);
                    return;
                }
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
        let stale = match (i.action, i.cause) {
            (Action::Deploy, _) if !pr.open => Some("the PR is closed"),
            (Action::Deploy, _) if pr.head_branch != job.key.branch => {
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
                    .removed(&job.intent.repo, job.pr, &job.key.branch)
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
