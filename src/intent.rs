//! The trigger policy: a forge-neutral event becomes an intent (deploy, stop, status, help)
//! by the operator's `[triggers]`, or is ignored with a reason people can read on
//! `/deliveries`. Pure and synchronous: nothing here talks to a forge or to Docker. What needs
//! the forge (the sender's permission, the PR's current state) is marked on the intent and
//! checked by the worker before it acts; whether an intent still holds once its PR is read
//! back (`Policy::still_holds`) is decided here too, for the worker and the reconciler, and
//! nowhere else. It never knows the queue that carries intents out.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::config::Triggers;
use crate::engine::PreviewKey;
use crate::forge::{CommentAction, ForgeEvent, PrAction, PullRequest, Repo, comment};
use crate::ids::CommitSha;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start the preview, or update it to a new commit.
    Deploy,
    Stop,
    /// Reply with the preview's current state.
    Status,
    /// Reply with the list of commands.
    Help,
}

/// What caused the intent: decides what the worker re-checks against the forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A trigger label was added.
    Label,
    /// A labelled PR was opened, reopened or pushed to.
    PullRequestUpdate,
    /// A push to a matching branch (with or without a PR).
    Push,
    /// A chat-ops command.
    Command,
    /// The last trigger label was removed.
    Unlabeled,
    /// The PR was closed (merged or not).
    Closed,
    /// The branch was deleted.
    BranchDeleted,
}

/// Which preview an intent is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The branch is known from the event.
    Branch {
        key: PreviewKey,
        /// Where to fetch from.
        source: String,
        pr: Option<u64>,
    },
    /// A command on a PR: the worker reads the PR to learn its branch.
    PullRequest { number: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub repo: Repo,
    pub subject: Subject,
    pub action: Action,
    pub cause: Cause,
    /// The commit the event named; the worker deploys the PR's head as read back instead.
    pub sha: Option<CommitSha>,
    pub sender: String,
    /// The sender must have write, maintain or admin permission, checked before acting.
    pub needs_permission: bool,
    /// The command's comment, for reactions.
    pub comment_id: Option<u64>,
}

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

/// What the receiver does with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Ping,
    Ignore(String),
    Act(Intent),
}

#[derive(Debug, thiserror::Error)]
#[error("triggers.branches: {pattern:?} is not a glob: {reason}")]
pub struct PolicyError {
    pub pattern: String,
    pub reason: String,
}

/// `[triggers]`, compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    labels: Vec<String>,
    branches: GlobSet,
    pub command: String,
    pub allow_forks: bool,
    git_url: String,
}

impl Policy {
    pub fn new(triggers: &Triggers, git_url: &str) -> Result<Policy, PolicyError> {
        let mut b = GlobSetBuilder::new();
        for pattern in &triggers.branches {
            // `*` stops at `/`, as in git's refspecs; `**` crosses it.
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| PolicyError {
                    pattern: pattern.clone(),
                    reason: e.kind().to_string(),
                })?;
            b.add(glob);
        }
        let branches = b.build().map_err(|e| PolicyError {
            pattern: triggers.branches.join(", "),
            reason: e.to_string(),
        })?;
        Ok(Policy {
            labels: triggers.labels.clone(),
            branches,
            command: triggers.command.clone(),
            allow_forks: triggers.allow_forks,
            git_url: git_url.trim_end_matches('/').to_owned(),
        })
    }

    pub fn is_trigger_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }

    pub fn has_trigger_label(&self, labels: &[String]) -> bool {
        labels.iter().any(|l| self.is_trigger_label(l))
    }

    pub fn branch_matches(&self, branch: &str) -> bool {
        self.branches.is_match(branch)
    }

    /// Where a repository is cloned from.
    pub fn clone_url(&self, repo: &Repo) -> String {
        format!("{}/{}.git", self.git_url, repo.full_name())
    }

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
        let head_key = pull_request_key(base, pr);
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
        let key = pull_request_key(base, pr)?;
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

    pub fn decide(&self, event: &ForgeEvent) -> Decision {
        match event {
            ForgeEvent::Ping => Decision::Ping,
            ForgeEvent::Unsupported { event } => ignore(format!("event `{event}` is not used")),
            ForgeEvent::PullRequest {
                repo,
                sender,
                action,
                pr,
            } => self.pull_request(repo, &sender.login, action, pr),
            ForgeEvent::Push {
                repo,
                sender,
                git_ref,
                after,
                deleted,
            } => self.push(repo, &sender.login, git_ref, after.as_ref(), *deleted),
            ForgeEvent::Comment {
                repo,
                author,
                action,
                number,
                on_pull_request,
                comment_id,
                body,
            } => {
                if *action != CommentAction::Created {
                    return ignore("only new comments are read, not edited or deleted ones");
                }
                if !on_pull_request {
                    return ignore(format!("#{number} is an issue, not a pull request"));
                }
                if author.is_bot || comment::is_ours(body) {
                    return ignore(format!("comment by a bot ({})", author.login));
                }
                let Some(action) = self.command(body) else {
                    return ignore(format!("comment is not a `{}` command", self.command));
                };
                Decision::Act(Intent {
                    repo: repo.clone(),
                    subject: Subject::PullRequest { number: *number },
                    action,
                    cause: Cause::Command,
                    sha: None,
                    sender: author.login.clone(),
                    needs_permission: action != Action::Help,
                    comment_id: Some(*comment_id),
                })
            }
        }
    }

    /// Reads a command from the start of a comment's body.
    fn command(&self, body: &str) -> Option<Action> {
        let first = body.trim_start().lines().next()?;
        let mut words = first.split_whitespace();
        if words.next()? != self.command {
            return None;
        }
        Some(match words.next() {
            None => Action::Deploy,
            Some("stop") => Action::Stop,
            Some("status") => Action::Status,
            Some(_) => Action::Help,
        })
    }

    fn pull_request(
        &self,
        repo: &Repo,
        sender: &str,
        action: &PrAction,
        pr: &PullRequest,
    ) -> Decision {
        let (Some(head_repo), Some(key)) = (&pr.head_repo, pull_request_key(repo, pr)) else {
            return ignore(format!(
                "PR #{}: its head repository was deleted",
                pr.number
            ));
        };
        let intent = |action, cause, needs_permission| {
            Decision::Act(Intent {
                repo: repo.clone(),
                subject: Subject::Branch {
                    key: key.clone(),
                    source: self.clone_url(head_repo),
                    pr: Some(pr.number),
                },
                action,
                cause,
                sha: Some(pr.head_sha.clone()),
                sender: sender.to_owned(),
                needs_permission,
                comment_id: None,
            })
        };
        let n = pr.number;
        match action {
            PrAction::Closed { .. } => intent(Action::Stop, Cause::Closed, false),
            _ if !pr.open => ignore(format!("PR #{n} is closed")),
            PrAction::Labeled(label) if self.is_trigger_label(label) => {
                intent(Action::Deploy, Cause::Label, true)
            }
            PrAction::Labeled(label) => ignore(format!("label `{label}` is not a trigger label")),
            PrAction::Unlabeled(label) if !self.is_trigger_label(label) => {
                ignore(format!("label `{label}` is not a trigger label"))
            }
            PrAction::Unlabeled(_) if self.has_trigger_label(&pr.labels) => {
                ignore(format!("PR #{n} still carries a trigger label"))
            }
            PrAction::Unlabeled(_) => intent(Action::Stop, Cause::Unlabeled, true),
            PrAction::Opened | PrAction::Reopened | PrAction::Synchronize => {
                if !self.has_trigger_label(&pr.labels) {
                    ignore(format!("PR #{n} carries no trigger label"))
                } else if pr.fork && !self.allow_forks {
                    ignore(format!(
                        "PR #{n} comes from a fork: it starts only on a label or `{}` by a writer",
                        self.command
                    ))
                } else {
                    intent(Action::Deploy, Cause::PullRequestUpdate, false)
                }
            }
            PrAction::Other(a) => ignore(format!("pull_request action `{a}` is not used")),
        }
    }

    fn push(
        &self,
        repo: &Repo,
        sender: &str,
        git_ref: &str,
        after: Option<&CommitSha>,
        deleted: bool,
    ) -> Decision {
        if git_ref.starts_with("refs/tags/") {
            return ignore("tag pushes are not previewed");
        }
        let Some(branch) = git_ref.strip_prefix("refs/heads/") else {
            return ignore(format!("ref `{}` is not a branch", cap(git_ref)));
        };
        if !self.branch_matches(branch) {
            return ignore(format!(
                "branch `{}` does not match triggers.branches",
                cap(branch)
            ));
        }
        let (action, cause) = match (deleted, after) {
            (true, _) => (Action::Stop, Cause::BranchDeleted),
            (false, Some(_)) => (Action::Deploy, Cause::Push),
            (false, None) => return ignore("push without a new commit"),
        };
        Decision::Act(Intent {
            repo: repo.clone(),
            subject: Subject::Branch {
                key: PreviewKey {
                    repo: repo.full_name(),
                    branch: branch.to_owned(),
                },
                source: self.clone_url(repo),
                pr: None,
            },
            action,
            cause,
            sha: after.cloned(),
            sender: sender.to_owned(),
            needs_permission: false,
            comment_id: None,
        })
    }
}

/// The preview key of a pull request's head in `base`; `None` when its head repository was
/// deleted (nothing to fetch).
pub fn pull_request_key(base: &Repo, pr: &PullRequest) -> Option<PreviewKey> {
    let head = pr.head_repo.as_ref()?;
    Some(PreviewKey::pull_request_head(
        &base.full_name(),
        pr.fork.then(|| head.full_name()).as_deref(),
        &pr.head_branch,
    ))
}

fn ignore(reason: impl Into<String>) -> Decision {
    Decision::Ignore(reason.into())
}

fn cap(s: &str) -> String {
    s.chars().take(100).collect()
}

/// The reply when a command is not allowed.
pub fn refusal(sender: &str, permission: &str) -> String {
    comment::refused(&format!(
        "`{sender}` has `{permission}` permission here; labels and commands count only from \
         people with write, maintain or admin permission."
    ))
}
