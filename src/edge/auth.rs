//! The gateway's question "may this request see this preview?" (Caddy's `forward_auth`):
//! answered from the request alone (a signed session cookie, the basic-auth password, the
//! bypass token), with no forge call on this path, and the step that turns a sign-in's ticket
//! into the preview's own session cookie. The sign-in itself is `signin`'s. A 2xx lets the
//! request through; any other answer goes to the visitor as it is. Nothing here logs a cookie,
//! a password, a token or a query string.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::lookup::{Found, Lookup};
use crate::access::target::{Gateway, LOGIN_PATH, SESSION_PATH};
use crate::access::token::Purpose;
use crate::access::{self, AccessMode, Keys, PASSWORD_USER, TOKEN_HEADER, page};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::forge::oauth::Provider;
use crate::forge::{ForgeKind, Repo};
use crate::ids::PreviewId;

pub use crate::preview::gateway::{CHECK_PATH, COOKIE, PREVIEW_HEADER};
/// How long a ticket from the sign-in host is good for.
pub const TICKET_TTL: u64 = 60;
/// How long a repository's visibility (for an unset `access.mode`) is trusted.
const VISIBILITY_TTL: Duration = Duration::from_secs(600);

/// What the edge's access routes share.
#[derive(Clone)]
pub struct AuthState {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub config: Config,
    pub keys: Keys,
    pub gateway: Gateway,
    pub providers: BTreeMap<ForgeKind, Provider>,
    pub lookup: Arc<dyn Lookup>,
    pub clock: SharedClock,
    visibility: Mutex<HashMap<(ForgeKind, Repo), (bool, Instant)>>,
}

impl AuthState {
    pub fn new(
        config: Config,
        keys: Keys,
        providers: Vec<Provider>,
        lookup: Arc<dyn Lookup>,
        clock: SharedClock,
    ) -> AuthState {
        AuthState {
            inner: Arc::new(Inner {
                gateway: Gateway::new(&config),
                config,
                keys,
                providers: providers.into_iter().map(|p| (p.kind(), p)).collect(),
                lookup,
                clock,
                visibility: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// A signed-in visitor's session for one repository's previews.
#[derive(Debug, Serialize, Deserialize)]
pub struct Session {
    /// The forge login.
    pub u: String,
    pub f: String,
    pub r: String,
    /// When the forge last said yes (unix seconds).
    pub iat: i64,
}

/// A sign-in's result on its way to the preview's host.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ticket {
    /// The preview host (with port) the cookie is for.
    pub h: String,
    pub u: String,
    pub f: String,
    pub r: String,
    /// Path and query to go back to.
    pub rd: String,
    pub exp: i64,
}

impl Inner {
    pub fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// The cookie's name for this gateway's scheme.
    pub fn cookie_name(&self, base: &str) -> String {
        if self.gateway.secure() {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// `name=value` with the flags every previewd cookie has.
    pub fn cookie(&self, name: &str, value: &str, extra: &str) -> HeaderValue {
        let secure = if self.gateway.secure() {
            "; Secure"
        } else {
            ""
        };
        let c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{extra}");
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
    }

    /// The mode of a preview: the operator's, asking the forge (anonymously, then cached)
    /// whether the repository is private only when the operator left the mode unset, and
    /// never looser than the preview's label (what its repository asked when deployed).
    async fn mode(&self, found: &Found) -> AccessMode {
        self.operator_mode(found).await.tightened(found.access)
    }

    async fn operator_mode(&self, found: &Found) -> AccessMode {
        let Some((kind, repo)) = &found.owner else {
            return access::mode_for(&self.config, None, true);
        };
        if self.config.access.mode.is_some() {
            return access::mode_for(&self.config, Some(*kind), true);
        }
        let Some(p) = self.providers.get(kind) else {
            return AccessMode::Public;
        };
        let key = (*kind, repo.clone());
        let cached = self
            .visibility
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|(_, at)| at.elapsed() < VISIBILITY_TTL)
            .map(|(public, _)| *public);
        let public = match cached {
            Some(p) => p,
            None => {
                // A forge that cannot say counts as private: protected rather than open.
                let public = p.is_public(repo).await.unwrap_or(false);
                self.visibility
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, (public, Instant::now()));
                public
            }
        };
        access::mode_for(&self.config, Some(*kind), !public)
    }
}

/// A header's text, if present and readable.
pub fn text(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The values of cookie `name` in the request's `Cookie` headers. Several when another host
/// (a preview, over http) set one for the whole domain: each is tried, so a planted cookie
/// cannot shadow the real one.
pub fn cookie_values<'a>(h: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn allow() -> Response {
    StatusCode::OK.into_response()
}

fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad address").into_response(),
    }
}

fn forbidden(body: String) -> Response {
    (StatusCode::FORBIDDEN, Html(body)).into_response()
}

pub(super) async fn check(State(s): State<AuthState>, h: HeaderMap) -> Response {
    let s = &s.inner;
    let host = text(&h, header::HOST)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let uri = text(&h, "x-forwarded-uri").unwrap_or("/");
    let Some(id) = text(&h, PREVIEW_HEADER).and_then(|i| PreviewId::parse(i).ok()) else {
        return forbidden(page::refused("This host names no preview.", None));
    };
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    if path == SESSION_PATH {
        return session(s, &host, query);
    }
    let Some(found) = s.lookup.find(&id).await else {
        return forbidden(page::refused("This preview is not there (any more).", None));
    };
    let mode = s.mode(&found).await;
    let owner = found.owner;
    if mode == AccessMode::Public {
        return allow();
    }
    if let Some(given) = text(&h, TOKEN_HEADER) {
        let repo = owner.as_ref().map(|(k, r)| (*k, r));
        return if s.keys.bypass_ok(given, repo) {
            allow()
        } else {
            forbidden(page::refused(
                "The X-Previewd-Token header does not open this preview.",
                None,
            ))
        };
    }
    match mode {
        AccessMode::Public => allow(),
        AccessMode::Password => password(s, &h, &id),
        AccessMode::Forge => {
            let Some((kind, repo)) = &owner else {
                return forbidden(page::no_repository(id.as_str()));
            };
            let name = s.cookie_name(COOKIE);
            let recheck = s.config.access.recheck.as_secs() as i64;
            let now = s.now();
            let valid = cookie_values(&h, &name)
                .filter_map(|c| s.keys.signer().verify::<Session>(Purpose::Session, c))
                .any(|sess| {
                    sess.f == kind.as_str()
                        && sess.r == repo.full_name()
                        && (-60..recheck).contains(&(now - sess.iat))
                });
            if valid {
                return allow();
            }
            let method = text(&h, "x-forwarded-method").unwrap_or("GET");
            let back = s.gateway.url_of(&host, uri);
            let login = format!(
                "{}{LOGIN_PATH}?{}",
                s.gateway.auth_base(),
                serde_urlencoded::to_string([("rd", back.as_str())]).unwrap_or_default()
            );
            if method == "GET" || method == "HEAD" {
                redirect(&login)
            } else {
                // A script's request cannot follow a sign-in; it is told where one starts.
                let mut r = (
                    StatusCode::UNAUTHORIZED,
                    Html(page::refused("Sign in to see this preview.", Some(&login))),
                )
                    .into_response();
                if let Ok(v) = HeaderValue::from_str(&login) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
        }
    }
}

/// Basic auth with the preview's derived password.
fn password(s: &Inner, h: &HeaderMap, id: &PreviewId) -> Response {
    let given = text(h, header::AUTHORIZATION)
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    if let Some((user, pass)) = given.as_deref().and_then(|g| g.split_once(':'))
        && user == PASSWORD_USER
        && s.keys.signer().same(pass, &s.keys.password(id))
    {
        return allow();
    }
    let challenge = format!("Basic realm=\"previewd {id}\", charset=\"UTF-8\"");
    let mut r = (
        StatusCode::UNAUTHORIZED,
        Html(page::password_needed(id.as_str())),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// `/_previewd/session?t=TICKET` on a preview's host: the ticket, signed by the sign-in host
/// for this very host a minute ago at most, becomes this host's session cookie.
fn session(s: &Inner, host: &str, query: &str) -> Response {
    #[derive(Deserialize)]
    struct Q {
        t: String,
    }
    let ticket = serde_urlencoded::from_str::<Q>(query)
        .ok()
        .and_then(|q| s.keys.signer().verify::<Ticket>(Purpose::Ticket, &q.t));
    let Some(t) = ticket.filter(|t| t.h == host && t.exp >= s.now()) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(page::refused(
                "This sign-in link is expired, altered or for another preview. Open the \
                 preview's address again to sign in.",
                None,
            )),
        )
            .into_response();
    };
    let value = s.keys.signer().sign(
        Purpose::Session,
        &Session {
            u: t.u,
            f: t.f,
            r: t.r,
            iat: s.now(),
        },
    );
    // Only a path on this host: never `//other.host`.
    let rd = if t.rd.starts_with('/') && !t.rd.starts_with("//") {
        t.rd
    } else {
        "/".to_owned()
    };
    let mut r = redirect(&rd);
    r.headers_mut().append(
        header::SET_COOKIE,
        s.cookie(&s.cookie_name(COOKIE), &value, ""),
    );
    r
}
