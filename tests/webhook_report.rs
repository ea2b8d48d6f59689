//! Reporting to GitHub, end to end: a signed real payload goes into `previewd serve`, the fake
//! engine deploys, and the fake GitHub (which validates every request against the OpenAPI
//! subset) must end up with the statuses, the deployment, one sticky comment and the
//! reactions docs/architecture.md promises.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::engine::{Call, FakeEngine, Outcome};
use support::{Harness, SECRET, TOKEN, eventually, payload, payload_json};

const SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const MARKER: &str = "<!-- previewd:Codertocat/Hello-World#2 -->";

fn statuses(h: &Harness) -> Vec<Value> {
    h.github.lock().statuses.clone()
}

fn deployment_states(h: &Harness) -> Vec<String> {
    h.github
        .lock()
        .deployment_statuses
        .iter()
        .map(|(_, b)| b["state"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn no_secrets_sent(h: &Harness) {
    for r in h.github.requests() {
        let body = r.body.to_string();
        assert!(
            !body.contains(TOKEN) && !body.contains(SECRET),
            "secret in {}",
            r.op
        );
        assert_eq!(
            r.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
    }
}

#[tokio::test]
async fn labeled_pr_goes_pending_then_success_with_one_sticky_comment() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    h.seed("pull_request.labeled.json");
    let (status, _) = h
        .post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    assert_eq!(status, 202);
    eventually("success status", || {
        statuses(&h).iter().any(|s| s["state"] == "success")
    })
    .await;
    let s = statuses(&h);
    assert_eq!(s[0]["state"], "pending");
    assert_eq!(s[0]["description"], "Building preview…");
    assert_eq!(s[0]["context"], "previewd");
    assert_eq!(s[0]["sha"], SHA);
    let url = s[1]["target_url"].as_str().expect("target_url").to_owned();
    assert!(
        url.starts_with("http://") && url.ends_with(".localhost:8000"),
        "{url}"
    );
    assert_eq!(s[1]["description"], "Preview ready");

    eventually("deployment success", || {
        deployment_states(&h).contains(&"success".to_owned())
    })
    .await;
    let deployments = h.github.lock().deployments.clone();
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0]["environment"], "preview/changes");
    assert_eq!(deployments[0]["transient_environment"], true);
    assert_eq!(deployments[0]["ref"], SHA);
    assert_eq!(deployment_states(&h), vec!["in_progress", "success"]);
    let ds = h.github.lock().deployment_statuses.clone();
    assert_eq!(ds[1].1["environment_url"], json!(url));

    eventually("the ready comment", || {
        h.github
            .lock()
            .comments
            .iter()
            .any(|c| c.body.contains("Preview ready"))
    })
    .await;
    // A synchronize redeploys: the same comment is edited, never a second one.
    let (status, _) = h
        .post("pull_request", &payload("pull_request.synchronize.json"))
        .await;
    assert_eq!(status, 202);
    eventually("second success", || {
        statuses(&h)
            .iter()
            .filter(|s| s["state"] == "success")
            .count()
            == 2
    })
    .await;
    eventually("comment edited again", || {
        h.github.lock().comments.first().map(|c| c.edits) == Some(3)
    })
    .await;
    let comments = h.github.lock().comments.clone();
    assert_eq!(comments.len(), 1, "one sticky comment: {comments:?}");
    let body = &comments[0].body;
    assert!(body.starts_with(MARKER), "{body}");
    assert!(body.contains(&url) && body.contains("`ec26c3e`"), "{body}");
    assert!(body.contains("| web | `/` | ✅ 200 | 12 ms |"), "{body}");
    assert!(
        body.contains("Time to ready: 1.8 s (build 1.5 s · health 0.3 s)"),
        "{body}"
    );
    h.github.assert_clean();
    no_secrets_sent(&h);
    h.stop().await;
}

#[tokio::test]
async fn teardown_marks_the_deployment_inactive() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    h.seed("pull_request.labeled.json");
    h.post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    eventually("deployed", || h.engine.has_preview("changes")).await;
    eventually("ready reported", || {
        deployment_states(&h).contains(&"success".to_owned())
    })
    .await;
    let mut closed = payload_json("pull_request.closed.not-merged.json");
    closed["pull_request"]["state"] = json!("closed");
    h.github.set_pull(closed["pull_request"].clone());
    let (status, _) = h
        .post("pull_request", &serde_json::to_vec(&closed).unwrap())
        .await;
    assert_eq!(status, 202);
    eventually("inactive", || {
        deployment_states(&h).contains(&"inactive".to_owned())
    })
    .await;
    assert!(!h.engine.has_preview("changes"));
    eventually("comment says removed", || {
        h.github
            .lock()
            .comments
            .iter()
            .any(|c| c.body.contains("Preview removed"))
    })
    .await;
    assert_eq!(h.github.lock().comments.len(), 1);
    h.github.assert_clean();
    h.stop().await;
}

#[tokio::test]
async fn a_failed_deploy_reports_failure_and_the_log_tail() {
    let engine = FakeEngine::manual();
    let h = Harness::start(engine.clone(), &[]).await;
    h.seed("pull_request.labeled.json");
    h.post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    eventually("deploy waiting", || engine.waiting("changes") == 1).await;
    let long = "x".repeat(300).leak();
    assert!(engine.finish("changes", Outcome::Fail(long)));
    eventually("failure status", || {
        statuses(&h).iter().any(|s| s["state"] == "failure")
    })
    .await;
    let s = statuses(&h);
    let d = s[1]["description"].as_str().unwrap();
    assert!(d.chars().count() <= 140, "{d}");
    assert!(d.starts_with("build failed for service web: xxx"), "{d}");
    eventually("failure comment", || {
        h.github
            .lock()
            .comments
            .iter()
            .any(|c| c.body.contains("Preview failed"))
    })
    .await;
    let body = h.github.lock().comments[0].body.clone();
    assert!(body.contains("<details><summary>Last 2 lines of the build log</summary>"));
    // The log holds ``` so the fence is longer.
    assert!(
        body.contains("````text\nstep 1/3\nerror: ```boom```\n````"),
        "{body}"
    );
    assert!(deployment_states(&h).contains(&"failure".to_owned()));
    h.github.assert_clean();
    h.stop().await;
}

fn command(h: &Harness, body: &str, sender: &str) -> Vec<u8> {
    let mut v = payload_json("issue_comment.created.json");
    v["comment"]["body"] = json!(body);
    v["comment"]["user"]["login"] = json!(sender);
    // The PR the comment is on, as the fake GitHub knows it.
    let mut pr = payload_json("pull_request.labeled.json")["pull_request"].clone();
    pr["number"] = json!(3);
    h.github.set_pull(pr);
    serde_json::to_vec(&v).unwrap()
}

fn reactions(h: &Harness) -> Vec<String> {
    h.github
        .lock()
        .reactions
        .iter()
        .map(|(_, r)| r.clone())
        .collect()
}

#[tokio::test]
async fn commands_get_eyes_then_rocket_and_replies() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    h.github.set_permission("writer", "write");
    let (status, _) = h
        .post("issue_comment", &command(&h, "/preview", "writer"))
        .await;
    assert_eq!(status, 202);
    eventually("rocket", || reactions(&h) == ["eyes", "rocket"]).await;
    assert!(h.engine.has_preview("changes"));
    assert!(
        h.github
            .lock()
            .reactions
            .iter()
            .all(|(id, _)| *id == 546616131),
        "reactions go on the command"
    );

    h.post("issue_comment", &command(&h, "/preview status", "writer"))
        .await;
    eventually("status reply", || {
        h.github
            .lock()
            .comments
            .iter()
            .any(|c| c.body.contains("**Preview running**"))
    })
    .await;

    h.post("issue_comment", &command(&h, "/preview dance", "writer"))
        .await;
    eventually("help reply", || {
        h.github
            .lock()
            .comments
            .iter()
            .any(|c| c.body.contains("`/preview stop`"))
    })
    .await;
    eventually("confused", || {
        reactions(&h).last().map(String::as_str) == Some("confused")
    })
    .await;

    h.post("issue_comment", &command(&h, "/preview stop", "writer"))
        .await;
    eventually("stopped", || !h.engine.has_preview("changes")).await;
    h.github.assert_clean();
    h.stop().await;
}

#[tokio::test]
async fn labels_and_commands_count_only_from_writers() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    h.github.set_permission("reader", "read");
    h.github.set_permission("triager", "triage");
    h.github.set_permission("maintainer", "maintain");
    h.github.set_permission("admin", "admin");
    for who in ["reader", "triager", "stranger"] {
        let (status, _) = h.post("issue_comment", &command(&h, "/preview", who)).await;
        assert_eq!(status, 202);
        eventually("refusal", || {
            h.github
                .lock()
                .comments
                .iter()
                .any(|c| c.body.contains(&format!("`{who}` has")))
        })
        .await;
    }
    // A label by someone who cannot write does nothing either.
    let mut labeled = payload_json("pull_request.labeled.json");
    labeled["sender"]["login"] = json!("reader");
    h.github.set_pull(labeled["pull_request"].clone());
    h.post("pull_request", &serde_json::to_vec(&labeled).unwrap())
        .await;
    eventually("label refusal", || {
        h.github
            .lock()
            .comments
            .iter()
            .filter(|c| c.body.contains("`reader` has"))
            .count()
            == 2
    })
    .await;
    assert!(h.engine.calls().is_empty(), "{:?}", h.engine.calls());
    assert_eq!(reactions(&h).iter().filter(|r| *r == "confused").count(), 3);
    for who in ["maintainer", "admin"] {
        h.post("issue_comment", &command(&h, "/preview", who)).await;
    }
    eventually("two deploys", || {
        h.engine
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Deployed { .. }))
            .count()
            == 2
    })
    .await;
    h.github.assert_clean();
    h.stop().await;
}

#[tokio::test]
async fn forge_calls_retry_on_5xx_and_429_honouring_retry_after() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    h.seed("pull_request.labeled.json");
    h.github.fault("repos/create-commit-status", 502, &[]);
    h.github
        .fault("repos/create-commit-status", 429, &[("retry-after", "1")]);
    let started = Instant::now();
    h.post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    eventually("pending after retries", || {
        statuses(&h).iter().any(|s| s["state"] == "pending")
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    let attempts = h
        .github
        .requests()
        .iter()
        .filter(|r| r.op == "repos/create-commit-status" && r.body["state"] == "pending")
        .count();
    assert_eq!(attempts, 3);
    eventually("success", || {
        statuses(&h).iter().any(|s| s["state"] == "success")
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_forge_outage_is_bounded_and_never_stops_the_deploy() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    h.seed("pull_request.labeled.json");
    for _ in 0..20 {
        h.github.fault("repos/create-deployment", 503, &[]);
    }
    // A rate limit asking for longer than the retry budget fails at once.
    h.github.fault(
        "repos/create-commit-status",
        403,
        &[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "9999999999"),
        ],
    );
    h.post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    eventually("deployed anyway", || h.engine.has_preview("changes")).await;
    eventually("success status", || {
        statuses(&h).iter().any(|s| s["state"] == "success")
    })
    .await;
    let attempts = h
        .github
        .ops()
        .iter()
        .filter(|o| *o == "repos/create-deployment")
        .count();
    assert_eq!(attempts, 4, "bounded by max_attempts");
    let (_, metrics) = h.get(h.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"previewd_forge_errors_total{call="create-deployment"} 1"#),
        "{metrics}"
    );
    h.stop().await;
}
