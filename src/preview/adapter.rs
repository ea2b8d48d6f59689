//! The manager as the queue's [`PreviewEngine`]: the webhook path drives the same code as the
//! CLI. Progress goes to the log here; the CLI shows it on the terminal instead. It only
//! translates between the seam's types and the manager's and never decides policy. It lives
//! beside `manager/`, not in it, because it drives `cleanup`, which uses the manager: inside,
//! the two modules would import each other.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::docker::DockerError;
use super::gateway::GatewayError;
use super::manager::{Event, Manager, ManagerError, Mode, UpRequest};
use crate::engine::{
    BoxFuture, CleanupSummary, DeployFailure, DeployRequest, Deployed, EngineError, PreviewEngine,
    PreviewKey, PreviewState, git_branch,
};
use crate::ids::PreviewId;

impl PreviewEngine for Manager {
    fn deploy(
        &self,
        req: DeployRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Deployed, DeployFailure>> {
        Box::pin(async move {
            let key = req.key.clone();
            let progress = Arc::new(move |e: Event| {
                if let Event::Phase(p) = e {
                    tracing::info!(repo = %key.repo, branch = %key.branch, phase = %p, "deploying");
                }
            });
            // A fork head's key (`owner/name:branch`) names the fork's `branch`: fetch that,
            // keep the key.
            let fetch = git_branch(&req.key.branch).to_owned();
            let key_branch = (fetch != req.key.branch).then(|| req.key.branch.clone());
            let up = UpRequest {
                repo: req.source,
                branch: Some(fetch),
                key_branch,
                sha: req.sha,
                pr: req.pr,
                forge: req.key.forge,
                mode: Mode::Preview,
                key_repo: Some(req.key.repo),
                received: req.received,
            };
            self.up(up, progress, cancel).await
        })
    }

    fn remove(&self, key: PreviewKey) -> BoxFuture<'_, Result<Option<PreviewId>, EngineError>> {
        Box::pin(async move {
            let Some(p) = self.find(&key).await.map_err(err)? else {
                return Ok(None);
            };
            self.down(&p.id).await.map_err(err)?;
            Ok(Some(p.id))
        })
    }

    fn status(&self, key: PreviewKey) -> BoxFuture<'_, Result<Option<PreviewState>, EngineError>> {
        Box::pin(async move {
            match self.find(&key).await.map_err(err)? {
                Some(p) => Ok(Some(self.state_with_health(&p).await)),
                None => Ok(None),
            }
        })
    }

    fn clean_up(
        &self,
        startup: bool,
        keep: Vec<PreviewKey>,
    ) -> BoxFuture<'_, Result<CleanupSummary, EngineError>> {
        Box::pin(self.clean_up_pass(startup, keep))
    }

    fn cloned_urls(&self) -> BoxFuture<'_, Vec<String>> {
        let repos = self.config().instance_dir().join("repos");
        Box::pin(async move {
            tokio::task::spawn_blocking(move || super::source::cloned_urls(&repos))
                .await
                .unwrap_or_default()
        })
    }

    fn branch_exists<'a>(
        &'a self,
        url: &'a str,
        branch: &'a str,
        token: Option<secrecy::SecretString>,
    ) -> BoxFuture<'a, Result<Option<bool>, EngineError>> {
        let (url, branch) = (url.to_owned(), branch.to_owned());
        Box::pin(async move {
            // git2 blocks: off the runtime's threads.
            let listed = tokio::task::spawn_blocking(move || {
                super::source::branch_exists(&url, &branch, token.as_ref())
            })
            .await
            .map_err(|e| EngineError::Failed(Box::new(e)))?;
            listed
                .map(Some)
                .map_err(|e| EngineError::Failed(Box::new(e)))
        })
    }

    fn sleep(&self, id: PreviewId) -> BoxFuture<'_, Result<bool, EngineError>> {
        Box::pin(async move {
            match Manager::sleep(self, &id).await.map_err(err)? {
                Ok(()) => Ok(true),
                Err(why) => {
                    tracing::debug!(preview = %id, ?why, "stays awake");
                    Ok(false)
                }
            }
        })
    }

    fn wake(
        &self,
        id: PreviewId,
        answering: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> BoxFuture<'_, Result<bool, DeployFailure>> {
        Box::pin(async move { Manager::wake(self, &id, answering).await })
    }

    fn visited(&self, id: &PreviewId) {
        Manager::visited(self, id);
    }

    fn in_flight(&self) -> BoxFuture<'_, std::collections::HashSet<PreviewId>> {
        Box::pin(self.gateway().in_flight())
    }

    fn retired(&self) -> BoxFuture<'_, ()> {
        Box::pin(Manager::retired(self))
    }

    fn list_with_health(
        &self,
        probe_timeout: std::time::Duration,
    ) -> BoxFuture<'_, Result<Vec<PreviewState>, EngineError>> {
        Box::pin(async move { self.states_with_health(probe_timeout).await.map_err(err) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<PreviewState>, EngineError>> {
        Box::pin(async move {
            let observed = self.observed().await.map_err(err)?;
            Ok(observed
                .iter()
                .map(|p| self.state(p, &Default::default()))
                .collect())
        })
    }
}

impl Manager {
    async fn clean_up_pass(
        &self,
        startup: bool,
        keep: Vec<PreviewKey>,
    ) -> Result<CleanupSummary, EngineError> {
        // At start-up nothing of this process is running, so a half-made generation is a
        // leftover at once; later, give a deployment of another process (the CLI) its time.
        let limits = &self.config().limits;
        let grace = if startup {
            std::time::Duration::ZERO
        } else {
            limits.build_timeout + limits.health_timeout
        };
        let observed = self.observed().await.map_err(err)?;
        let keys: std::collections::HashMap<String, PreviewKey> = observed
            .iter()
            .map(|p| (p.id.to_string(), self.state(p, &Default::default()).key))
            .collect();
        let kept: std::collections::HashSet<PreviewId> = observed
            .iter()
            .filter(|p| keep.contains(&self.state(p, &Default::default()).key))
            .map(|p| p.id.clone())
            .collect();
        let report = super::cleanup::clean_up(self, grace, &self.busy(), &kept)
            .await
            .map_err(err)?;
        let orphans = report.containers.len()
            + report.networks.len()
            + report.images.len()
            + report.worktrees.len();
        if !report.is_empty() {
            tracing::info!(?report, "reconciled");
        }
        Ok(CleanupSummary {
            expired: report
                .expired
                .iter()
                .filter_map(|id| keys.get(id).cloned())
                .collect(),
            orphans,
        })
    }
}

fn err(e: impl Into<ManagerError>) -> EngineError {
    let e: ManagerError = e.into();
    let unavailable = matches!(
        e,
        ManagerError::Docker(DockerError::Unavailable(_))
            | ManagerError::Gateway(GatewayError::Docker(DockerError::Unavailable(_)))
    );
    if unavailable {
        EngineError::Unavailable(Box::new(e))
    } else {
        EngineError::Failed(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_docker_is_told_apart_and_the_words_are_kept() {
        let down = err(DockerError::Unavailable("connection refused".into()));
        assert!(matches!(down, EngineError::Unavailable(_)), "{down:?}");
        let gone = err(ManagerError::NotFound("abcdefghij".into()));
        assert!(matches!(gone, EngineError::Failed(_)), "{gone:?}");
        assert_eq!(gone.to_string(), "no preview has the id abcdefghij");
    }
}
