//! The seam between the forge side (webhook, queue, reporter) and the Docker side (the preview
//! manager). The queue drives a `dyn PreviewEngine`; the real manager implements it, and tests
//! use a controllable fake. Nothing here knows about GitHub or about Docker.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::ids::{CommitSha, PreviewId};

mod state;

pub use state::{PASSWORD_USER, Password, PreviewState, PreviewStatus, ServiceHealth};

/// What identifies a preview: one per (forge, repository, branch), so the same `owner/name`
/// on two forges gives two previews.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PreviewKey {
    /// The `dev.previewd.forge` label: `github`, `gitea`, `gitlab`, or `cli` for `previewd up`.
    pub forge: String,
    /// `owner/name` for a forge repository, or the canonical local path for the CLI.
    pub repo: String,
    pub branch: String,
}

impl PreviewKey {
    /// The key of a pull request's head. A head in a fork (`fork_head`, its `owner/name`) is
    /// keyed `owner/name:branch`, like GitHub's own notation for a fork's head: `:` cannot
    /// occur in a git branch name, so a fork's `patch-1` never shares a preview (its id, its
    /// URL) with the base repository's own `patch-1`, nor with another fork's.
    pub fn pull_request_head(
        forge: &str,
        base: &str,
        fork_head: Option<&str>,
        branch: &str,
    ) -> PreviewKey {
        PreviewKey {
            forge: forge.to_owned(),
            repo: base.to_owned(),
            branch: match fork_head {
                Some(head) => format!("{head}:{branch}"),
                None => branch.to_owned(),
            },
        }
    }
}

/// The git branch that a key's branch names: a fork head's `owner/name:branch` is `branch`.
pub fn git_branch(key_branch: &str) -> &str {
    key_branch
        .rsplit_once(':')
        .map_or(key_branch, |(_, branch)| branch)
}

/// Ask the engine to start a preview for `key` at `sha`, or to update the one it has.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub key: PreviewKey,
    /// Where to fetch from: a git URL (https, file://) or a local path.
    pub source: String,
    /// The commit to deploy; `None` deploys the branch's current head.
    pub sha: Option<CommitSha>,
    pub pr: Option<u64>,
    /// When the webhook that asked for it arrived: time to ready counts from there, queue
    /// wait and the PR's read-back included. `None` when no webhook asked (the reconciler).
    pub received: Option<std::time::Instant>,
}

/// Where a deployment is, for progress reports while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// From the webhook's arrival until the manager starts: waiting in the queue for the
    /// preview's earlier work or a free slot, and reading the PR back.
    Queue,
    Fetch,
    /// Reading and validating the repository's `.previewd.yml` (or compose file).
    Config,
    Build,
    Start,
    Route,
    Health,
    /// Making the healthy generation live: its containers take the live names, the routes
    /// switch to it and its public services answer on the live host. The old generation's
    /// drain and removal come after the report, outside time to ready.
    Switch,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queue => "queue",
            Phase::Fetch => "fetch",
            Phase::Config => "config",
            Phase::Build => "build",
            Phase::Start => "start",
            Phase::Route => "route",
            Phase::Health => "health",
            Phase::Switch => "switch",
        }
    }
}

/// How long each phase took; shown in the PR comment and fed to the metrics histograms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub phases: Vec<(Phase, Duration)>,
    pub total: Duration,
}

/// A deployment that reached "every public service healthy".
#[derive(Debug, Clone)]
pub struct Deployed {
    pub state: PreviewState,
    pub timings: Timings,
    /// Services replaced stop-first (they mount a named volume): each had a moment of
    /// downtime during this update.
    pub downtime: Vec<String>,
}

/// Why a deployment failed, shaped for a PR comment: the step, the service if one is to blame,
/// a one-line reason, and the tail of the relevant log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{phase} failed{}: {reason}", service.as_ref().map(|s| format!(" for service {s}")).unwrap_or_default())]
pub struct DeployFailure {
    pub phase: Phase,
    pub service: Option<String>,
    pub reason: String,
    /// Up to the last 50 lines of the build or container log.
    pub log_tail: Vec<String>,
    /// `true` when the attempt was cancelled (superseded), not broken.
    pub cancelled: bool,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who is told when a preview went to sleep, woke, or failed to wake: in `serve`, the forge
/// side (the PR's sticky comment and commit status). Forge-neutral: it gets the preview's
/// state, whose key says which forge, if any, to tell. Nothing waits on it: a visitor is
/// answered whatever the forge does.
pub trait SleepReport: Send + Sync + 'static {
    /// `state` went to sleep (its `asleep` says since when).
    fn asleep(&self, state: PreviewState) -> BoxFuture<'_, ()>;
    /// `state` woke and every public service answers.
    fn awake(&self, state: PreviewState) -> BoxFuture<'_, ()>;
    /// A wake of `state` failed, as `failure` says.
    fn wake_failed(&self, state: PreviewState, failure: DeployFailure) -> BoxFuture<'_, ()>;
}

/// The preview manager as the queue sees it. Implementations must leave nothing behind from a
/// cancelled or failed `deploy` and must keep an existing preview serving when its update
/// fails.
pub trait PreviewEngine: Send + Sync + 'static {
    /// Starts or updates the preview for `req.key`. Cancelling `cancel` aborts the attempt
    /// (build included) and cleans up what it created.
    fn deploy(
        &self,
        req: DeployRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Deployed, DeployFailure>>;

    /// Removes the preview for `key`; `Ok(None)` when there was none.
    fn remove(&self, key: PreviewKey) -> BoxFuture<'_, Result<Option<PreviewId>, EngineError>>;

    /// The current state of the preview for `key`, health included; `Ok(None)` when none.
    fn status(&self, key: PreviewKey) -> BoxFuture<'_, Result<Option<PreviewState>, EngineError>>;

    /// Every preview of this instance (for the reconciler's comparison with the forge).
    fn list(&self) -> BoxFuture<'_, Result<Vec<PreviewState>, EngineError>>;

    /// Every preview with its public services probed now, each probe given at most
    /// `probe_timeout` (the status page). Engines that cannot probe answer [`Self::list`].
    fn list_with_health(
        &self,
        probe_timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<PreviewState>, EngineError>> {
        let _ = probe_timeout;
        self.list()
    }

    /// Waits for the work a `deploy` leaves running after it returned ready (an old
    /// generation's drain and removal), so that `serve` exits with nothing half-removed.
    /// Engines that do nothing after a deploy returns answer at once.
    fn retired(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Brings the Docker side in line with its labels: routes, orphans, expired previews.
    /// `startup` is true for the pass before any work starts, when whatever a previous
    /// process left half-made can go at once. Previews of `keep` are exempt from `limits.ttl`.
    /// Engines without such state need not override it.
    fn clean_up(
        &self,
        startup: bool,
        keep: Vec<PreviewKey>,
    ) -> BoxFuture<'_, Result<CleanupSummary, EngineError>> {
        let _ = (startup, keep);
        Box::pin(async { Ok(CleanupSummary::default()) })
    }

    /// The repository URLs this engine keeps clones of, so that the reconciler also finds a
    /// PR labelled while `serve` was down in a repository without a preview. Engines that
    /// keep no clones answer none.
    fn cloned_urls(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async { Vec::new() })
    }

    /// Puts preview `id` to sleep (its containers stopped, its URL kept): `Ok(true)` when it
    /// went to sleep, `Ok(false)` when it stays as it is (asleep already, not running, being
    /// deployed, or kept awake by its repository). Engines that cannot sleep never do.
    fn sleep(&self, id: PreviewId) -> BoxFuture<'_, Result<bool, EngineError>> {
        let _ = id;
        Box::pin(async { Ok(false) })
    }

    /// Wakes preview `id` and returns once it is awake: `Ok(true)` when it slept, `Ok(false)`
    /// when it was awake. `answering`, when given, is told as soon as every public service
    /// answers, which may come before the wake's last steps (a visitor need not wait for
    /// them). A failure is shaped like a failed deployment's.
    fn wake(
        &self,
        id: PreviewId,
        answering: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> BoxFuture<'_, Result<bool, DeployFailure>> {
        let _ = (id, answering);
        Box::pin(async { Ok(false) })
    }

    /// A visitor reached preview `id` through the gateway just now: its `limits.ttl` counts
    /// from here. Engines without a ttl need not listen.
    fn visited(&self, id: &PreviewId) {
        let _ = id;
    }

    /// Previews with a request in flight through the gateway right now (an open WebSocket
    /// is one): they are being visited, whatever the visit log says.
    fn in_flight(&self) -> BoxFuture<'_, std::collections::HashSet<PreviewId>> {
        Box::pin(async { std::collections::HashSet::new() })
    }

    /// Whether `branch` exists at `url`, asked of the remote itself (with `token`), for a
    /// branch preview whose forge cannot say. `Ok(None)` when this engine cannot look.
    fn branch_exists<'a>(
        &'a self,
        url: &'a str,
        branch: &'a str,
        token: Option<secrecy::SecretString>,
    ) -> BoxFuture<'a, Result<Option<bool>, EngineError>> {
        let _ = (url, branch, token);
        Box::pin(async { Ok(None) })
    }
}

/// Credentials for fetching repositories over HTTPS. The forge side implements it, so the
/// preview side never learns which forge serves a URL or what kind of credential it holds.
pub trait GitCredentials: Send + Sync + 'static {
    /// The token for fetching `url`; `key_repo` is the preview key's repository when a forge
    /// asked for the preview. `Ok(None)` for anonymous access, and always for a URL that is not
    /// the forge's own: a `--repo` URL elsewhere must never receive its token. The error says
    /// why a token could not be had, without the token.
    fn git_token<'a>(
        &'a self,
        url: &'a str,
        key_repo: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<secrecy::SecretString>, String>>;
}

/// What a clean-up removed, by kind, for the log and the metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanupSummary {
    /// Previews removed for being older than `limits.ttl`.
    pub expired: Vec<PreviewKey>,
    /// Containers, networks, images and worktrees removed as orphans.
    pub orphans: usize,
}

/// A failure outside a deployment (listing, removing, reconciling), with its cause kept whole
/// so the caller can tell a passing outage (retry later) from a failed operation and still
/// print the engine's own words.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The container engine could not be reached: nothing was done; the same call may work
    /// later.
    #[error(transparent)]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// The engine answered, and the operation failed.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}
