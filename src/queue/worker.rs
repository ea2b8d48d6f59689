//! The worker: carries out one intent the queue hands it. Before acting it checks the
//! sender's permission (through the cache) and reads the pull request back from the forge, so
//! a late or replayed delivery never deploys a closed PR or an old commit; then it asks the
//! engine to deploy, remove or describe the preview, reports to the forge and reacts to the
//! command. It never orders or drops intents (that is the queue's), and a forge failure never
//! stops, fails or undoes the Docker side: it is logged, counted and the work goes on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::permissions::PermissionCache;
use crate::engine::{DeployRequest, PreviewEngine, PreviewKey};
use crate::forge::report::{Reporter, Target};
use crate::forge::{Forge, ForgeKind, Forges, PullRequest, Reaction, comment};
use crate::intent::{
    Action, Cause, Intent, Policies, Policy, Stale, Subject, pull_request_key, refusal,
};
use crate::metrics::Metrics;

/// Pull requests read from the forge at once to learn a command's branch.
const RESOLVERS: usize = 4;

/// How a newer intent stops an older deploy of its key, queued or running.
pub(super) struct Control {
    pub(super) cancel: CancellationToken,
    pub(super) superseded_by: Mutex<Option<String>>,
}

/// One intent, with the preview key it is about, ready to be carried out.
pub(super) struct Job {
    pub(super) intent: Intent,
    pub(super) key: PreviewKey,
    pub(super) source: String,
    pub(super) pr: Option<u64>,
    pub(super) control: Arc<Control>,
    /// When the webhook that asked for it arrived; `None` for the reconciler's intents.
    pub(super) received: Option<Instant>,
}

enum Recheck {
    /// Act; with the PR as read back, when there is one.
    Go(Option<PullRequest>),
    /// The intent no longer holds (closed, label gone, reopened...).
    Stale,
    /// The forge could not be read.
    Unknown,
}

/// One configured forge as the worker uses it: its calls, reports, permission cache and
/// policy.
struct Side {
    forge: Arc<dyn Forge>,
    reporter: Reporter,
    policy: Policy,
    permissions: PermissionCache,
}

pub(super) struct Worker {
    engine: Arc<dyn PreviewEngine>,
    /// By forge; an intent of a forge not here (not configured) is dropped.
    sides: BTreeMap<ForgeKind, Side>,
    metrics: Metrics,
    permits: Arc<Semaphore>,
    resolvers: Semaphore,
    shutdown: CancellationToken,
}

impl Worker {
    /// `parallel` intents are carried out at once, whatever their keys. A forge needs both
    /// its implementation in `forges` and its policy in `policies` to be worked for.
    pub(super) fn new(
        engine: Arc<dyn PreviewEngine>,
        forges: &Forges,
        policies: &Policies,
        metrics: Metrics,
        parallel: usize,
        permission_ttl: Duration,
        shutdown: CancellationToken,
    ) -> Worker {
        let sides = forges
            .iter()
            .filter_map(|(kind, forge)| {
                let side = Side {
                    reporter: Reporter::new(forge.clone(), metrics.clone()),
                    permissions: PermissionCache::new(forge.clone(), permission_ttl),
                    policy: policies.get(kind)?.clone(),
                    forge: forge.clone(),
                };
                Some((kind, side))
            })
            .collect();
        Worker {
            engine,
            sides,
            metrics,
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            resolvers: Semaphore::new(RESOLVERS),
            shutdown,
        }
    }

    /// How the queue reports to `forge`, when it is configured.
    pub(super) fn reporter(&self, forge: ForgeKind) -> Option<&Reporter> {
        self.sides.get(&forge).map(|s| &s.reporter)
    }

    fn side(&self, intent: &Intent) -> Option<&Side> {
        let side = self.sides.get(&intent.forge);
        if side.is_none() {
            tracing::warn!(forge = %intent.forge, "an intent for a forge that is not configured; dropped");
        }
        side
    }

    /// A command names a PR; its branch comes from the forge. Returns the PR's preview key and
    /// where to fetch it from, or `None` when the command ends here (its reactions given).
    pub(super) async fn resolve(
        &self,
        intent: &mut Intent,
        number: u64,
    ) -> Option<(PreviewKey, String)> {
        let side = self.side(intent)?;
        if let Some(id) = intent.comment_id {
            side.reporter
                .react(&intent.repo, number, id, Reaction::Eyes)
                .await;
        }
        let read = {
            let _slot = self.resolvers.acquire().await.ok();
            side.forge.pull_request(&intent.repo, number).await
        };
        let pr = match read {
            Ok(pr) => pr,
            Err(e) => {
                tracing::warn!(error = %e, pr = number, "cannot read the pull request");
                self.metrics.forge_error("pulls/get");
                self.done_command(side, intent, false).await;
                return None;
            }
        };
        let (Some(head), Some(key)) = (
            pr.head_repo.clone(),
            pull_request_key(intent.forge, &intent.repo, &pr),
        ) else {
            self.reply(
                side,
                intent,
                number,
                &comment::refused(Stale::HeadRepositoryDeleted.reason()),
            )
            .await;
            self.done_command(side, intent, false).await;
            return None;
        };
        intent.sha = Some(pr.head_sha.clone());
        Some((key, side.policy.clone_url(&head)))
    }

    pub(super) async fn run(&self, job: Job) {
        let Some(side) = self.side(&job.intent) else {
            return;
        };
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
                self.superseded(side, &job, &target, None).await;
            }
            return;
        };
        if job.intent.needs_permission && !self.permitted(side, &job).await {
            return;
        }
        match job.intent.action {
            Action::Deploy => self.deploy(side, &job).await,
            Action::Stop => self.stop(side, &job).await,
            Action::Status => {
                let state = self.engine.status(job.key.clone()).await;
                let number = job.pr.unwrap_or_default();
                match state {
                    Ok(s) => {
                        side.reporter
                            .status_reply(&job.intent.repo, number, s.as_ref())
                            .await;
                        self.done_command(side, &job.intent, true).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "engine status failed");
                        self.done_command(side, &job.intent, false).await;
                    }
                }
            }
            Action::Help => {
                if let Some(n) = job.pr {
                    self.reply(side, &job.intent, n, &comment::help(&side.policy.command))
                        .await;
                }
                self.done_command(side, &job.intent, false).await;
            }
        }
    }

    async fn permitted(&self, side: &Side, job: &Job) -> bool {
        let i = &job.intent;
        match side
            .permissions
            .permission(&i.repo, &i.sender, i.sender_id)
            .await
        {
            Ok(p) if p.may_trigger() => true,
            Ok(p) => {
                tracing::info!(sender = %i.sender, permission = p.as_str(), "refused: no write permission");
                if let Some(n) = job.pr {
                    self.reply(side, i, n, &refusal(&i.sender, p.as_str()))
                        .await;
                }
                self.done_command(side, i, false).await;
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the sender's permission; doing nothing");
                self.metrics
                    .forge_error("get-collaborator-permission-level");
                self.done_command(side, i, false).await;
                false
            }
        }
    }

    /// Reads the PR back and checks the intent still holds.
    async fn recheck(&self, side: &Side, job: &Job) -> Recheck {
        let Some(number) = job.pr else {
            return Recheck::Go(None);
        };
        let i = &job.intent;
        let pr = match side.forge.pull_request(&i.repo, number).await {
            Ok(pr) => pr,
            Err(e) => {
                tracing::warn!(error = %e, pr = number, "cannot read the pull request back");
                self.metrics.forge_error("pulls/get");
                if i.action == Action::Deploy {
                    self.done_command(side, i, false).await;
                }
                return Recheck::Unknown;
            }
        };
        match side
            .policy
            .still_holds(i.action, i.cause, &job.key, &i.repo, &pr)
        {
            Err(stale) => {
                let reason = stale.reason();
                tracing::info!(pr = number, reason, "intent no longer holds; skipped");
                if i.cause == Cause::Command {
                    self.reply(side, i, number, &comment::refused(reason)).await;
                    self.done_command(side, i, false).await;
                }
                Recheck::Stale
            }
            Ok(()) => Recheck::Go(Some(pr)),
        }
    }

    async fn deploy(&self, side: &Side, job: &Job) {
        let Recheck::Go(pr) = self.recheck(side, job).await else {
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
            self.superseded(side, job, &target, None).await;
            return;
        }
        let deployment = side.reporter.building(&target).await;
        let req = DeployRequest {
            key: job.key.clone(),
            source: job.source.clone(),
            sha: if is_push { None } else { Some(sha) },
            pr: job.pr,
            received: job.received,
        };
        let result = self.engine.deploy(req, job.control.cancel.clone()).await;
        match result {
            Ok(d) => {
                if let Some(actual) = d.state.sha.clone().filter(|s| *s != target.sha) {
                    // The branch moved on since this push: the newer commit is what runs.
                    side.reporter
                        .superseded(&target, None, actual.short())
                        .await;
                    target.sha = actual;
                }
                self.metrics.deploy("ready");
                self.metrics.timings(&d.timings);
                side.reporter.ready(&target, deployment, &d).await;
                self.done_command(side, &job.intent, true).await;
            }
            Err(f) if f.cancelled || job.control.cancel.is_cancelled() => {
                self.superseded(side, job, &target, deployment).await;
            }
            Err(f) => {
                self.metrics.deploy("failed");
                side.reporter.failed(&target, deployment, &f).await;
                self.done_command(side, &job.intent, false).await;
            }
        }
    }

    async fn superseded(&self, side: &Side, job: &Job, target: &Target, deployment: Option<u64>) {
        self.metrics.deploy("superseded");
        let by = job
            .control
            .superseded_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let by = match by {
            Some(by) => by,
            None if self.shutdown.is_cancelled() => "previewd shutting down".to_owned(),
            None => "a newer request".to_owned(),
        };
        side.reporter.superseded(target, deployment, &by).await;
        self.done_command(side, &job.intent, false).await;
    }

    async fn stop(&self, side: &Side, job: &Job) {
        match self.recheck(side, job).await {
            Recheck::Go(_) => {}
            Recheck::Stale => return,
            // A closed PR is stopped even when it cannot be read back: removing is the safe side.
            Recheck::Unknown if job.intent.cause == Cause::Closed => {}
            Recheck::Unknown => return,
        }
        match self.engine.remove(job.key.clone()).await {
            Ok(Some(id)) => {
                tracing::info!(%id, key = ?job.key, "preview removed");
                side.reporter
                    .removed(
                        &job.intent.repo,
                        job.pr,
                        &job.key.branch,
                        &comment::Removal::Stopped,
                    )
                    .await;
                self.done_command(side, &job.intent, true).await;
            }
            Ok(None) => {
                if job.intent.cause == Cause::Command
                    && let Some(n) = job.pr
                {
                    self.reply(side, &job.intent, n, &comment::status_reply(None))
                        .await;
                }
                self.done_command(side, &job.intent, true).await;
            }
            Err(e) => {
                tracing::error!(error = %e, key = ?job.key, "engine could not remove the preview");
                self.done_command(side, &job.intent, false).await;
            }
        }
    }

    async fn reply(&self, side: &Side, intent: &Intent, number: u64, body: &str) {
        side.reporter.reply(&intent.repo, number, body).await;
    }

    /// The final reaction on a command.
    async fn done_command(&self, side: &Side, intent: &Intent, ok: bool) {
        let number = match &intent.subject {
            Subject::PullRequest { number }
            | Subject::Branch {
                pr: Some(number), ..
            } => *number,
            Subject::Branch { pr: None, .. } => return,
        };
        if let Some(id) = intent.comment_id {
            let r = if ok {
                Reaction::Rocket
            } else {
                Reaction::Confused
            };
            side.reporter.react(&intent.repo, number, id, r).await;
        }
    }
}
