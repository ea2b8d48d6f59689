//! The `Forge` calls in GitLab's terms: a merge request is read back by its iid; a sender may
//! trigger from the Developer role (access level 30) up; the commit status is `running`, then
//! `success` or `failed`, named by `status_context`, and goes to a fork's own project when the
//! commit is a fork merge request's head; the preview's environment is a GitLab environment
//! with the URL as `external_url` and a deployment of the commit (so the merge request shows
//! "View app"), stopped and then deleted when the preview goes; the sticky comment is a note;
//! a reaction is an award emoji on the command's note. Nothing here builds a request: `rest`
//! does, through `GitLab::call`.

use crate::engine::{BoxFuture, git_branch};
use crate::forge::{
    CommitState, EnvironmentState, Forge, ForgeKind, ForgeResult, Permission, PullRequest,
    Reaction, Repo,
};
use crate::ids::CommitSha;

use super::{DEVELOPER, GitLab, ProjectRef, StatusState};

/// GitLab's roles as the neutral permission previewd's policy reads.
pub fn permission_of(access_level: Option<u32>) -> Permission {
    match access_level {
        Some(l) if l >= 50 => Permission::Admin,
        Some(l) if l >= 40 => Permission::Maintain,
        Some(l) if l >= DEVELOPER => Permission::Write,
        Some(l) if l >= 20 => Permission::Triage,
        Some(l) if l >= 5 => Permission::Read,
        _ => Permission::None,
    }
}

/// The branch a `preview/<branch>` environment was named for (a fork's key branch is
/// `group/project:branch`: the git branch is after the colon).
fn branch_of(environment: &str) -> &str {
    git_branch(environment.strip_prefix("preview/").unwrap_or(environment))
}

impl Forge for GitLab {
    fn name(&self) -> &'static str {
        ForgeKind::GitLab.as_str()
    }

    fn pull_request(&self, repo: &Repo, number: u64) -> BoxFuture<'_, ForgeResult<PullRequest>> {
        let repo = repo.clone();
        Box::pin(async move { self.merge_request(&repo, number).await })
    }

    fn open_pull_requests(&self, repo: &Repo) -> BoxFuture<'_, ForgeResult<Vec<PullRequest>>> {
        let repo = repo.clone();
        Box::pin(async move { self.open_merge_requests(&repo).await })
    }

    fn self_user(&self) -> BoxFuture<'_, ForgeResult<Option<String>>> {
        Box::pin(async move { Ok(Some(self.current_user().await?.username)) })
    }

    fn own_permission(&self, repo: &Repo) -> BoxFuture<'_, ForgeResult<Option<Permission>>> {
        let repo = repo.clone();
        Box::pin(async move {
            let me = self.current_user().await?;
            Ok(Some(permission_of(self.access_level(&repo, me.id).await?)))
        })
    }

    fn branch_exists(&self, repo: &Repo, branch: &str) -> BoxFuture<'_, ForgeResult<Option<bool>>> {
        let repo = repo.clone();
        let branch = branch.to_owned();
        Box::pin(async move { Ok(Some(self.has_branch(&repo, &branch).await?)) })
    }

    fn permission(
        &self,
        repo: &Repo,
        user: &str,
        user_id: Option<u64>,
    ) -> BoxFuture<'_, ForgeResult<Permission>> {
        let repo = repo.clone();
        let _ = user;
        Box::pin(async move {
            // GitLab's members API names users by number; a hook without one (GitLab before
            // 9.x) cannot be checked, so it grants nothing.
            let Some(id) = user_id else {
                return Ok(Permission::None);
            };
            Ok(permission_of(self.access_level(&repo, id).await?))
        })
    }

    fn commit_status(
        &self,
        repo: &Repo,
        sha: &CommitSha,
        state: CommitState,
        description: &str,
        target_url: Option<&str>,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        let sha = sha.clone();
        let description = description.to_owned();
        let target_url = target_url.map(str::to_owned);
        let state = match state {
            CommitState::Pending => StatusState::Running,
            CommitState::Success => StatusState::Success,
            CommitState::Failure | CommitState::Error => StatusState::Failed,
        };
        Box::pin(async move {
            let project = match self.fork_of(&repo, &sha) {
                Some(id) => ProjectRef::Id(id),
                None => ProjectRef::Path(&repo),
            };
            self.set_status(project, &sha, state, &description, target_url.as_deref())
                .await
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
        let sha = sha.clone();
        let environment = environment.to_owned();
        Box::pin(async move {
            self.upsert_environment(&repo, &environment, None).await?;
            let id = self
                .create_deployment(&repo, &environment, &sha, branch_of(&environment))
                .await?;
            Ok(Some(id))
        })
    }

    fn environment_state(
        &self,
        repo: &Repo,
        _sha: &CommitSha,
        environment: &str,
        started: u64,
        state: EnvironmentState,
        _description: &str,
        url: Option<&str>,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        let environment = environment.to_owned();
        let url = url.map(str::to_owned);
        Box::pin(async move {
            let status = match state {
                // The deployment was created running.
                EnvironmentState::InProgress => return Ok(()),
                EnvironmentState::Ready => {
                    self.upsert_environment(&repo, &environment, url.as_deref())
                        .await?;
                    StatusState::Success
                }
                EnvironmentState::Failed => StatusState::Failed,
                EnvironmentState::Error => StatusState::Canceled,
            };
            self.update_deployment(&repo, started, status).await
        })
    }

    fn environment_gone(
        &self,
        repo: &Repo,
        environment: &str,
        _description: &str,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        let environment = environment.to_owned();
        Box::pin(async move { self.remove_environment(&repo, &environment).await })
    }

    fn upsert_comment(
        &self,
        repo: &Repo,
        number: u64,
        marker: &str,
        body: &str,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        let marker = marker.to_owned();
        let body = body.to_owned();
        Box::pin(async move {
            match self.find_note(&repo, number, &marker).await? {
                Some((id, _)) => self.edit_note(&repo, number, id, &body).await,
                None => self.create_note(&repo, number, &body).await,
            }
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
            let found = self.find_note(&repo, number, &marker).await?;
            Ok(found.map(|(_, body)| body))
        })
    }

    fn comment(&self, repo: &Repo, number: u64, body: &str) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        let body = body.to_owned();
        Box::pin(async move { self.create_note(&repo, number, &body).await })
    }

    fn react(
        &self,
        repo: &Repo,
        number: u64,
        comment_id: u64,
        reaction: Reaction,
    ) -> BoxFuture<'_, ForgeResult<()>> {
        let repo = repo.clone();
        // GitLab's emoji names for GitHub's reactions.
        let name = match reaction {
            Reaction::Eyes => "eyes",
            Reaction::Rocket => "rocket",
            Reaction::Confused => "confused",
        };
        Box::pin(async move { self.award_emoji(&repo, number, comment_id, name).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn developers_and_up_may_trigger_and_nobody_else() {
        for (level, may) in [
            (None, false),
            (Some(5), false),
            (Some(10), false),
            (Some(15), false),
            (Some(20), false),
            (Some(30), true),
            (Some(40), true),
            (Some(50), true),
            (Some(60), true),
        ] {
            assert_eq!(permission_of(level).may_trigger(), may, "{level:?}");
        }
    }

    #[test]
    fn an_environment_names_its_git_branch() {
        assert_eq!(branch_of("preview/feature/x"), "feature/x");
        assert_eq!(branch_of("preview/someone/shop:patch-1"), "patch-1");
    }
}
