//! The admin listener's status page, as an operator's browser shows it: headless Chromium
//! (Debian's) loads `GET /` of a real `serve` with two running previews and one failed, on
//! real Docker; the test checks the page's text, that the browser logged no console message,
//! and keeps a phone-sized screenshot in the target folder.

mod engine_support;
mod support;

use std::path::PathBuf;
use std::sync::Arc;

use engine_support::{GitRepo, TestEnv};
use previewd::preview::manager::Manager;
use previewd::serve::{ServeOptions, bind};
use support::browser::{browse, chromium};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_previews_and_deliveries_in_a_real_browser() {
    let Some(chromium) = chromium() else { return };
    let env = TestEnv::with(
        "page",
        &[
            ("PREVIEWD_LISTEN", "127.0.0.1:0"),
            ("PREVIEWD_ADMIN_LISTEN", "127.0.0.1:0"),
            ("PREVIEWD_GITHUB_WEBHOOK_SECRET", "page-secret"),
        ],
    )
    .await;
    let running_a = GitRepo::from_fixture("two-service");
    let running_b = GitRepo::from_fixture("compose-only");
    let broken = GitRepo::from_fixture("compose-only");
    let a = env.up(running_a.path()).await.expect("first preview");
    let b = env.up(running_b.path()).await.expect("second preview");
    let c = env.up(broken.path()).await.expect("third preview");
    // The third one's only service stops: the preview is there, and failed.
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let app = format!("{}-{}-app", env.config.instance, c.state.id);
    docker
        .stop_container(
            &app,
            None::<bollard::query_parameters::StopContainerOptions>,
        )
        .await
        .expect("stop the third preview's app");

    let engine = Manager::connect(env.config.clone()).await.expect("docker");
    let shutdown = CancellationToken::new();
    let server = bind(
        env.config.clone(),
        Arc::new(engine),
        ServeOptions::default(),
        shutdown.clone(),
    )
    .await
    .expect("bind");
    let webhook = server.webhook_addr().expect("webhook addr");
    let admin = server.admin_addr().expect("admin addr");
    let server = tokio::spawn(async move { server.run().await.expect("serve runs") });

    // A delivery with a wrong signature: recorded with why it did not act.
    let req = hyper::Request::post(format!("http://{webhook}/webhooks/github"))
        .header("X-GitHub-Event", "ping")
        .header("X-GitHub-Delivery", "page-delivery-1")
        .header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .expect("request");
    let (status, _) = support::send(req).await;
    assert_eq!(status, 401);

    let url = format!("http://{admin}/");
    let profile = tempfile::tempdir().expect("browser profile");
    let (dom, log) = browse(&chromium, &url, &["--dump-dom"], profile.path());
    for id in [&a.state.id, &b.state.id, &c.state.id] {
        assert!(
            dom.contains(id.as_str()),
            "{id} missing from the page:\n{dom}"
        );
    }
    assert_eq!(dom.matches("state running").count(), 2, "{dom}");
    assert_eq!(dom.matches("state failed").count(), 1, "{dom}");
    assert!(
        dom.contains("unauthorized"),
        "the delivery is missing:\n{dom}"
    );
    assert!(dom.contains("name=\"viewport\""), "{dom}");
    assert!(
        !log.contains(":CONSOLE("),
        "the browser logged console messages:\n{log}"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let (_, log) = browse(
        &chromium,
        &url,
        &[&format!("--screenshot={}", shot.display())],
        profile.path(),
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 1000,
        "no screenshot at {} ({size} bytes): {log}",
        shot.display()
    );
    eprintln!("status page screenshot: {}", shot.display());

    shutdown.cancel();
    let _ = server.await;
    for id in [&a.state.id, &b.state.id, &c.state.id] {
        env.manager.down(id).await.expect("down");
    }
    env.assert_clean().await;
}
