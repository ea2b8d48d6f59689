//! The forge-neutral middle: the events previewd understands, and the few calls it makes back
//! to a forge (read a pull request, check a permission, report). Each forge lives in its own
//! file (`github`, later `gitea`, `gitlab`) and maps its payloads and API onto these types, so
//! the policy (`intent`) and the workers (`queue`) never see a forge's wire format.
//! Nothing here talks HTTP, and nothing here may hold or print a secret.

pub mod comment;
pub mod github;
pub mod report;
pub mod retry;

use std::sync::Arc;

use std::fmt;

use crate::engine::BoxFuture;
use crate::ids::CommitSha;

/// A repository on a forge, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl Repo {
    /// Parses `owner/name`.
    pub fn parse(full_name: &str) -> Option<Repo> {
        let (owner, name) = full_name.split_once('/')?;
        // GitHub's and Gitea's alphabet for owners and names; anything else never reaches a URL.
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 100
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && s != "."
                && s != ".."
        };
        (ok(owner) && ok(name)).then(|| Repo {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A forge previewd talks to, as the `forge` label of a preview names it (`Forge::name`).
/// A preview `previewd up` made is labelled `cli`, which names no forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForgeKind {
    GitHub,
}

impl ForgeKind {
    /// The forge a label value names; `None` for `cli` and for anything unknown.
    pub fn parse(label: &str) -> Option<ForgeKind> {
        match label {
            "github" => Some(ForgeKind::GitHub),
            _ => None,
        }
    }

    /// The label value: what [`Forge::name`] returns for this forge.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "github",
        }
    }
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub login: String,
    /// A bot account (GitHub `type: Bot`, or a `[bot]` login). Bots never command previewd.
    pub is_bot: bool,
}

/// A pull request as the forge describes it, in an event or when read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub open: bool,
    pub head_sha: CommitSha,
    pub head_branch: String,
    /// `owner/name` of the repository the head branch lives in; `None` when it was deleted.
    pub head_repo: Option<Repo>,
    /// The head lives in another repository than the base.
    pub fork: bool,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrAction {
    Opened,
    Reopened,
    Synchronize,
    /// The label that was added.
    Labeled(String),
    /// The label that was removed.
    Unlabeled(String),
    Closed {
        merged: bool,
    },
    /// Any other action (`edited`, `assigned`, ...), kept for the "ignored" reason.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentAction {
    Created,
    Edited,
    Deleted,
    Other(String),
}

/// Every event previewd reads, whatever forge sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeEvent {
    /// The forge checking the hook works.
    Ping,
    PullRequest {
        repo: Repo,
        sender: Actor,
        action: PrAction,
        pr: PullRequest,
    },
    Push {
        repo: Repo,
        sender: Actor,
        /// The full ref, `refs/heads/<branch>` or `refs/tags/<tag>`.
        git_ref: String,
        /// The new head; `None` when the ref was deleted.
        after: Option<CommitSha>,
        deleted: bool,
    },
    Comment {
        repo: Repo,
        author: Actor,
        action: CommentAction,
        /// The issue or pull request number.
        number: u64,
        on_pull_request: bool,
        comment_id: u64,
        body: String,
    },
    /// An event previewd does not act on; the name is kept for the "ignored" answer.
    Unsupported { event: String },
}

/// A collaborator's permission on a repository, as GitHub names the legacy levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Admin,
    Maintain,
    Write,
    Triage,
    Read,
    None,
}

impl Permission {
    pub fn parse(s: &str) -> Permission {
        match s {
            "admin" => Permission::Admin,
            "maintain" => Permission::Maintain,
            "write" => Permission::Write,
            "triage" => Permission::Triage,
            "read" => Permission::Read,
            _ => Permission::None,
        }
    }

    /// Labels and commands count only from people who can push.
    pub fn may_trigger(self) -> bool {
        matches!(
            self,
            Permission::Admin | Permission::Maintain | Permission::Write
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Admin => "admin",
            Permission::Maintain => "maintain",
            Permission::Write => "write",
            Permission::Triage => "triage",
            Permission::Read => "read",
            Permission::None => "none",
        }
    }
}

/// A commit status's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitState {
    Pending,
    Success,
    Failure,
    Error,
}

impl CommitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
            CommitState::Error => "error",
        }
    }
}

/// A deployment status's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    InProgress,
    Success,
    Failure,
    Error,
    Inactive,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            DeploymentState::Error => "error",
            DeploymentState::Inactive => "inactive",
        }
    }
}

/// Reactions previewd puts on a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    Eyes,
    Rocket,
    Confused,
}

impl Reaction {
    pub fn as_str(self) -> &'static str {
        match self {
            Reaction::Eyes => "eyes",
            Reaction::Rocket => "rocket",
            Reaction::Confused => "confused",
        }
    }
}

/// Why a forge call failed, after its retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForgeError {
    #[error("{call}: the forge answered {status}: {message}")]
    Status {
        call: &'static str,
        status: u16,
        message: String,
    },
    #[error("{call}: cannot reach the forge: {reason}")]
    Transport { call: &'static str, reason: String },
    #[error("{call}: unexpected answer from the forge: {reason}")]
    Decode { call: &'static str, reason: String },
    #[error("forge client setup: {0}")]
    Setup(String),
    /// previewd could not authenticate (e.g. sign a GitHub App JWT); never holds a secret.
    #[error("forge authentication: {0}")]
    Auth(String),
}

impl ForgeError {
    /// A 404 (or 410): the thing is gone, not the forge.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ForgeError::Status {
                status: 404 | 410,
                ..
            }
        )
    }
}

pub type ForgeResult<T> = Result<T, ForgeError>;

/// The calls previewd makes to a forge. Implementations retry transient failures themselves
/// (bounded) and never put a token in an error message.
pub trait Forge: Send + Sync + 'static {
    /// `github`, `gitea`, `gitlab`: recorded on the preview.
    fn name(&self) -> &'static str;

    /// The pull request as it is now (state, labels, head).
    fn pull_request(&self, repo: &Repo, number: u64) -> BoxFuture<'_, ForgeResult<PullRequest>>;

    /// The open pull requests of `repo` (the first 100), for the reconciler's comparison with
    /// the previews it runs. A forge that cannot list answers none.
    fn open_pull_requests(&self, repo: &Repo) -> BoxFuture<'_, ForgeResult<Vec<PullRequest>>> {
        let _ = repo;
        Box::pin(async { Ok(Vec::new()) })
    }

    /// `user`'s permission on `repo`.
    fn permission(&self, repo: &Repo, user: &str) -> BoxFuture<'_, ForgeResult<Permission>>;

    /// Sets the commit status (context from the config) on `sha`.
    fn commit_status(
        &self,
        repo: &Repo,
        sha: &CommitSha,
        state: CommitState,
        description: &str,
        target_url: Option<&str>,
    ) -> BoxFuture<'_, ForgeResult<()>>;

    /// Creates a transient deployment of `sha` for `environment`; returns its id.
    fn create_deployment(
        &self,
        repo: &Repo,
        sha: &CommitSha,
        environment: &str,
    ) -> BoxFuture<'_, ForgeResult<u64>>;

    /// The newest deployment for `environment`, if any.
    fn latest_deployment(
        &self,
        repo: &Repo,
        environment: &str,
    ) -> BoxFuture<'_, ForgeResult<Option<u64>>>;

    fn deployment_status(
        &self,
        repo: &Repo,
        deployment: u64,
        state: DeploymentState,
        description: &str,
        environment_url: Option<&str>,
    ) -> BoxFuture<'_, ForgeResult<()>>;

    /// Creates or edits in place the one comment on `number` whose body contains `marker`.
    fn upsert_comment(
        &self,
        repo: &Repo,
        number: u64,
        marker: &str,
        body: &str,
    ) -> BoxFuture<'_, ForgeResult<()>>;

    /// The body of the one comment on `number` whose body contains `marker`, if there is one.
    fn find_comment(
        &self,
        repo: &Repo,
        number: u64,
        marker: &str,
    ) -> BoxFuture<'_, ForgeResult<Option<String>>>;

    /// Posts a new comment (answers to commands).
    fn comment(&self, repo: &Repo, number: u64, body: &str) -> BoxFuture<'_, ForgeResult<()>>;

    fn react(
        &self,
        repo: &Repo,
        comment_id: u64,
        reaction: Reaction,
    ) -> BoxFuture<'_, ForgeResult<()>>;
}

/// `owner/name` when `url` is a repository on the forge at `git_url`; `None` for anything
/// else, which must never be sent the forge's token.
pub fn forge_path<'a>(git_url: &str, url: &'a str) -> Option<&'a str> {
    let rest = url.strip_prefix(git_url)?.strip_prefix('/')?;
    let path = rest.strip_suffix(".git").unwrap_or(rest);
    (!path.is_empty() && !path.contains("..")).then_some(path)
}

/// Git credentials of the configured forge, for the preview manager's fetches: the one place
/// that chooses the forge's implementation.
pub fn git_credentials(config: &crate::config::Config) -> Arc<dyn crate::engine::GitCredentials> {
    Arc::new(github::GitAccess::new(&config.github))
}

#[cfg(test)]
mod forge_path_tests {
    use super::forge_path;

    #[test]
    fn only_the_forges_own_urls_get_its_token() {
        let gh = "https://github.com";
        assert_eq!(forge_path(gh, "https://github.com/o/r.git"), Some("o/r"));
        assert_eq!(forge_path(gh, "https://github.com/o/r"), Some("o/r"));
        for foreign in [
            "https://github.com.evil.example/o/r.git",
            "https://evil.example/https://github.com/o/r.git",
            "http://github.com/o/r.git",
            "https://github.com",
            "https://github.com/",
            "https://github.com/../x.git",
        ] {
            assert_eq!(forge_path(gh, foreign), None, "{foreign}");
        }
    }
}
