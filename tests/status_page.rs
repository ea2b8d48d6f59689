//! The admin listener's status page, as an operator's browser shows it: headless Chromium
//! (Debian's) loads `GET /` of a real `serve` with a running preview, a sleeping one and a
//! failed one, on real Docker; the test checks each card's text (URL, repository, branch,
//! commit, age, ttl left, time to ready, health), that the browser logged no console message,
//! and keeps a phone-sized screenshot in the target folder. And the time to ready, kept in
//! Docker, is still on the page after `serve` restarts.

mod engine_support;
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
            // The test moves the clock by hours: nothing may fall asleep meanwhile.
            ("PREVIEWD_LIMITS_IDLE_SLEEP", "0"),
        ],
    )
    .await;
    let running_a = GitRepo::from_fixture("two-service");
    let sleeping_b = GitRepo::from_fixture("compose-only");
    let broken = GitRepo::from_fixture("compose-only");
    let a = env.up(running_a.path()).await.expect("first preview");
    let b = env.up(sleeping_b.path()).await.expect("second preview");
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
    // Two hours on, the second one goes to sleep: its ttl counts from then, the others' from
    // their deployment.
    env.clock.advance(Duration::from_secs(2 * 3600));
    env.manager
        .sleep(&b.state.id)
        .await
        .expect("docker")
        .expect("the second preview sleeps");

    // `serve` with the manager that deployed them and its clock.
    let (Serving { webhook, admin }, shutdown, server) = serve(&env, env.manager.clone()).await;

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
    assert_eq!(dom.matches("state running").count(), 1, "{dom}");
    assert_eq!(dom.matches("state sleeping").count(), 1, "{dom}");
    assert_eq!(dom.matches("state failed").count(), 1, "{dom}");
    // Each card's text, as the browser has it.
    let card = |id: &str| -> String {
        dom.split("class=\"card\"")
            .find(|c| c.contains(&format!("<b>{id}</b>")))
            .unwrap_or_else(|| panic!("no card for {id}:\n{dom}"))
            .to_owned()
    };
    for (d, ttl_left) in [
        (&a, "ttl left 2d 22h"),
        (&b, "ttl left 3d 0h"),
        (&c, "ttl left 2d 22h"),
    ] {
        let s = &d.state;
        let text = card(s.id.as_str());
        let sha = s.sha.as_ref().expect("a commit").to_string();
        let ready = format!("ready in {:.1}s", kept(d.timings.total).as_secs_f64());
        for want in [
            format!("href=\"{}\"", s.url),
            s.key.repo.clone(),
            format!(" · {}", s.key.branch),
            format!(" · {}", &sha[..7]),
            "deployed 2h 0m ago".to_owned(),
            ready,
            ttl_left.to_owned(),
        ] {
            assert!(text.contains(&want), "{}: no {want:?} in\n{text}", s.id);
        }
    }
    // Health as probed now: the running one answers, the sleeping one is not probed (a probe
    // is no visit, and would find it stopped), the stopped service does not answer.
    let healthy = card(a.state.id.as_str());
    assert_eq!(healthy.matches("healthy (200, ").count(), 2, "{healthy}");
    let asleep = card(b.state.id.as_str());
    assert!(asleep.contains("· asleep"), "{asleep}");
    let failed = card(c.state.id.as_str());
    assert!(failed.contains("unhealthy (502)"), "{failed}");
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

/// A time to ready as its ready mark keeps it: in whole milliseconds.
fn kept(took: Duration) -> Duration {
    Duration::from_millis(u64::try_from(took.as_millis()).expect("a short time"))
}

/// Where a started `serve` listens.
struct Serving {
    webhook: std::net::SocketAddr,
    admin: std::net::SocketAddr,
}

/// Starts `serve` with `manager` and the test's clock; cancel the token to stop it.
async fn serve(
    env: &TestEnv,
    manager: Manager,
) -> (Serving, CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let server = bind(
        env.config.clone(),
        Arc::new(manager),
        ServeOptions {
            clock: Some(env.clock.clone()),
            ..ServeOptions::default()
        },
        shutdown.clone(),
    )
    .await
    .expect("bind");
    let at = Serving {
        webhook: server.webhook_addr().expect("webhook addr"),
        admin: server.admin_addr().expect("admin addr"),
    };
    let server = tokio::spawn(async move { server.run().await.expect("serve runs") });
    (at, shutdown, server)
}

/// Starts `serve` with a manager of its own (nothing in memory from the deployment, as after
/// a restart), reads its status page once and stops it.
async fn page_of_a_fresh_serve(env: &TestEnv) -> String {
    let manager = Manager::connect(env.config.clone())
        .await
        .expect("docker")
        .with_clock(env.clock.clone());
    let (at, shutdown, server) = serve(env, manager).await;
    let req = hyper::Request::get(format!("http://{}/", at.admin))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let (status, page) = support::send(req).await;
    assert_eq!(status, 200, "{page}");
    shutdown.cancel();
    let _ = server.await;
    page
}

/// Containers labelled with preview `id`, running or not: its services and its marks.
async fn containers_of(id: &str) -> Vec<String> {
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let filters = std::collections::HashMap::from([(
        "label".to_owned(),
        vec![format!("dev.previewd.preview={id}")],
    )]);
    docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .expect("list containers")
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .collect()
}

/// The time to ready is kept in Docker (a ready mark), not in `serve`'s memory: a `serve`
/// that did not deploy the preview shows it, and so does the next one after a restart.
/// `gc` removes a mark whose preview is gone, and `down` leaves nothing labelled with the
/// preview.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_to_ready_survives_a_restart_of_serve() {
    let env = TestEnv::with(
        "ready",
        &[
            ("PREVIEWD_LISTEN", "127.0.0.1:0"),
            ("PREVIEWD_ADMIN_LISTEN", "127.0.0.1:0"),
            ("PREVIEWD_GITHUB_WEBHOOK_SECRET", "ready-secret"),
            ("PREVIEWD_LIMITS_IDLE_SLEEP", "0"),
        ],
    )
    .await;
    let repo = GitRepo::from_fixture("compose-only");
    let deployed = env.up(repo.path()).await.expect("the preview");
    let id = deployed.state.id.clone();
    let took = kept(deployed.timings.total);
    let want = format!("ready in {:.1}s", took.as_secs_f64());

    for run in ["first serve", "serve restarted"] {
        let page = page_of_a_fresh_serve(&env).await;
        let card = page
            .split("class=\"card\"")
            .find(|c| c.contains(&format!("<b>{id}</b>")))
            .unwrap_or_else(|| panic!("{run}: no card for {id}:\n{page}"));
        assert!(card.contains(&want), "{run}: no {want:?} in\n{card}");
    }
    // The state every reader builds (`status`, `ls`, the page) has it from the labels alone.
    let fresh = Manager::connect(env.config.clone()).await.expect("docker");
    let observed = fresh.get(&id).await.expect("the preview");
    assert_eq!(observed.ready_in, Some(took));

    // A mark whose preview is gone (a crash before `down` finished) goes at the next gc.
    let gone = previewd::ids::PreviewId::parse("zzzzzzzzzz").expect("an id");
    previewd::preview::docker::ready::mark(
        fresh.docker(),
        &env.config.instance,
        &env.config.gateway.image,
        &gone,
        1,
        Duration::from_secs(3),
        "2000-01-01T00:00:00Z",
    )
    .await
    .expect("a mark");
    assert_eq!(containers_of(gone.as_str()).await.len(), 1);
    let report = env.clean_up_now().await;
    assert!(containers_of(gone.as_str()).await.is_empty(), "{report:?}");
    assert_eq!(
        containers_of(id.as_str()).await.len(),
        2,
        "the app and its mark"
    );

    env.manager.down(&id).await.expect("down");
    let left = containers_of(id.as_str()).await;
    assert!(left.is_empty(), "left by down: {left:?}");
    env.assert_clean().await;
}
