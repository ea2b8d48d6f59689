//! Gitea and Forgejo webhook payloads (one format): private serde structs that mirror only
//! the fields previewd reads, mapped into the forge-neutral `ForgeEvent`. Unknown events and
//! actions become `Unsupported`/`Other` (ignored with a reason), never an error; a body that
//! is not JSON or not the event's shape is a `PayloadError` (answered 400). Nothing here acts
//! on an event or talks to anything.
//!
//! Gitea names a delivery twice: `X-Gitea-Event` is the family (`pull_request`, `push`,
//! `issue_comment`, `delete`, ...) and `X-Gitea-Event-Type` the precise kind
//! (`pull_request_sync`, `pull_request_label`, `pull_request_comment`, ...); `kind` reads the
//! precise one first. A label change does not say which label changed: it carries the PR's
//! whole label set (`label_updated`, or `label_cleared` when none is left), so it is returned
//! as `Parsed::Labels` and the receiver, which knows whether the PR has a preview, decides
//! with `label_action` whether a trigger label came or went.

use std::borrow::Cow;

use serde::Deserialize;

use crate::forge::payload::{Issue, Label, PrRef, Repository, cap, comment_action, pull_request};
use crate::forge::{Actor, ForgeEvent, PayloadError, PrAction, PullRequest, Repo};
use crate::ids::CommitSha;

/// What a Gitea delivery says, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Event(ForgeEvent),
    /// The PR's labels changed to `pr.labels`; which one did is for `label_action`.
    Labels {
        repo: Repo,
        sender: Actor,
        /// `label_updated` or `label_cleared`, for the "ignored" reason.
        action: String,
        pr: PullRequest,
    },
}

/// The family of events a delivery belongs to, from `X-Gitea-Event-Type` (precise) or, on
/// an older Gitea that sends only it, `X-Gitea-Event`.
pub fn family(event_type: &str) -> &str {
    match event_type {
        "pull_request"
        | "pull_request_sync"
        | "pull_request_label"
        | "pull_request_assign"
        | "pull_request_milestone"
        | "pull_request_review_request" => "pull_request",
        "issue_comment" | "pull_request_comment" => "issue_comment",
        other => other,
    }
}

/// Maps a Gitea or Forgejo delivery (its event type and body) to what it says.
pub fn parse_event(event_type: &str, body: &[u8]) -> Result<Parsed, PayloadError> {
    let shape = |e: serde_json::Error| PayloadError::Shape {
        event: event_type.to_owned(),
        reason: e.to_string(),
    };
    let invalid = |reason: String| PayloadError::Invalid {
        event: event_type.to_owned(),
        reason,
    };
    let body = std::str::from_utf8(body).map_err(|e| PayloadError::Shape {
        event: event_type.to_owned(),
        reason: format!("not UTF-8 at byte {}", e.valid_up_to()),
    })?;
    match family(event_type) {
        "pull_request" => {
            let p: PullRequestPayload = serde_json::from_str(body).map_err(shape)?;
            p.into_parsed().map_err(invalid)
        }
        "push" => {
            let p: PushPayload = serde_json::from_str(body).map_err(shape)?;
            p.into_event().map(Parsed::Event).map_err(invalid)
        }
        "delete" => {
            let p: DeletePayload = serde_json::from_str(body).map_err(shape)?;
            p.into_event().map(Parsed::Event).map_err(invalid)
        }
        "issue_comment" => {
            let p: IssueCommentPayload = serde_json::from_str(body).map_err(shape)?;
            p.into_event().map(Parsed::Event).map_err(invalid)
        }
        other => {
            serde_json::from_str::<serde_json::Value>(body).map_err(shape)?;
            Ok(Parsed::Event(ForgeEvent::Unsupported {
                event: other.chars().take(64).collect(),
            }))
        }
    }
}

/// What a label change means for a PR whose labels are now `labels`: a trigger label came
/// (`Labeled`) when it carries one and has no preview yet, went (`Unlabeled`) when it carries
/// none and has a preview; otherwise nothing previewd acts on. `trigger` names the trigger
/// labels, in the operator's order.
pub fn label_action(
    labels: &[String],
    trigger: &[String],
    has_preview: bool,
    action: &str,
) -> PrAction {
    let carried = trigger.iter().find(|t| labels.contains(t));
    match (carried, has_preview, trigger.first()) {
        (Some(label), false, _) => PrAction::Labeled(label.clone()),
        (None, true, Some(first)) => PrAction::Unlabeled(first.clone()),
        _ => PrAction::Other(action.to_owned()),
    }
}

#[derive(Deserialize)]
struct User<'a> {
    #[serde(borrow)]
    login: Cow<'a, str>,
}

impl User<'_> {
    /// Gitea marks no account as a bot in its payloads; previewd's own user is recognised by
    /// the receiver (from `GET /user`).
    fn actor(self) -> Actor {
        Actor {
            login: self.login.into_owned(),
            is_bot: false,
            id: None,
        }
    }
}

/// A pull request as webhooks and the REST API (`repoGetPullRequest`) both give it.
#[derive(Deserialize)]
pub(super) struct PullRequestBody<'a> {
    number: u64,
    /// `open` or `closed`; some Forgejo label payloads leave it out (then `closed_at` and
    /// `merged` tell).
    #[serde(default, borrow)]
    state: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    closed_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    head: PrRef<'a>,
    #[serde(borrow)]
    base: PrRef<'a>,
    #[serde(default, borrow)]
    labels: Option<Vec<Label<'a>>>,
    #[serde(default)]
    merged: Option<bool>,
}

impl PullRequestBody<'_> {
    pub(super) fn into_pull_request(self) -> Result<PullRequest, String> {
        let open = match self.state.as_deref() {
            Some(state) => state == "open",
            None => self.closed_at.is_none() && self.merged != Some(true),
        };
        let labels = self.labels.unwrap_or_default();
        pull_request(self.number, open, self.head, &self.base, labels)
    }
}

#[derive(Deserialize)]
struct PullRequestPayload<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    pull_request: PullRequestBody<'a>,
    #[serde(borrow)]
    repository: Repository<'a>,
    #[serde(borrow)]
    sender: User<'a>,
}

impl PullRequestPayload<'_> {
    fn into_parsed(self) -> Result<Parsed, String> {
        let merged = self.pull_request.merged.unwrap_or(false);
        let action = match &*self.action {
            "opened" => PrAction::Opened,
            "reopened" => PrAction::Reopened,
            "synchronized" => PrAction::Synchronize,
            "closed" => PrAction::Closed { merged },
            "label_updated" | "label_cleared" => {
                return Ok(Parsed::Labels {
                    repo: self.repository.repo()?,
                    sender: self.sender.actor(),
                    action: self.action.into_owned(),
                    pr: self.pull_request.into_pull_request()?,
                });
            }
            other => PrAction::Other(cap(other)),
        };
        Ok(Parsed::Event(ForgeEvent::PullRequest {
            repo: self.repository.repo()?,
            sender: self.sender.actor(),
            action,
            pr: self.pull_request.into_pull_request()?,
        }))
    }
}

#[derive(Deserialize)]
struct PushPayload<'a> {
    #[serde(rename = "ref", borrow)]
    git_ref: Cow<'a, str>,
    #[serde(borrow)]
    after: Cow<'a, str>,
    #[serde(borrow)]
    repository: Repository<'a>,
    #[serde(borrow)]
    sender: User<'a>,
}

impl PushPayload<'_> {
    fn into_event(self) -> Result<ForgeEvent, String> {
        // Gitea reports a deleted branch with a `delete` event; an all-zero `after` is read
        // as a deletion too, as git itself writes it.
        let deleted = self.after.bytes().all(|b| b == b'0');
        let after = if deleted {
            None
        } else {
            Some(CommitSha::parse(&self.after).map_err(|e| e.to_string())?)
        };
        Ok(ForgeEvent::Push {
            repo: self.repository.repo()?,
            sender: self.sender.actor(),
            git_ref: self.git_ref.into_owned(),
            after,
            deleted,
        })
    }
}

/// `delete`: a branch or tag was deleted; `ref` is its short name.
#[derive(Deserialize)]
struct DeletePayload<'a> {
    #[serde(rename = "ref", borrow)]
    git_ref: Cow<'a, str>,
    #[serde(borrow)]
    ref_type: Cow<'a, str>,
    #[serde(borrow)]
    repository: Repository<'a>,
    #[serde(borrow)]
    sender: User<'a>,
}

impl DeletePayload<'_> {
    fn into_event(self) -> Result<ForgeEvent, String> {
        let git_ref = match &*self.ref_type {
            "branch" => format!("refs/heads/{}", self.git_ref),
            "tag" => format!("refs/tags/{}", self.git_ref),
            other => format!("refs/{}/{}", cap(other), self.git_ref),
        };
        Ok(ForgeEvent::Push {
            repo: self.repository.repo()?,
            sender: self.sender.actor(),
            git_ref,
            after: None,
            deleted: true,
        })
    }
}

#[derive(Deserialize)]
struct Comment<'a> {
    id: u64,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: User<'a>,
}

#[derive(Deserialize)]
struct IssueCommentPayload<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    issue: Issue,
    #[serde(borrow)]
    comment: Comment<'a>,
    #[serde(borrow)]
    repository: Repository<'a>,
    /// Whether the issue is a pull request (Gitea also fills `issue.pull_request` then).
    #[serde(default)]
    is_pull: Option<bool>,
}

impl IssueCommentPayload<'_> {
    fn into_event(self) -> Result<ForgeEvent, String> {
        let action = comment_action(&self.action);
        let on_pull_request = self
            .is_pull
            .unwrap_or_else(|| self.issue.pull_request.is_some_and(|v| !v.is_null()));
        Ok(ForgeEvent::Comment {
            repo: self.repository.repo()?,
            author: self.comment.user.actor(),
            action,
            number: self.issue.number,
            on_pull_request,
            comment_id: self.comment.id,
            body: self.comment.body.map(Cow::into_owned).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_label_set_is_read_against_the_preview() {
        let trigger = labels(&["preview", "needs-preview"]);
        let act = |set: &[&str], has| label_action(&labels(set), &trigger, has, "label_updated");
        assert_eq!(
            act(&["bug", "preview"], false),
            PrAction::Labeled("preview".into())
        );
        assert_eq!(
            act(&["needs-preview"], false),
            PrAction::Labeled("needs-preview".into())
        );
        assert_eq!(act(&["bug"], true), PrAction::Unlabeled("preview".into()));
        assert_eq!(act(&[], true), PrAction::Unlabeled("preview".into()));
        // Another label changed: nothing to do either way.
        assert_eq!(
            act(&["preview", "bug"], true),
            PrAction::Other("label_updated".into())
        );
        assert_eq!(
            act(&["bug"], false),
            PrAction::Other("label_updated".into())
        );
    }

    #[test]
    fn precise_event_types_fall_in_their_family() {
        assert_eq!(family("pull_request_sync"), "pull_request");
        assert_eq!(family("pull_request_label"), "pull_request");
        assert_eq!(family("pull_request_comment"), "issue_comment");
        assert_eq!(
            family("pull_request_review_approved"),
            "pull_request_review_approved"
        );
        assert_eq!(family("push"), "push");
    }
}
