//! Sleeping previews on the real Docker engine and the real Caddy gateway: an idle preview goes
//! to sleep (its containers stop, its URL stays), a visit wakes it with the preview's own
//! answer, many first visits at once all succeed, a browser sees the waking page and then the
//! preview, a crawler does not wake it, the state survives a restart of the edge (`serve`),
//! and a crashed preview is never taken for a sleeping one.

mod engine_support;

use std::sync::Arc;
use std::time::Duration;

use engine_support::{GitRepo, TestEnv, eventually};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};

use previewd::clock::ManualClock;
use previewd::engine::{
    BoxFuture, DeployFailure, DeployRequest, Deployed, EngineError, PreviewEngine, PreviewKey,
    PreviewState, PreviewStatus,
};
use previewd::ids::PreviewId;
use previewd::metrics::Metrics;
use previewd::preview::manager::Manager;
use tokio_util::sync::CancellationToken;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";

/// One GET through the gateway as a visitor makes it (not previewd's probe): status, the
/// `Retry-After` header and the body. Redirects are not followed.
async fn visit(
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the gateway");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = sender
        .send_request(req.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("an answer");
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, retry, String::from_utf8_lossy(&body).into_owned())
}

/// Runs the edge (what `serve` runs for the gateway) with `config` until the token is
/// cancelled, on the test's clock (the manager's).
fn edge(
    config: previewd::config::Config,
    engine: Arc<dyn PreviewEngine>,
    clock: Arc<ManualClock>,
) -> (CancellationToken, Metrics) {
    let shutdown = CancellationToken::new();
    let metrics = Metrics::new().expect("metrics");
    let side = previewd::edge::SleepSide {
        clock,
        report: None,
    };
    tokio::spawn(previewd::edge::run(
        Arc::new(config),
        engine,
        metrics.clone(),
        side,
        shutdown.clone(),
    ));
    (shutdown, metrics)
}

/// The manager, counting the idle sweep's looks (each starts with a list of the previews):
/// a sign that the sweep ran, without a fixed sleep.
struct Counted {
    manager: Manager,
    lists: AtomicUsize,
}

impl Counted {
    fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }
}

impl PreviewEngine for Counted {
    fn deploy(
        &self,
        req: DeployRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Deployed, DeployFailure>> {
        PreviewEngine::deploy(&self.manager, req, cancel)
    }

    fn remove(&self, key: PreviewKey) -> BoxFuture<'_, Result<Option<PreviewId>, EngineError>> {
        PreviewEngine::remove(&self.manager, key)
    }

    fn status(&self, key: PreviewKey) -> BoxFuture<'_, Result<Option<PreviewState>, EngineError>> {
        PreviewEngine::status(&self.manager, key)
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<PreviewState>, EngineError>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        PreviewEngine::list(&self.manager)
    }

    fn sleep(&self, id: PreviewId) -> BoxFuture<'_, Result<bool, EngineError>> {
        PreviewEngine::sleep(&self.manager, id)
    }

    fn wake(
        &self,
        id: PreviewId,
        answering: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> BoxFuture<'_, Result<bool, DeployFailure>> {
        PreviewEngine::wake(&self.manager, id, answering)
    }

    fn visited(&self, id: &PreviewId) {
        PreviewEngine::visited(&self.manager, id)
    }

    fn in_flight(&self) -> BoxFuture<'_, std::collections::HashSet<PreviewId>> {
        PreviewEngine::in_flight(&self.manager)
    }
}

async fn status(env: &TestEnv, id: &PreviewId) -> (PreviewStatus, Vec<String>) {
    let p = env.manager.get(id).await.expect("preview");
    let s = env.manager.state(&p, &Default::default());
    let states = p.live_members().iter().map(|m| m.state.clone()).collect();
    (s.status, states)
}

/// When Docker last started the live container of `service`.
async fn started_at(env: &TestEnv, id: &PreviewId, service: &str) -> time::OffsetDateTime {
    let name = format!("{}-{id}-{service}", env.config.instance);
    let info = env
        .manager
        .docker()
        .inspect_container(
            &name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .expect("inspect");
    let at = info.state.and_then(|s| s.started_at).expect("started at");
    time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time")
}

async fn wait_status(env: &TestEnv, id: &PreviewId, want: PreviewStatus) {
    eventually(
        Duration::from_secs(90),
        &format!("{id} to be {want}"),
        || async { (status(env, id).await.0 == want).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_preview_sleeps_and_the_first_visit_wakes_it() {
    let suffix: String = nanoid::nanoid!(5, &previewd::ids::PREVIEW_ID_ALPHABET);
    let instance = format!("sleep-{suffix}");
    let env = TestEnv::with(
        "sleep",
        &[
            ("PREVIEWD_INSTANCE", instance.as_str()),
            ("PREVIEWD_LIMITS_IDLE_SLEEP", "3s"),
        ],
    )
    .await;
    let repo = GitRepo::from_fixture("two-service");
    // The web server listens 2 s after its start, so a wake takes longer than the second a
    // browser waits before it is shown the waking page.
    repo.write(
        "web/Dockerfile",
        "FROM busybox\nCOPY . /www/\nEXPOSE 8080\n\
         CMD [\"sh\", \"-c\", \"sleep 2; exec httpd -f -p 8080 -h /www\"]\n",
    );
    repo.commit("the web server starts slowly");
    let d = env.up(repo.path()).await.expect("up");
    let id = d.state.id.clone();
    let host = format!("{id}.localhost");
    let port = env.port;

    // The sweep looks every second; wall time passes, well beyond idle_sleep, but on the
    // engine's clock nobody has been away: it stays awake.
    let counted = Arc::new(Counted {
        manager: Manager::connect(env.config.clone())
            .await
            .expect("docker")
            .with_clock(env.clock.clone()),
        lists: AtomicUsize::new(0),
    });
    let (first_edge, _) = edge(env.config.clone(), counted.clone(), env.clock.clone());
    eventually(
        Duration::from_secs(60),
        "six looks of the sweep",
        || async { (counted.lists() >= 6).then_some(()) },
    )
    .await;
    assert_eq!(status(&env, &id).await.0, PreviewStatus::Running);

    // Nobody visits as the clock moves past idle_sleep: the idle sweep puts it to sleep. Its
    // containers stop; the URL stays.
    env.clock.advance(Duration::from_secs(4));
    wait_status(&env, &id, PreviewStatus::Sleeping).await;
    eventually(
        Duration::from_secs(60),
        "every container to stop",
        || async {
            let (_, states) = status(&env, &id).await;
            states.iter().all(|s| s != "running").then_some(())
        },
    )
    .await;
    first_edge.cancel();

    // previewd restarts (a new edge, no sweep now): the preview is still asleep.
    let mut awake_config = env.config.clone();
    awake_config.limits.idle_sleep = None;
    let manager = Manager::connect(awake_config.clone())
        .await
        .expect("docker")
        .with_clock(env.clock.clone());
    let (second_edge, metrics) = edge(awake_config, Arc::new(manager), env.clock.clone());
    assert_eq!(status(&env, &id).await.0, PreviewStatus::Sleeping);

    // A crawler does not wake it: 503 with Retry-After.
    let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let (code, retry, _) = visit(port, &host, "/", &[("user-agent", google)]).await;
    assert_eq!(
        (code, retry.is_empty()),
        (503, false),
        "a crawler is told to come back"
    );
    assert_eq!(status(&env, &id).await.0, PreviewStatus::Sleeping);

    // The first visit gets the preview's own answer, through the path routes too.
    let (code, _, body) = visit(port, &host, "/api/hello", &[("user-agent", "curl/8.5")]).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("internal says: previewd sample: internal"),
        "{body}"
    );
    // The visitor was let through as soon as the preview answered; the sleep mark goes just
    // after.
    wait_status(&env, &id, PreviewStatus::Running).await;
    // The wake started the containers in dependency order: the api only once what it
    // depends on (internal) had started.
    let (internal, api) = (
        started_at(&env, &id, "internal").await,
        started_at(&env, &id, "api").await,
    );
    assert!(
        internal < api,
        "internal started at {internal}, api at {api}"
    );
    eventually(Duration::from_secs(30), "the wake counted", || async {
        let text = metrics.render();
        text.contains("previewd_wakes_total{outcome=\"ok\"} 1")
            .then_some(())
    })
    .await;

    // 50 first visits at once, all answered by the preview.
    let sleep = env.manager.sleep(&id).await.expect("sleep");
    assert_eq!(sleep, Ok(()));
    let visits = (0..50).map(|i| {
        let host = host.clone();
        let path = if i % 2 == 0 { "/" } else { "/api/hello" };
        async move { visit(port, &host, path, &[("user-agent", "curl/8.5")]).await }
    });
    let answers = futures_util::future::join_all(visits).await;
    for (i, (code, _, body)) in answers.iter().enumerate() {
        assert_eq!(*code, 200, "visit {i}: {body}");
        let want = if i % 2 == 0 {
            "previewd sample: web"
        } else {
            "internal says"
        };
        assert!(body.contains(want), "visit {i}: {body}");
    }

    // A browser that waits sees the waking page, then the preview.
    wait_status(&env, &id, PreviewStatus::Running).await;
    assert_eq!(env.manager.sleep(&id).await.expect("sleep"), Ok(()));
    let browser = [("user-agent", FIREFOX), ("accept", "text/html,*/*;q=0.8")];
    let (code, retry, body) = visit(port, &host, "/", &browser).await;
    assert_eq!((code, retry.as_str()), (503, "1"), "{body}");
    assert!(body.contains("Waking up"), "{body}");
    let body = eventually(
        Duration::from_secs(60),
        "the preview after the waking page",
        || async {
            let (code, _, body) = visit(port, &host, "/", &browser).await;
            (code == 200).then_some(body)
        },
    )
    .await;
    assert!(body.contains("previewd sample: web"), "{body}");
    wait_status(&env, &id, PreviewStatus::Running).await;

    // The ttl (72 h) counts from the last visit: a preview that went to sleep 10 h after its
    // deployment has not expired 75 h after it; a visit `serve` heard of counts the same.
    let hour = Duration::from_secs(3600);
    env.clock.advance(10 * hour);
    assert_eq!(env.manager.sleep(&id).await.expect("sleep"), Ok(()));
    env.clock.advance(65 * hour);
    let report = env.clean_up_now().await;
    assert!(report.expired.is_empty(), "expired at 75 h: {report:?}");
    env.manager.visited(&id);
    env.clock.advance(10 * hour);
    let report = env.clean_up_now().await;
    assert!(
        report.expired.is_empty(),
        "expired 10 h after a visit: {report:?}"
    );

    // A push to a sleeping preview's branch deploys the new commit, awake.
    repo.write(
        "web/index.html",
        "<h1>previewd sample: web, second commit</h1>\n",
    );
    repo.commit("second");
    let again = env.up(repo.path()).await.expect("redeploy");
    assert_eq!(
        (again.state.id.clone(), again.state.status),
        (id.clone(), PreviewStatus::Running)
    );
    let (code, _, body) = visit(port, &host, "/", &[("user-agent", "curl/8.5")]).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("second commit"), "{body}");

    // A service that stopped by itself (no sleep mark) is a failure, never a sleeping preview:
    // nothing wakes it.
    let web = format!("{}-{id}-web", env.config.instance);
    env.manager
        .docker()
        .stop_container(
            &web,
            None::<bollard::query_parameters::StopContainerOptions>,
        )
        .await
        .expect("stop");
    wait_status(&env, &id, PreviewStatus::Failed).await;
    let (code, _, _) = visit(port, &host, "/", &[("user-agent", "curl/8.5")]).await;
    assert_eq!(code, 502, "the gateway reports the crash; no wake hides it");
    assert_eq!(status(&env, &id).await.0, PreviewStatus::Failed);
    second_edge.cancel();

    // Neither deployed nor visited for longer than the ttl: removed whole, its mark too.
    env.clock.advance(100 * hour);
    let report = env.clean_up_now().await;
    assert_eq!(report.expired, vec![id.to_string()]);
    env.assert_clean().await;
}

/// Opens a WebSocket through the gateway to `host` and returns the socket, held open.
async fn open_websocket(port: u16, host: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the gateway");
    let req = format!(
        "GET /livereload HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {FIREFOX}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send the upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.expect("read the answer");
        assert_ne!(n, 0, "closed: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The socket is live: an echo comes back through the gateway.
    s.write_all(b"ping").await.expect("write");
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"ping");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_preview_holding_a_websocket_open_stays_awake() {
    let suffix: String = nanoid::nanoid!(5, &previewd::ids::PREVIEW_ID_ALPHABET);
    let instance = format!("sleepws-{suffix}");
    let env = TestEnv::with(
        "sleepws",
        &[
            ("PREVIEWD_INSTANCE", instance.as_str()),
            ("PREVIEWD_LIMITS_IDLE_SLEEP", "3s"),
        ],
    )
    .await;
    let wt = tempfile::tempdir().expect("tempdir");
    engine_support::copy_dir(&engine_support::fixture("dev-websocket"), wt.path());
    let mut req = env.request(wt.path());
    req.mode = previewd::preview::manager::Mode::Dev {
        worktree: wt.path().to_path_buf(),
    };
    let d = env.up_req(req).await.expect("dev up");
    let id = d.state.id.clone();
    let host = format!("{id}.localhost");
    let counted = Arc::new(Counted {
        manager: Manager::connect(env.config.clone())
            .await
            .expect("docker")
            .with_clock(env.clock.clone()),
        lists: AtomicUsize::new(0),
    });
    let (edge, _) = edge(env.config.clone(), counted.clone(), env.clock.clone());

    // The dev server's live-reload socket is open: however long nobody sends a request, the
    // preview stays awake.
    let socket = open_websocket(env.port, &host).await;
    env.clock.advance(Duration::from_secs(3600));
    let seen = counted.lists();
    eventually(
        Duration::from_secs(60),
        "three looks of the sweep",
        || async { (counted.lists() >= seen + 3).then_some(()) },
    )
    .await;
    assert_eq!(status(&env, &id).await.0, PreviewStatus::Running);

    // The socket closes (the tab is gone): as the clock goes on without a visit, it sleeps.
    // (The clock moves at each look: the socket's end reaches the gateway's count and the
    // visit log a moment after the close.)
    drop(socket);
    eventually(
        Duration::from_secs(60),
        "asleep once the socket closed",
        || async {
            env.clock.advance(Duration::from_secs(10));
            (status(&env, &id).await.0 == PreviewStatus::Sleeping).then_some(())
        },
    )
    .await;
    edge.cancel();
    env.manager.down(&id).await.expect("down");
    env.assert_clean().await;
}
