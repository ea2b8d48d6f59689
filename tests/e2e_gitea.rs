//! End to end on Gitea (and so Forgejo), as a team runs previewd: a real `serve` configured
//! for Gitea alone, the real engine, the real Caddy gateway and a real git repository
//! (`gitea.git_url = file://...`), driven by Gitea payloads signed with the route's secret,
//! reporting to the fake Gitea that refuses any request the real API would refuse. What a
//! user sees on the pull request: the `previewd` status (pending, then success linking the
//! URL), the sticky comment, and after a forge outage the true status once Gitea is back.

mod e2e_support;
mod engine_support;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use previewd::engine::PreviewEngine;
use previewd::preview::manager::Manager;
use previewd::serve::{ServeOptions, bind};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use e2e_support::DEADLINE;
use engine_support::{GitRepo, TestEnv, eventually};
use support::fake_gitea::{BOT, FakeGitea, GITEA_TOKEN, gitea_pull};
use support::{fast_retry, fixtures_dir, send};

const REPO: &str = "team/shop";
const SECRET: &str = "e2e gitea secret";

struct GiteaE2e {
    env: TestEnv,
    gitea: FakeGitea,
    repo: GitRepo,
    addr: SocketAddr,
    admin: SocketAddr,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl GiteaE2e {
    async fn start(name: &str) -> GiteaE2e {
        let gitea = FakeGitea::start().await;
        let repo = GitRepo::at("two-service", &format!("{REPO}.git"), "changes");
        let git_url = format!("file://{}", repo.root().display());
        let url = gitea.url();
        let env = TestEnv::with(
            name,
            &[
                ("PREVIEWD_LISTEN", "127.0.0.1:0"),
                ("PREVIEWD_ADMIN_LISTEN", "127.0.0.1:0"),
                ("PREVIEWD_GITEA_URL", &url),
                ("PREVIEWD_GITEA_TOKEN", GITEA_TOKEN),
                ("PREVIEWD_GITEA_WEBHOOK_SECRET", SECRET),
                ("PREVIEWD_GITEA_GIT_URL", &git_url),
                ("PREVIEWD_TRIGGERS_LABELS", "preview"),
            ],
        )
        .await;
        let engine = Manager::connect(env.config.clone()).await.expect("docker");
        let shutdown = CancellationToken::new();
        let options = ServeOptions {
            retry: fast_retry(),
            reconcile_interval: Some(Duration::from_secs(2)),
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
        GiteaE2e {
            env,
            gitea,
            repo,
            addr,
            admin,
            shutdown,
            server,
        }
    }

    /// Posts a Gitea delivery of `event_type`, signed, under a fresh id.
    async fn post(&self, event_type: &str, body: &[u8]) -> (u16, Value) {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
        mac.update(body);
        let sig = hex::encode(mac.finalize().into_bytes());
        let family = previewd::forge::gitea::payload::family(event_type);
        let req = hyper::Request::post(format!("http://{}/webhooks/gitea", self.addr))
            .header("x-gitea-event", family)
            .header("x-gitea-event-type", event_type)
            .header("x-gitea-delivery", nanoid::nanoid!(12))
            .header("x-gitea-signature", sig)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        let (status, text) = send(req).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// PR 1 on branch `changes` at `sha`, as Gitea reads it and as its webhook says it.
    fn pr_event(
        &self,
        action: &str,
        sha: &str,
        labels: &[&str],
        open: bool,
        fork: bool,
    ) -> Vec<u8> {
        let pr = gitea_pull(REPO, 1, "changes", sha, labels, open, fork);
        if !fork {
            self.gitea.set_pull(pr.clone());
        }
        let p = fixtures_dir().join("forge-payloads/gitea/pull_request.opened.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["action"] = json!(action);
        v["number"] = json!(1);
        v["pull_request"] = pr;
        v["repository"]["full_name"] = json!(REPO);
        v["sender"]["login"] = json!("dev");
        serde_json::to_vec(&v).unwrap()
    }

    fn comment_event(&self, id: u64, body: &str, author: &str) -> Vec<u8> {
        let p = fixtures_dir().join("forge-payloads/gitea/issue_comment.created.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["repository"]["full_name"] = json!(REPO);
        v["issue"]["number"] = json!(1);
        v["comment"]["id"] = json!(id);
        v["comment"]["body"] = json!(body);
        v["comment"]["user"]["login"] = json!(author);
        v["is_pull"] = json!(true);
        serde_json::to_vec(&v).unwrap()
    }

    /// Waits for a status `state` on `sha`; fails at once on another final state.
    async fn status(&self, sha: &str, state: &str) -> Value {
        eventually(DEADLINE, &format!("status {state} on {sha}"), || async {
            let seen = self.gitea.statuses_of(sha);
            if let Some(other) = seen
                .iter()
                .find(|s| state != "pending" && s["state"] != "pending" && s["state"] != state)
            {
                panic!("another final state: {other}\n{seen:#?}");
            }
            seen.into_iter().find(|s| s["state"] == state)
        })
        .await
    }

    async fn sticky_contains(&self, needle: &str) -> String {
        eventually(
            DEADLINE,
            &format!("the sticky comment to say {needle:?}"),
            || async {
                self.gitea
                    .sticky(REPO, 1)
                    .map(|c| c.body)
                    .filter(|b| b.contains(needle))
            },
        )
        .await
    }

    async fn get(&self, url: &str, path: &str) -> (u16, String) {
        let id = url
            .trim_start_matches("http://")
            .split('.')
            .next()
            .expect("id in URL");
        self.env.get(id, path).await
    }

    async fn metrics(&self) -> String {
        let req = hyper::Request::get(format!("http://{}/metrics", self.admin))
            .body(Full::new(Bytes::new()))
            .expect("request");
        send(req).await.1
    }

    async fn close_and_wait_gone(&self, sha: &str) {
        let body = self.pr_event("closed", sha, &["preview"], false, false);
        assert_eq!(self.post("pull_request", &body).await.0, 202);
        self.sticky_contains("stopped and its containers removed")
            .await;
        eventually(DEADLINE, "everything to be removed", || async {
            let (c, n, _) = self.env.objects().await;
            (c.is_empty() && n.is_empty()).then_some(())
        })
        .await;
        self.env.assert_clean().await;
    }

    async fn stop(self) {
        self.gitea.assert_clean();
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_gitea_pr_gets_a_preview_that_follows_pushes_and_goes_when_closed() {
    let e = GiteaE2e::start("e2e-gitea").await;
    e.gitea.set_permission("dev", "write");
    e.gitea.set_permission("guest", "read");
    let sha1 = e.repo.commit("nothing new").to_string();

    // Labelled by a writer: pending, then success whose target_url serves the PR's commit.
    let (status, answer) = e
        .post(
            "pull_request_label",
            &e.pr_event("label_updated", &sha1, &["preview"], true, false),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let pending = e.status(&sha1, "pending").await;
    assert_eq!(pending["context"], "previewd");
    let ok = e.status(&sha1, "success").await;
    let url = ok["target_url"].as_str().expect("target_url").to_owned();
    assert!(
        url.starts_with("http://") && url.contains(".localhost:"),
        "{url}"
    );
    let (code, body) = e.get(&url, "/").await;
    assert_eq!(code, 200);
    assert!(body.contains("previewd sample: web"), "{body}");
    let sticky = e.sticky_contains(&url).await;
    assert!(sticky.contains(&sha1[..7]), "{sticky}");

    // previewd's own comment, a reader's command, a fork's PR: none of them acts.
    let (_, answer) = e
        .post("issue_comment", &e.comment_event(11, "/preview stop", BOT))
        .await;
    assert!(
        answer["ignored"].as_str().unwrap().contains("bot"),
        "{answer}"
    );
    let (status, _) = e
        .post(
            "issue_comment",
            &e.comment_event(12, "/preview stop", "guest"),
        )
        .await;
    assert_eq!(status, 202);
    eventually(DEADLINE, "the reader's refusal", || async {
        e.gitea
            .lock()
            .reactions
            .contains(&(12, "confused".into()))
            .then_some(())
    })
    .await;
    assert!(
        e.gitea
            .lock()
            .comments
            .iter()
            .any(|c| c.body.contains("`guest` has `read` permission"))
    );
    let (_, answer) = e
        .post(
            "pull_request",
            &e.pr_event("opened", &sha1, &["preview"], true, true),
        )
        .await;
    assert!(
        answer["ignored"].as_str().unwrap().contains("fork"),
        "{answer}"
    );
    assert_eq!(e.get(&url, "/").await.0, 200, "still serving");

    // A new commit: the same URL serves it, the same comment is edited.
    e.repo
        .write("web/index.html", "<h1>previewd sample: web v2</h1>");
    let sha2 = e.repo.commit("web v2");
    let (status, _) = e
        .post(
            "pull_request_sync",
            &e.pr_event("synchronized", &sha2, &["preview"], true, false),
        )
        .await;
    assert_eq!(status, 202);
    let ok2 = e.status(&sha2, "success").await;
    assert_eq!(ok2["target_url"], url.as_str(), "same URL");
    let (_, body) = e.get(&url, "/").await;
    assert!(body.contains("web v2"), "{body}");
    e.sticky_contains(&sha2[..7]).await;
    let stickies = e
        .gitea
        .lock()
        .comments
        .iter()
        .filter(|c| c.body.contains(&format!("<!-- previewd:{REPO}#1 -->")))
        .count();
    assert_eq!(stickies, 1, "one sticky comment");

    // Closed: nothing left, and the comment says so.
    e.close_and_wait_gone(&sha2).await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_gitea_outage_the_pr_ends_with_the_true_status() {
    let e = GiteaE2e::start("e2e-gitea-down").await;
    e.gitea.set_permission("dev", "write");
    let sha = e.repo.commit("nothing new").to_string();
    let (status, _) = e
        .post(
            "pull_request_label",
            &e.pr_event("label_updated", &sha, &["preview"], true, false),
        )
        .await;
    assert_eq!(status, 202);
    e.status(&sha, "pending").await;
    e.sticky_contains("Building preview").await;
    // Gitea goes down (500 on everything) for longer than the retry budget while the
    // preview builds: the ready report is lost, the preview is not.
    e.gitea.set_down(true);
    eventually(DEADLINE, "the ready report to fail", || async {
        let m = e.metrics().await;
        (m.contains(r#"previewd_forge_errors_total{call="commit-status"}"#)
            && m.contains(r#"previewd_forge_errors_total{call="sticky-comment"}"#))
        .then_some(())
    })
    .await;
    assert!(
        e.gitea
            .statuses_of(&sha)
            .iter()
            .all(|s| s["state"] == "pending")
    );
    let previews = e.env.manager.list().await.expect("list");
    let url = previews.first().expect("the preview runs").url.clone();
    assert_eq!(e.get(&url, "/").await.0, 200, "serving through the outage");
    // Gitea is back: the reconciler says the true status again.
    e.gitea.set_down(false);
    let ok = e.status(&sha, "success").await;
    assert_eq!(ok["target_url"], url.as_str());
    e.sticky_contains(&url).await;
    e.close_and_wait_gone(&sha).await;
    e.stop().await;
}
