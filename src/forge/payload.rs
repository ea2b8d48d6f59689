//! The pieces of webhook payloads (and REST answers) that GitHub and Gitea write alike: a
//! repository by its `full_name`, a label, a pull request's head or base, an issue, and the
//! step from those to the neutral `PullRequest`. Private serde structs that borrow from the
//! body; each forge's `payload` module builds its events from them. Nothing here acts on an
//! event.

use std::borrow::Cow;

use serde::Deserialize;

use crate::forge::{CommentAction, PullRequest, Repo};
use crate::ids::CommitSha;

#[derive(Deserialize)]
pub(crate) struct Repository<'a> {
    #[serde(borrow)]
    pub full_name: Cow<'a, str>,
}

impl Repository<'_> {
    pub fn repo(&self) -> Result<Repo, String> {
        Repo::parse(&self.full_name)
            .ok_or_else(|| format!("repository {:?} is not owner/name", cap(&self.full_name)))
    }
}

#[derive(Deserialize)]
pub(crate) struct Label<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

/// A pull request's head or base.
#[derive(Deserialize)]
pub(crate) struct PrRef<'a> {
    #[serde(rename = "ref", borrow)]
    pub git_ref: Cow<'a, str>,
    #[serde(borrow)]
    pub sha: Cow<'a, str>,
    /// `null` once the repository was deleted.
    #[serde(default, borrow)]
    pub repo: Option<Repository<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct Issue {
    pub number: u64,
    /// Present (not null) when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

/// The neutral pull request of a forge's `number`, `head` and `base`, open or not.
pub(crate) fn pull_request(
    number: u64,
    open: bool,
    head: PrRef<'_>,
    base: &PrRef<'_>,
    labels: Vec<Label<'_>>,
) -> Result<PullRequest, String> {
    let head_sha = CommitSha::parse(&head.sha).map_err(|e| e.to_string())?;
    let head_repo = head.repo.as_ref().map(Repository::repo).transpose()?;
    let base_repo = base.repo.as_ref().map(Repository::repo).transpose()?;
    // A deleted head repository is treated as a fork: its code is not the base's.
    let fork = match (&head_repo, &base_repo) {
        (Some(h), Some(b)) => h != b,
        _ => true,
    };
    Ok(PullRequest {
        number,
        open,
        head_sha,
        head_branch: head.git_ref.into_owned(),
        head_repo,
        fork,
        labels: labels.into_iter().map(|l| l.name.into_owned()).collect(),
    })
}

/// A comment event's action.
pub(crate) fn comment_action(action: &str) -> CommentAction {
    match action {
        "created" => CommentAction::Created,
        "edited" => CommentAction::Edited,
        "deleted" => CommentAction::Deleted,
        other => CommentAction::Other(cap(other)),
    }
}

/// Values from outside are capped before they go into messages.
pub(crate) fn cap(s: &str) -> String {
    s.chars().take(80).collect()
}
