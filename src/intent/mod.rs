//! The trigger policy: a forge-neutral event becomes an intent (deploy, stop, status, help)
//! by the operator's `[triggers]`, or is ignored with a reason people can read on
//! `/deliveries`. Pure and synchronous: nothing here talks to a forge or to Docker. What needs
//! the forge (the sender's permission, the PR's current state) is marked on the intent and
//! checked by the worker before it acts; whether an intent still holds once its PR is read
//! back (`Policy::still_holds`) is decided here too, for the worker and the reconciler, and
//! nowhere else. It never knows the queue that carries intents out.
//!
//! This file holds the intent's types and the compiled policy; `decide` turns an event into a
//! decision, `readback` holds the rules for a PR as read back.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::config::Triggers;
use crate::engine::PreviewKey;
use crate::forge::{ForgeKind, PullRequest, Repo, comment};
use crate::ids::CommitSha;

mod decide;
mod readback;

pub use readback::Stale;

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
    /// The forge the event came from: where the worker reads back, checks and reports.
    pub forge: ForgeKind,
    pub repo: Repo,
    pub subject: Subject,
    pub action: Action,
    pub cause: Cause,
    /// The commit the event named; the worker deploys the PR's head as read back instead.
    pub sha: Option<CommitSha>,
    pub sender: String,
    /// The sender's number on the forge, where its API names users by number (GitLab's
    /// members); `None` where the forge's event does not carry it.
    pub sender_id: Option<u64>,
    /// The sender must have write, maintain or admin permission, checked before acting.
    pub needs_permission: bool,
    /// The command's comment, for reactions.
    pub comment_id: Option<u64>,
}

/// What the receiver does with an event. One lives per delivery, moved once into the queue:
/// boxing the intent would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
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

/// `[triggers]`, compiled, as they apply to the events of one forge (`forge`, whose
/// repositories are cloned from `git_url`). The rules are the same on every forge.
#[derive(Debug, Clone)]
pub struct Policy {
    labels: Vec<String>,
    branches: GlobSet,
    pub command: String,
    pub allow_forks: bool,
    pub forge: ForgeKind,
    git_url: String,
}

impl Policy {
    pub fn new(
        triggers: &Triggers,
        forge: ForgeKind,
        git_url: &str,
    ) -> Result<Policy, PolicyError> {
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
            forge,
            git_url: git_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The same rules for the events of another forge.
    pub fn for_forge(&self, forge: ForgeKind, git_url: &str) -> Policy {
        Policy {
            forge,
            git_url: git_url.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    /// The trigger labels, in the operator's order.
    pub fn labels(&self) -> &[String] {
        &self.labels
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

    /// The repository `url` clones on this policy's forge, when it is one.
    pub fn repo_of(&self, url: &str) -> Option<Repo> {
        crate::forge::forge_path(&self.git_url, url).and_then(Repo::parse)
    }
}

/// The policy of each configured forge: the same `[triggers]`, each forge's own `git_url`.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    map: std::collections::BTreeMap<ForgeKind, Policy>,
}

impl Policies {
    /// `[triggers]` compiled once, for each of `forges` (kind and `git_url`).
    pub fn new(
        triggers: &Triggers,
        forges: &[(ForgeKind, String)],
    ) -> Result<Policies, PolicyError> {
        let mut map = std::collections::BTreeMap::new();
        let mut base: Option<Policy> = None;
        for (kind, git_url) in forges {
            let policy = match &base {
                Some(b) => b.for_forge(*kind, git_url),
                None => Policy::new(triggers, *kind, git_url)?,
            };
            base.get_or_insert_with(|| policy.clone());
            map.insert(*kind, policy);
        }
        Ok(Policies { map })
    }

    pub fn insert(&mut self, policy: Policy) {
        self.map.insert(policy.forge, policy);
    }

    pub fn get(&self, forge: ForgeKind) -> Option<&Policy> {
        self.map.get(&forge)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.map.values()
    }
}

/// The preview key of a pull request's head in `base` on `forge`; `None` when its head
/// repository was deleted (nothing to fetch).
pub fn pull_request_key(forge: ForgeKind, base: &Repo, pr: &PullRequest) -> Option<PreviewKey> {
    let head = pr.head_repo.as_ref()?;
    Some(PreviewKey::pull_request_head(
        forge.as_str(),
        &base.full_name(),
        pr.fork.then(|| head.full_name()).as_deref(),
        &pr.head_branch,
    ))
}

/// Whether a pull request's labels exempt its preview from `limits.ttl`: they carry
/// `limits.keep_label`. The one rule `serve`'s reconciler and `previewd gc` both apply.
pub fn exempt_from_ttl(pr_labels: &[String], limits: &crate::config::Limits) -> bool {
    pr_labels.contains(&limits.keep_label)
}

/// The reply when a command is not allowed.
pub fn refusal(sender: &str, permission: &str) -> String {
    comment::refused(&format!(
        "`{sender}` has `{permission}` permission here; labels and commands count only from \
         people with write, maintain or admin permission."
    ))
}
