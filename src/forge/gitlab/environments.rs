//! GitLab's environments and deployments (the "deployment or environment with the URL" of a
//! preview's report): looked up by name, created or pointed at the new URL, stopped then
//! deleted. Like `rest`, each call goes through `GitLab::call`; nothing here sees a token or
//! builds a path from an unencoded value.

use axum::http::Method;
use serde::Deserialize;
use serde_json::json;

use super::rest::{StatusState, ok_unless_gone};
use super::{GitLab, ProjectRef};
use crate::forge::http::{decode, encode};
use crate::forge::{ForgeResult, Repo};
use crate::ids::CommitSha;

/// Where an environment is in its life; only an available one must be stopped before deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentState {
    Available,
    Stopping,
    Stopped,
}

/// An environment as GitLab lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Environment {
    pub id: u64,
    pub name: String,
    pub state: EnvironmentState,
    #[serde(default)]
    pub external_url: Option<String>,
}

impl GitLab {
    /// The environment named `name`, if `repo` has one.
    pub async fn environment(&self, repo: &Repo, name: &str) -> ForgeResult<Option<Environment>> {
        let path = format!(
            "/projects/{}/environments?name={}",
            ProjectRef::Path(repo).segment(),
            encode(name)
        );
        let body = self
            .call("environments/list", Method::GET, &path, None)
            .await?;
        let list: Vec<Environment> = decode("environments/list", &body)?;
        Ok(list.into_iter().find(|e| e.name == name))
    }

    /// Creates environment `name` pointing at `url`, or points the existing one there.
    pub async fn upsert_environment(
        &self,
        repo: &Repo,
        name: &str,
        url: Option<&str>,
    ) -> ForgeResult<Environment> {
        let project = ProjectRef::Path(repo).segment();
        if let Some(env) = self.environment(repo, name).await? {
            if url.is_none() || env.external_url.as_deref() == url {
                return Ok(env);
            }
            let path = format!("/projects/{project}/environments/{}", env.id);
            let body = self
                .call(
                    "environments/update",
                    Method::PUT,
                    &path,
                    Some(json!({ "external_url": url })),
                )
                .await?;
            return decode("environments/update", &body);
        }
        let mut body = json!({ "name": name, "tier": "development" });
        if let Some(u) = url {
            body["external_url"] = json!(u);
        }
        let path = format!("/projects/{project}/environments");
        let body = self
            .call("environments/create", Method::POST, &path, Some(body))
            .await?;
        decode("environments/create", &body)
    }

    /// Stops, then deletes, environment `name` (GitLab deletes only a stopped one). Gone
    /// already is done.
    pub async fn remove_environment(&self, repo: &Repo, name: &str) -> ForgeResult<()> {
        let Some(env) = self.environment(repo, name).await? else {
            return Ok(());
        };
        let base = format!(
            "/projects/{}/environments/{}",
            ProjectRef::Path(repo).segment(),
            env.id
        );
        if env.state == EnvironmentState::Available {
            let stop = format!("{base}/stop");
            // `force`: previewd's environments have no on_stop job to run.
            let r = self
                .call(
                    "environments/stop",
                    Method::POST,
                    &stop,
                    Some(json!({ "force": true })),
                )
                .await;
            ok_unless_gone(r)?;
        }
        ok_unless_gone(
            self.call("environments/delete", Method::DELETE, &base, None)
                .await,
        )
    }

    /// Records a deployment of `sha` (from `git_ref`) to environment `name`, running; returns
    /// its id.
    pub async fn create_deployment(
        &self,
        repo: &Repo,
        name: &str,
        sha: &CommitSha,
        git_ref: &str,
    ) -> ForgeResult<u64> {
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let path = format!("/projects/{}/deployments", ProjectRef::Path(repo).segment());
        let body = json!({
            "environment": name,
            "sha": sha.as_str(),
            "ref": git_ref,
            "tag": false,
            "status": StatusState::Running.as_str(),
        });
        let body = self
            .call("deployments/create", Method::POST, &path, Some(body))
            .await?;
        Ok(decode::<Created>("deployments/create", &body)?.id)
    }

    /// Moves deployment `id` to `state`.
    pub async fn update_deployment(
        &self,
        repo: &Repo,
        id: u64,
        state: StatusState,
    ) -> ForgeResult<()> {
        let path = format!(
            "/projects/{}/deployments/{id}",
            ProjectRef::Path(repo).segment()
        );
        let body = json!({ "status": state.as_str() });
        self.call("deployments/update", Method::PUT, &path, Some(body))
            .await
            .map(drop)
    }
}
