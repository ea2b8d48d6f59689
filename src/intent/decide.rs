//! The decision on a webhook event: a pull request's action, a push or a comment becomes an
//! intent (deploy, stop, status, help) by the operator's `[triggers]`, or is ignored with a
//! reason people read on `/deliveries`. Pure and synchronous: what needs the forge (the
//! sender's permission, the PR as it is now) is marked on the intent, never checked here.

use super::{Action, Cause, Decision, Intent, Policy, Subject, pull_request_key};
use crate::engine::PreviewKey;
use crate::forge::{Actor, CommentAction, ForgeEvent, PrAction, PullRequest, Repo, comment};
use crate::ids::CommitSha;

impl Policy {
    pub fn decide(&self, event: &ForgeEvent) -> Decision {
        match event {
            ForgeEvent::Ping => Decision::Ping,
            ForgeEvent::Unsupported { event } => ignore(format!("event `{event}` is not used")),
            ForgeEvent::PullRequest {
                repo,
                sender,
                action,
                pr,
            } => self.pull_request(repo, sender, action, pr),
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
                    forge: self.forge,
                    repo: repo.clone(),
                    subject: Subject::PullRequest { number: *number },
                    action,
                    cause: Cause::Command,
                    sha: None,
                    sender: author.login.clone(),
                    sender_id: author.id,
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
        sender: &Actor,
        action: &PrAction,
        pr: &PullRequest,
    ) -> Decision {
        let (Some(head_repo), Some(key)) = (&pr.head_repo, pull_request_key(self.forge, repo, pr))
        else {
            return ignore(format!(
                "PR #{}: its head repository was deleted",
                pr.number
            ));
        };
        let intent = |action, cause, needs_permission| {
            Decision::Act(Intent {
                forge: self.forge,
                repo: repo.clone(),
                subject: Subject::Branch {
                    key: key.clone(),
                    source: self.clone_url(head_repo),
                    pr: Some(pr.number),
                },
                action,
                cause,
                sha: Some(pr.head_sha.clone()),
                sender: sender.login.clone(),
                sender_id: sender.id,
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
            PrAction::LabelsChanged { added, removed } => {
                if added.iter().any(|l| self.is_trigger_label(l)) {
                    intent(Action::Deploy, Cause::Label, true)
                } else if !removed.iter().any(|l| self.is_trigger_label(l)) {
                    ignore(format!("PR #{n}: no trigger label added or removed"))
                } else if self.has_trigger_label(&pr.labels) {
                    ignore(format!("PR #{n} still carries a trigger label"))
                } else {
                    intent(Action::Stop, Cause::Unlabeled, true)
                }
            }
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
            forge: self.forge,
            repo: repo.clone(),
            subject: Subject::Branch {
                key: PreviewKey {
                    forge: self.forge.as_str().to_owned(),
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
            sender_id: None,
            needs_permission: false,
            comment_id: None,
        })
    }
}

fn ignore(reason: impl Into<String>) -> Decision {
    Decision::Ignore(reason.into())
}

fn cap(s: &str) -> String {
    s.chars().take(100).collect()
}
