//! Fault: the forge answers 500 and 429 (with `Retry-After`) for a while, on every call a
//! deployment makes (reading the PR, the permission, statuses, the deployment, the comment).
//! A real `serve` with the real engine: once the forge recovers, every status, the
//! deployment's success and the one sticky comment are delivered, and the preview serves as
//! if nothing happened.

mod engine_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use previewd::preview::manager::Manager;
use previewd::serve::{ServeOptions, bind};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use engine_support::{GitRepo, TestEnv, eventually};
use support::fake_github::FakeGitHub;
use support::{SECRET, TOKEN, fast_retry, payload_json, send, sign};

const REPO: &str = "Codertocat/Hello-World";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forge_500_and_429_for_a_while_then_everything_is_delivered() {
    let github = FakeGitHub::start().await;
    let repo = GitRepo::at("compose-only", &format!("{REPO}.git"), "changes");
    let git_url = format!("file://{}", repo.root().display());
    let api = github.url();
    let env = TestEnv::with(
        "fforge",
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

    // The forge is down for a while: every call fails, with a 429 among the 500s.
    for op in [
        "pulls/get",
        "repos/get-collaborator-permission-level",
        "repos/create-commit-status",
        "repos/create-deployment",
        "repos/create-deployment-status",
        "issues/list-comments",
        "issues/create-comment",
    ] {
        github.fault(op, 500, &[]);
        github.fault(op, 429, &[("retry-after", "1")]);
        github.fault(op, 502, &[]);
    }

    let sha = repo.commit("empty");
    let mut p = payload_json("pull_request.labeled.json");
    let label = json!({"id": 1, "node_id": "L1", "url": "", "name": "preview", "color": "ffffff", "default": false, "description": null});
    p["label"] = label.clone();
    p["pull_request"]["labels"] = json!([label]);
    p["pull_request"]["head"]["sha"] = json!(sha);
    p["sender"]["login"] = json!("octocat");
    github.set_pull(p["pull_request"].clone());
    github.set_permission("octocat", "write");
    let body = serde_json::to_vec(&p).unwrap();
    let req = hyper::Request::post(format!("http://{addr}/webhooks/github"))
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "forge-fault-1")
        .header("x-hub-signature-256", sign(SECRET, &body))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    assert_eq!(send(req).await.0, 202);

    let url = eventually(Duration::from_secs(150), "the success status", || {
        let url = github
            .lock()
            .statuses
            .iter()
            .find(|s| s["state"] == "success")
            .and_then(|s| s["target_url"].as_str().map(str::to_owned));
        async move { url }
    })
    .await;
    eventually(Duration::from_secs(30), "the ready comment", || {
        let ok = github
            .lock()
            .comments
            .iter()
            .any(|c| c.body.contains("Preview ready"));
        async move { ok.then_some(()) }
    })
    .await;
    {
        let st = github.lock();
        assert!(st.faults.is_empty(), "every fault was hit: {:?}", st.faults);
        let states: Vec<_> = st.statuses.iter().map(|s| s["state"].clone()).collect();
        assert_eq!(
            states,
            vec![json!("pending"), json!("success")],
            "{states:?}"
        );
        assert_eq!(st.comments.len(), 1, "one sticky comment");
        assert!(
            st.deployment_statuses
                .iter()
                .any(|(_, b)| b["state"] == "success"),
            "deployment success delivered"
        );
    }
    github.assert_clean();
    // The preview itself never noticed.
    let id = url
        .split("://")
        .nth(1)
        .and_then(|h| h.split('.').next())
        .expect("id in the URL")
        .to_owned();
    let (status, page) = env.get(&id, "/").await;
    assert_eq!(status, 200, "{page}");

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
}
