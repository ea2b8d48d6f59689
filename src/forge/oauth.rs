//! Signing visitors in with a forge (OAuth 2 authorization code flow) and asking it, with the
//! visitor's own token, whether they may read a repository: the forge-specific half of access
//! to previews (`access`, `edge` hold the rest). GitHub (OAuth app or GitHub App user
//! authorization), Gitea/Forgejo and GitLab OAuth2 applications differ only in paths, scope
//! and how read access shows, so one client with a per-forge shape serves them. Nothing here
//! keeps a token or logs one: the visitor's token lives for one sign-in, in memory.

use axum::http::{HeaderValue, Method, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{client, decode, encode, send};
use super::retry::RetryPolicy;
use super::{ForgeError, ForgeKind, ForgeResult, Repo};
use crate::config::{Config, OAuthClient};

/// The OAuth client configured for `kind`, if any (and the forge's section, for Gitea/GitLab).
pub fn client_of(config: &Config, kind: ForgeKind) -> Option<&OAuthClient> {
    match kind {
        ForgeKind::GitHub => config.github.oauth.as_ref(),
        ForgeKind::Gitea => config.gitea.as_ref()?.oauth.as_ref(),
        ForgeKind::GitLab => config.gitlab.as_ref()?.oauth.as_ref(),
    }
}

/// Where a forge's OAuth endpoints are and what its answers look like.
struct Shape {
    authorize: &'static str,
    token: &'static str,
    /// GitHub: `repo` (an OAuth app sees private repositories only with it; a GitHub App's
    /// user token ignores scopes). Gitea and GitLab have read-only scopes.
    scope: &'static str,
    /// Gitea and GitLab follow RFC 6749 (`response_type`, `grant_type`); GitHub documents
    /// neither and needs neither.
    rfc_params: bool,
    /// Where visitors sign out (for "sign in as someone else").
    sign_out: &'static str,
}

fn shape(kind: ForgeKind) -> Shape {
    match kind {
        ForgeKind::GitHub => Shape {
            authorize: "/login/oauth/authorize",
            token: "/login/oauth/access_token",
            scope: "repo",
            rfc_params: false,
            sign_out: "/logout",
        },
        ForgeKind::Gitea => Shape {
            authorize: "/login/oauth/authorize",
            token: "/login/oauth/access_token",
            scope: "read:user read:repository",
            rfc_params: true,
            sign_out: "/user/logout",
        },
        ForgeKind::GitLab => Shape {
            authorize: "/oauth/authorize",
            token: "/oauth/token",
            scope: "read_api",
            rfc_params: true,
            sign_out: "/users/sign_out",
        },
    }
}

/// One forge's OAuth client.
pub struct Provider {
    kind: ForgeKind,
    client_id: String,
    client_secret: SecretString,
    web_url: String,
    web: octocrab::Octocrab,
    api: octocrab::Octocrab,
    policy: RetryPolicy,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Provider({})", self.kind)
    }
}

/// Who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visitor {
    pub login: String,
}

impl Provider {
    /// The provider of `kind`, when its section has an OAuth client.
    pub fn of(config: &Config, kind: ForgeKind, policy: RetryPolicy) -> ForgeResult<Option<Self>> {
        let Some(c) = client_of(config, kind) else {
            return Ok(None);
        };
        let (web_url, api) = match kind {
            ForgeKind::GitHub => (config.github.web_url.clone(), config.github.api_url.clone()),
            ForgeKind::Gitea => config
                .gitea
                .as_ref()
                .map(|g| (g.web_url.clone(), format!("{}/api/v1", g.url)))
                .unwrap_or_default(),
            ForgeKind::GitLab => config
                .gitlab
                .as_ref()
                .map(|g| (g.web_url.clone(), format!("{}/api/v4", g.url)))
                .unwrap_or_default(),
        };
        Ok(Some(Provider {
            kind,
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
            web: client(kind.as_str(), &web_url)?,
            api: client(kind.as_str(), &api)?,
            web_url,
            policy,
        }))
    }

    pub fn kind(&self) -> ForgeKind {
        self.kind
    }

    /// Where the browser goes to sign in; `state` comes back to `redirect_uri` unchanged.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> String {
        let s = shape(self.kind);
        let mut q = vec![
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", s.scope),
            ("state", state),
        ];
        if s.rfc_params {
            q.push(("response_type", "code"));
        }
        let query = serde_urlencoded::to_string(&q).unwrap_or_default();
        format!("{}{}?{query}", self.web_url, s.authorize)
    }

    /// Where a visitor signs out of the forge.
    pub fn sign_out_url(&self) -> String {
        format!("{}{}", self.web_url, shape(self.kind).sign_out)
    }

    /// The visitor's token for `code`.
    pub async fn exchange(&self, code: &str, redirect_uri: &str) -> ForgeResult<SecretString> {
        let s = shape(self.kind);
        let mut body = json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose_secret(),
            "code": code,
            "redirect_uri": redirect_uri,
        });
        if s.rfc_params {
            body["grant_type"] = json!("authorization_code");
        }
        let call = "oauth/token";
        let bytes = send(
            &self.web,
            &self.policy,
            call,
            Method::POST,
            s.token,
            Some(&body),
            Some((
                &header::ACCEPT,
                &HeaderValue::from_static("application/json"),
            )),
        )
        .await?;
        #[derive(Deserialize)]
        struct Answer {
            access_token: Option<String>,
            error: Option<String>,
        }
        // JSON when asked for (GitHub answers form-encoded otherwise).
        let answer: Answer = serde_json::from_slice(&bytes)
            .or_else(|_| serde_urlencoded::from_bytes(&bytes))
            .map_err(|e| ForgeError::Decode {
                call,
                reason: e.to_string(),
            })?;
        match answer {
            Answer {
                access_token: Some(t),
                ..
            } if !t.is_empty() => Ok(SecretString::from(t)),
            // GitHub answers a bad or used code with 200 and `error`.
            a => Err(ForgeError::Status {
                call,
                status: 401,
                message: a.error.unwrap_or_else(|| "no access_token".into()),
            }),
        }
    }

    fn bearer(token: &SecretString) -> ForgeResult<HeaderValue> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| ForgeError::Auth("the forge gave a token a header cannot hold".into()))?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// Who the token belongs to.
    pub async fn visitor(&self, token: &SecretString) -> ForgeResult<Visitor> {
        let auth = Self::bearer(token)?;
        let call = "oauth/user";
        let bytes = send(
            &self.api,
            &self.policy,
            call,
            Method::GET,
            "/user",
            None,
            Some((&header::AUTHORIZATION, &auth)),
        )
        .await?;
        let user: Value = decode(call, &bytes)?;
        // GitLab names it `username`, GitHub and Gitea `login`.
        let login = user["login"]
            .as_str()
            .or_else(|| user["username"].as_str())
            .filter(|l| !l.is_empty())
            .ok_or_else(|| ForgeError::Decode {
                call,
                reason: "the user has no login".into(),
            })?;
        Ok(Visitor {
            login: login.to_owned(),
        })
    }

    /// Whether anyone may read `repo` (asked without a token): an unset `access.mode`
    /// protects only private repositories.
    pub async fn is_public(&self, repo: &Repo) -> ForgeResult<bool> {
        match self.repository(None, repo).await {
            Ok(_) => Ok(true),
            Err(ForgeError::Status {
                status: 401 | 403 | 404,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET` of `repo`, as the token's user or anonymously.
    async fn repository(&self, token: Option<&SecretString>, repo: &Repo) -> ForgeResult<Value> {
        let auth = token.map(Self::bearer).transpose()?;
        let call = "oauth/repository";
        let path = match self.kind {
            ForgeKind::GitLab => format!("/projects/{}", encode(&repo.full_name())),
            _ => format!("/repos/{}/{}", encode(&repo.owner), encode(&repo.name)),
        };
        let bytes = send(
            &self.api,
            &self.policy,
            call,
            Method::GET,
            &path,
            None,
            auth.as_ref().map(|a| (&header::AUTHORIZATION, a)),
        )
        .await?;
        decode(call, &bytes)
    }

    /// Whether the token's user may read `repo`, asked with that token: the forge decides,
    /// with its own rules for teams, organizations and visibility. Not found means no.
    pub async fn can_read(&self, token: &SecretString, repo: &Repo) -> ForgeResult<bool> {
        let r = match self.repository(Some(token), repo).await {
            Ok(r) => r,
            Err(ForgeError::Status {
                status: 403 | 404, ..
            }) => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(match self.kind {
            // Reporter (20) and up may pull a GitLab project.
            ForgeKind::GitLab => {
                ["project_access", "group_access"].iter().any(|k| {
                    r["permissions"][k]["access_level"]
                        .as_u64()
                        .is_some_and(|l| l >= 20)
                }) || r["visibility"] == "public"
            }
            _ => r["permissions"]["pull"].as_bool() == Some(true),
        })
    }
}
