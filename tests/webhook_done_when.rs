//! Issue 3's "Done when", automated: `previewd serve` on real sockets (port 0), the real
//! signed `pull_request.labeled` payload written to it over plain TCP as curl would, and a fake
//! engine that holds the deploy until the test releases it. The 202 must come back before the
//! engine is released (ordering, not milliseconds), the fake GitHub must have the `pending`
//! status while the engine still holds, and the rest of the reporting must follow the release:
//! success, or a failure status naming the reason.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::engine::{Call, FakeEngine, Outcome};
use support::{Harness, SECRET, eventually, payload, sign};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const MARKER: &str = "<!-- previewd:Codertocat/Hello-World#2 -->";

/// Writes one HTTP/1.1 request by hand and reads the whole answer: status and body.
async fn curl(h: &Harness, event: &str, body: &[u8]) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(h.addr)
        .await
        .expect("connect to previewd serve");
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: {}\r\nUser-Agent: curl/8.5.0\r\n\
         Accept: */*\r\nContent-Type: application/json\r\nX-GitHub-Event: {event}\r\n\
         X-GitHub-Delivery: {}\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        h.addr,
        h.delivery_id(),
        sign(SECRET, body),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read answer");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

fn states(h: &Harness) -> Vec<(String, String)> {
    h.github
        .lock()
        .statuses
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
            (field("state"), field("description"))
        })
        .collect()
}

fn deployment_states(h: &Harness) -> Vec<String> {
    h.github
        .lock()
        .deployment_statuses
        .iter()
        .map(|(_, b)| b["state"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn released(engine: &FakeEngine) -> bool {
    engine
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Deployed { .. } | Call::Failed { .. }))
}

/// Posts the labeled PR and checks everything that must hold while the engine still holds.
async fn answered_then_pending(h: &Harness, engine: &FakeEngine) {
    h.seed("pull_request.labeled.json");
    let body = payload("pull_request.labeled.json");
    let sent = curl(h, "pull_request", &body);
    // An answer that waited for the engine would never come: it holds until released.
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), sent)
        .await
        .expect("answered while the engine holds the deploy");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["queued"], "deploy");
    assert!(!released(engine), "the answer waited for the engine");

    eventually("the engine holds the deploy", || {
        engine.waiting("changes") == 1
    })
    .await;
    eventually("pending status", || {
        states(h).first().is_some_and(|(s, _)| s == "pending")
    })
    .await;
    assert_eq!(
        states(h),
        vec![("pending".to_owned(), "Building preview…".to_owned())]
    );
    let first = h.github.lock().statuses[0].clone();
    assert_eq!(first["sha"], SHA);
    assert_eq!(first["context"], "previewd");
    eventually("deployment in progress", || {
        deployment_states(h) == ["in_progress"]
    })
    .await;
    assert!(!released(engine));
}

fn one_sticky_comment(h: &Harness) -> String {
    let comments = h.github.lock().comments.clone();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].body.contains(MARKER));
    comments[0].body.clone()
}

#[tokio::test]
async fn labeled_pr_is_answered_at_once_then_reported_as_the_engine_proceeds() {
    let engine = FakeEngine::manual();
    let h = Harness::start(engine.clone(), &[]).await;
    answered_then_pending(&h, &engine).await;

    assert!(engine.finish("changes", Outcome::Ready), "release");
    eventually("success status", || states(&h).len() == 2).await;
    let s = h.github.lock().statuses.clone();
    assert_eq!(s[1]["state"], "success");
    assert_eq!(s[1]["description"], "Preview ready");
    let url = s[1]["target_url"].as_str().expect("target_url").to_owned();
    eventually("deployment success", || {
        deployment_states(&h) == ["in_progress", "success"]
    })
    .await;
    let ds = h.github.lock().deployment_statuses.clone();
    assert_eq!(ds[1].1["environment_url"], url.as_str());
    eventually("the comment shows the URL", || {
        h.github
            .lock()
            .comments
            .iter()
            .any(|c| c.body.contains(&url))
    })
    .await;
    one_sticky_comment(&h);
    h.github.assert_clean();
    h.stop().await;
}

#[tokio::test]
async fn labeled_pr_whose_deploy_fails_gets_a_failure_status_naming_the_reason() {
    let engine = FakeEngine::manual();
    let h = Harness::start(engine.clone(), &[]).await;
    answered_then_pending(&h, &engine).await;

    let reason = "Dockerfile: COPY failed: file not found: app.js";
    assert!(engine.finish("changes", Outcome::Fail(reason)), "release");
    eventually("failure status", || states(&h).len() == 2).await;
    let (state, description) = states(&h)[1].clone();
    assert_eq!(state, "failure");
    assert_eq!(
        description,
        format!("build failed for service web: {reason}")
    );
    eventually("deployment failure", || {
        deployment_states(&h) == ["in_progress", "failure"]
    })
    .await;
    eventually("the comment names the reason", || {
        h.github
            .lock()
            .comments
            .iter()
            .any(|c| c.body.contains(reason))
    })
    .await;
    one_sticky_comment(&h);
    h.github.assert_clean();
    h.stop().await;
}
