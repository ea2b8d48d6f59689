//! Who previewd is to GitHub: a token, nothing (public reads only), or a GitHub App. As an App
//! it signs a JWT (RS256, `iat` backdated 60 s, `exp` 9 minutes ahead, `iss` the app id), asks
//! which installation covers a repository (`GET /repos/{owner}/{repo}/installation`), and
//! trades the JWT for an installation token (`POST /app/installations/{id}/access_tokens`).
//! Tokens are cached per installation and refreshed 5 minutes before GitHub says they expire;
//! the same token serves REST calls and git fetches (`Credentials::git_token`).
//! Nothing here prints, logs or puts a key, a JWT or a token in an error.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderValue, Method};
use octocrab::Octocrab;
use octocrab::jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::GithubConfig;
use crate::forge::http::{decode, send};
use crate::forge::retry::RetryPolicy;
use crate::forge::{ForgeError, ForgeResult, Repo};

/// An installation token is replaced this long before it expires, so a token never runs out
/// in the middle of a call or a clone.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// GitHub refuses a JWT that lives longer than 10 minutes; 9 leaves room for clock drift.
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// `iat` is backdated this much, for clocks running behind GitHub's.
const JWT_BACKDATE: Duration = Duration::from_secs(60);

/// The claims of an App JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtClaims {
    pub iat: u64,
    pub exp: u64,
    pub iss: u64,
}

impl JwtClaims {
    /// The claims for `app_id` signed at `now` (seconds since the epoch).
    pub fn new(app_id: u64, now: u64) -> JwtClaims {
        JwtClaims {
            iat: now.saturating_sub(JWT_BACKDATE.as_secs()),
            exp: now + JWT_LIFETIME.as_secs(),
            iss: app_id,
        }
    }
}

/// A token and the moment it stops working.
#[derive(Clone)]
struct Cached {
    token: SecretString,
    expires_at: SystemTime,
}

struct App {
    app_id: u64,
    key: EncodingKey,
    /// Unauthenticated: every request carries the header this module computes.
    http: Octocrab,
    policy: RetryPolicy,
    /// `owner/name` → installation id.
    installations: Mutex<HashMap<String, u64>>,
    /// Installation id → its token; one lock per installation, so concurrent calls for one
    /// installation make one token request, and other installations never wait on it.
    tokens: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
}

enum Inner {
    Anonymous,
    Token(SecretString),
    App(Box<App>),
}

/// previewd's credentials for GitHub. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &*self.inner {
            Inner::Anonymous => "anonymous",
            Inner::Token(_) => "token",
            Inner::App(_) => "app",
        };
        f.debug_struct("Credentials").field("kind", &kind).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Credentials {
    /// The credentials of `cfg`, on their own (e.g. for the preview manager's git fetches),
    /// with the default retry policy. Each `Credentials` keeps its own token cache.
    pub fn new(cfg: &GithubConfig) -> ForgeResult<Credentials> {
        let http = super::http_client(&cfg.api_url)?;
        Credentials::from_config(cfg, http, RetryPolicy::default())
    }

    /// Reads the config: an App (`app_id` + `private_key_path`) wins over a token; neither
    /// gives anonymous access. `http` is an unauthenticated client for `api_url`.
    pub fn from_config(
        cfg: &GithubConfig,
        http: Octocrab,
        policy: RetryPolicy,
    ) -> ForgeResult<Credentials> {
        let inner = match (&cfg.app_id, &cfg.private_key_path, &cfg.token) {
            (Some(app_id), Some(key_path), _) => {
                let shown = key_path.display();
                let pem = std::fs::read(key_path).map_err(|e| {
                    ForgeError::Setup(format!("github.private_key_path {shown}: {e}"))
                })?;
                let key = EncodingKey::from_rsa_pem(&pem).map_err(|_| {
                    ForgeError::Setup(format!(
                        "github.private_key_path {shown}: not an RSA private key in PEM form"
                    ))
                })?;
                Inner::App(Box::new(App {
                    app_id: *app_id,
                    key,
                    http,
                    policy,
                    installations: Mutex::new(HashMap::new()),
                    tokens: Mutex::new(HashMap::new()),
                }))
            }
            (_, _, Some(token)) => {
                header_value(token).ok_or_else(|| {
                    ForgeError::Setup("github.token has characters a token cannot have".into())
                })?;
                Inner::Token(token.clone())
            }
            _ => Inner::Anonymous,
        };
        Ok(Credentials {
            inner: Arc::new(inner),
        })
    }

    /// Whether these are a GitHub App's (tokens that can be refreshed).
    pub fn is_app(&self) -> bool {
        matches!(&*self.inner, Inner::App(_))
    }

    /// The `Authorization` header of the configured token, for calls on no repository
    /// (`GET /user`): `None` for an App (its installation tokens have no user) and anonymous.
    pub fn token_authorization(&self) -> ForgeResult<Option<HeaderValue>> {
        let Inner::Token(token) = &*self.inner else {
            return Ok(None);
        };
        header_value(token)
            .map(Some)
            .ok_or_else(|| ForgeError::Setup("github.token is not a header value".into()))
    }

    /// The token for git over HTTPS on `repo` (user `x-access-token`): the installation
    /// token for an App, the configured token otherwise, `None` when anonymous.
    pub async fn git_token(&self, repo: &Repo) -> ForgeResult<Option<SecretString>> {
        match &*self.inner {
            Inner::Anonymous => Ok(None),
            Inner::Token(t) => Ok(Some(t.clone())),
            Inner::App(app) => app.token(repo).await.map(Some),
        }
    }

    /// The `Authorization` header for a REST call on `repo`, marked sensitive.
    pub async fn authorization(&self, repo: &Repo) -> ForgeResult<Option<HeaderValue>> {
        let Some(token) = self.git_token(repo).await? else {
            return Ok(None);
        };
        header_value(&token).map(Some).ok_or_else(|| {
            ForgeError::Auth("GitHub gave a token that is not a header value".into())
        })
    }

    /// Drops the cached token for `repo`'s installation, and which installation it is (GitHub
    /// refused the token: revoked, the App reinstalled, or the clock is off), so the next call
    /// looks both up again.
    pub async fn forget(&self, repo: &Repo) {
        let Inner::App(app) = &*self.inner else {
            return;
        };
        let id = lock(&app.installations).remove(&repo.full_name());
        if let Some(id) = id {
            *app.slot(id).lock().await = None;
        }
    }
}

/// `Bearer <token>`, or `None` when the token cannot be a header value.
fn header_value(token: &SecretString) -> Option<HeaderValue> {
    let t = token.expose_secret();
    if t.is_empty() || !t.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return None;
    }
    let mut v = HeaderValue::from_str(&format!("Bearer {t}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

impl App {
    fn jwt(&self) -> ForgeResult<SecretString> {
        let claims = JwtClaims::new(self.app_id, epoch_secs(SystemTime::now()));
        octocrab::jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| ForgeError::Auth(format!("cannot sign the App JWT: {e}")))
    }

    fn jwt_header(&self) -> ForgeResult<HeaderValue> {
        header_value(&self.jwt()?)
            .ok_or_else(|| ForgeError::Auth("the App JWT is not a header value".into()))
    }

    fn slot(&self, installation: u64) -> Arc<tokio::sync::Mutex<Option<Cached>>> {
        lock(&self.tokens).entry(installation).or_default().clone()
    }

    async fn installation(&self, repo: &Repo) -> ForgeResult<u64> {
        if let Some(id) = lock(&self.installations).get(&repo.full_name()) {
            return Ok(*id);
        }
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        const CALL: &str = "get-repo-installation";
        let path = format!("/repos/{}/{}/installation", repo.owner, repo.name);
        let auth = self.jwt_header()?;
        let body = send(
            &self.http,
            &self.policy,
            CALL,
            Method::GET,
            &path,
            None,
            Some((&axum::http::header::AUTHORIZATION, &auth)),
        )
        .await?;
        let id = decode::<Installation>(CALL, &body)?.id;
        lock(&self.installations).insert(repo.full_name(), id);
        Ok(id)
    }

    /// The cached installation token for `repo`, or a new one when it is missing or within
    /// `REFRESH_MARGIN` of expiring.
    async fn token(&self, repo: &Repo) -> ForgeResult<SecretString> {
        let id = self.installation(repo).await?;
        let slot = self.slot(id);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && c.expires_at > SystemTime::now() + REFRESH_MARGIN
        {
            return Ok(c.token.clone());
        }
        let fresh = self.request_token(id).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn request_token(&self, installation: u64) -> ForgeResult<Cached> {
        #[derive(Deserialize)]
        struct AccessToken {
            token: String,
            #[serde(default)]
            expires_at: Option<String>,
        }
        const CALL: &str = "create-installation-access-token";
        let path = format!("/app/installations/{installation}/access_tokens");
        let auth = self.jwt_header()?;
        let body = send(
            &self.http,
            &self.policy,
            CALL,
            Method::POST,
            &path,
            None,
            Some((&axum::http::header::AUTHORIZATION, &auth)),
        )
        .await?;
        let t: AccessToken = decode(CALL, &body)?;
        // Without a readable expiry the token is used for this call and replaced on the next.
        let expires_at = t
            .expires_at
            .as_deref()
            .and_then(parse_expiry)
            .unwrap_or_else(SystemTime::now);
        Ok(Cached {
            token: SecretString::from(t.token),
            expires_at,
        })
    }
}

/// GitHub's `expires_at`, RFC 3339.
fn parse_expiry(s: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let secs = u64::try_from(t.unix_timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_claims_are_backdated_and_short_lived() {
        let c = JwtClaims::new(42, 1_000_000);
        assert_eq!(c.iss, 42);
        assert_eq!(c.iat, 1_000_000 - 60);
        assert!(c.exp > 1_000_000);
        assert!(
            c.exp - 1_000_000 <= 600,
            "GitHub refuses a JWT over 10 minutes"
        );
    }

    #[test]
    fn expiry_parses_rfc3339() {
        let t = parse_expiry("2016-07-11T22:14:10Z").map(epoch_secs);
        assert_eq!(t, Some(1_468_275_250));
        assert_eq!(parse_expiry("tomorrow"), None);
    }

    #[test]
    fn tokens_that_cannot_be_headers_are_refused() {
        assert!(header_value(&SecretString::from("ghs_ok")).is_some());
        assert!(header_value(&SecretString::from("bad\ntoken")).is_none());
        assert!(header_value(&SecretString::from("")).is_none());
        let v = header_value(&SecretString::from("ghs_ok")).map(|v| v.is_sensitive());
        assert_eq!(v, Some(true));
    }
}
