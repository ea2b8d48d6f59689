//! The `Forge` calls as GitHub's REST endpoints: pull requests and permissions, commit
//! statuses and deployments (GitHub's form of a preview's environment), comments (found again by their marker) and reactions. Each goes
//! through `GitHub::call`, so each is authenticated and retried there; nothing here builds a
//! header or sees a token, and nothing puts a value from outside in a path unchecked.

use axum::http::Method;
use serde::Deserialize;
use serde_json::json;

use super::{GitHub, description, payload};
use crate::engine::BoxFuture;
use crate::forge::http::{decode, encode};
use crate::forge::{
    CommitState, EnvironmentState, Forge, ForgeError, ForgeKind, ForgeResult, Permission,
    PullRequest, Reaction, Repo,
};
use crate::ids::CommitSha;

impl GitHub {
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

/// A deployment status's state, as GitHub names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeploymentState {
    InProgress,
    Success,
    Failure,
    Error,
    Inactive,
}

impl DeploymentState {
    fn as_str(self) -> &'static str {
        match self {
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            DeploymentState::Error => "error",
            DeploymentState::Inactive => "inactive",
        }
    }
}

impl GitHub {
    /// The newest deployment for `environment`, if any.
    fn latest_deployment<'a>(
        &'a self,
        repo: &Repo,
        environment: &str,
    ) -> BoxFuture<'a, ForgeResult<Option<u64>>> {
        let repo = repo.clone();
        let path = format!(
            "/repos/{}/{}/deployments?environment={}&per_page=1",
            repo.owner,
            repo.name,
            encode(environment)
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

    fn deployment_status<'a>(
        &'a self,
        repo: &Repo,
        deployment: u64,
        state: DeploymentState,
        desc: &str,
        environment_url: Option<&str>,
    ) -> BoxFuture<'a, ForgeResult<()>> {
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

    fn token_user(&self) -> BoxFuture<'_, ForgeResult<Option<String>>> {
        Box::pin(self.token_login())
    }

    fn own_permission(&self, repo: &Repo) -> BoxFuture<'_, ForgeResult<Option<Permission>>> {
        let repo = repo.clone();
        Box::pin(async move { self.token_permission(&repo).await })
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

    fn permission(
        &self,
        repo: &Repo,
        user: &str,
        _user_id: Option<u64>,
    ) -> BoxFuture<'_, ForgeResult<Permission>> {
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

    fn environment_started(
        &self,
        repo: &Repo,
        sha: &CommitSha,
        environment: &str,
        _description: &str,
    ) -> BoxFuture<'_, ForgeResult<Option<u64>>> {
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
            Ok(Some(decode::<Created>("create-deployment", &body)?.id))
        })
    }

    fn environment_state(
        &self,
        repo: &Repo,
        _sha: &CommitSha,
        _environment: &str,
        started: u64,
        state: EnvironmentState,
        desc: &str,
        url: Option<&str>,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let state = match state {
            EnvironmentState::InProgress => DeploymentState::InProgress,
            EnvironmentState::Ready => DeploymentState::Success,
            EnvironmentState::Failed => DeploymentState::Failure,
            EnvironmentState::Error => DeploymentState::Error,
        };
        self.deployment_status(repo, started, state, desc, url)
    }

    fn environment_gone(
        &self,
        repo: &Repo,
        environment: &str,
        desc: &str,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        let environment = environment.to_owned();
        let desc = desc.to_owned();
        Box::pin(async move {
            match self.latest_deployment(&repo, &environment).await? {
                Some(id) => {
                    self.deployment_status(&repo, id, DeploymentState::Inactive, &desc, None)
                        .await
                }
                None => Ok(()),
            }
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
        _number: u64,
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
