//! The manager as the queue's [`PreviewEngine`]: the webhook path drives the same code as the
//! CLI. Progress goes to the log here; the CLI shows it on the terminal instead.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::manager::{Event, Manager, Mode, UpRequest};
use crate::engine::{
    BoxFuture, DeployFailure, DeployRequest, Deployed, EngineError, PreviewEngine, PreviewKey,
    PreviewState,
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
            let up = UpRequest {
                repo: req.source,
                branch: Some(req.key.branch.clone()),
                sha: req.sha,
                pr: req.pr,
                forge: req.forge,
                mode: Mode::Preview,
                key_repo: Some(req.key.repo),
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

fn err(e: impl std::fmt::Display) -> EngineError {
    EngineError(e.to_string())
}
