//! What a preview is, as the seam reports it: its status, each service's health, and the
//! password of a `password` preview. Plain values read back from Docker's labels by the
//! engine; nothing here asks Docker or a forge, and nothing here may print a password.

use std::time::Duration;

use serde::Serialize;

use super::PreviewKey;
use crate::ids::{CommitSha, PreviewId};

#[derive(Debug, Clone, Serialize)]
pub struct ServiceHealth {
    pub name: String,
    /// `None` for internal services.
    pub route: Option<String>,
    pub url: Option<String>,
    /// `running`, `exited`, `missing`, ...
    pub state: String,
    pub healthy: bool,
    /// The HTTP status seen through the gateway, if any answer came.
    pub status: Option<u16>,
    pub latency_ms: Option<u64>,
}

/// Where a preview stands, as `status`, `ls --json` (docs/architecture.md's contract), the
/// comment and the metrics say it: one owner for the words, compared as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PreviewStatus {
    /// No generation is live yet.
    Building,
    /// The live generation's containers run and its public services are healthy.
    Running,
    /// A container of the live generation is not running, or a public service is unhealthy.
    Failed,
    /// Its containers are stopped.
    Stopped,
    /// Its containers were stopped for want of visits; the next visit wakes it (the URL works).
    Sleeping,
}

impl PreviewStatus {
    pub const ALL: [PreviewStatus; 5] = [
        PreviewStatus::Building,
        PreviewStatus::Running,
        PreviewStatus::Failed,
        PreviewStatus::Stopped,
        PreviewStatus::Sleeping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PreviewStatus::Building => "building",
            PreviewStatus::Running => "running",
            PreviewStatus::Failed => "failed",
            PreviewStatus::Stopped => "stopped",
            PreviewStatus::Sleeping => "sleeping",
        }
    }
}

impl std::fmt::Display for PreviewStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The user name of a `password` preview's basic auth.
pub const PASSWORD_USER: &str = "preview";

/// A `password` preview's basic-auth password (user [`PASSWORD_USER`]): shown only where
/// readers of the pull request look (the sticky comment, `status`), never logged: its `Debug`
/// hides it and it is never serialized but by hand.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// Only `access` derives one (from the session key and the preview id).
    pub(crate) fn new(password: String) -> Password {
        Password(password)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A preview as it stands: what `status`, `ls` and the PR comment show.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewState {
    pub id: PreviewId,
    pub url: String,
    pub key: PreviewKey,
    pub sha: Option<CommitSha>,
    pub pr: Option<u64>,
    pub status: PreviewStatus,
    /// When the live generation was deployed (RFC 3339): the start of its `limits.ttl`.
    pub created: Option<String>,
    pub services: Vec<ServiceHealth>,
    /// What its containers may reach (`None`: made before previewd filtered egress).
    pub egress: Option<crate::config::egress::Mode>,
    /// When it went to sleep (RFC 3339), while it sleeps. Not in `--json` (the contract's
    /// fields are fixed); the PR comment shows it.
    #[serde(skip)]
    pub asleep: Option<String>,
    /// Its last visit through the gateway that this process heard of (RFC 3339): with
    /// `created` and `asleep`, where `limits.ttl` counts from. Not in `--json`.
    #[serde(skip)]
    pub visited: Option<String>,
    /// How long its live generation took from the webhook (or the deployment's start) to
    /// every public service healthy, as the process that deployed it measured and kept in
    /// Docker (a ready mark): `None` when no mark is there (deployed by a previewd before
    /// marks, or the mark could not be made). Not in `--json` (the contract's fields are
    /// fixed); the status page shows it.
    #[serde(skip)]
    pub ready_in: Option<Duration>,
    /// Who may see it, as its `dev.previewd.access` label says (`None`: no label; the edge
    /// then goes by the operator's settings alone).
    pub access: Option<crate::config::AccessMode>,
    /// In `password` mode, the password (user `preview`): for the sticky comment and
    /// `status`, which readers of the pull request see. Never serialized, never `Debug`-shown.
    #[serde(skip)]
    pub password: Option<Password>,
}

impl PreviewState {
    /// How long it has gone neither (re)deployed nor visited at `now`, as `limits.ttl` counts:
    /// from the latest of its deployment, its last visit and its going to sleep (it was
    /// visited until then at the latest). `None` when none of them is known.
    pub fn unseen_for(&self, now: time::OffsetDateTime) -> Option<Duration> {
        [&self.created, &self.visited, &self.asleep]
            .into_iter()
            .filter_map(|t| crate::clock::age(t.as_deref()?, now))
            .min()
    }
}
