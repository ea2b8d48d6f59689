//! What a forge tells previewd, in its neutral form: the repository (`Repo`), who acted
//! (`Actor`), a pull request as described or read back, and every event previewd reads
//! (`ForgeEvent`). Each forge's module maps its payloads onto these. Plain data: nothing here
//! talks to a forge or holds a secret.

use std::fmt;

use crate::ids::CommitSha;

/// A repository on a forge, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl Repo {
    /// Parses `owner/name`.
    pub fn parse(full_name: &str) -> Option<Repo> {
        let (owner, name) = full_name.split_once('/')?;
        // GitHub's and Gitea's alphabet for owners and names; anything else never reaches a URL.
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 100
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && s != "."
                && s != ".."
        };
        (ok(owner) && ok(name)).then(|| Repo {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub login: String,
    /// A bot account (GitHub `type: Bot`, or a `[bot]` login). Bots never command previewd.
    pub is_bot: bool,
}

/// A pull request as the forge describes it, in an event or when read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub open: bool,
    pub head_sha: CommitSha,
    pub head_branch: String,
    /// `owner/name` of the repository the head branch lives in; `None` when it was deleted.
    pub head_repo: Option<Repo>,
    /// The head lives in another repository than the base.
    pub fork: bool,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrAction {
    Opened,
    Reopened,
    Synchronize,
    /// The label that was added.
    Labeled(String),
    /// The label that was removed.
    Unlabeled(String),
    Closed {
        merged: bool,
    },
    /// Any other action (`edited`, `assigned`, ...), kept for the "ignored" reason.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentAction {
    Created,
    Edited,
    Deleted,
    Other(String),
}

/// Every event previewd reads, whatever forge sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeEvent {
    /// The forge checking the hook works.
    Ping,
    PullRequest {
        repo: Repo,
        sender: Actor,
        action: PrAction,
        pr: PullRequest,
    },
    Push {
        repo: Repo,
        sender: Actor,
        /// The full ref, `refs/heads/<branch>` or `refs/tags/<tag>`.
        git_ref: String,
        /// The new head; `None` when the ref was deleted.
        after: Option<CommitSha>,
        deleted: bool,
    },
    Comment {
        repo: Repo,
        author: Actor,
        action: CommentAction,
        /// The issue or pull request number.
        number: u64,
        on_pull_request: bool,
        comment_id: u64,
        body: String,
    },
    /// An event previewd does not act on; the name is kept for the "ignored" answer.
    Unsupported { event: String },
}

/// Why an authentic webhook body could not be read (answered 400).
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not JSON of the `{event}` event's shape: {reason}")]
    Shape { event: String, reason: String },
    #[error("`{event}` event: {reason}")]
    Invalid { event: String, reason: String },
}
