//! GitLab at the edge: webhook payloads (`payload`) in; REST calls out to `{url}/api/v4`
//! (`http`), authenticated by a `PRIVATE-TOKEN` (a project, group or bot user's access token
//! with the `api` scope). Projects are named in paths by their URL-encoded
//! `path_with_namespace` (`group%2Fsub%2Fproject`), or by number where GitLab gives only that
//! (a fork's source project). Every call goes through the bounded retry of `forge::retry`.
//! Tokens never appear in an error, a log line or a note.
//!
//! This file builds the client and makes the one authenticated call every request goes
//! through (`GitLab::call`); `rest` holds GitLab's endpoints, `report` maps previewd's reports
//! onto them (commit status, environment and deployment, notes, award emoji).

mod environments;
pub mod payload;
mod report;
mod rest;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::http::{HeaderName, HeaderValue, Method};
use bytes::Bytes;
use octocrab::Octocrab;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::config::ForgeConfig;
use crate::forge::http::{encode, send};
use crate::forge::retry::RetryPolicy;
use crate::forge::{ForgeError, ForgeResult, Repo};
use crate::ids::CommitSha;

pub use environments::{Environment, EnvironmentState};
pub use report::permission_of;
pub use rest::{DEVELOPER, GitLabUser, StatusState};

/// GitLab's header for a personal, project or group access token.
static PRIVATE_TOKEN: HeaderName = HeaderName::from_static("private-token");

/// GitLab's limit on a commit status description (it keeps 255 characters).
pub const DESCRIPTION_MAX: usize = 255;

/// The GitLab REST client previewd reports through.
pub struct GitLab {
    /// Holds no credentials: each request carries `token`.
    http: Octocrab,
    token: Option<HeaderValue>,
    status_context: String,
    policy: RetryPolicy,
    /// Heads of fork merge requests, with their source project's number, learned when a merge
    /// request is read back (a worker reads it before each deployment): a fork's commit status
    /// goes to its own project. Rebuilt by the next read back; a miss reports on the target.
    forks: Mutex<HashMap<(Repo, CommitSha), u64>>,
}

/// Fork heads remembered at most; past it the memory starts again.
const FORKS_MAX: usize = 1024;

/// A project as a path segment: its number, or its full path URL-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRef<'a> {
    Path(&'a Repo),
    Id(u64),
}

impl ProjectRef<'_> {
    fn segment(&self) -> String {
        match self {
            ProjectRef::Path(repo) => encode(&repo.full_name()),
            ProjectRef::Id(id) => id.to_string(),
        }
    }
}

impl GitLab {
    /// A client for the GitLab at `cfg.url` (the API is `{url}/api/v4`).
    pub fn new(cfg: &ForgeConfig, policy: RetryPolicy) -> ForgeResult<GitLab> {
        let token = match &cfg.token {
            Some(t) => {
                let mut v = HeaderValue::from_str(t.expose_secret()).map_err(|_| {
                    ForgeError::Setup("gitlab.token holds characters a header cannot".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(GitLab {
            http: crate::forge::http::client("gitlab", &format!("{}/api/v4", cfg.url))?,
            token,
            status_context: cfg.status_context.clone(),
            policy,
            forks: Mutex::new(HashMap::new()),
        })
    }

    fn forks(&self) -> std::sync::MutexGuard<'_, HashMap<(Repo, CommitSha), u64>> {
        self.forks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers that `sha` is the head of a merge request into `repo` from project `source`.
    fn remember_fork(&self, repo: &Repo, sha: &CommitSha, source: u64) {
        let mut forks = self.forks();
        if forks.len() >= FORKS_MAX {
            forks.clear();
        }
        forks.insert((repo.clone(), sha.clone()), source);
    }

    /// The fork project `sha` is a merge request head of, if one was read back.
    fn fork_of(&self, repo: &Repo, sha: &CommitSha) -> Option<u64> {
        self.forks().get(&(repo.clone(), sha.clone())).copied()
    }

    async fn call(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> ForgeResult<Bytes> {
        send(
            &self.http,
            &self.policy,
            call,
            method,
            path,
            body.as_ref(),
            self.token.as_ref().map(|t| (&PRIVATE_TOKEN, t)),
        )
        .await
    }
}

/// Cuts a description to what GitLab keeps, with an ellipsis when cut.
pub fn description(s: &str) -> String {
    crate::forge::comment::truncate(s, DESCRIPTION_MAX)
}
