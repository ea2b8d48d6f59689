//! Access to previews at previewd's end of the gateway's question, in process: the edge's
//! router with a fake GitHub OAuth provider (checked against GitHub's documented endpoints)
//! and a fixed preview → repository lookup. The sign-in is followed redirect by redirect, as a
//! browser would, with the hostile variants: forged, expired and other-repository cookies, a
//! tampered or replayed `state`, a `state` from another browser, a return address on another
//! host, the bypass token in a query string, and no secret in any log line. The same flow
//! through the real gateway and a real browser is `access_browser.rs`.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use previewd::access::Keys;
use previewd::access::token::Purpose;
use previewd::clock::SystemClock;
use previewd::config::Config;
use previewd::edge::auth::{AuthState, CHECK_PATH, Session};
use previewd::edge::lookup::{Found, Lookup, Owner};
use previewd::engine::BoxFuture;
use previewd::forge::oauth::Provider;
use previewd::forge::retry::RetryPolicy;
use previewd::forge::{ForgeKind, Repo};
use previewd::ids::PreviewId;
use support::fake_oauth::{CLIENT_ID, CLIENT_SECRET, FakeOAuth};
use tower::ServiceExt;

const SECRET: &str = "edge-test-session-secret-0123456789";
const BYPASS: &str = "operator-bypass-token-0123456789";
const PRIVATE: &str = "abcde12345";
const OTHER: &str = "fghij67890";
const LOCAL: &str = "klmno13579";

struct Fixed(HashMap<String, Owner>);

impl Lookup for Fixed {
    fn find(&self, id: &PreviewId) -> BoxFuture<'_, Option<Found>> {
        let hit = self.0.get(id.as_str()).cloned().map(Found::from);
        Box::pin(async move { hit })
    }
}

/// Captures every log line of the process (this test binary's only subscriber).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let w = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || w.clone())
            .try_init();
        logs
    })
    .clone()
}

struct Edge {
    app: axum::Router,
    fake: FakeOAuth,
    config: Config,
}

/// A browser's answer: status, `Location`, `Set-Cookie`s, body.
struct Answer {
    status: StatusCode,
    location: String,
    cookies: Vec<String>,
    body: String,
}

async fn edge(mode: &str) -> Edge {
    edge_for(mode, ForgeKind::GitHub).await
}

/// The edge with previews of `forge`'s repositories, signing in at that forge's fake.
async fn edge_for(mode: &str, forge: ForgeKind) -> Edge {
    logs();
    let fake = match forge {
        ForgeKind::Gitea => FakeOAuth::start_gitea().await,
        ForgeKind::GitLab => FakeOAuth::start_gitlab().await,
        _ => FakeOAuth::start().await,
    };
    fake.sign_in_as("octocat");
    fake.grant("octo/private", "octocat");
    let url = fake.url();
    let section: &[(&str, &str)] = match forge {
        ForgeKind::Gitea => &[
            ("PREVIEWD_GITEA_URL", &url),
            ("PREVIEWD_GITEA_OAUTH_CLIENT_ID", CLIENT_ID),
            ("PREVIEWD_GITEA_OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ],
        ForgeKind::GitLab => &[
            ("PREVIEWD_GITLAB_URL", &url),
            ("PREVIEWD_GITLAB_OAUTH_CLIENT_ID", CLIENT_ID),
            ("PREVIEWD_GITLAB_OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ],
        _ => &[
            ("PREVIEWD_GITHUB_WEB_URL", &url),
            ("PREVIEWD_GITHUB_API_URL", &url),
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_ID", CLIENT_ID),
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ],
    };
    let env: Vec<(String, String)> = [
        ("PREVIEWD_ACCESS_MODE", mode),
        ("PREVIEWD_ACCESS_SESSION_SECRET", SECRET),
        ("PREVIEWD_ACCESS_BYPASS_TOKEN", BYPASS),
    ]
    .iter()
    .chain(section.iter())
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_parts(None, Path::new("test"), &env).expect("config");
    let gh = |r: &str| Some((forge, Repo::parse(r).unwrap()));
    let lookup = Fixed(HashMap::from([
        (PRIVATE.to_owned(), gh("octo/private")),
        (OTHER.to_owned(), gh("octo/other")),
        (LOCAL.to_owned(), None),
    ]));
    let provider = Provider::of(&config, forge, RetryPolicy::default())
        .unwrap()
        .unwrap();
    let state = AuthState::new(
        config.clone(),
        Keys::load(&config).unwrap(),
        vec![provider],
        Arc::new(lookup),
        Arc::new(SystemClock),
    );
    // The whole edge, as `serve` serves it, with a fake engine behind the wake route.
    let wake = previewd::edge::wake::WakeState::new(
        &config,
        Arc::new(support::engine::FakeEngine::auto()),
        previewd::metrics::Metrics::new().expect("metrics"),
        previewd::edge::visits::Activity::new(Arc::new(SystemClock)),
        previewd::edge::SleepSide::system(),
    );
    Edge {
        app: previewd::edge::app(wake, state),
        fake,
        config,
    }
}

impl Edge {
    async fn call(&self, req: Request<Body>) -> Answer {
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let location = r
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let cookies = r
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            location,
            cookies,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// The gateway's question for `uri` on preview `id`'s host, with extra headers.
    async fn check(&self, id: &str, uri: &str, headers: &[(&str, &str)]) -> Answer {
        let mut b = Request::get(CHECK_PATH)
            .header(header::HOST, format!("{id}.localhost:8000"))
            .header("x-forwarded-uri", uri)
            .header("x-forwarded-method", "GET")
            .header("x-previewd-preview", id);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.call(b.body(Body::empty()).unwrap()).await
    }

    /// A request to the sign-in host, with the browser's cookies for it.
    async fn auth_host(&self, path_and_query: &str, cookie: Option<&str>) -> Answer {
        let path = path_and_query
            .strip_prefix("http://auth.localhost:8000")
            .unwrap_or(path_and_query);
        let mut b = Request::get(path).header(header::HOST, "auth.localhost:8000");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        self.call(b.body(Body::empty()).unwrap()).await
    }

    /// A browser at the fake forge: the authorize page, then its consent link.
    async fn consent(&self, authorize: &str) -> String {
        let client = reqwest_like(authorize).await;
        assert!(client.contains("Authorize"), "{client}");
        let href = client
            .split("id=\"allow\" href=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .replace("&amp;", "&");
        // The consent link answers with a redirect to the callback.
        let url = format!("{}{href}", self.fake.url());
        let resp = raw_get(&url).await;
        assert_eq!(resp.0, 302);
        resp.1
    }

    fn cookie_for(&self, repo: &str, login: &str, age: i64) -> String {
        let keys = Keys::from_secret(SECRET, None);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let s = keys.signer().sign(
            Purpose::Session,
            &Session {
                u: login.into(),
                f: "github".into(),
                r: repo.into(),
                iat: now - age,
            },
        );
        format!("previewd_session={s}")
    }
}

/// GET `url` on the fake: status and `Location` (or body).
async fn raw_get(url: &str) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let r = client.get(url.parse().unwrap()).await.unwrap();
    let status = r.status().as_u16();
    let loc = r
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        loc.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
    )
}

async fn reqwest_like(url: &str) -> String {
    let (status, body) = raw_get(url).await;
    assert_eq!(status, 200, "{url}: {body}");
    body
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The whole sign-in for `id` at `uri`, as a browser follows it; the last answer (the
/// preview host's session step, or the sign-in host's refusal) and the state cookie.
async fn sign_in(e: &Edge, id: &str, uri: &str) -> Answer {
    let first = e.check(id, uri, &[]).await;
    assert_eq!(first.status, StatusCode::FOUND, "{}", first.body);
    assert!(
        first
            .location
            .starts_with("http://auth.localhost:8000/_previewd/login?rd="),
        "{}",
        first.location
    );
    let login = e.auth_host(&first.location, None).await;
    assert_eq!(login.status, StatusCode::FOUND, "{}", login.body);
    assert!(
        login.location.starts_with(&e.fake.url()),
        "{}",
        login.location
    );
    let state_cookie = cookie_pair(&login.cookies[0]);
    assert!(login.cookies[0].contains("HttpOnly") && login.cookies[0].contains("SameSite=Lax"));
    let callback = e.consent(&login.location).await;
    e.auth_host(&callback, Some(&state_cookie)).await
}

#[tokio::test]
async fn a_reader_signs_in_and_the_session_opens_only_their_repository() {
    let e = edge("forge").await;
    let back = sign_in(&e, PRIVATE, "/deep/page?x=1").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    assert!(
        back.location.starts_with(&format!(
            "http://{PRIVATE}.localhost:8000/_previewd/session?t="
        )),
        "{}",
        back.location
    );
    // The preview's host turns the ticket into its cookie and goes back to the page asked.
    let ticket_uri = back
        .location
        .trim_start_matches(&format!("http://{PRIVATE}.localhost:8000"));
    let session = e.check(PRIVATE, ticket_uri, &[]).await;
    assert_eq!(session.status, StatusCode::FOUND);
    assert_eq!(session.location, "/deep/page?x=1");
    let set = &session.cookies[0];
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(!set.contains("Domain"), "host-only: {set}");
    let cookie = cookie_pair(set);

    // With the cookie: in, with no forge call.
    let calls = e.fake.calls();
    for _ in 0..50 {
        let ok = e.check(PRIVATE, "/deep/page", &[("cookie", &cookie)]).await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    assert_eq!(e.fake.calls(), calls, "the hot path called the forge");

    // The same ticket on another preview's host: refused.
    let stolen = e.check(OTHER, ticket_uri, &[]).await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST);
    // The cookie on another repository's preview: sign in again.
    let other = e.check(OTHER, "/", &[("cookie", &cookie)]).await;
    assert_eq!(other.status, StatusCode::FOUND);
    // Forged, expired, and another repository's signed cookie: sign in again.
    let forged = format!("previewd_session={}", "eyJ1IjoiYWRtaW4ifQ.AAAA");
    let expired = e.cookie_for("octo/private", "octocat", 11 * 60);
    let elsewhere = e.cookie_for("octo/other", "octocat", 0);
    for c in [&forged, &expired, &elsewhere] {
        let r = e.check(PRIVATE, "/", &[("cookie", c)]).await;
        assert_eq!(r.status, StatusCode::FOUND, "{c} let in");
    }
    let fresh = e.cookie_for("octo/private", "octocat", 60);
    assert_eq!(
        e.check(PRIVATE, "/", &[("cookie", &fresh)]).await.status,
        StatusCode::OK
    );
    e.fake.assert_clean();
}

#[tokio::test]
async fn a_visitor_without_read_access_gets_a_page_that_says_so() {
    let e = edge("forge").await;
    e.fake.sign_in_as("mallory");
    let denied = sign_in(&e, PRIVATE, "/").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    for text in [
        "mallory",
        "octo/private",
        "lacks read access",
        "sign in again",
        "/logout",
    ] {
        assert!(
            denied.body.contains(text),
            "{text} missing: {}",
            denied.body
        );
    }
    assert!(
        !denied.location.contains("session"),
        "no ticket for a non-reader"
    );
    e.fake.assert_clean();
}

#[tokio::test]
async fn tampered_replayed_or_foreign_sign_ins_are_refused() {
    let e = edge("forge").await;
    // A return address on another host (or the sign-in host itself): refused outright.
    for rd in [
        "http://evil.example.com/",
        "http://abcde12345.localhost.evil.com:8000/",
        "http://auth.localhost:8000/",
        "https://abcde12345.localhost:8000/",
    ] {
        let q = serde_urlencoded::to_string([("rd", rd)]).unwrap();
        let r = e.auth_host(&format!("/_previewd/login?{q}"), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{rd}");
        assert!(r.location.is_empty());
    }
    // A state altered on the way: refused.
    let first = e.check(PRIVATE, "/", &[]).await;
    let login = e.auth_host(&first.location, None).await;
    let state_cookie = cookie_pair(&login.cookies[0]);
    let callback = e.consent(&login.location).await;
    let tampered = callback.replacen("state=", "state=x", 1);
    let r = e.auth_host(&tampered, Some(&state_cookie)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The right state in another browser (no nonce cookie, or another one): refused.
    assert_eq!(
        e.auth_host(&callback, None).await.status,
        StatusCode::BAD_REQUEST
    );
    let other_browser = "previewd_state=someoneelse".to_owned();
    assert_eq!(
        e.auth_host(&callback, Some(&other_browser)).await.status,
        StatusCode::BAD_REQUEST
    );
    // The real one goes through once; its code cannot be used again.
    let ok = e.auth_host(&callback, Some(&state_cookie)).await;
    assert_eq!(ok.status, StatusCode::FOUND, "{}", ok.body);
    let replay = e.auth_host(&callback, Some(&state_cookie)).await;
    assert_eq!(
        replay.status,
        StatusCode::BAD_GATEWAY,
        "a used code: {}",
        replay.body
    );
    // A preview of no forge repository cannot be opened by signing in.
    let local = e.check(LOCAL, "/", &[]).await;
    assert_eq!(local.status, StatusCode::FORBIDDEN);
    e.fake.assert_clean();
}

#[tokio::test]
async fn the_bypass_token_works_in_its_header_only_and_is_never_logged() {
    let e = edge("forge").await;
    let ok = e.check(PRIVATE, "/", &[("x-previewd-token", BYPASS)]).await;
    assert_eq!(ok.status, StatusCode::OK);
    let keys = Keys::load(&e.config).unwrap();
    let own = keys.repo_token(ForgeKind::GitHub, &Repo::parse("octo/private").unwrap());
    assert_eq!(
        e.check(PRIVATE, "/", &[("x-previewd-token", &own)])
            .await
            .status,
        StatusCode::OK
    );
    // A repository's token opens only its own previews.
    assert_eq!(
        e.check(OTHER, "/", &[("x-previewd-token", &own)])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let wrong = e.check(PRIVATE, "/", &[("x-previewd-token", "nope")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // In a query string it is nothing: sign in.
    let q = format!("/?x-previewd-token={BYPASS}&token={BYPASS}");
    assert_eq!(e.check(PRIVATE, &q, &[]).await.status, StatusCode::FOUND);
    // A full sign-in too, so the log has everything that gets logged.
    sign_in(&e, PRIVATE, "/").await;
    let log = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    assert!(
        log.contains("visitor signed in"),
        "the log is captured: {log}"
    );
    for secret in [BYPASS, own.as_str(), SECRET, CLIENT_SECRET, "gho_fake"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[tokio::test]
async fn password_mode_asks_for_the_derived_password() {
    let e = edge("password").await;
    let r = e.check(PRIVATE, "/", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let keys = Keys::load(&e.config).unwrap();
    let id = PreviewId::parse(PRIVATE).unwrap();
    let basic = |user: &str, pass: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let good = basic("preview", &keys.password(&id));
    assert_eq!(
        e.check(PRIVATE, "/", &[("authorization", &good)])
            .await
            .status,
        StatusCode::OK
    );
    // Another preview's password, or the wrong user: no.
    let other = basic("preview", &keys.password(&PreviewId::parse(OTHER).unwrap()));
    assert_eq!(
        e.check(PRIVATE, "/", &[("authorization", &other)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let user = basic("admin", &keys.password(&id));
    assert_eq!(
        e.check(PRIVATE, "/", &[("authorization", &user)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(e.fake.calls(), 0, "password mode asks no forge");
}

#[tokio::test]
async fn a_gitea_reader_signs_in_and_a_stranger_is_denied() {
    let e = edge_for("forge", ForgeKind::Gitea).await;
    let back = sign_in(&e, PRIVATE, "/").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    assert!(
        back.location.contains("/_previewd/session?t="),
        "{}",
        back.location
    );
    e.fake.sign_in_as("mallory");
    let denied = sign_in(&e, PRIVATE, "/").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    for text in ["mallory", "octo/private", "Gitea", "/user/logout"] {
        assert!(
            denied.body.contains(text),
            "{text} missing: {}",
            denied.body
        );
    }
    e.fake.assert_clean();
}

#[tokio::test]
async fn a_gitlab_reader_signs_in_and_a_stranger_is_denied() {
    let e = edge_for("forge", ForgeKind::GitLab).await;
    // Unset mode: a private GitLab project (the anonymous GET /projects/:id is a 404) is
    // protected too.
    for mode in ["forge", ""] {
        let e = edge_for(mode, ForgeKind::GitLab).await;
        let first = e.check(PRIVATE, "/", &[]).await;
        assert_eq!(first.status, StatusCode::FOUND, "{mode}: {}", first.body);
    }
    let first = e.check(PRIVATE, "/mr/7", &[]).await;
    let login = e.auth_host(&first.location, None).await;
    assert!(
        login
            .location
            .starts_with(&format!("{}/oauth/authorize?", e.fake.url())),
        "{}",
        login.location
    );
    for param in ["response_type=code", "scope=read_api"] {
        assert!(login.location.contains(param), "{}", login.location);
    }
    let back = sign_in(&e, PRIVATE, "/mr/7").await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    let ticket_uri = back
        .location
        .trim_start_matches(&format!("http://{PRIVATE}.localhost:8000"));
    assert!(
        ticket_uri.starts_with("/_previewd/session?t="),
        "{ticket_uri}"
    );
    let session = e.check(PRIVATE, ticket_uri, &[]).await;
    assert_eq!(session.status, StatusCode::FOUND);
    assert_eq!(session.location, "/mr/7");
    let cookie = cookie_pair(&session.cookies[0]);
    let ok = e.check(PRIVATE, "/mr/7", &[("cookie", &cookie)]).await;
    assert_eq!(ok.status, StatusCode::OK);
    {
        let st = e.fake.lock();
        for op in [
            "authorize",
            "access_token",
            "users/get-authenticated",
            "projects/get",
        ] {
            assert!(
                st.counts.get(op).is_some_and(|n| *n >= 1),
                "{op}: {:?}",
                st.counts
            );
        }
    }
    // Not a member of the project: the 403 page names the user, the project and GitLab's
    // sign-out.
    e.fake.sign_in_as("mallory");
    let denied = sign_in(&e, PRIVATE, "/").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    for text in ["mallory", "octo/private", "GitLab", "/users/sign_out"] {
        assert!(
            denied.body.contains(text),
            "{text} missing: {}",
            denied.body
        );
    }
    e.fake.assert_clean();
}
