//! Test support shared by `tests/webhook_*.rs`: the fake GitHub, the fake engine, a running
//! `previewd serve` on 127.0.0.1:0, real payloads signed with the test secret, and polling
//! with deadlines (never fixed sleeps).
#![allow(dead_code)]

pub mod browser;
pub mod engine;
pub mod fake_app;
pub mod fake_gitea;
pub mod fake_github;
pub mod fake_github_ops;
pub mod fake_gitlab;
pub mod fake_gitlab_ops;
pub mod fake_http;
pub mod fake_oauth;
pub mod openapi;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use previewd::config::Config;
use previewd::forge::retry::RetryPolicy;
use previewd::queue::QueueOptions;
use previewd::serve::{ServeOptions, bind};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use engine::FakeEngine;
use fake_gitea::{FakeGitea, GITEA_TOKEN};
use fake_github::FakeGitHub;

pub const SECRET: &str = "It's a Secret to Everybody";
pub const TOKEN: &str = "ghp_testtoken0123456789";

/// The repository's `fixtures/`: real forge payloads and the forges' API descriptions live
/// there (see `fixtures/README.md`), so a plain clone runs the tests.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A real GitHub payload from the fixtures, as bytes.
pub fn payload(name: &str) -> Vec<u8> {
    let p = fixtures_dir().join("forge-payloads/github").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn payload_json(name: &str) -> Value {
    serde_json::from_slice(&payload(name)).expect("fixture is JSON")
}

/// A pull request as GitHub's `GET /repos/{owner}/{repo}/pulls/{number}` answers it, from the
/// `labeled` fixture, for the fake GitHub's `set_pull`.
pub fn pull_json(number: u64, branch: &str, sha: &str, labels: &[&str], open: bool) -> Value {
    let mut p = payload_json("pull_request.labeled.json")["pull_request"].clone();
    p["number"] = json!(number);
    p["state"] = json!(if open { "open" } else { "closed" });
    p["head"]["ref"] = json!(branch);
    p["head"]["sha"] = json!(sha);
    p["labels"] = json!(
        labels
            .iter()
            .map(|l| json!({"id": 1, "node_id": "L", "url": "", "name": l, "color": "fff", "default": false, "description": null}))
            .collect::<Vec<_>>()
    );
    p
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Polls `f` every 10 ms until it holds, failing the test after 10 s.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn test_env(github_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("PREVIEWD_LISTEN", "127.0.0.1:0"),
        ("PREVIEWD_ADMIN_LISTEN", "127.0.0.1:0"),
        ("PREVIEWD_DATA_DIR", "/tmp/previewd-webhook-tests"),
        ("PREVIEWD_GITHUB_WEBHOOK_SECRET", SECRET),
        ("PREVIEWD_GITHUB_TOKEN", TOKEN),
        ("PREVIEWD_GITHUB_API_URL", github_url),
        ("PREVIEWD_GITHUB_GIT_URL", "file:///tmp/previewd-test-repos"),
        ("PREVIEWD_TRIGGERS_LABELS", "bug,preview"),
        ("PREVIEWD_TRIGGERS_BRANCHES", "*-patch-*,team/phase-*"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(3),
        budget: Duration::from_secs(6),
    }
}

/// The secret of the Gitea route in the tests (rotation: `GITEA_OLD_SECRET` still works).
pub const GITEA_SECRET: &str = "gitea shared secret";
pub const GITEA_OLD_SECRET: &str = "gitea previous secret";

/// A running `previewd serve` wired to a fake GitHub (and, from `start_gitea`, a fake Gitea)
/// and a fake engine.
pub struct Harness {
    pub github: FakeGitHub,
    pub gitea: Option<FakeGitea>,
    pub engine: FakeEngine,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    deliveries: AtomicU64,
    /// Where the server's edge listens for the gateway (waking previews, access checks).
    pub edge_socket: PathBuf,
    /// The server's own data dir: the sockets it binds there for the gateway (`edge.sock`)
    /// must not be another test's in the same binary.
    _data: tempfile::TempDir,
}

impl Harness {
    pub async fn start(engine: FakeEngine, extra_env: &[(&str, &str)]) -> Harness {
        Harness::start_with(engine, extra_env, QueueOptions::default()).await
    }

    pub async fn start_with(
        engine: FakeEngine,
        extra_env: &[(&str, &str)],
        queue: QueueOptions,
    ) -> Harness {
        let options = ServeOptions {
            queue,
            ..Default::default()
        };
        Harness::start_with_options(engine, extra_env, options).await
    }

    /// `options.retry` is always the tests' fast retry policy.
    pub async fn start_with_options(
        engine: FakeEngine,
        extra_env: &[(&str, &str)],
        options: ServeOptions,
    ) -> Harness {
        Harness::start_inner(engine, extra_env, options, false, None).await
    }

    /// As `start`, with `previewd.toml` holding `file`: what the environment cannot say, such
    /// as a forge section's list of secrets.
    pub async fn start_with_file(
        engine: FakeEngine,
        file: &str,
        extra_env: &[(&str, &str)],
    ) -> Harness {
        Harness::start_inner(
            engine,
            extra_env,
            ServeOptions::default(),
            false,
            Some(file),
        )
        .await
    }

    /// As `start`, with a fake Gitea configured beside GitHub (`[gitea]`: its url and token,
    /// the secrets `GITEA_SECRET` and `GITEA_OLD_SECRET`).
    pub async fn start_gitea(engine: FakeEngine, extra_env: &[(&str, &str)]) -> Harness {
        Harness::start_inner(engine, extra_env, ServeOptions::default(), true, None).await
    }

    async fn start_inner(
        engine: FakeEngine,
        extra_env: &[(&str, &str)],
        options: ServeOptions,
        with_gitea: bool,
        file: Option<&str>,
    ) -> Harness {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let github = FakeGitHub::start().await;
        let gitea = match with_gitea {
            true => Some(FakeGitea::start().await),
            false => None,
        };
        let data = tempfile::tempdir().expect("data dir");
        let data_dir = data.path().display().to_string();
        let mut env = test_env(&github.url(), &[("PREVIEWD_DATA_DIR", &data_dir)]);
        if let Some(g) = &gitea {
            let url = g.url();
            let gitea_env = [
                ("PREVIEWD_GITEA_URL", url.as_str()),
                ("PREVIEWD_GITEA_TOKEN", GITEA_TOKEN),
                ("PREVIEWD_GITEA_GIT_URL", "file:///tmp/previewd-test-gitea"),
            ];
            env.extend(
                gitea_env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            );
        }
        for (k, v) in extra_env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let text = with_gitea
            .then(|| {
                format!("[gitea]\nwebhook_secret = [\"{GITEA_SECRET}\", \"{GITEA_OLD_SECRET}\"]\n")
            })
            .or(file.map(str::to_owned));
        let config = Config::from_parts(text.as_deref(), Path::new("previewd.toml"), &env)
            .expect("test config");
        let shutdown = CancellationToken::new();
        let edge_socket = previewd::edge::socket_path(&config);
        let options = ServeOptions {
            retry: fast_retry(),
            ..options
        };
        let server = bind(config, Arc::new(engine.clone()), options, shutdown.clone())
            .await
            .expect("bind");
        let addr = server.webhook_addr().expect("addr");
        let admin = server.admin_addr().expect("admin addr");
        let server = tokio::spawn(async move {
            server.run().await.expect("server runs");
        });
        Harness {
            github,
            gitea,
            engine,
            addr,
            admin,
            shutdown,
            server,
            deliveries: AtomicU64::new(1),
            edge_socket,
            _data: data,
        }
    }

    /// Makes the fake GitHub know the fixture's PR (as it is in the payload) and give its
    /// sender write permission.
    pub fn seed(&self, fixture: &str) -> Value {
        let p = payload_json(fixture);
        self.github.set_pull(p["pull_request"].clone());
        if let Some(login) = p["sender"]["login"].as_str() {
            self.github.set_permission(login, "write");
        }
        p
    }

    pub fn delivery_id(&self) -> String {
        let n = self.deliveries.fetch_add(1, Ordering::SeqCst);
        format!("72d3162e-cc78-11e3-81ab-{n:012}")
    }

    /// Posts `body` as event `event`, signed with the test secret, under a fresh delivery id.
    pub async fn post(&self, event: &str, body: &[u8]) -> (u16, Value) {
        let id = self.delivery_id();
        self.post_as(event, &id, body).await
    }

    pub async fn post_as(&self, event: &str, delivery: &str, body: &[u8]) -> (u16, Value) {
        let sig = sign(SECRET, body);
        self.post_raw(
            &[
                ("x-github-event", event),
                ("x-github-delivery", delivery),
                ("x-hub-signature-256", &sig),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    pub async fn post_raw(&self, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        self.post_to("github", headers, body).await
    }

    /// Posts `body` with `headers` to `/webhooks/<forge>`.
    pub async fn post_to(
        &self,
        forge: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let mut req = hyper::Request::post(format!("http://{}/webhooks/{forge}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        let (status, text) = send(req).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, addr: SocketAddr, path: &str) -> (u16, String) {
        let req = hyper::Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        send(req).await
    }

    /// Deliveries the server has answered, by outcome (`queued`, `ignored`, `invalid`, ...),
    /// summed over events, from `/metrics`. Every answer is counted before it is sent.
    pub async fn answered(&self) -> std::collections::BTreeMap<String, u64> {
        let (_, text) = self.get(self.admin, "/metrics").await;
        let mut out = std::collections::BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("previewd_webhooks_total{") else {
                continue;
            };
            let (labels, n) = rest.split_once("} ").expect("a metric line");
            let outcome = labels
                .split(',')
                .find_map(|l| l.strip_prefix("outcome=\""))
                .and_then(|o| o.strip_suffix('"'))
                .expect("an outcome label");
            *out.entry(outcome.to_owned()).or_default() += n.trim().parse::<u64>().expect("count");
        }
        out
    }

    /// The queue's depth (intents waiting or running), from `/metrics`.
    pub async fn queue_depth(&self) -> i64 {
        let (_, text) = self.get(self.admin, "/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix("previewd_queue_depth "))
            .and_then(|v| v.trim().parse().ok())
            .expect("previewd_queue_depth")
    }

    /// Asserts that no delivery so far was queued, and that neither the engine nor the forge
    /// was called. The positive sign comes first: at least `sent` deliveries are counted as
    /// answered (a connection the server cut may add one the test did not count). An intent is queued before its delivery is answered, and only
    /// the queue calls the engine or the forge, so once every answer is counted and none of
    /// them is `queued`, nothing can run later: no waiting for it to show is needed.
    pub async fn assert_nothing_queued(&self, sent: u64) {
        let answered = self.answered().await;
        assert!(
            answered.values().sum::<u64>() >= sent,
            "{sent} deliveries sent; answered by outcome: {answered:?}"
        );
        assert_eq!(answered.get("queued"), None, "{answered:?}");
        assert_eq!(self.queue_depth().await, 0);
        assert!(
            self.engine.calls().is_empty(),
            "engine was called: {:?}",
            self.engine.calls()
        );
        assert!(
            self.github.requests().is_empty(),
            "forge was called: {:?}",
            self.github.ops()
        );
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
    }
}

pub async fn send(req: hyper::Request<Full<Bytes>>) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(req).await.expect("request sent");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
