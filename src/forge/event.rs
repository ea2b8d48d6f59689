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
    /// Parses `owner/name`; GitLab's `owner` may be a nested group path (`group/sub`), so the
    /// name is what follows the last `/`.
    pub fn parse(full_name: &str) -> Option<Repo> {
        let (owner, name) = full_name.rsplit_once('/')?;
        // GitHub's, Gitea's and GitLab's alphabet for owners and names; anything else never
        // reaches a URL.
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 100
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && s != "."
                && s != ".."
        };
        // GitLab nests groups 20 deep at most.
        let segments = owner.split('/').count();
        (segments <= 20 && owner.split('/').all(ok) && ok(name)).then(|| Repo {
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
    /// The forge's number for the user, where its API names users by number (GitLab's
    /// members API); `None` where the forge's payload does not carry it.
    pub id: Option<u64>,
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
    /// Several labels changed at once (GitLab reports a label edit as the sets before and
    /// after).
    LabelsChanged {
        added: Vec<String>,
        removed: Vec<String>,
    },
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

impl PayloadError {
    /// `body` as text. JSON is UTF-8 (RFC 8259): checked once over the whole body, so serde
    /// reads a `&str` and does not check each string it borrows again (profiled under load: 4 %
    /// of `serve`'s CPU; a 28 KB payload parses 1.1-1.2x faster). Stricter too: invalid UTF-8
    /// in a field previewd skips is refused, as it should be.
    pub fn text<'a>(event: &str, body: &'a [u8]) -> Result<&'a str, PayloadError> {
        std::str::from_utf8(body).map_err(|e| PayloadError::Shape {
            event: event.to_owned(),
            reason: format!("not UTF-8 at byte {}", e.valid_up_to()),
        })
    }

    pub fn shape(event: &str, e: serde_json::Error) -> PayloadError {
        PayloadError::Shape {
            event: event.to_owned(),
            reason: e.to_string(),
        }
    }

    pub fn invalid(event: &str, reason: String) -> PayloadError {
        PayloadError::Invalid {
            event: event.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Repo;

    #[test]
    fn a_repository_path_may_nest_groups_but_not_escape_them() {
        let r = Repo::parse("group/sub/project").expect("nested");
        assert_eq!(
            (r.owner.as_str(), r.name.as_str()),
            ("group/sub", "project")
        );
        assert_eq!(r.full_name(), "group/sub/project");
        assert_eq!(Repo::parse("o/r").map(|r| r.owner), Some("o".to_owned()));
        for bad in [
            "o", "/r", "o/", "o//r", "../r", "o/../r", "o/r?x", "o r/x", "o/..",
        ] {
            assert_eq!(Repo::parse(bad), None, "{bad}");
        }
    }
}
