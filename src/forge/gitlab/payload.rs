//! GitLab webhook payloads (`X-Gitlab-Event`): private serde structs that mirror only the
//! fields previewd reads, mapped into the forge-neutral `ForgeEvent`.
//!
//! - `Merge Request Hook`: `open`, `reopen`, `close`, `merge`; `update` is a push when it
//!   carries `oldrev` (the head before the new commits), a label edit when `changes.labels`
//!   holds the sets before and after; any other `update` or action is kept as `Other`.
//! - `Push Hook` / `Tag Push Hook`: a ref moved or was deleted (`after` all zeros); tags reach
//!   the policy as `refs/tags/...`, which it ignores.
//! - `Note Hook`: a note on a merge request is a comment on a pull request; on an issue, a
//!   comment on an issue; anything else (commits, snippets) is unsupported, as are internal
//!   notes (`Confidential Note Hook`), which a public answer would leak.
//!
//! The repository is the hook's project (`path_with_namespace`, groups may nest); a merge
//! request is a fork's when its source and target projects differ. Unknown events and actions
//! become `Unsupported`/`Other` (ignored with a reason); a body that is not JSON or not the
//! event's shape is a `PayloadError` (answered 400). Nothing here acts on an event.

use std::borrow::Cow;

use serde::Deserialize;

use crate::forge::{Actor, CommentAction, ForgeEvent, PayloadError, PrAction, PullRequest, Repo};
use crate::ids::CommitSha;

/// Maps a GitLab delivery (`X-Gitlab-Event` and body) to a `ForgeEvent`.
pub fn parse_event(event: &str, body: &[u8]) -> Result<ForgeEvent, PayloadError> {
    let shape = |e| PayloadError::shape(event, e);
    let invalid = |reason| PayloadError::invalid(event, reason);
    let body = PayloadError::text(event, body)?;
    match event {
        "Merge Request Hook" => {
            let p: MergeRequestPayload = serde_json::from_str(body).map_err(shape)?;
            p.into_event().map_err(invalid)
        }
        "Push Hook" | "Tag Push Hook" => {
            let p: PushPayload = serde_json::from_str(body).map_err(shape)?;
            p.into_event().map_err(invalid)
        }
        "Note Hook" => {
            let p: NotePayload = serde_json::from_str(body).map_err(shape)?;
            p.into_event().map_err(invalid)
        }
        other => {
            serde_json::from_str::<serde_json::Value>(body).map_err(shape)?;
            Ok(ForgeEvent::Unsupported {
                event: other.chars().take(64).collect(),
            })
        }
    }
}

/// Whether a GitLab username is a bot's: project and group access tokens act as bot users
/// named `project_<id>_bot_<hex>` / `group_<id>_bot_<hex>` (`_bot` alone before GitLab 14.x).
/// GitLab's hooks carry no bot flag, so the name is all there is.
pub fn is_bot_username(username: &str) -> bool {
    let Some(rest) = username
        .strip_prefix("project_")
        .or_else(|| username.strip_prefix("group_"))
    else {
        return username == "ghost" || username == "alert-bot" || username == "support-bot";
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    tail == "_bot" || tail.strip_prefix("_bot_").is_some_and(|h| !h.is_empty())
}

#[derive(Deserialize)]
struct User<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow)]
    username: Cow<'a, str>,
}

fn actor(username: Cow<'_, str>, id: Option<u64>) -> Actor {
    Actor {
        is_bot: is_bot_username(&username),
        login: username.into_owned(),
        id,
    }
}

#[derive(Deserialize)]
struct Project<'a> {
    #[serde(borrow)]
    path_with_namespace: Cow<'a, str>,
}

impl Project<'_> {
    fn repo(&self) -> Result<Repo, String> {
        Repo::parse(&self.path_with_namespace).ok_or_else(|| {
            format!(
                "project {:?} is not a group/project path",
                cap(&self.path_with_namespace)
            )
        })
    }
}

#[derive(Deserialize)]
struct Label<'a> {
    #[serde(borrow)]
    title: Cow<'a, str>,
}

fn titles(labels: Vec<Label<'_>>) -> Vec<String> {
    labels.into_iter().map(|l| l.title.into_owned()).collect()
}

#[derive(Deserialize)]
struct Commit<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// A merge request as the MR hook's `object_attributes` and the note hook's `merge_request`
/// both give it.
#[derive(Deserialize)]
struct MergeRequest<'a> {
    iid: u64,
    #[serde(borrow)]
    state: Cow<'a, str>,
    #[serde(borrow)]
    source_branch: Cow<'a, str>,
    source_project_id: u64,
    target_project_id: u64,
    #[serde(default, borrow)]
    source: Option<Project<'a>>,
    #[serde(default, borrow)]
    last_commit: Option<Commit<'a>>,
    #[serde(default, borrow)]
    labels: Option<Vec<Label<'a>>>,
    #[serde(default, borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    oldrev: Option<Cow<'a, str>>,
}

impl MergeRequest<'_> {
    /// The neutral pull request; `project` is the hook's (the target) repository and
    /// `labels` the hook's top-level list when the attributes carry none.
    fn into_pull_request(
        self,
        project: &Repo,
        labels: Option<Vec<Label<'_>>>,
    ) -> Result<PullRequest, String> {
        let Some(commit) = self.last_commit else {
            return Err(format!("merge request !{} without a last_commit", self.iid));
        };
        let head_sha = CommitSha::parse(&commit.id).map_err(|e| e.to_string())?;
        let fork = self.source_project_id != self.target_project_id;
        let head_repo = if !fork {
            Some(project.clone())
        } else {
            // A fork's project that was deleted leaves no source to fetch.
            self.source.as_ref().map(Project::repo).transpose()?
        };
        Ok(PullRequest {
            number: self.iid,
            open: self.state == "opened",
            head_sha,
            head_branch: self.source_branch.into_owned(),
            head_repo,
            fork,
            labels: titles(self.labels.or(labels).unwrap_or_default()),
        })
    }
}

#[derive(Deserialize)]
struct LabelChange<'a> {
    #[serde(default, borrow)]
    previous: Vec<Label<'a>>,
    #[serde(default, borrow)]
    current: Vec<Label<'a>>,
}

#[derive(Deserialize)]
struct Changes<'a> {
    #[serde(default, borrow)]
    labels: Option<LabelChange<'a>>,
}

#[derive(Deserialize)]
struct MergeRequestPayload<'a> {
    #[serde(borrow)]
    user: User<'a>,
    #[serde(borrow)]
    project: Project<'a>,
    #[serde(borrow)]
    object_attributes: MergeRequest<'a>,
    #[serde(default, borrow)]
    labels: Option<Vec<Label<'a>>>,
    #[serde(default, borrow)]
    changes: Option<Changes<'a>>,
}

impl MergeRequestPayload<'_> {
    fn into_event(self) -> Result<ForgeEvent, String> {
        let repo = self.project.repo()?;
        let attrs = self.object_attributes;
        let action = match attrs.action.as_deref().unwrap_or("") {
            "open" => PrAction::Opened,
            "reopen" => PrAction::Reopened,
            "close" => PrAction::Closed { merged: false },
            "merge" => PrAction::Closed { merged: true },
            "update" if attrs.oldrev.as_deref().is_some_and(|r| !r.is_empty()) => {
                PrAction::Synchronize
            }
            "update" => match self.changes.and_then(|c| c.labels) {
                Some(change) => label_action(change),
                None => PrAction::Other("update".into()),
            },
            "" => PrAction::Other("(no action)".into()),
            other => PrAction::Other(cap(other)),
        };
        Ok(ForgeEvent::PullRequest {
            sender: actor(self.user.username, self.user.id),
            action,
            pr: attrs.into_pull_request(&repo, self.labels)?,
            repo,
        })
    }
}

/// The labels added and removed by a label edit; one change is reported as GitHub reports it.
fn label_action(change: LabelChange<'_>) -> PrAction {
    let before = titles(change.previous);
    let after = titles(change.current);
    let added: Vec<String> = after
        .iter()
        .filter(|l| !before.contains(l))
        .cloned()
        .collect();
    let removed: Vec<String> = before.into_iter().filter(|l| !after.contains(l)).collect();
    match (added.as_slice(), removed.as_slice()) {
        ([one], []) => PrAction::Labeled(one.clone()),
        ([], [one]) => PrAction::Unlabeled(one.clone()),
        ([], []) => PrAction::Other("update".into()),
        _ => PrAction::LabelsChanged { added, removed },
    }
}

#[derive(Deserialize)]
struct PushPayload<'a> {
    #[serde(rename = "ref", borrow)]
    git_ref: Cow<'a, str>,
    #[serde(borrow)]
    after: Cow<'a, str>,
    #[serde(default)]
    user_id: Option<u64>,
    #[serde(borrow)]
    user_username: Cow<'a, str>,
    #[serde(borrow)]
    project: Project<'a>,
}

impl PushPayload<'_> {
    fn into_event(self) -> Result<ForgeEvent, String> {
        // A deleted ref's `after` is forty zeros (and `checkout_sha` is null).
        let deleted = self.after.bytes().all(|b| b == b'0');
        let after = if deleted {
            None
        } else {
            Some(CommitSha::parse(&self.after).map_err(|e| e.to_string())?)
        };
        Ok(ForgeEvent::Push {
            repo: self.project.repo()?,
            sender: actor(self.user_username, self.user_id),
            git_ref: self.git_ref.into_owned(),
            after,
            deleted,
        })
    }
}

#[derive(Deserialize)]
struct Note<'a> {
    id: u64,
    #[serde(default, borrow)]
    note: Option<Cow<'a, str>>,
    #[serde(borrow)]
    noteable_type: Cow<'a, str>,
    #[serde(default)]
    system: Option<bool>,
    #[serde(default, borrow)]
    action: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Issue {
    iid: u64,
}

#[derive(Deserialize)]
struct NotePayload<'a> {
    #[serde(borrow)]
    user: User<'a>,
    #[serde(borrow)]
    project: Project<'a>,
    #[serde(borrow)]
    object_attributes: Note<'a>,
    #[serde(default, borrow)]
    merge_request: Option<MergeRequest<'a>>,
    #[serde(default)]
    issue: Option<Issue>,
}

impl NotePayload<'_> {
    fn into_event(self) -> Result<ForgeEvent, String> {
        let note = self.object_attributes;
        let (number, on_pull_request) = match (&*note.noteable_type, self.merge_request, self.issue)
        {
            ("MergeRequest", Some(mr), _) => (mr.iid, true),
            ("MergeRequest", None, _) => {
                return Err("a merge request's note without `merge_request`".into());
            }
            ("Issue", _, Some(issue)) => (issue.iid, false),
            (other, _, _) => {
                return Ok(ForgeEvent::Unsupported {
                    event: format!("Note Hook on a {}", cap(other)),
                });
            }
        };
        let action = match (note.system, note.action.as_deref()) {
            // Notes GitLab writes itself ("added 1 commit"): nobody's command.
            (Some(true), _) => CommentAction::Other("system note".into()),
            (_, None | Some("create")) => CommentAction::Created,
            (_, Some("update")) => CommentAction::Edited,
            (_, Some(other)) => CommentAction::Other(cap(other)),
        };
        Ok(ForgeEvent::Comment {
            repo: self.project.repo()?,
            author: actor(self.user.username, self.user.id),
            action,
            number,
            on_pull_request,
            comment_id: note.id,
            body: note.note.map(Cow::into_owned).unwrap_or_default(),
        })
    }
}

/// Values from outside are capped before they go into messages.
fn cap(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
