//! GitHub at the edge: webhook payloads (`payload`) in, REST calls out through octocrab
//! (`api_url` configurable for GitHub Enterprise and tests), authenticated by a token or as a
//! GitHub App (JWT, then installation tokens that octocrab refreshes before they expire).
//! Every call goes through the bounded retry of `forge::retry`. Tokens never appear in an
//! error, a log line or a comment: errors carry the call's name and GitHub's message only.

pub mod payload;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderName, Method, StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use octocrab::Octocrab;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::GithubConfig;
use crate::engine::BoxFuture;
use crate::forge::retry::{Attempt, RetryPolicy, classify, retry};
use crate::forge::{
    CommitState, DeploymentState, Forge, ForgeError, ForgeResult, Permission, PullRequest,
    Reaction, Repo,
};
use crate::ids::CommitSha;

/// GitHub's limit on a status or deployment status description.
pub const DESCRIPTION_MAX: usize = 140;

enum Auth {
    /// A token (or none: read-only calls to public repositories).
    Token(Octocrab),
    /// A GitHub App: the JWT client, and one installation client per repository owner.
    App {
        app: Octocrab,
        installations: Mutex<HashMap<String, Octocrab>>,
    },
}

/// The GitHub REST client previewd reports through.
pub struct GitHub {
    auth: Auth,
    status_context: String,
    policy: RetryPolicy,
}

impl GitHub {
    pub fn from_config(cfg: &GithubConfig) -> ForgeResult<GitHub> {
        let builder = || -> ForgeResult<octocrab::OctocrabBuilder<_, _, _, _>> {
            Octocrab::builder()
                .base_uri(cfg.api_url.as_str())
                .map_err(|e| ForgeError::Setup(format!("github.api_url {:?}: {e}", cfg.api_url)))
                .map(|b| {
                    b.add_header(header::ACCEPT, "application/vnd.github+json".into())
                        .add_header(
                            HeaderName::from_static("x-github-api-version"),
                            "2022-11-28".into(),
                        )
                        .set_connect_timeout(Some(Duration::from_secs(10)))
                        .set_read_timeout(Some(Duration::from_secs(30)))
                })
        };
        let setup = |e: octocrab::Error| ForgeError::Setup(e.to_string());
        let auth = match (&cfg.app_id, &cfg.private_key_path, &cfg.token) {
            (Some(app_id), Some(key_path), _) => {
                let pem = std::fs::read(key_path).map_err(|e| {
                    ForgeError::Setup(format!(
                        "github.private_key_path {}: {e}",
                        key_path.display()
                    ))
                })?;
                let key = octocrab::EncodingKey::from_rsa_pem(&pem).map_err(|_| {
                    ForgeError::Setup(format!(
                        "github.private_key_path {}: not an RSA private key in PEM form",
                        key_path.display()
                    ))
                })?;
                let app = builder()?
                    .app(octocrab::models::AppId(*app_id), key)
                    .build()
                    .map_err(setup)?;
                Auth::App {
                    app,
                    installations: Mutex::new(HashMap::new()),
                }
            }
            (_, _, Some(token)) => {
                let t = token.expose_secret();
                // octocrab turns the token into a header value and panics on a bad one.
                if t.is_empty() || !t.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                    return Err(ForgeError::Setup(
                        "github.token has characters a token cannot have".into(),
                    ));
                }
                Auth::Token(
                    builder()?
                        .personal_token(t.to_owned())
                        .build()
                        .map_err(setup)?,
                )
            }
            _ => Auth::Token(builder()?.build().map_err(setup)?),
        };
        Ok(GitHub {
            auth,
            status_context: cfg.status_context.clone(),
            policy: RetryPolicy::default(),
        })
    }

    /// Replaces the retry policy (tests use short waits).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The client for `repo`: the token client, or the App's installation client for its owner.
    async fn client(&self, repo: &Repo) -> ForgeResult<Octocrab> {
        let (app, installations) = match &self.auth {
            Auth::Token(c) => return Ok(c.clone()),
            Auth::App { app, installations } => (app, installations),
        };
        if let Some(c) = lock(installations).get(&repo.owner) {
            return Ok(c.clone());
        }
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let path = format!("/repos/{}/{}/installation", repo.owner, repo.name);
        let body = send(
            app,
            &self.policy,
            "get-repo-installation",
            Method::GET,
            &path,
            None,
        )
        .await?;
        let inst: Installation = decode("get-repo-installation", &body)?;
        let client = app
            .installation(octocrab::models::InstallationId(inst.id))
            .map_err(|e| ForgeError::Setup(e.to_string()))?;
        lock(installations).insert(repo.owner.clone(), client.clone());
        Ok(client)
    }

    async fn call(
        &self,
        repo: &Repo,
        call: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> ForgeResult<Bytes> {
        let client = self.client(repo).await?;
        send(&client, &self.policy, call, method, path, body.as_ref()).await
    }

    async fn find_comment(
        &self,
        repo: &Repo,
        number: u64,
        marker: &str,
    ) -> ForgeResult<Option<u64>> {
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
            if let Some(c) = comments
                .iter()
                .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
            {
                return Ok(Some(c.id));
            }
            if comments.len() < 100 {
                break;
            }
        }
        Ok(None)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One REST call with the bounded retry; returns the body of a 2xx answer.
async fn send(
    client: &Octocrab,
    policy: &RetryPolicy,
    call: &'static str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> ForgeResult<Bytes> {
    retry(policy, || {
        let method = method.clone();
        async move {
            let answer = match method {
                Method::GET => client._get(path).await,
                Method::PATCH => client._patch(path, body).await,
                _ => client._post(path, body).await,
            };
            let resp = match answer {
                Ok(r) => r,
                Err(e) => {
                    return Attempt::Retry {
                        error: ForgeError::Transport {
                            call,
                            reason: short(&e.to_string()),
                        },
                        after: None,
                    };
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = match resp.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return Attempt::Retry {
                        error: ForgeError::Transport {
                            call,
                            reason: short(&e.to_string()),
                        },
                        after: None,
                    };
                }
            };
            if status.is_success() {
                return Attempt::Done(bytes);
            }
            let error = ForgeError::Status {
                call,
                status: status.as_u16(),
                message: github_message(status, &bytes),
            };
            match classify(status.as_u16(), &headers) {
                Some(after) => Attempt::Retry { error, after },
                None => Attempt::Fail(error),
            }
        }
    })
    .await
}

fn github_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Msg {
        message: String,
    }
    match serde_json::from_slice::<Msg>(body) {
        Ok(m) => short(&m.message),
        Err(_) => status.canonical_reason().unwrap_or("error").to_owned(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(call: &'static str, body: &[u8]) -> ForgeResult<T> {
    serde_json::from_slice(body).map_err(|e| ForgeError::Decode {
        call,
        reason: short(&e.to_string()),
    })
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
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
        "github"
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
            if let Some(id) = self.find_comment(&repo, number, &marker).await? {
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
