//! The `Forge` calls as Gitea's REST endpoints (`fixtures/forge-apis/gitea-openapi-subset.json`
//! names each by its operationId): pull requests and permissions, commit statuses, the sticky
//! comment (found again by its marker), reactions and the token's own user. Gitea has no
//! deployments: the environment calls keep the trait's defaults (nothing to do), and the
//! status's `target_url` and the comment carry the URL. Each call goes through `Gitea::call`;
//! nothing here sees the token, and nothing puts a value from outside in a path unchecked.

use axum::http::Method;
use serde::Deserialize;
use serde_json::json;

use super::payload::PullRequestBody;
use super::{Gitea, description};
use crate::engine::BoxFuture;
use crate::forge::http::{decode, encode};
use crate::forge::{
    CommitState, Forge, ForgeError, ForgeKind, ForgeResult, Permission, PullRequest, Reaction, Repo,
};
use crate::ids::CommitSha;

/// Open pull requests read per page: Gitea's default `MAX_RESPONSE_ITEMS`.
const PAGE: usize = 50;

/// A login is safe in a path: Gitea user names are alphanumerics, `-`, `_` and `.`.
fn valid_login(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn repo_path(repo: &Repo) -> String {
    format!("/repos/{}/{}", repo.owner, repo.name)
}

fn read_pull(call: &'static str, pr: PullRequestBody<'_>) -> ForgeResult<PullRequest> {
    pr.into_pull_request()
        .map_err(|reason| ForgeError::Decode { call, reason })
}

impl Gitea {
    /// The id and body of the first comment on `number` whose body contains `marker`.
    /// `issueGetComments` is not paginated: it answers every comment of the issue.
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
        let path = format!("{}/issues/{number}/comments", repo_path(repo));
        let body = self
            .call("issueGetComments", Method::GET, &path, None)
            .await?;
        let comments: Vec<IssueComment> = decode("issueGetComments", &body)?;
        Ok(comments
            .into_iter()
            .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
            .map(|c| (c.id, c.body.unwrap_or_default())))
    }
}

impl Forge for Gitea {
    fn name(&self) -> &'static str {
        ForgeKind::Gitea.as_str()
    }

    fn self_user(&self) -> BoxFuture<'_, ForgeResult<Option<String>>> {
        Box::pin(async move {
            #[derive(Deserialize)]
            struct User {
                login: String,
            }
            let body = self
                .call("userGetCurrent", Method::GET, "/user", None)
                .await?;
            Ok(Some(decode::<User>("userGetCurrent", &body)?.login))
        })
    }

    fn own_permission(&self, repo: &Repo) -> BoxFuture<'_, ForgeResult<Option<Permission>>> {
        let repo = repo.clone();
        Box::pin(async move {
            let Some(login) = self.self_user().await? else {
                return Ok(None);
            };
            Ok(Some(self.permission(&repo, &login, None).await?))
        })
    }

    fn pull_request(&self, repo: &Repo, number: u64) -> BoxFuture<'_, ForgeResult<PullRequest>> {
        let path = format!("{}/pulls/{number}", repo_path(repo));
        Box::pin(async move {
            let body = self
                .call("repoGetPullRequest", Method::GET, &path, None)
                .await?;
            read_pull("repoGetPullRequest", decode("repoGetPullRequest", &body)?)
        })
    }

    fn open_pull_requests(&self, repo: &Repo) -> BoxFuture<'_, ForgeResult<Vec<PullRequest>>> {
        let base = repo_path(repo);
        Box::pin(async move {
            let mut out = Vec::new();
            // The first 100, as on GitHub: two pages of Gitea's largest.
            for page in 1..=2 {
                let path = format!("{base}/pulls?state=open&limit={PAGE}&page={page}");
                let body = self
                    .call("repoListPullRequests", Method::GET, &path, None)
                    .await?;
                let prs: Vec<PullRequestBody> = decode("repoListPullRequests", &body)?;
                let n = prs.len();
                for pr in prs {
                    out.push(read_pull("repoListPullRequests", pr)?);
                }
                if n < PAGE {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn branch_exists(&self, repo: &Repo, branch: &str) -> BoxFuture<'_, ForgeResult<Option<bool>>> {
        let path = format!("{}/branches/{}", repo_path(repo), encode(branch));
        Box::pin(async move {
            match self.call("repoGetBranch", Method::GET, &path, None).await {
                Ok(_) => Ok(Some(true)),
                Err(e) if e.is_not_found() => Ok(Some(false)),
                Err(e) => Err(e),
            }
        })
    }

    fn permission(
        &self,
        repo: &Repo,
        user: &str,
        _user_id: Option<u64>,
    ) -> BoxFuture<'_, ForgeResult<Permission>> {
        let path = format!("{}/collaborators/{user}/permission", repo_path(repo));
        let valid = valid_login(user);
        Box::pin(async move {
            if !valid {
                return Ok(Permission::None);
            }
            #[derive(Deserialize)]
            struct Perm {
                permission: String,
            }
            match self
                .call("repoGetRepoPermissions", Method::GET, &path, None)
                .await
            {
                Ok(body) => {
                    let p: Perm = decode("repoGetRepoPermissions", &body)?;
                    // Gitea's levels: none, read, write, admin, owner.
                    Ok(match p.permission.as_str() {
                        "owner" | "admin" => Permission::Admin,
                        "write" => Permission::Write,
                        "read" => Permission::Read,
                        _ => Permission::None,
                    })
                }
                // No such user.
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
        let path = format!("{}/statuses/{sha}", repo_path(repo));
        let mut body = json!({
            "state": state.as_str(),
            "description": description(desc),
            "context": self.status_context,
        });
        if let Some(u) = target_url {
            body["target_url"] = json!(u);
        }
        Box::pin(async move {
            self.call("repoCreateStatus", Method::POST, &path, Some(body))
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
                let path = format!("{}/issues/comments/{id}", repo_path(&repo));
                return self
                    .call("issueEditComment", Method::PATCH, &path, Some(body))
                    .await
                    .map(drop);
            }
            let path = format!("{}/issues/{number}/comments", repo_path(&repo));
            self.call("issueCreateComment", Method::POST, &path, Some(body))
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
        let path = format!("{}/issues/{number}/comments", repo_path(repo));
        let body = json!({ "body": text });
        Box::pin(async move {
            self.call("issueCreateComment", Method::POST, &path, Some(body))
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
        let path = format!("{}/issues/comments/{comment_id}/reactions", repo_path(repo));
        // Gitea's default reactions include eyes, rocket and confused, by the same names.
        let body = json!({ "content": reaction.as_str() });
        Box::pin(async move {
            self.call("issuePostCommentReaction", Method::POST, &path, Some(body))
                .await
                .map(drop)
        })
    }
}
