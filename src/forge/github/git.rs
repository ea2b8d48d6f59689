//! GitHub's side of git over HTTPS: which URLs are GitHub's own (only those are sent a token)
//! and which token fetches a repository (an App's installation token, else the configured
//! token). Nothing here fetches, logs or puts a token in an error.

use secrecy::SecretString;

use super::auth::Credentials;
use crate::config::GithubConfig;
use crate::engine::{BoxFuture, GitCredentials};
use crate::forge::{Repo, forge_path};

/// The preview manager's git credentials for GitHub.
pub struct GitAccess {
    git_url: String,
    /// `None` when the configured credentials cannot be used (a bad App key): fetches then use
    /// the configured token, if any, as they did before Apps were supported.
    credentials: Option<Credentials>,
    token: Option<SecretString>,
}

impl GitAccess {
    pub fn new(cfg: &GithubConfig) -> GitAccess {
        GitAccess {
            git_url: cfg.git_url.clone(),
            credentials: Credentials::new(cfg).ok(),
            token: cfg.token.clone(),
        }
    }
}

impl GitCredentials for GitAccess {
    fn git_token<'a>(
        &'a self,
        url: &'a str,
        key_repo: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<SecretString>, String>> {
        Box::pin(async move {
            let Some(path) = forge_path(&self.git_url, url) else {
                return Ok(None);
            };
            let repo = key_repo.and_then(Repo::parse).or_else(|| Repo::parse(path));
            match (&self.credentials, repo) {
                (Some(c), Some(repo)) => c
                    .git_token(&repo)
                    .await
                    .map_err(|e| format!("no git credentials for {repo}: {e}")),
                _ => Ok(self.token.clone()),
            }
        })
    }
}
