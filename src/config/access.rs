//! `[access]`: who may see a preview (docs/access.md), and the OAuth client each forge's
//! section may carry for it. Only the shape and its checks live here; the checking of visitors
//! is `access` and `edge`'s. Nothing here reads a file, the environment or a secret's value.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// How a preview is protected. Ordered from the loosest to the tightest: a repository may
/// move its previews up this order, never down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    /// Anyone with the URL.
    Public,
    /// HTTP basic auth with a password previewd derives per preview.
    Password,
    /// Signed in with the forge, with read access to the preview's repository.
    Forge,
}

impl AccessMode {
    pub fn parse(s: &str) -> Option<AccessMode> {
        match s {
            "public" => Some(AccessMode::Public),
            "password" => Some(AccessMode::Password),
            "forge" => Some(AccessMode::Forge),
            _ => None,
        }
    }

    /// This mode, tightened by what a repository asks (`.previewd.yml`'s `access`): the
    /// tighter of the two, so a repository never loosens the operator's mode.
    pub fn tightened(self, asked: Option<AccessMode>) -> AccessMode {
        self.max(asked.unwrap_or(self))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::Public => "public",
            AccessMode::Password => "password",
            AccessMode::Forge => "forge",
        }
    }
}

/// `[access]`, checked.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// `None`: forge for private repositories when their forge has an OAuth client, else
    /// public.
    pub mode: Option<AccessMode>,
    /// Signs cookies and derives passwords; `None`: a random key kept in the instance's
    /// directory (`access::keys`), so sessions and passwords survive restarts.
    pub session_secret: Option<SecretString>,
    /// `X-Previewd-Token` value that opens every preview (CI, bots); never logged.
    pub bypass_token: Option<SecretString>,
    /// How old a session may be before the forge is asked again.
    pub recheck: Duration,
}

/// A forge's OAuth application (GitHub OAuth app or App, Gitea/GitLab OAuth2 application).
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: SecretString,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAccess {
    mode: Option<String>,
    session_secret: Option<String>,
    bypass_token: Option<String>,
    recheck: String,
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

impl RawAccess {
    pub(super) fn settle(self) -> Result<AccessConfig, ConfigError> {
        let mode = match self.mode.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(m) => Some(AccessMode::parse(m).ok_or_else(|| {
                invalid(
                    "access.mode",
                    format!("{m:?}: use public, forge or password"),
                )
            })?),
        };
        let secret = |key: &str, v: Option<String>| match v {
            Some(s) if s.len() < 16 => Err(invalid(key, "must be at least 16 characters")),
            other => Ok(other.map(SecretString::from)),
        };
        let recheck = humantime::parse_duration(&self.recheck)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                invalid(
                    "access.recheck",
                    format!("{:?} is not a duration like 10m", self.recheck),
                )
            })?;
        Ok(AccessConfig {
            mode,
            session_secret: secret("access.session_secret", self.session_secret)?,
            bypass_token: secret("access.bypass_token", self.bypass_token)?,
            recheck,
        })
    }
}

/// A section's OAuth client: both halves or neither.
pub(super) fn oauth_client(
    section: &str,
    id: Option<String>,
    secret: Option<String>,
) -> Result<Option<OAuthClient>, ConfigError> {
    match (
        id.filter(|s| !s.is_empty()),
        secret.filter(|s| !s.is_empty()),
    ) {
        (Some(client_id), Some(s)) => Ok(Some(OAuthClient {
            client_id,
            client_secret: SecretString::from(s),
        })),
        (None, None) => Ok(None),
        _ => Err(invalid(
            &format!("{section}.oauth_client_id"),
            format!("{section}.oauth_client_id and oauth_client_secret go together"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::AccessMode;
    use crate::config::tests::load;

    #[test]
    fn forge_mode_without_any_oauth_client_is_refused_naming_the_keys() {
        let err = load(None, &[("PREVIEWD_ACCESS_MODE", "forge")])
            .expect_err("nobody could sign in")
            .to_string();
        assert!(
            err.contains("access.mode") && err.contains("github.oauth_client_id"),
            "{err}"
        );
        let gitea = [
            ("PREVIEWD_ACCESS_MODE", "forge"),
            ("PREVIEWD_GITEA_URL", "https://gitea.example.com"),
        ];
        let err = load(None, &gitea).expect_err("gitea has none").to_string();
        assert!(err.contains("gitea.oauth_client_id"), "{err}");
        // One forge's client is enough: previews on a forge without one stay closed, as
        // docs/access.md says.
        let with_client = [
            gitea[0],
            gitea[1],
            ("PREVIEWD_GITEA_OAUTH_CLIENT_ID", "client"),
            ("PREVIEWD_GITEA_OAUTH_CLIENT_SECRET", "client-secret"),
        ];
        let c = load(None, &with_client).expect("a client to sign in with");
        assert_eq!(c.access.mode, Some(AccessMode::Forge));
        for mode in ["public", "password", ""] {
            load(None, &[("PREVIEWD_ACCESS_MODE", mode)]).expect(mode);
        }
    }
}
