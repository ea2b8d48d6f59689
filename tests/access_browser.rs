//! Access to a protected preview through the real gateway (Caddy's `forward_auth` asking
//! previewd's edge over its unix socket), on real Docker, in a real browser (Debian's headless
//! Chromium): a reader goes from the preview's address to the fake GitHub's sign-in page,
//! consents, and is back on the page they asked for with the preview's content; a user without
//! access gets the 403 page. A screenshot of each page is kept in the target folder and the
//! page's text is checked. Then, over plain HTTP: every answer says noindex, the preview never
//! sees previewd's cookie or tokens, a cookie of another repository does not open it, and
//! with previewd's edge gone the gateway answers an error, never the preview.
//!
//! Why a request cannot get around the check (the "bypass the gateway" case): a preview's
//! containers publish no host port (asserted below from Docker), the gateway is the only way
//! in, and in its config every route that proxies to a preview comes after the check
//! (`caddy_access`'s unit test walks the config). The check fails closed: no edge, no preview.

mod engine_support;
mod support;

use std::path::PathBuf;

use bollard::query_parameters::InspectContainerOptions;
use bytes::Bytes;
use engine_support::{GitRepo, TestEnv};
use http_body_util::{BodyExt, Empty};
use previewd::access::Keys;
use previewd::access::token::Purpose;
use previewd::edge::auth::Session;
use support::browser::{browse, chromium};
use support::fake_oauth::{CLIENT_ID, CLIENT_SECRET, FakeOAuth};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "browser-test-session-secret-0123456789";
const BYPASS: &str = "browser-test-bypass-token-0123456789";

/// GET through the gateway with `headers`: status, the headers, the body.
async fn get(
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, axum::http::HeaderMap, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let mut req =
        hyper::Request::get(format!("http://127.0.0.1:{port}{path}")).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn shot(chromium: &PathBuf, url: &str, name: &str, profile: &std::path::Path) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_file(&path);
    let (_, log) = browse(
        chromium,
        url,
        &[
            &format!("--screenshot={}", path.display()),
            "--virtual-time-budget=10000",
        ],
        profile,
    );
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 1000,
        "no screenshot at {} ({size} bytes): {log}",
        path.display()
    );
    eprintln!("screenshot: {}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_signs_in_through_the_gateway_and_a_stranger_gets_the_403_page() {
    let Some(chromium) = chromium() else { return };
    let fake = FakeOAuth::start().await;
    fake.sign_in_as("octocat");
    fake.grant("octo/private", "octocat");
    let url = fake.url();
    let env = TestEnv::with(
        "access",
        &[
            ("PREVIEWD_ACCESS_MODE", "forge"),
            ("PREVIEWD_ACCESS_SESSION_SECRET", SECRET),
            ("PREVIEWD_ACCESS_BYPASS_TOKEN", BYPASS),
            ("PREVIEWD_GITHUB_WEB_URL", &url),
            ("PREVIEWD_GITHUB_API_URL", &url),
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_ID", CLIENT_ID),
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ],
    )
    .await;
    // `serve`'s edge, as `serve` runs it (wake routes and all), with the real engine.
    let shutdown = CancellationToken::new();
    let edge_task = tokio::spawn(previewd::edge::run(
        std::sync::Arc::new(env.config.clone()),
        std::sync::Arc::new(env.manager.clone()),
        previewd::metrics::Metrics::new().expect("metrics"),
        previewd::edge::SleepSide::system(),
        shutdown.clone(),
    ));

    let repo = GitRepo::from_fixture("access-echo");
    let mut req = env.request(repo.path());
    req.forge = "github".into();
    req.key_repo = Some("octo/private".into());
    let deployed = env
        .up_req(req)
        .await
        .expect("deploy (health checks pass the check)");
    let id = deployed.state.id.clone();
    let host = format!("{id}.localhost:{}", env.port);
    let page = format!("http://{host}/index.html?from=browser");
    let profile = tempfile::tempdir().expect("profile");

    // The sign-in page of the fake forge, waiting for consent.
    let (dom, log) = browse(
        &chromium,
        &page,
        &["--dump-dom", "--virtual-time-budget=10000"],
        profile.path(),
    );
    assert!(
        dom.contains("Authorize previewd test app"),
        "not on the sign-in page:\n{dom}\n{log}"
    );
    shot(&chromium, &page, "access-1-sign-in.png", profile.path());

    // Consent: back on the page asked for, with the preview's own content.
    fake.lock().auto_consent = true;
    let (dom, log) = browse(
        &chromium,
        &page,
        &["--dump-dom", "--virtual-time-budget=10000"],
        profile.path(),
    );
    assert!(
        dom.contains("previewd access sample: the preview itself"),
        "not on the preview after consent:\n{dom}\n{log}"
    );
    shot(&chromium, &page, "access-2-preview.png", profile.path());

    // Someone who cannot read the repository: the 403 page, saying who and what.
    fake.sign_in_as("mallory");
    let stranger = tempfile::tempdir().expect("profile");
    let (dom, log) = browse(
        &chromium,
        &page,
        &["--dump-dom", "--virtual-time-budget=10000"],
        stranger.path(),
    );
    for text in [
        "mallory",
        "octo/private",
        "lacks read access",
        "sign in again",
    ] {
        assert!(
            dom.contains(text),
            "{text} missing from the 403 page:\n{dom}\n{log}"
        );
    }
    shot(&chromium, &page, "access-3-denied.png", stranger.path());

    // Plain HTTP through the gateway. No cookie: off to sign in, and noindex even then.
    let (status, headers, _) = get(env.port, &host, "/", &[]).await;
    assert_eq!(status, 302);
    assert_eq!(headers["x-robots-tag"], "noindex, nofollow");
    let location = headers["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!(
            "http://auth.localhost:{}/_previewd/login?rd=",
            env.port
        )),
        "{location}"
    );
    // A session of this repository: the preview, which never sees the cookie or the tokens.
    let keys = Keys::from_secret(SECRET, None);
    let session = |repo: &str| {
        let s = keys.signer().sign(
            Purpose::Session,
            &Session {
                u: "octocat".into(),
                f: "github".into(),
                r: repo.into(),
                iat: time::OffsetDateTime::now_utc().unix_timestamp(),
            },
        );
        format!("previewd_session={s}")
    };
    let mine = format!("theme=dark; {}; lang=en", session("octo/private"));
    let calls = fake.calls();
    let (status, headers, body) =
        get(env.port, &host, "/cgi-bin/headers", &[("cookie", &mine)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-robots-tag"], "noindex, nofollow");
    assert!(
        body.contains("theme=dark") && body.contains("lang=en"),
        "the preview's own cookies stay: {body}"
    );
    assert!(
        !body.contains("previewd_session"),
        "the session reached the preview: {body}"
    );
    assert!(
        body.contains("token=[]") && body.contains("pass=[]"),
        "{body}"
    );
    assert_eq!(
        fake.calls(),
        calls,
        "a request with a session called the forge"
    );
    // The bypass token in its header: in, and the preview does not get it.
    let (status, _, body) = get(
        env.port,
        &host,
        "/cgi-bin/headers",
        &[("x-previewd-token", BYPASS)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(!body.contains(BYPASS), "{body}");
    // Another repository's session: not in.
    let theirs = session("octo/other");
    assert_eq!(
        get(env.port, &host, "/", &[("cookie", &theirs)]).await.0,
        302
    );

    // The preview publishes no port of its own: the gateway is the only way in.
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let name = format!("{}-{id}-web", env.config.instance);
    let info = docker
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let ports = info
        .host_config
        .and_then(|h| h.port_bindings)
        .unwrap_or_default();
    assert!(
        ports
            .values()
            .all(|b| b.as_ref().is_none_or(|b| b.is_empty())),
        "{ports:?}"
    );

    // previewd's edge gone: an error, never the preview (fail closed).
    shutdown.cancel();
    let _ = edge_task.await;
    let (status, _, body) = get(env.port, &host, "/", &[("cookie", &mine)]).await;
    assert!(status >= 500, "{status}: {body}");
    assert!(!body.contains("the preview itself"));

    env.manager.down(&id).await.expect("down");
    env.assert_clean().await;
    fake.assert_clean();
}
