//! The end-to-end harness shared by tests/e2e.rs and the fault tests: a real `serve` with the
//! real engine, the real Caddy gateway and a real git repository (`github.git_url =
//! file://...`), driven by real GitHub payloads signed with the test secret, reporting to the
//! fake GitHub that rejects any request the real API would reject.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use previewd::preview::manager::Manager;
use previewd::serve::{ServeOptions, bind};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::engine_support::{GitRepo, TestEnv, eventually};
use crate::support::fake_github::FakeGitHub;
use crate::support::{SECRET, TOKEN, fast_retry, payload_json, send, sign};

pub const REPO: &str = "Codertocat/Hello-World";
pub const DEADLINE: Duration = Duration::from_secs(150);

pub struct E2e {
    pub env: TestEnv,
    pub github: FakeGitHub,
    pub repo: GitRepo,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<()>,
}

impl E2e {
    pub async fn start(name: &str, fixture: &str, branch: &str) -> E2e {
        Self::start_with(name, fixture, branch, &[]).await
    }

    /// [`E2e::start`] with more settings (`PREVIEWD_*`, as the environment would give them).
    pub async fn start_with(
        name: &str,
        fixture: &str,
        branch: &str,
        extra: &[(&str, &str)],
    ) -> E2e {
        let github = FakeGitHub::start().await;
        let repo = GitRepo::at(fixture, &format!("{REPO}.git"), branch);
        let git_url = format!("file://{}", repo.root().display());
        let api = github.url();
        let mut settings = vec![
            ("PREVIEWD_LISTEN", "127.0.0.1:0"),
            ("PREVIEWD_ADMIN_LISTEN", "127.0.0.1:0"),
            ("PREVIEWD_GITHUB_WEBHOOK_SECRET", SECRET),
            ("PREVIEWD_GITHUB_TOKEN", TOKEN),
            ("PREVIEWD_GITHUB_API_URL", &api),
            ("PREVIEWD_GITHUB_GIT_URL", &git_url),
            ("PREVIEWD_TRIGGERS_LABELS", "preview"),
            ("PREVIEWD_TRIGGERS_BRANCHES", "*/phase-*"),
        ];
        settings.extend_from_slice(extra);
        let env = TestEnv::with(name, &settings).await;
        let engine = Manager::connect(env.config.clone()).await.expect("docker");
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
        let admin = server.admin_addr().expect("admin addr");
        let server = tokio::spawn(async move {
            server.run().await.expect("serve runs");
        });
        E2e {
            env,
            github,
            repo,
            addr,
            admin,
            shutdown,
            server,
        }
    }

    /// The fixture's `pull_request` event for our repository at `sha`, labelled `preview`;
    /// the fake GitHub is told the same PR, and `sender` gets `permission`.
    pub fn pr_event(&self, action: &str, sha: &str, sender: &str, permission: &str) -> Vec<u8> {
        let mut p = payload_json("pull_request.labeled.json");
        let label = json!({"id": 1, "node_id": "L1", "url": "", "name": "preview", "color": "ffffff", "default": false, "description": null});
        p["action"] = json!(action);
        p["label"] = label.clone();
        p["pull_request"]["labels"] = json!([label]);
        p["pull_request"]["head"]["sha"] = json!(sha);
        p["pull_request"]["state"] = json!(if action == "closed" { "closed" } else { "open" });
        p["sender"]["login"] = json!(sender);
        self.github.set_pull(p["pull_request"].clone());
        self.github.set_permission(sender, permission);
        serde_json::to_vec(&p).expect("json")
    }

    /// Posts the PR event (see [`E2e::pr_event`]) and expects it queued.
    pub async fn pr(&self, action: &str, sha: &str, sender: &str, permission: &str) {
        let body = self.pr_event(action, sha, sender, permission);
        assert_eq!(
            self.post("pull_request", &body).await,
            202,
            "{action} not queued"
        );
    }

    pub fn comment_event(&self, body: &str, sender: &str, permission: &str) -> Vec<u8> {
        let mut p = payload_json("issue_comment.created.json");
        let base = payload_json("pull_request.labeled.json");
        p["repository"] = base["repository"].clone();
        p["issue"]["number"] = json!(2);
        p["comment"]["body"] = json!(body);
        p["comment"]["user"]["login"] = json!(sender);
        p["comment"]["user"]["type"] = json!("User");
        p["sender"]["login"] = json!(sender);
        p["sender"]["type"] = json!("User");
        self.github.set_permission(sender, permission);
        serde_json::to_vec(&p).expect("json")
    }

    /// Posts a PR comment (see [`E2e::comment_event`]) and expects it queued.
    pub async fn command(&self, body: &str, sender: &str, permission: &str) {
        let event = self.comment_event(body, sender, permission);
        assert_eq!(
            self.post("issue_comment", &event).await,
            202,
            "{body:?} not queued"
        );
    }

    /// Waits until the PR's deployment is marked inactive (the preview was torn down).
    pub async fn deployment_inactive(&self) {
        eventually(DEADLINE, "the deployment to go inactive", || async {
            let ds = self.github.lock().deployment_statuses.clone();
            ds.iter()
                .any(|(_, s)| s["state"] == "inactive")
                .then_some(())
        })
        .await;
    }

    /// Closes the PR at `sha` and waits until its deployment is inactive and nothing of the
    /// instance is left (asserted, worktrees included).
    pub async fn close_and_wait_gone(&self, sha: &str) {
        self.pr("closed", sha, "Codertocat", "write").await;
        self.deployment_inactive().await;
        eventually(DEADLINE, "everything to be removed", || async {
            let (c, n, _) = self.env.objects().await;
            (c.is_empty() && n.is_empty()).then_some(())
        })
        .await;
        self.env.assert_clean().await;
    }

    pub async fn post(&self, event: &str, body: &[u8]) -> u16 {
        self.post_json(event, body).await.0
    }

    pub async fn post_json(&self, event: &str, body: &[u8]) -> (u16, Value) {
        let id = format!("e2e-{}", nanoid::nanoid!(12));
        let req = hyper::Request::post(format!("http://{}/webhooks/github", self.addr))
            .header("x-github-event", event)
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", sign(SECRET, body))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        let (status, text) = send(req).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn statuses(&self, sha: &str) -> Vec<Value> {
        let st = self.github.lock();
        st.statuses
            .iter()
            .filter(|s| s["sha"] == sha)
            .cloned()
            .collect()
    }

    /// Waits for a commit status `state` on `sha`. A different final state (`failure` or
    /// `error` while waiting for `success`, and the reverse) fails at once, and a timeout shows
    /// every status and comment the fake GitHub holds: "timed out" alone says nothing.
    pub async fn status(&self, sha: &str, state: &str) -> Value {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let seen = self.statuses(sha);
            if let Some(s) = seen.iter().find(|s| s["state"] == state) {
                return s.clone();
            }
            let other_final = (state != "pending")
                .then(|| {
                    seen.iter()
                        .find(|s| s["state"] != "pending" && s["state"] != state)
                })
                .flatten();
            let timed_out = std::time::Instant::now() >= deadline;
            if other_final.is_some() || timed_out {
                let comments: Vec<String> = self.comments().into_iter().map(|c| c.body).collect();
                panic!(
                    "waiting for status {state} on {sha}: {}\nstatuses: {seen:#?}\ncomments: {comments:#?}",
                    if timed_out {
                        "timed out"
                    } else {
                        "another final state came"
                    },
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn comments(&self) -> Vec<crate::support::fake_github::Comment> {
        self.github.lock().comments.clone()
    }

    /// previewd's on-demand TLS permission answer for `domain`.
    pub async fn tls_ask(&self, domain: &str) -> u16 {
        let req = hyper::Request::get(format!("http://{}/tls/ask?domain={domain}", self.admin))
            .body(Full::new(Bytes::new()))
            .expect("request");
        send(req).await.0
    }

    /// GET a preview URL through the gateway (the URL's host routes; no DNS needed).
    pub async fn get(&self, url: &str, path: &str) -> (u16, String) {
        let id = url
            .trim_start_matches("http://")
            .split('.')
            .next()
            .expect("id in URL");
        self.env.get(id, path).await
    }

    pub async fn stop(self) {
        self.github.assert_clean();
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.server).await;
    }
}
