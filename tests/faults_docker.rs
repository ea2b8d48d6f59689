//! Fault: the Docker daemon becomes unreachable under a running `serve`. previewd talks to
//! Docker through a unix-socket proxy this test owns (`DOCKER_HOST` points at it while the
//! engine connects); the proxy is then stopped and its socket removed, which is what a dead
//! daemon looks like from previewd's side. A deploy then fails with a clear status and
//! comment, `serve` keeps answering, and once the proxy is back the next push deploys.
//! One test in its own binary: `DOCKER_HOST` is process-wide.

mod engine_support;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use previewd::preview::manager::Manager;
use previewd::serve::{ServeOptions, bind};
use serde_json::{Value, json};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use engine_support::{GitRepo, TestEnv, eventually};
use support::fake_github::FakeGitHub;
use support::{SECRET, TOKEN, fast_retry, payload_json, send, sign};

const REPO: &str = "Codertocat/Hello-World";
const DOCKER_SOCK: &str = "/var/run/docker.sock";

/// Forwards every connection on `path` to the real Docker socket until dropped.
struct Proxy {
    path: PathBuf,
    tasks: JoinSet<()>,
}

impl Proxy {
    fn start(path: &Path) -> Proxy {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind proxy socket");
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut docker) = UnixStream::connect(DOCKER_SOCK).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut docker).await;
                    }
                });
            }
        });
        Proxy {
            path: path.to_owned(),
            tasks,
        }
    }

    /// The daemon "dies": every open connection is cut and the socket is gone.
    fn stop(mut self) {
        self.tasks.abort_all();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn pr_event(github: &FakeGitHub, sha: &str) -> Vec<u8> {
    let mut p = payload_json("pull_request.labeled.json");
    let label = json!({"id": 1, "node_id": "L1", "url": "", "name": "preview", "color": "ffffff", "default": false, "description": null});
    p["label"] = label.clone();
    p["pull_request"]["labels"] = json!([label]);
    p["pull_request"]["head"]["sha"] = json!(sha);
    p["sender"]["login"] = json!("octocat");
    github.set_pull(p["pull_request"].clone());
    github.set_permission("octocat", "write");
    serde_json::to_vec(&p).expect("json")
}

async fn post(addr: std::net::SocketAddr, event: &str, body: &[u8]) -> u16 {
    let req = hyper::Request::post(format!("http://{addr}/webhooks/github"))
        .header("x-github-event", event)
        .header("x-github-delivery", format!("f-{}", nanoid::nanoid!(12)))
        .header("x-hub-signature-256", sign(SECRET, body))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    send(req).await.0
}

fn states(github: &FakeGitHub) -> Vec<(String, String)> {
    github
        .lock()
        .statuses
        .iter()
        .map(|s: &Value| {
            (
                s["state"].as_str().unwrap_or("").to_owned(),
                s["description"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_unreachable_fails_clearly_serve_stays_up_and_recovers() {
    let sockdir = tempfile::tempdir().expect("tempdir");
    let sock = sockdir.path().join("docker.sock");
    let proxy = Proxy::start(&sock);

    let github = FakeGitHub::start().await;
    let repo = GitRepo::at("compose-only", &format!("{REPO}.git"), "changes");
    let git_url = format!("file://{}", repo.root().display());
    let api = github.url();
    // SAFETY: the only test in this binary; no other thread reads the environment now.
    unsafe { std::env::set_var("DOCKER_HOST", format!("unix://{}", sock.display())) };
    let env = TestEnv::with(
        "fdock",
        &[
            ("PREVIEWD_LISTEN", "127.0.0.1:0"),
            ("PREVIEWD_ADMIN_LISTEN", "127.0.0.1:0"),
            ("PREVIEWD_GITHUB_WEBHOOK_SECRET", SECRET),
            ("PREVIEWD_GITHUB_TOKEN", TOKEN),
            ("PREVIEWD_GITHUB_API_URL", &api),
            ("PREVIEWD_GITHUB_GIT_URL", &git_url),
            ("PREVIEWD_TRIGGERS_LABELS", "preview"),
        ],
    )
    .await;
    let engine = Manager::connect(env.config.clone()).await.expect("docker");
    // The engine keeps its socket path; the test's own cleanup goes to Docker directly.
    unsafe { std::env::remove_var("DOCKER_HOST") };

    let shutdown = CancellationToken::new();
    let options = ServeOptions {
        retry: fast_retry(),
        ..Default::default()
    };
    let server = bind(
        env.config.clone(),
        Arc::new(engine),
        options,
        shutdown.clone(),
    )
    .await
    .expect("bind");
    let addr = server.webhook_addr().expect("addr");
    let server = tokio::spawn(async move { server.run().await.expect("serve runs") });

    // Docker goes away; a labelled PR arrives.
    proxy.stop();
    let sha = repo.commit("empty");
    assert_eq!(
        post(addr, "pull_request", &pr_event(&github, &sha)).await,
        202
    );
    let failure = eventually(Duration::from_secs(60), "a failure status", || {
        let s = states(&github);
        async move {
            s.into_iter()
                .find(|(st, _)| st == "failure" || st == "error")
        }
    })
    .await;
    assert!(
        failure.1.contains("Docker"),
        "the status names Docker: {failure:?}"
    );
    let comment = eventually(Duration::from_secs(30), "a failure comment", || {
        let c = github.lock().comments.first().map(|c| c.body.clone());
        async move { c.filter(|b| b.contains("Docker")) }
    })
    .await;
    assert!(
        comment.contains("cannot reach the Docker engine"),
        "{comment}"
    );
    // serve is up, on both the webhook path and health.
    let (status, _) = send(
        hyper::Request::get(format!("http://{addr}/healthz"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!server.is_finished(), "serve exited");

    // Docker is back: the next push deploys and the same comment says ready.
    let _proxy = Proxy::start(&sock);
    let sha2 = repo.commit("again");
    let mut p: Value = serde_json::from_slice(&pr_event(&github, &sha2)).unwrap();
    p["action"] = json!("synchronize");
    assert_eq!(
        post(addr, "pull_request", &serde_json::to_vec(&p).unwrap()).await,
        202
    );
    eventually(Duration::from_secs(150), "a success status", || {
        let ok = states(&github).iter().any(|(s, _)| s == "success");
        async move { ok.then_some(()) }
    })
    .await;
    // The status goes out before the comment is edited: wait for the edit too.
    github.comment_containing("Preview ready").await;
    let comments = github.lock().comments.clone();
    assert_eq!(comments.len(), 1, "one sticky comment");
    assert!(
        comments[0].body.contains("Preview ready"),
        "{}",
        comments[0].body
    );

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
}
