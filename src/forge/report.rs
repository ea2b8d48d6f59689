//! The reporter: turns a worker's progress into forge calls (commit status, the preview's
//! environment as the forge shows one, the sticky comment, reactions). A forge failure here is logged and counted and
//! then dropped: it must never fail, stop or undo the work on the Docker side, so no method
//! returns an error.

use std::sync::Arc;

use crate::engine::{DeployFailure, Deployed, PreviewState};
use crate::forge::owed::{Owed, OwedReports, StatusReport};
use crate::forge::{CommitState, EnvironmentState, Forge, ForgeResult, Reaction, Repo, comment};
use crate::ids::CommitSha;
use crate::metrics::Metrics;

/// Where a deployment is reported: the commit, and the pull request when there is one.
#[derive(Debug, Clone)]
pub struct Target {
    pub repo: Repo,
    pub pr: Option<u64>,
    pub branch: String,
    pub sha: CommitSha,
}

impl Target {
    pub fn environment(&self) -> String {
        environment(&self.branch)
    }
}

/// The environment of a branch's preview (GitHub's deployment environment, GitLab's
/// environment).
pub fn environment(branch: &str) -> String {
    format!("preview/{branch}")
}

#[derive(Clone)]
pub struct Reporter {
    forge: Arc<dyn Forge>,
    metrics: Metrics,
    /// Final reports a forge failure kept from the PR, said again by `resend_owed`.
    owed: OwedReports,
}

impl Reporter {
    pub fn new(forge: Arc<dyn Forge>, metrics: Metrics) -> Reporter {
        Reporter {
            forge,
            metrics,
            owed: OwedReports::default(),
        }
    }

    pub fn forge(&self) -> &Arc<dyn Forge> {
        &self.forge
    }

    fn log<T>(&self, call: &'static str, r: ForgeResult<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(forge = self.forge.name(), call, error = %e, "report to the forge failed");
                self.metrics.forge_error(call);
                None
            }
        }
    }

    /// As `log`, counted under the forge's own name of the call that failed (an environment
    /// call is one or several requests, different on each forge).
    fn log_env<T>(&self, fallback: &'static str, r: ForgeResult<T>) -> Option<T> {
        let call = r.as_ref().err().and_then(|e| e.call()).unwrap_or(fallback);
        self.log(call, r)
    }

    /// The environment's deployment `started` is in `state`.
    async fn environment(
        &self,
        t: &Target,
        started: Option<u64>,
        state: EnvironmentState,
        description: &str,
        url: Option<&str>,
    ) {
        let Some(id) = started else { return };
        let r = self
            .forge
            .environment_state(
                &t.repo,
                &t.sha,
                &t.environment(),
                id,
                state,
                description,
                url,
            )
            .await;
        self.log_env("environment-state", r);
    }

    /// A deployment starts: pending status, the environment in progress, the comment says so.
    /// Returns the environment's deployment id when the forge made one.
    pub async fn building(&self, t: &Target) -> Option<u64> {
        let f = &self.forge;
        let r = f
            .commit_status(
                &t.repo,
                &t.sha,
                CommitState::Pending,
                comment::STATUS_BUILDING,
                None,
            )
            .await;
        self.log("commit-status", r);
        let r = f
            .environment_started(&t.repo, &t.sha, &t.environment(), comment::STATUS_BUILDING)
            .await;
        let deployment = self.log_env("environment-started", r).flatten();
        self.environment(
            t,
            deployment,
            EnvironmentState::InProgress,
            comment::STATUS_BUILDING,
            None,
        )
        .await;
        if let Some(pr) = t.pr {
            let body = comment::building(&t.repo, pr, &t.sha);
            self.sticky(&t.repo, pr, &body).await;
        }
        deployment
    }

    pub async fn ready(&self, t: &Target, deployment: Option<u64>, d: &Deployed) {
        let url = d.state.url.as_str();
        let owed = Owed {
            repo: t.repo.clone(),
            status: Some(StatusReport {
                sha: t.sha.clone(),
                state: CommitState::Success,
                description: comment::STATUS_READY.to_owned(),
                url: Some(url.to_owned()),
            }),
            comment: t.pr.map(|pr| (pr, comment::ready(&t.repo, pr, d))),
        };
        let status = self.say_status(&owed).await;
        self.environment(
            t,
            deployment,
            EnvironmentState::Ready,
            comment::STATUS_READY,
            Some(url),
        )
        .await;
        self.last_word(&t.branch, owed, status).await;
    }

    pub async fn failed(&self, t: &Target, deployment: Option<u64>, failure: &DeployFailure) {
        let line = comment::status_failed(failure);
        let body =
            t.pr.map(|pr| (pr, comment::failed(&t.repo, pr, &t.sha, failure)));
        self.failure(t, deployment, line, body).await;
    }

    /// A sleeping preview did not wake: reported as a failed deployment is (failure status,
    /// the comment with the service, the reason and the log tail), in words that say it was
    /// the wake. No environment deployment of its own: the one that made it stays.
    pub async fn wake_failed(&self, t: &Target, failure: &DeployFailure) {
        let line = comment::status_wake_failed(failure);
        let body =
            t.pr.map(|pr| (pr, comment::wake_failed(&t.repo, pr, &t.sha, failure)));
        self.failure(t, None, line, body).await;
    }

    /// Failure status `line`, the environment failed, and the sticky comment `body`.
    async fn failure(
        &self,
        t: &Target,
        deployment: Option<u64>,
        line: String,
        body: Option<(u64, String)>,
    ) {
        let owed = Owed {
            repo: t.repo.clone(),
            comment: body,
            status: Some(StatusReport {
                sha: t.sha.clone(),
                state: CommitState::Failure,
                description: line.clone(),
                url: None,
            }),
        };
        let status = self.say_status(&owed).await;
        self.environment(t, deployment, EnvironmentState::Failed, &line, None)
            .await;
        self.last_word(&t.branch, owed, status).await;
    }

    /// The preview of `pr` went to sleep (`since`, RFC 3339) or woke (`None`): only the sticky
    /// comment's status line changes, and only on a ready preview's comment. The commit status
    /// stays `success`: its URL works.
    pub async fn sleep_line(&self, repo: &Repo, pr: u64, since: Option<&str>) {
        let marker = comment::marker(repo, pr);
        let r = self.forge.find_comment(repo, pr, &marker).await;
        let Some(Some(body)) = self.log("find-comment", r) else {
            return;
        };
        let changed = match since {
            Some(since) => comment::sleeping(&body, since),
            None => comment::woken(&body),
        };
        if let Some(changed) = changed.filter(|c| *c != body) {
            self.sticky(repo, pr, &changed).await;
        }
    }

    /// The end of a preview's final report, its status already sent (`status`: delivered):
    /// its sticky comment. When either was not delivered, the report is owed, and said again
    /// by `resend_owed`.
    async fn last_word(&self, branch: &str, owed: Owed, status: bool) {
        if self.say_comment(&owed).await && status {
            self.owed.delivered(&owed.repo, branch);
        } else {
            self.owed.owe(branch, owed);
        }
    }

    /// Sends `owed`'s status and comment; whether both were delivered.
    async fn say(&self, owed: &Owed) -> bool {
        let status = self.say_status(owed).await;
        self.say_comment(owed).await && status
    }

    /// Whether `owed`'s status (if it has one) was delivered.
    async fn say_status(&self, owed: &Owed) -> bool {
        match &owed.status {
            Some(s) => {
                let r = self
                    .forge
                    .commit_status(
                        &owed.repo,
                        &s.sha,
                        s.state,
                        &s.description,
                        s.url.as_deref(),
                    )
                    .await;
                self.log("commit-status", r).is_some()
            }
            None => true,
        }
    }

    /// Whether `owed`'s comment (if it has one) was delivered.
    async fn say_comment(&self, owed: &Owed) -> bool {
        match &owed.comment {
            Some((pr, body)) => self.sticky(&owed.repo, *pr, body).await,
            None => true,
        }
    }

    /// Says again the final reports a forge failure kept from their PRs (the reconciler
    /// calls it at each pass): once the forge answers, each PR ends with its true status.
    pub async fn resend_owed(&self) {
        for (branch, ticket, owed) in self.owed.pending() {
            if self.say(&owed).await {
                tracing::info!(repo = %owed.repo, branch = %branch, "an undelivered report was delivered");
                self.owed.settle(&owed.repo, &branch, ticket);
            }
        }
    }

    /// A newer intent replaced this one. `by` is a short sha or "a stop request".
    pub async fn superseded(&self, t: &Target, deployment: Option<u64>, by: &str) {
        let line = comment::status_superseded(by);
        let f = &self.forge;
        let r = f
            .commit_status(&t.repo, &t.sha, CommitState::Error, &line, None)
            .await;
        self.log("commit-status", r);
        self.environment(t, deployment, EnvironmentState::Error, &line, None)
            .await;
    }

    /// The preview was torn down: the forge stops showing its environment, the comment says
    /// why.
    pub async fn removed(
        &self,
        repo: &Repo,
        pr: Option<u64>,
        branch: &str,
        why: &comment::Removal,
    ) {
        let r = self
            .forge
            .environment_gone(repo, &environment(branch), why.description())
            .await;
        self.log_env("environment-gone", r);
        let owed = Owed {
            repo: repo.clone(),
            status: None,
            comment: pr.map(|pr| (pr, comment::removed(repo, pr, why))),
        };
        self.last_word(branch, owed, true).await;
    }

    pub async fn status_reply(&self, repo: &Repo, number: u64, state: Option<&PreviewState>) {
        self.reply(repo, number, &comment::status_reply(state))
            .await;
    }

    pub async fn reply(&self, repo: &Repo, number: u64, body: &str) {
        let r = self.forge.comment(repo, number, body).await;
        self.log("create-comment", r);
    }

    pub async fn react(&self, repo: &Repo, number: u64, comment_id: u64, reaction: Reaction) {
        let r = self.forge.react(repo, number, comment_id, reaction).await;
        self.log("create-reaction", r);
    }

    /// Whether the comment was delivered.
    async fn sticky(&self, repo: &Repo, pr: u64, body: &str) -> bool {
        let marker = comment::marker(repo, pr);
        let r = self.forge.upsert_comment(repo, pr, &marker, body).await;
        self.log("sticky-comment", r).is_some()
    }
}
