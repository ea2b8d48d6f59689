//! The forge-neutral middle: the events previewd understands, and the few calls it makes back
//! to a forge (read a pull request, check a permission, report). Each forge lives in its own
//! folder (`github`, `gitea`, `gitlab`) and maps its payloads and API onto these types, so
//! the policy (`intent`) and the workers (`queue`) never see a forge's wire format.
//! Nothing here talks HTTP, and nothing here may hold or print a secret.
//!
//! `event` holds what a forge tells previewd (`Repo`, `PullRequest`, `ForgeEvent`, ...),
//! `calls` what previewd asks of it (the `Forge` trait and `ForgeError`); this file names the
//! forges (`ForgeKind`), holds the configured ones (`Forges`: the one registration of a forge's
//! implementation) and chooses the one whose token a git fetch gets.

pub mod comment;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod http;
pub mod links;
pub mod oauth;
pub mod owed;
mod payload;
pub mod report;
pub mod retry;
pub mod sleep_report;

mod calls;
mod event;

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::SecretString;

pub use crate::ids::ForgeKind;
pub use calls::{
    CommitState, EnvironmentState, Forge, ForgeError, ForgeResult, Permission, Reaction,
};
pub use event::{Actor, CommentAction, ForgeEvent, PayloadError, PrAction, PullRequest, Repo};

/// `owner/name` when `url` is a repository on the forge at `git_url`; `None` for anything
/// else, which must never be sent the forge's token.
pub fn forge_path<'a>(git_url: &str, url: &'a str) -> Option<&'a str> {
    let rest = url.strip_prefix(git_url)?.strip_prefix('/')?;
    let path = rest.strip_suffix(".git").unwrap_or(rest);
    (!path.is_empty() && !path.contains("..")).then_some(path)
}

/// The forges previewd talks to, by kind: what the queue, the reconciler and the CLI pick an
/// implementation from by a preview's `forge` label. Cheap to clone.
#[derive(Clone, Default)]
pub struct Forges {
    map: BTreeMap<ForgeKind, Arc<dyn Forge>>,
}

impl Forges {
    /// The forges whose credentials are in the config (a forge without a token is left out:
    /// it could not be reported to). The one place each forge's implementation is chosen.
    pub fn from_config(
        config: &crate::config::Config,
        policy: &retry::RetryPolicy,
    ) -> Result<Forges, ForgeError> {
        let mut forges = Forges::default();
        if config.github.token.is_some() || config.github.app_id.is_some() {
            forges.insert(Arc::new(github::GitHub::with_policy(
                &config.github,
                policy.clone(),
            )?));
        }
        if let Some(g) = config.gitea.as_ref().filter(|g| g.token.is_some()) {
            forges.insert(Arc::new(gitea::Gitea::new(g, policy.clone())?));
        }
        if let Some(g) = config.gitlab.as_ref().filter(|g| g.token.is_some()) {
            forges.insert(Arc::new(gitlab::GitLab::new(g, policy.clone())?));
        }
        Ok(forges)
    }

    pub fn insert(&mut self, forge: Arc<dyn Forge>) {
        if let Some(kind) = ForgeKind::parse(forge.name()) {
            self.map.insert(kind, forge);
        }
    }

    pub fn get(&self, kind: ForgeKind) -> Option<&Arc<dyn Forge>> {
        self.map.get(&kind)
    }

    /// The forge a preview's `forge` label names, when it is configured.
    pub fn by_label(&self, label: &str) -> Option<&Arc<dyn Forge>> {
        self.get(ForgeKind::parse(label)?)
    }

    pub fn iter(&self) -> impl Iterator<Item = (ForgeKind, &Arc<dyn Forge>)> {
        self.map.iter().map(|(k, f)| (*k, f))
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A forge's git access: a token sent only to URLs under its `git_url`.
struct TokenGitAccess {
    git_url: String,
    token: Option<SecretString>,
}

impl crate::engine::GitCredentials for TokenGitAccess {
    fn git_token<'a>(
        &'a self,
        url: &'a str,
        _key_repo: Option<&'a str>,
    ) -> crate::engine::BoxFuture<'a, Result<Option<SecretString>, String>> {
        let token = forge_path(&self.git_url, url).and(self.token.clone());
        Box::pin(async move { Ok(token) })
    }
}

/// Every configured forge's git credentials: a URL gets the token of the forge it belongs to,
/// and a URL of no forge gets none.
struct AllGitAccess(Vec<Arc<dyn crate::engine::GitCredentials>>);

impl crate::engine::GitCredentials for AllGitAccess {
    fn git_token<'a>(
        &'a self,
        url: &'a str,
        key_repo: Option<&'a str>,
    ) -> crate::engine::BoxFuture<'a, Result<Option<SecretString>, String>> {
        Box::pin(async move {
            for access in &self.0 {
                if let Some(token) = access.git_token(url, key_repo).await? {
                    return Ok(Some(token));
                }
            }
            Ok(None)
        })
    }
}

/// Git credentials of the configured forges, for the preview manager's fetches: the one place
/// that chooses each forge's implementation.
pub fn git_credentials(config: &crate::config::Config) -> Arc<dyn crate::engine::GitCredentials> {
    let mut all: Vec<Arc<dyn crate::engine::GitCredentials>> =
        vec![Arc::new(github::GitAccess::new(&config.github))];
    for section in [&config.gitea, &config.gitlab].into_iter().flatten() {
        all.push(Arc::new(TokenGitAccess {
            git_url: section.git_url.clone(),
            token: section.token.clone(),
        }));
    }
    Arc::new(AllGitAccess(all))
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
