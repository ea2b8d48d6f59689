//! Sleeping and waking, told to the PRs: the forge side of [`SleepReport`], which `serve`
//! hands the edge. A preview's key names its forge; a preview of no configured forge (the
//! CLI's) or without a PR is told nothing, and a preview without a PR gets only the
//! failure status of a failed wake. Nothing here decides when a preview sleeps or touches
//! Docker; a forge failure is the reporter's to log, never the visitor's.

use std::collections::HashMap;

use super::report::{Reporter, Target};
use super::{ForgeKind, Repo};
use crate::engine::{BoxFuture, DeployFailure, PreviewState, SleepReport};

/// The reporter of each configured forge.
#[derive(Clone, Default)]
pub struct SleepReports {
    reporters: HashMap<ForgeKind, Reporter>,
}

impl SleepReports {
    /// The reporters `reporter` gives for each forge it knows.
    pub fn new(reporter: impl Fn(ForgeKind) -> Option<Reporter>) -> SleepReports {
        SleepReports {
            reporters: ForgeKind::ALL
                .into_iter()
                .filter_map(|k| Some((k, reporter(k)?)))
                .collect(),
        }
    }

    /// The reporter and repository of `state`, when a configured forge holds it.
    fn of(&self, state: &PreviewState) -> Option<(&Reporter, Repo)> {
        let reporter = self.reporters.get(&ForgeKind::parse(&state.key.forge)?)?;
        Some((reporter, Repo::parse(&state.key.repo)?))
    }
}

impl SleepReport for SleepReports {
    fn asleep(&self, state: PreviewState) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let (Some((reporter, repo)), Some(pr)) = (self.of(&state), state.pr) {
                let since = state.asleep.as_deref().unwrap_or_default();
                reporter.sleep_line(&repo, pr, Some(since)).await;
            }
        })
    }

    fn awake(&self, state: PreviewState) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let (Some((reporter, repo)), Some(pr)) = (self.of(&state), state.pr) {
                reporter.sleep_line(&repo, pr, None).await;
            }
        })
    }

    fn wake_failed(&self, state: PreviewState, failure: DeployFailure) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (Some((reporter, repo)), Some(sha)) = (self.of(&state), state.sha.clone()) else {
                return;
            };
            let target = Target {
                repo,
                pr: state.pr,
                branch: state.key.branch.clone(),
                sha,
            };
            reporter.wake_failed(&target, &failure).await;
        })
    }
}
