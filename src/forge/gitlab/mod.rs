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

mod http;
pub mod payload;
mod rest;

use axum::http::{HeaderValue, Method};
use bytes::Bytes;
use octocrab::Octocrab;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::forge::retry::RetryPolicy;
use crate::forge::{ForgeError, ForgeResult, Repo};

pub use rest::{DEVELOPER, Environment, EnvironmentState, GitLabUser, StatusState};

/// GitLab's limit on a commit status description (it keeps 255 characters).
pub const DESCRIPTION_MAX: usize = 255;

/// The GitLab REST client previewd reports through.
pub struct GitLab {
    /// Holds no credentials: each request carries `token`.
    http: Octocrab,
    token: Option<HeaderValue>,
    status_context: String,
    policy: RetryPolicy,
}

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

/// Percent-encodes one path segment or query value (`/` included, as GitLab wants for a
/// project path or a branch name in a path).
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

impl GitLab {
    /// A client for the GitLab at `url` (the API is `{url}/api/v4`).
    pub fn new(
        url: &str,
        token: Option<&SecretString>,
        status_context: &str,
        policy: RetryPolicy,
    ) -> ForgeResult<GitLab> {
        let token = match token {
            Some(t) => {
                let mut v = HeaderValue::from_str(t.expose_secret()).map_err(|_| {
                    ForgeError::Setup("gitlab.token is not a valid header value".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(GitLab {
            http: http::client(url)?,
            token,
            status_context: status_context.to_owned(),
            policy,
        })
    }

    async fn call(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> ForgeResult<Bytes> {
        http::send(
            &self.http,
            &self.policy,
            call,
            method,
            path,
            body.as_ref(),
            self.token.as_ref(),
        )
        .await
    }
}

/// Cuts a description to what GitLab keeps, with an ellipsis when cut.
pub fn description(s: &str) -> String {
    crate::forge::comment::truncate(s, DESCRIPTION_MAX)
}
