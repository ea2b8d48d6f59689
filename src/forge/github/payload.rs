//! GitHub webhook payloads: private serde structs that mirror only the fields previewd reads,
//! mapped into the forge-neutral `ForgeEvent`. Unknown events and actions become
//! `Unsupported`/`Other` (ignored with a reason), never an error; a body that is not JSON or
//! not the event's shape is a `PayloadError` (answered 400). Nothing here acts on an event.
//!
//! Parsing is on every delivery's path: the structs borrow their strings from the body where
//! they have no escapes (`Cow`), fields previewd does not read are skipped by serde without
//! being stored, and only what ends up in the `ForgeEvent` is copied.

use std::borrow::Cow;

use serde::Deserialize;

use crate::forge::payload::{Issue, Label, PrRef, Repository, cap, comment_action, pull_request};
use crate::forge::{Actor, ForgeEvent, PrAction, PullRequest};
use crate::ids::CommitSha;

pub use crate::forge::PayloadError;

/// Maps a GitHub delivery (`X-GitHub-Event` and body) to a `ForgeEvent`.
pub fn parse_event(event: &str, body: &[u8]) -> Result<ForgeEvent, PayloadError> {
    let shape = |e| PayloadError::shape(event, e);
    let invalid = |reason| PayloadError::invalid(event, reason);
    let body = PayloadError::text(event, body)?;
    match event {
        "ping" => {
            // Still require JSON: an authentic ping is an object.
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(body)
                .map_err(shape)?;
            Ok(ForgeEvent::Ping)
        }
        "pull_request" => {
            let p: PullRequestPayload = serde_json::from_str(body).map_err(shape)?;
            p.into_event().map_err(invalid)
        }
        "push" => {
            let p: PushPayload = serde_json::from_str(body).map_err(shape)?;
            p.into_event().map_err(invalid)
        }
        "issue_comment" => {
            let p: IssueCommentPayload = serde_json::from_str(body).map_err(shape)?;
            p.into_event().map_err(invalid)
        }
        other => {
            // Still require JSON. A tree is built, but these events are rare, and a tree
            // refuses what skipping would let through (a number out of range).
            serde_json::from_str::<serde_json::Value>(body).map_err(shape)?;
            Ok(ForgeEvent::Unsupported {
                event: other.chars().take(64).collect(),
            })
        }
    }
}

#[derive(Deserialize)]
struct User<'a> {
    #[serde(borrow)]
    login: Cow<'a, str>,
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
}

impl User<'_> {
    fn actor(self) -> Actor {
        let is_bot = self.kind.as_deref() == Some("Bot") || self.login.ends_with("[bot]");
        Actor {
            login: self.login.into_owned(),
            is_bot,
            id: None,
        }
    }
}

/// A pull request as webhooks and the REST API (`pulls/get`, `pulls/list`) both give it.
#[derive(Deserialize)]
pub(crate) struct PullRequestBody<'a> {
    number: u64,
    #[serde(borrow)]
    state: Cow<'a, str>,
    #[serde(borrow)]
    head: PrRef<'a>,
    #[serde(borrow)]
    base: PrRef<'a>,
    #[serde(default, borrow)]
    labels: Vec<Label<'a>>,
    #[serde(default)]
    merged: Option<bool>,
}

impl PullRequestBody<'_> {
    /// Also used to read a pull request back from the REST API (same shape).
    pub(crate) fn into_pull_request(self) -> Result<PullRequest, String> {
        let open = self.state == "open";
        pull_request(self.number, open, self.head, &self.base, self.labels)
    }
}

#[derive(Deserialize)]
struct PullRequestPayload<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    pull_request: PullRequestBody<'a>,
    #[serde(default, borrow)]
    label: Option<Label<'a>>,
    #[serde(borrow)]
    repository: Repository<'a>,
    #[serde(borrow)]
    sender: User<'a>,
}

impl PullRequestPayload<'_> {
    fn into_event(self) -> Result<ForgeEvent, String> {
        let label = |l: Option<Label>| {
            l.map(|l| l.name.into_owned())
                .ok_or_else(|| format!("`{}` without a `label`", self.action))
        };
        let action = match &*self.action {
            "opened" => PrAction::Opened,
            "reopened" => PrAction::Reopened,
            "synchronize" => PrAction::Synchronize,
            "labeled" => PrAction::Labeled(label(self.label)?),
            "unlabeled" => PrAction::Unlabeled(label(self.label)?),
            "closed" => PrAction::Closed {
                merged: self.pull_request.merged.unwrap_or(false),
            },
            other => PrAction::Other(cap(other)),
        };
        Ok(ForgeEvent::PullRequest {
            repo: self.repository.repo()?,
            sender: self.sender.actor(),
            action,
            pr: self.pull_request.into_pull_request()?,
        })
    }
}

#[derive(Deserialize)]
struct PushPayload<'a> {
    #[serde(rename = "ref", borrow)]
    git_ref: Cow<'a, str>,
    #[serde(borrow)]
    after: Cow<'a, str>,
    #[serde(default)]
    deleted: bool,
    #[serde(borrow)]
    repository: Repository<'a>,
    #[serde(borrow)]
    sender: User<'a>,
}

impl PushPayload<'_> {
    fn into_event(self) -> Result<ForgeEvent, String> {
        let zero = self.after.bytes().all(|b| b == b'0');
        let deleted = self.deleted || zero;
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
}

impl IssueCommentPayload<'_> {
    fn into_event(self) -> Result<ForgeEvent, String> {
        let action = comment_action(&self.action);
        Ok(ForgeEvent::Comment {
            repo: self.repository.repo()?,
            author: self.comment.user.actor(),
            action,
            number: self.issue.number,
            on_pull_request: self.issue.pull_request.is_some_and(|v| !v.is_null()),
            comment_id: self.comment.id,
            body: self.comment.body.map(Cow::into_owned).unwrap_or_default(),
        })
    }
}
