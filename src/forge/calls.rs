//! What previewd asks of a forge: the `Forge` trait, the values its calls take and give back
//! (a permission, a commit status's or an environment's state, a reaction), and why a call
//! failed (`ForgeError`). The reporting calls say what previewd means (an environment is
//! building, ready at a URL, failed, gone); each forge says it in its own terms (GitHub:
//! deployments; GitLab: environments; Gitea: nothing beyond the status and the comment). A forge's module implements the trait; nothing here talks HTTP, and no
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

/// Where a preview's environment is, once its deployment has started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvironmentState {
    /// Being built and started.
    InProgress,
    /// Serving at its URL.
    Ready,
    /// The deployment failed.
    Failed,
    /// The deployment was superseded or broke off.
    Error,
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
    /// The name of the call that failed, when it got as far as a call.
    pub fn call(&self) -> Option<&'static str> {
        match self {
            ForgeError::Status { call, .. }
            | ForgeError::Transport { call, .. }
            | ForgeError::Decode { call, .. } => Some(call),
            ForgeError::Setup(_) | ForgeError::Auth(_) => None,
        }
    }

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

    /// The login of the user the token acts as, so that its own comments are never read as
    /// commands. `None` when the forge tells previewd's comments apart otherwise (a GitHub
    /// App's are marked as a bot's).
    fn self_user(&self) -> BoxFuture<'_, ForgeResult<Option<String>>> {
        Box::pin(async { Ok(None) })
    }

    /// The login the token acts as, for `doctor`: `self_user`, and also where the forge tells
    /// previewd's comments apart otherwise (a GitHub token's user). `None` where the
    /// credentials have no user (a GitHub App's installation tokens).
    fn token_user(&self) -> BoxFuture<'_, ForgeResult<Option<String>>> {
        self.self_user()
    }

    /// The permission previewd's own token has on `repo`, for `doctor --repo`: `None` where
    /// the forge has no such question (a GitHub App is installed on the repository or not).
    fn own_permission(&self, repo: &Repo) -> BoxFuture<'_, ForgeResult<Option<Permission>>> {
        let _ = repo;
        Box::pin(async { Ok(None) })
    }

    /// Whether `branch` exists in `repo`: `Some` when the forge answered, `None` when this
    /// forge leaves the question to git (the reconciler then asks the git server).
    fn branch_exists(&self, repo: &Repo, branch: &str) -> BoxFuture<'_, ForgeResult<Option<bool>>> {
        let _ = (repo, branch);
        Box::pin(async { Ok(None) })
    }

    /// `user`'s permission on `repo`. `user_id` is the forge's number for the user, for a
    /// forge whose API names users by number (GitLab); `None` when the event carried none.
    fn permission(
        &self,
        repo: &Repo,
        user: &str,
        user_id: Option<u64>,
    ) -> BoxFuture<'_, ForgeResult<Permission>>;

    /// Sets the commit status (context from the config) on `sha`.
    fn commit_status(
        &self,
        repo: &Repo,
        sha: &CommitSha,
        state: CommitState,
        description: &str,
        target_url: Option<&str>,
    ) -> BoxFuture<'_, ForgeResult<()>>;

    /// A deployment of `sha` to `environment` (`preview/<branch>`) starts. Returns the id
    /// the later calls about this deployment get, when the forge made something to refer to
    /// (GitHub: a deployment). A forge with no deployments or environments answers `None`.
    fn environment_started(
        &self,
        repo: &Repo,
        sha: &CommitSha,
        environment: &str,
        description: &str,
    ) -> BoxFuture<'_, ForgeResult<Option<u64>>> {
        let _ = (repo, sha, environment, description);
        Box::pin(async { Ok(None) })
    }

    /// The deployment `started` (what `environment_started` returned) of `sha` to
    /// `environment` is under way, or ended: ready at `url`, failed, or broke off.
    #[allow(clippy::too_many_arguments)]
    fn environment_state(
        &self,
        repo: &Repo,
        sha: &CommitSha,
        environment: &str,
        started: u64,
        state: EnvironmentState,
        description: &str,
        url: Option<&str>,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let _ = (repo, sha, environment, started, state, description, url);
        Box::pin(async { Ok(()) })
    }

    /// The preview of `environment` was torn down: the forge stops showing it as live.
    fn environment_gone(
        &self,
        repo: &Repo,
        environment: &str,
        description: &str,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let _ = (repo, environment, description);
        Box::pin(async { Ok(()) })
    }

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

    /// Reacts to comment `comment_id` on pull request `number` (GitLab names a note by both).
    fn react(
        &self,
        repo: &Repo,
        number: u64,
        comment_id: u64,
        reaction: Reaction,
    ) -> BoxFuture<'_, ForgeResult<()>>;
}
