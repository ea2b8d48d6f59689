//! The read-back rules: whether an intent still holds once its pull request is read back
//! from the forge (`Policy::still_holds`, with the reasons as `Stale`), and the two questions
//! the reconciler asks of a PR as it reads now (`wanted_preview`, `should_stop`), answered by
//! the same rules. Pure: the caller reads the PR; nothing here talks to a forge, and no other
//! module may decide these rules again.

use super::{Action, Cause, Policy, pull_request_key};
use crate::engine::PreviewKey;
use crate::forge::{PullRequest, Repo};

/// Why an intent no longer holds once its pull request is read back. `reason` is what a
/// command's reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    Closed,
    HeadRepositoryDeleted,
    BranchChanged,
    NoTriggerLabel,
    Fork,
    LabelAddedAgain,
    Reopened,
}

impl Stale {
    pub fn reason(self) -> &'static str {
        match self {
            Stale::Closed => "the PR is closed",
            Stale::HeadRepositoryDeleted => "the PR's head repository was deleted",
            Stale::BranchChanged => "the PR's branch changed",
            Stale::NoTriggerLabel => "the PR no longer carries a trigger label",
            Stale::Fork => "the PR comes from a fork",
            Stale::LabelAddedAgain => "a trigger label was added again",
            Stale::Reopened => "the PR was reopened",
        }
    }
}

impl Policy {
    /// Whether an intent about preview `key` still holds, given its pull request in `base` as
    /// read back now: a delivery may come late or twice, and the PR may have been closed,
    /// relabelled or pushed to since. The one place that says so, for the queue's worker
    /// before it acts and for the reconciler.
    pub fn still_holds(
        &self,
        action: Action,
        cause: Cause,
        key: &PreviewKey,
        base: &Repo,
        pr: &PullRequest,
    ) -> Result<(), Stale> {
        let labelled = self.has_trigger_label(&pr.labels);
        let head_key = pull_request_key(self.forge, base, pr);
        let stale = match (action, cause) {
            (Action::Deploy, _) if !pr.open => Some(Stale::Closed),
            (Action::Deploy, _) if head_key.is_none() => Some(Stale::HeadRepositoryDeleted),
            (Action::Deploy, _) if head_key.as_ref() != Some(key) => Some(Stale::BranchChanged),
            (Action::Deploy, Cause::Label | Cause::PullRequestUpdate) if !labelled => {
                Some(Stale::NoTriggerLabel)
            }
            (Action::Deploy, Cause::PullRequestUpdate) if pr.fork && !self.allow_forks => {
                Some(Stale::Fork)
            }
            (Action::Stop, Cause::Unlabeled) if pr.open && labelled => Some(Stale::LabelAddedAgain),
            (Action::Stop, Cause::Closed) if pr.open => Some(Stale::Reopened),
            _ => None,
        };
        stale.map_or(Ok(()), Err)
    }

    /// The preview a pull request in `base`, as read now, should have by its trigger labels:
    /// its head's key when it is open, carries a trigger label and its head repository still
    /// exists. The fork rule is not applied here: whether a fork's PR may start depends on
    /// who asked (a writer's label starts it), so the deploy asked for is checked again by
    /// `still_holds` with its own cause when it runs.
    pub fn wanted_preview(&self, base: &Repo, pr: &PullRequest) -> Option<PreviewKey> {
        let key = pull_request_key(self.forge, base, pr)?;
        // A trigger label's deploy is the one whose rules are the label's alone.
        self.still_holds(Action::Deploy, Cause::Label, &key, base, pr)
            .ok()?;
        Some(key)
    }

    /// Whether a PR's preview should go now that the PR reads as `pr`: it was closed.
    pub fn should_stop(&self, key: &PreviewKey, base: &Repo, pr: &PullRequest) -> bool {
        self.still_holds(Action::Stop, Cause::Closed, key, base, pr)
            .is_ok()
    }
}
