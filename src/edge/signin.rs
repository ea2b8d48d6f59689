//! Signing a visitor in, on the one sign-in host (`auth.<domain>`): `login` checks the
//! return address (a preview host of this instance, nothing else), binds a `state` to the
//! browser with a nonce cookie and sends it to the forge; `callback` checks both, exchanges the
//! code, asks the forge with the visitor's own token whether they may read the preview's
//! repository, and sends the browser back with a short ticket that the preview's host turns
//! into its session (`auth::session`), or shows who they are and that they lack access.
//! Nothing here logs a code, token, state or cookie.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{AuthState, Inner, TICKET_TTL, Ticket, cookie_values};
use crate::access::page;
use crate::access::target::{LOGIN_PATH, SESSION_PATH};
use crate::access::token::Purpose;
use crate::forge::oauth::Provider;
use crate::forge::{ForgeKind, Repo};
use crate::ids::PreviewId;

/// The nonce cookie that binds a `state` to the browser that started the sign-in.
const STATE_COOKIE: &str = "previewd_state";
/// How long a sign-in may take at the forge.
const STATE_TTL: i64 = 600;

#[derive(Debug, Serialize, Deserialize)]
struct SignInState {
    /// Equal to the browser's nonce cookie.
    n: String,
    /// The return address (checked again on the way back).
    rd: String,
    exp: i64,
}

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    rd: Option<String>,
}

fn refuse(status: StatusCode, why: &str, again: Option<&str>) -> Response {
    (status, Html(page::refused(why, again))).into_response()
}

/// The preview behind a return address, its repository and the forge's OAuth client.
async fn target<'a>(
    s: &'a Inner,
    rd: &str,
) -> Result<(url::Url, PreviewId, ForgeKind, Repo, &'a Provider), Response> {
    let Some((url, id)) = s.gateway.return_address(rd) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "The address to return to is not a preview of this previewd.",
            None,
        ));
    };
    let Some(found) = s.lookup.find(&id).await else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "This preview is not there (any more).",
            None,
        ));
    };
    let Some((kind, repo)) = found.owner else {
        return Err((
            StatusCode::FORBIDDEN,
            Html(page::no_repository(id.as_str())),
        )
            .into_response());
    };
    let Some(p) = s.providers.get(&kind) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            &format!("previewd has no OAuth client for {}.", kind.title()),
            None,
        ));
    };
    Ok((url, id, kind, repo, p))
}

pub(super) async fn login(State(s): State<AuthState>, Query(q): Query<LoginQuery>) -> Response {
    let s = &s.inner;
    let rd = q.rd.unwrap_or_default();
    let (url, _, _, _, provider) = match target(s, &rd).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let nonce = nanoid::nanoid!(32);
    let state = s.keys.signer().sign(
        Purpose::State,
        &SignInState {
            n: nonce.clone(),
            rd: url.to_string(),
            exp: s.now() + STATE_TTL,
        },
    );
    let to = provider.authorize_url(&s.gateway.callback_url(), &state);
    let mut r = (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        s.cookie(
            &s.cookie_name(STATE_COOKIE),
            &nonce,
            &format!("; Max-Age={STATE_TTL}"),
        ),
    );
    r
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub(super) async fn callback(
    State(s): State<AuthState>,
    h: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let s = &s.inner;
    let name = s.cookie_name(STATE_COOKIE);
    let st = q
        .state
        .as_deref()
        .and_then(|t| s.keys.signer().verify::<SignInState>(Purpose::State, t))
        .filter(|st| {
            st.exp >= s.now()
                && cookie_values(&h, &name).any(|n| !n.is_empty() && s.keys.signer().same(n, &st.n))
        });
    let Some(st) = st else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "This sign-in is expired, was altered, or was started in another browser. Open the \
             preview's address again to sign in.",
            None,
        );
    };
    let (url, id, kind, repo, provider) = match target(s, &st.rd).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let again = format!(
        "{}{LOGIN_PATH}?{}",
        s.gateway.auth_base(),
        serde_urlencoded::to_string([("rd", url.as_str())]).unwrap_or_default()
    );
    let Some(code) = q.code.filter(|_| q.error.is_none()) else {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "{} did not sign you in (the request was declined).",
                kind.title()
            ),
            Some(&again),
        );
    };
    let checked = async {
        let token = provider.exchange(&code, &s.gateway.callback_url()).await?;
        let visitor = provider.visitor(&token).await?;
        let ok = provider.can_read(&token, &repo).await?;
        Ok::<_, crate::forge::ForgeError>((visitor, ok))
    }
    .await;
    let (visitor, ok) = match checked {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(forge = %kind, preview = %id, error = %e, "sign-in failed at the forge");
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("{} did not complete the sign-in. Try again.", kind.title()),
                Some(&again),
            );
        }
    };
    let clear = s.cookie(&s.cookie_name(STATE_COOKIE), "", "; Max-Age=0");
    if !ok {
        tracing::info!(forge = %kind, preview = %id, user = %visitor.login, repo = %repo, "visitor lacks read access");
        let body = page::denied(&page::Denied {
            login: &visitor.login,
            forge: kind.title(),
            repo: &repo.full_name(),
            sign_out: &provider.sign_out_url(),
            sign_in: &again,
        });
        let mut r = (StatusCode::FORBIDDEN, Html(body)).into_response();
        r.headers_mut().append(header::SET_COOKIE, clear);
        return r;
    }
    tracing::info!(forge = %kind, preview = %id, user = %visitor.login, repo = %repo, "visitor signed in");
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let rd = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let ticket = s.keys.signer().sign(
        Purpose::Ticket,
        &Ticket {
            h: host.clone(),
            u: visitor.login,
            f: kind.as_str().to_owned(),
            r: repo.full_name(),
            rd,
            exp: s.now() + TICKET_TTL as i64,
        },
    );
    let to = format!(
        "{}{SESSION_PATH}?{}",
        s.gateway.url_of(&host, ""),
        serde_urlencoded::to_string([("t", ticket.as_str())]).unwrap_or_default()
    );
    let mut r = (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
    r.headers_mut().append(header::SET_COOKIE, clear);
    r
}
