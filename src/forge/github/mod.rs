//! GitHub at the edge: webhook payloads (`payload`) in, REST calls out through octocrab
//! (`api_url` configurable for GitHub Enterprise and tests), authenticated by a token or as a
//! GitHub App (`auth`: JWT, then installation tokens refreshed before they expire).
//! Every call goes through the bounded retry of `forge::retry`. Tokens never appear in an
//! error, a log line or a comment: errors carry the call's name and GitHub's message only.
//!
//! This file builds the client and makes the one authenticated call every request goes
//! through (`GitHub::call`); `rest` implements the `Forge` calls as REST endpoints on it;
//! `user` asks who the token is.

pub mod auth;
mod git;
pub mod payload;
mod rest;
mod user;

use std::time::Duration;

use axum::http::{HeaderName, Method, header};
use bytes::Bytes;
use octocrab::Octocrab;
use serde_json::Value;

use crate::config::GithubConfig;
use crate::forge::http::send;
use crate::forge::retry::RetryPolicy;
use crate::forge::{ForgeError, ForgeResult, Repo};
use auth::Credentials;
pub use git::GitAccess;

/// GitHub's limit on a status or deployment status description.
pub const DESCRIPTION_MAX: usize = 140;

/// The GitHub REST client previewd reports through.
pub struct GitHub {
    /// Holds no credentials: each request carries the header `credentials` gives.
    http: Octocrab,
    credentials: Credentials,
    status_context: String,
    policy: RetryPolicy,
}

/// An unauthenticated octocrab client for `api_url`, with GitHub's API headers and timeouts.
pub fn http_client(api_url: &str) -> ForgeResult<Octocrab> {
    Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| ForgeError::Setup(format!("github.api_url {api_url:?}: {e}")))?
        .add_header(header::ACCEPT, "application/vnd.github+json".into())
        .add_header(
            HeaderName::from_static("x-github-api-version"),
            "2022-11-28".into(),
        )
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(30)))
        .build()
        .map_err(|e| ForgeError::Setup(e.to_string()))
}

impl GitHub {
    pub fn from_config(cfg: &GithubConfig) -> ForgeResult<GitHub> {
        GitHub::with_policy(cfg, RetryPolicy::default())
    }

    /// As `from_config`, with a retry policy (tests use short waits) that the App's token
    /// requests follow too.
    pub fn with_policy(cfg: &GithubConfig, policy: RetryPolicy) -> ForgeResult<GitHub> {
        let http = http_client(&cfg.api_url)?;
        let credentials = Credentials::from_config(cfg, http.clone(), policy.clone())?;
        Ok(GitHub {
            http,
            credentials,
            status_context: cfg.status_context.clone(),
            policy,
        })
    }

    /// The credentials every call uses; clones share the installation-token cache. Give them
    /// to git fetches (`Credentials::git_token`).
    pub fn credentials(&self) -> Credentials {
        self.credentials.clone()
    }

    async fn call(
        &self,
        repo: &Repo,
        call: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> ForgeResult<Bytes> {
        let auth = self.credentials.authorization(repo).await?;
        let first = send(
            &self.http,
            &self.policy,
            call,
            method.clone(),
            path,
            body.as_ref(),
            auth.as_ref().map(|a| (&header::AUTHORIZATION, a)),
        )
        .await;
        match first {
            // An App's token was refused (revoked, or the clocks disagree): once more with a
            // new one.
            Err(ForgeError::Status { status: 401, .. }) if self.credentials.is_app() => {
                self.credentials.forget(repo).await;
                let auth = self.credentials.authorization(repo).await?;
                send(
                    &self.http,
                    &self.policy,
                    call,
                    method,
                    path,
                    body.as_ref(),
                    auth.as_ref().map(|a| (&header::AUTHORIZATION, a)),
                )
                .await
            }
            other => other,
        }
    }
}

/// Cuts a description to GitHub's 140 characters, with an ellipsis when cut.
pub fn description(s: &str) -> String {
    crate::forge::comment::truncate(s, DESCRIPTION_MAX)
}
