//! The forge-neutral middle: the events previewd understands, and the few calls it makes back
//! to a forge (read a pull request, check a permission, report). Each forge lives in its own
//! file (`github`, later `gitea`, `gitlab`) and maps its payloads and API onto these types, so
//! the policy (`intent`) and the workers (`queue`) never see a forge's wire format.
//! Nothing here talks HTTP, and nothing here may hold or print a secret.
//!
//! `event` holds what a forge tells previewd (`Repo`, `PullRequest`, `ForgeEvent`, ...),
//! `calls` what previewd asks of it (the `Forge` trait and `ForgeError`); this file names the
//! forges (`ForgeKind`) and chooses the one whose token a git fetch gets.

pub mod comment;
pub mod github;
pub mod gitlab;
pub mod report;
pub mod retry;

mod calls;
mod event;

use std::sync::Arc;

use std::fmt;

pub use calls::{
    CommitState, DeploymentState, Forge, ForgeError, ForgeResult, Permission, Reaction,
};
pub use event::{Actor, CommentAction, ForgeEvent, PrAction, PullRequest, Repo};

/// A forge previewd talks to, as the `forge` label of a preview names it (`Forge::name`).
/// A preview `previewd up` made is labelled `cli`, which names no forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForgeKind {
    GitHub,
}

impl ForgeKind {
    /// The forge a label value names; `None` for `cli` and for anything unknown.
    pub fn parse(label: &str) -> Option<ForgeKind> {
        match label {
            "github" => Some(ForgeKind::GitHub),
            _ => None,
        }
    }

    /// The label value: what [`Forge::name`] returns for this forge.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "github",
        }
    }
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `owner/name` when `url` is a repository on the forge at `git_url`; `None` for anything
/// else, which must never be sent the forge's token.
pub fn forge_path<'a>(git_url: &str, url: &'a str) -> Option<&'a str> {
    let rest = url.strip_prefix(git_url)?.strip_prefix('/')?;
    let path = rest.strip_suffix(".git").unwrap_or(rest);
    (!path.is_empty() && !path.contains("..")).then_some(path)
}

/// Git credentials of the configured forge, for the preview manager's fetches: the one place
/// that chooses the forge's implementation.
pub fn git_credentials(config: &crate::config::Config) -> Arc<dyn crate::engine::GitCredentials> {
    Arc::new(github::GitAccess::new(&config.github))
}

#[cfg(test)]
mod forge_path_tests {
    use super::forge_path;

    #[test]
    fn only_the_forges_own_urls_get_its_token() {
        let gh = "https://github.com";
        assert_eq!(forge_path(gh, "https://github.com/o/r.git"), Some("o/r"));
        assert_eq!(forge_path(gh, "https://github.com/o/r"), Some("o/r"));
        for foreign in [
            "https://github.com.evil.example/o/r.git",
            "https://evil.example/https://github.com/o/r.git",
            "http://github.com/o/r.git",
            "https://github.com",
            "https://github.com/",
            "https://github.com/../x.git",
        ] {
            assert_eq!(forge_path(gh, foreign), None, "{foreign}");
        }
    }
}
