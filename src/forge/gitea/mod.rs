//! Gitea and Forgejo at the edge (one API, one webhook format): webhook payloads (`payload`)
//! in, REST calls out to `{url}/api/v1` with `Authorization: token ...` (`rest`). Every call
//! goes through the bounded retry of `forge::retry`. Gitea has no deployments or
//! environments: a preview's URL is carried by its commit status's link and the sticky
//! comment. The token never appears in an error, a log line or a comment.
//!
//! This file builds the client and makes the one authenticated call every request goes
//! through (`Gitea::call`).

pub mod payload;
mod rest;

use axum::http::{HeaderValue, Method, header};
use bytes::Bytes;
use octocrab::Octocrab;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::config::ForgeConfig;
use crate::forge::http::send;
use crate::forge::retry::RetryPolicy;
use crate::forge::{ForgeError, ForgeResult};

/// Gitea's column for a status description is a `TEXT`, but its UI shows one line: kept to
/// GitHub's 140 characters so every forge shows the same text.
pub const DESCRIPTION_MAX: usize = 140;

/// The Gitea (or Forgejo) REST client previewd reports through.
pub struct Gitea {
    /// Holds no credentials: each request carries `auth`.
    http: Octocrab,
    /// `token <token>`, marked sensitive so that no debug print shows it.
    auth: Option<HeaderValue>,
    status_context: String,
    policy: RetryPolicy,
}

impl Gitea {
    pub fn new(cfg: &ForgeConfig, policy: RetryPolicy) -> ForgeResult<Gitea> {
        let http = crate::forge::http::client("gitea", &format!("{}/api/v1", cfg.url))?;
        let auth = match &cfg.token {
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("token {}", t.expose_secret()))
                    .map_err(|_| {
                        ForgeError::Setup("gitea.token holds characters a header cannot".into())
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Gitea {
            http,
            auth,
            status_context: cfg.status_context.clone(),
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
        send(
            &self.http,
            &self.policy,
            call,
            method,
            path,
            body.as_ref(),
            self.auth.as_ref().map(|a| (&header::AUTHORIZATION, a)),
        )
        .await
    }
}

/// Cuts a description to [`DESCRIPTION_MAX`] characters, with an ellipsis when cut.
pub fn description(s: &str) -> String {
    crate::forge::comment::truncate(s, DESCRIPTION_MAX)
}
