//! What previewd asks of a forge: the `Forge` trait, the values its calls take and give back
//! (a permission, a commit or deployment status's state, a reaction), and why a call failed
//! (`ForgeError`). A forge's module implements the trait; nothing here talks HTTP, and no
//! error may carry a token.

use crate::engine::BoxFuture;
use crate::ids::CommitSha;

use super::{PullRequest, Repo};

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
