//! GitHub at the edge: webhook payloads (`payload`) in, REST calls out through octocrab
//! (`api_url` configurable for GitHub Enterprise and tests), authenticated by a token or as a
//! GitHub App (`auth`: JWT, then installation tokens refreshed before they expire).
//! Every call goes through the bounded retry of `forge::retry`. Tokens never appear in an
//! error, a log line or a comment: errors carry the call's name and GitHub's message only.

pub mod auth;
mod git;
mod http;
pub mod payload;

use std::time::Duration;

use axum::http::{HeaderName, Method, header};
use bytes::Bytes;
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::GithubConfig;
use crate::engine::BoxFuture;
use crate::forge::retry::RetryPolicy;
use crate::forge::{
    CommitState, DeploymentState, Forge, ForgeError, ForgeKind, ForgeResult, Permission,
    PullRequest, Reaction, Repo,
};
use crate::ids::CommitSha;
use auth::Credentials;
pub use git::GitAccess;
use http::{decode, send};

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
            auth.as_ref(),
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
                    auth.as_ref(),
                )
                .await
            }
            other => other,
        }
    }

    /// The id and body of the first comment on `number` whose body contains `marker`.
    async fn comment_with(
        &self,
        repo: &Repo,
        number: u64,
        marker: &str,
    ) -> ForgeResult<Option<(u64, String)>> {
        #[derive(Deserialize)]
        struct IssueComment {
            id: u64,
            #[serde(default)]
            body: Option<String>,
        }
        // Bounded: 30 pages of 100 comments.
        for page in 1..=30u32 {
            let path = format!(
                "/repos/{}/{}/issues/{number}/comments?per_page=100&page={page}",
                repo.owner, repo.name
            );
            let body = self
                .call(repo, "list-comments", Method::GET, &path, None)
                .await?;
            let comments: Vec<IssueComment> = decode("list-comments", &body)?;
            let n = comments.len();
            if let Some(c) = comments
                .into_iter()
                .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
            {
                return Ok(Some((c.id, c.body.unwrap_or_default())));
            }
            if n < 100 {
                break;
            }
        }
        Ok(None)
    }
}

/// Cuts a description to GitHub's 140 characters, with an ellipsis when cut.
pub fn description(s: &str) -> String {
    crate::forge::comment::truncate(s, DESCRIPTION_MAX)
}

/// Percent-encodes a query value.
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A login is safe in a path: GitHub logins are alphanumerics and `-`, apps end in `[bot]`.
fn valid_login(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Forge for GitHub {
    fn name(&self) -> &'static str {
        ForgeKind::GitHub.as_str()
    }

    fn pull_request(&self, repo: &Repo, number: u64) -> BoxFuture<'_, ForgeResult<PullRequest>> {
        let repo = repo.clone();
        Box::pin(async move {
            let path = format!("/repos/{}/{}/pulls/{number}", repo.owner, repo.name);
            let body = self
                .call(&repo, "pulls/get", Method::GET, &path, None)
                .await?;
            let pr: payload::PullRequestBody = decode("pulls/get", &body)?;
            pr.into_pull_request().map_err(|reason| ForgeError::Decode {
                call: "pulls/get",
                reason,
            })
        })
    }

    fn open_pull_requests(&self, repo: &Repo) -> BoxFuture<'_, ForgeResult<Vec<PullRequest>>> {
        let repo = repo.clone();
        Box::pin(async move {
            let path = format!(
                "/repos/{}/{}/pulls?state=open&per_page=100",
                repo.owner, repo.name
            );
            let body = self
                .call(&repo, "pulls/list", Method::GET, &path, None)
                .await?;
            let prs: Vec<payload::PullRequestBody> = decode("pulls/list", &body)?;
            prs.into_iter()
                .map(|pr| {
                    pr.into_pull_request().map_err(|reason| ForgeError::Decode {
                        call: "pulls/list",
                        reason,
                    })
                })
                .collect()
        })
    }

    fn permission(&self, repo: &Repo, user: &str) -> BoxFuture<'_, ForgeResult<Permission>> {
        let repo = repo.clone();
        let user = user.to_owned();
        Box::pin(async move {
            if !valid_login(&user) {
                return Ok(Permission::None);
            }
            #[derive(Deserialize)]
            struct Perm {
                permission: String,
            }
            let path = format!(
                "/repos/{}/{}/collaborators/{user}/permission",
                repo.owner, repo.name
            );
            match self
                .call(
                    &repo,
                    "get-collaborator-permission-level",
                    Method::GET,
                    &path,
                    None,
                )
                .await
            {
                Ok(body) => {
                    let p: Perm = decode("get-collaborator-permission-level", &body)?;
                    Ok(Permission::parse(&p.permission))
                }
                // Not a collaborator at all.
                Err(e) if e.is_not_found() => Ok(Permission::None),
                Err(e) => Err(e),
            }
        })
    }

    fn commit_status(
        &self,
        repo: &Repo,
        sha: &CommitSha,
        state: CommitState,
        desc: &str,
        target_url: Option<&str>,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        let path = format!("/repos/{}/{}/statuses/{sha}", repo.owner, repo.name);
        let mut body = json!({
            "state": state.as_str(),
            "description": description(desc),
            "context": self.status_context,
        });
        if let Some(u) = target_url {
            body["target_url"] = json!(u);
        }
        Box::pin(async move {
            self.call(
                &repo,
                "create-commit-status",
                Method::POST,
                &path,
                Some(body),
            )
            .await
            .map(drop)
        })
    }

    fn create_deployment(
        &self,
        repo: &Repo,
        sha: &CommitSha,
        environment: &str,
    ) -> BoxFuture<'_, ForgeResult<u64>> {
        let repo = repo.clone();
        let path = format!("/repos/{}/{}/deployments", repo.owner, repo.name);
        let body = json!({
            "ref": sha.as_str(),
            "environment": environment,
            "transient_environment": true,
            "production_environment": false,
            "auto_merge": false,
            "required_contexts": [],
            "description": "previewd preview",
        });
        Box::pin(async move {
            #[derive(Deserialize)]
            struct Created {
                id: u64,
            }
            let body = self
                .call(&repo, "create-deployment", Method::POST, &path, Some(body))
                .await?;
            Ok(decode::<Created>("create-deployment", &body)?.id)
        })
    }

    fn latest_deployment(
        &self,
        repo: &Repo,
        environment: &str,
    ) -> BoxFuture<'_, ForgeResult<Option<u64>>> {
        let repo = repo.clone();
        let path = format!(
            "/repos/{}/{}/deployments?environment={}&per_page=1",
            repo.owner,
            repo.name,
            query_value(environment)
        );
        Box::pin(async move {
            #[derive(Deserialize)]
            struct Listed {
                id: u64,
            }
            let body = self
                .call(&repo, "list-deployments", Method::GET, &path, None)
                .await?;
            let list: Vec<Listed> = decode("list-deployments", &body)?;
            Ok(list.first().map(|d| d.id))
        })
    }

    fn deployment_status(
        &self,
        repo: &Repo,
        deployment: u64,
        state: DeploymentState,
        desc: &str,
        environment_url: Option<&str>,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        let path = format!(
            "/repos/{}/{}/deployments/{deployment}/statuses",
            repo.owner, repo.name
        );
        let mut body = json!({
            "state": state.as_str(),
            "description": description(desc),
            "auto_inactive": true,
        });
        if let Some(u) = environment_url {
            body["environment_url"] = json!(u);
        }
        Box::pin(async move {
            self.call(
                &repo,
                "create-deployment-status",
                Method::POST,
                &path,
                Some(body),
            )
            .await
            .map(drop)
        })
    }

    fn upsert_comment(
        &self,
        repo: &Repo,
        number: u64,
        marker: &str,
        text: &str,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        let marker = marker.to_owned();
        let body = json!({ "body": text });
        Box::pin(async move {
            if let Some((id, _)) = self.comment_with(&repo, number, &marker).await? {
                let path = format!("/repos/{}/{}/issues/comments/{id}", repo.owner, repo.name);
                return self
                    .call(&repo, "update-comment", Method::PATCH, &path, Some(body))
                    .await
                    .map(drop);
            }
            let path = format!(
                "/repos/{}/{}/issues/{number}/comments",
                repo.owner, repo.name
            );
            self.call(&repo, "create-comment", Method::POST, &path, Some(body))
                .await
                .map(drop)
        })
    }

    fn find_comment(
        &self,
        repo: &Repo,
        number: u64,
        marker: &str,
    ) -> BoxFuture<'_, ForgeResult<Option<String>>> {
        let repo = repo.clone();
        let marker = marker.to_owned();
        Box::pin(async move {
            let found = self.comment_with(&repo, number, &marker).await?;
            Ok(found.map(|(_, body)| body))
        })
    }

    fn comment(&self, repo: &Repo, number: u64, text: &str) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        let path = format!(
            "/repos/{}/{}/issues/{number}/comments",
            repo.owner, repo.name
        );
        let body = json!({ "body": text });
        Box::pin(async move {
            self.call(&repo, "create-comment", Method::POST, &path, Some(body))
                .await
                .map(drop)
        })
    }

    fn react(
        &self,
        repo: &Repo,
        comment_id: u64,
        reaction: Reaction,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        let path = format!(
            "/repos/{}/{}/issues/comments/{comment_id}/reactions",
            repo.owner, repo.name
        );
        let body = json!({ "content": reaction.as_str() });
        Box::pin(async move {
            self.call(&repo, "create-reaction", Method::POST, &path, Some(body))
                .await
                .map(drop)
        })
    }
}
