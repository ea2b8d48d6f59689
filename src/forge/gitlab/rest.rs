//! GitLab's endpoints as previewd uses them (fixtures/forge-apis/README.md, GitLab column):
//! merge requests read back, member access levels, branches, the token's user, commit
//! statuses, environments and deployments, merge request notes and award emoji. Each goes
//! through `GitLab::call`, so each is authenticated and retried there; nothing here builds a
//! header or sees a token, and every value from outside is encoded before it goes in a path.

use axum::http::Method;
use serde::Deserialize;
use serde_json::json;

use super::{GitLab, ProjectRef, description};
use crate::forge::http::{decode, encode};
use crate::forge::{ForgeError, ForgeResult, PullRequest, Repo};
use crate::ids::CommitSha;

/// Notes are read 100 to a page, at most this many pages (3,000 notes).
const NOTE_PAGES: u32 = 30;

/// The access level from which a member may push (GitLab's Developer).
pub const DEVELOPER: u32 = 30;

/// A commit status's state, in GitLab's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    Running,
    Success,
    Failed,
    Canceled,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Running => "running",
            StatusState::Success => "success",
            StatusState::Failed => "failed",
            StatusState::Canceled => "canceled",
        }
    }
}

/// Who the token acts as.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitLabUser {
    pub id: u64,
    pub username: String,
}

/// A merge request as the REST API gives it (labels are plain strings there).
#[derive(Deserialize)]
struct MergeRequestBody {
    iid: u64,
    state: String,
    source_branch: String,
    source_project_id: u64,
    target_project_id: u64,
    sha: String,
    #[serde(default)]
    labels: Vec<String>,
}

impl GitLab {
    /// Merge request `iid` of `repo` as it is now. `fork_path` finds a fork's project path
    /// from its number (GitLab gives only that); `None` from it means the fork is gone.
    pub async fn merge_request(&self, repo: &Repo, iid: u64) -> ForgeResult<PullRequest> {
        let path = format!(
            "/projects/{}/merge_requests/{iid}",
            ProjectRef::Path(repo).segment()
        );
        let body = self
            .call("merge_requests/get", Method::GET, &path, None)
            .await?;
        let mr: MergeRequestBody = decode("merge_requests/get", &body)?;
        self.pull_request_of(repo, mr, "merge_requests/get").await
    }

    /// The open merge requests of `repo` (the first 100).
    pub async fn open_merge_requests(&self, repo: &Repo) -> ForgeResult<Vec<PullRequest>> {
        let path = format!(
            "/projects/{}/merge_requests?state=opened&per_page=100",
            ProjectRef::Path(repo).segment()
        );
        let body = self
            .call("merge_requests/list", Method::GET, &path, None)
            .await?;
        let list: Vec<MergeRequestBody> = decode("merge_requests/list", &body)?;
        let mut out = Vec::with_capacity(list.len());
        for mr in list {
            out.push(
                self.pull_request_of(repo, mr, "merge_requests/list")
                    .await?,
            );
        }
        Ok(out)
    }

    async fn pull_request_of(
        &self,
        repo: &Repo,
        mr: MergeRequestBody,
        call: &'static str,
    ) -> ForgeResult<PullRequest> {
        let head_sha = CommitSha::parse(&mr.sha).map_err(|e| ForgeError::Decode {
            call,
            reason: e.to_string(),
        })?;
        let fork = mr.source_project_id != mr.target_project_id;
        let head_repo = if fork {
            self.remember_fork(repo, &head_sha, mr.source_project_id);
            self.project_path(mr.source_project_id).await?
        } else {
            Some(repo.clone())
        };
        Ok(PullRequest {
            number: mr.iid,
            open: mr.state == "opened",
            head_sha,
            head_branch: mr.source_branch,
            head_repo,
            fork,
            labels: mr.labels,
        })
    }

    /// The path of project number `id`; `None` when it is gone.
    pub async fn project_path(&self, id: u64) -> ForgeResult<Option<Repo>> {
        #[derive(Deserialize)]
        struct Project {
            path_with_namespace: String,
        }
        let path = format!("/projects/{id}");
        match self.call("projects/get", Method::GET, &path, None).await {
            Ok(body) => {
                let p: Project = decode("projects/get", &body)?;
                Repo::parse(&p.path_with_namespace)
                    .map(Some)
                    .ok_or_else(|| ForgeError::Decode {
                        call: "projects/get",
                        reason: "path_with_namespace is not a group/project path".into(),
                    })
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// User `user_id`'s access level on `repo`, inherited membership included; `None` when
    /// the user is no member at all.
    pub async fn access_level(&self, repo: &Repo, user_id: u64) -> ForgeResult<Option<u32>> {
        #[derive(Deserialize)]
        struct Member {
            access_level: u32,
        }
        let path = format!(
            "/projects/{}/members/all/{user_id}",
            ProjectRef::Path(repo).segment()
        );
        match self.call("members/all/get", Method::GET, &path, None).await {
            Ok(body) => Ok(Some(
                decode::<Member>("members/all/get", &body)?.access_level,
            )),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `branch` exists in `repo`.
    pub async fn has_branch(&self, repo: &Repo, branch: &str) -> ForgeResult<bool> {
        let path = format!(
            "/projects/{}/repository/branches/{}",
            ProjectRef::Path(repo).segment(),
            encode(branch)
        );
        match self.call("branches/get", Method::GET, &path, None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The user the token acts as.
    pub async fn current_user(&self) -> ForgeResult<GitLabUser> {
        let body = self.call("user/get", Method::GET, "/user", None).await?;
        decode("user/get", &body)
    }

    /// Sets the commit status named by the config's `status_context` on `sha` of `project`
    /// (a fork's merge request: its source project). Setting the state the status already
    /// has is not an error: GitLab refuses it with 400 "Cannot transition status".
    pub async fn set_status(
        &self,
        project: ProjectRef<'_>,
        sha: &CommitSha,
        state: StatusState,
        desc: &str,
        target_url: Option<&str>,
    ) -> ForgeResult<()> {
        let path = format!("/projects/{}/statuses/{sha}", project.segment());
        let mut body = json!({
            "state": state.as_str(),
            "name": self.status_context,
            "description": description(desc),
        });
        if let Some(u) = target_url {
            body["target_url"] = json!(u);
        }
        match self
            .call("statuses/create", Method::POST, &path, Some(body))
            .await
        {
            Ok(_) => Ok(()),
            Err(ForgeError::Status {
                status: 400,
                message,
                ..
            }) if message.contains("Cannot transition status") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The id and body of the first note on merge request `iid` whose body contains `marker`.
    pub async fn find_note(
        &self,
        repo: &Repo,
        iid: u64,
        marker: &str,
    ) -> ForgeResult<Option<(u64, String)>> {
        #[derive(Deserialize)]
        struct Note {
            id: u64,
            #[serde(default)]
            body: Option<String>,
        }
        let project = ProjectRef::Path(repo).segment();
        for page in 1..=NOTE_PAGES {
            let path = format!(
                "/projects/{project}/merge_requests/{iid}/notes?sort=asc&order_by=created_at\
                 &per_page=100&page={page}"
            );
            let body = self.call("notes/list", Method::GET, &path, None).await?;
            let notes: Vec<Note> = decode("notes/list", &body)?;
            let n = notes.len();
            if let Some(found) = notes
                .into_iter()
                .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
            {
                return Ok(Some((found.id, found.body.unwrap_or_default())));
            }
            if n < 100 {
                break;
            }
        }
        Ok(None)
    }

    /// Posts a new note on merge request `iid`.
    pub async fn create_note(&self, repo: &Repo, iid: u64, text: &str) -> ForgeResult<()> {
        let path = format!(
            "/projects/{}/merge_requests/{iid}/notes",
            ProjectRef::Path(repo).segment()
        );
        self.call(
            "notes/create",
            Method::POST,
            &path,
            Some(json!({ "body": text })),
        )
        .await
        .map(drop)
    }

    /// Replaces the body of note `id` on merge request `iid`.
    pub async fn edit_note(&self, repo: &Repo, iid: u64, id: u64, text: &str) -> ForgeResult<()> {
        let path = format!(
            "/projects/{}/merge_requests/{iid}/notes/{id}",
            ProjectRef::Path(repo).segment()
        );
        self.call(
            "notes/update",
            Method::PUT,
            &path,
            Some(json!({ "body": text })),
        )
        .await
        .map(drop)
    }

    /// Awards emoji `name` on note `note` of merge request `iid`. GitLab answers 404 when the
    /// award cannot be made, the same emoji given already among them: that is done, too.
    pub async fn award_emoji(
        &self,
        repo: &Repo,
        iid: u64,
        note: u64,
        name: &str,
    ) -> ForgeResult<()> {
        let path = format!(
            "/projects/{}/merge_requests/{iid}/notes/{note}/award_emoji",
            ProjectRef::Path(repo).segment()
        );
        ok_unless_gone(
            self.call(
                "award_emoji/create",
                Method::POST,
                &path,
                Some(json!({ "name": name })),
            )
            .await,
        )
    }
}

/// A 404 on a removal or an award is the end state already.
pub(super) fn ok_unless_gone<T>(r: ForgeResult<T>) -> ForgeResult<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}
