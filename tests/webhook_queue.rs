//! The work queue, with a controllable fake engine: per-key order, supersede (cancel, report
//! `error` "superseded by <short sha>"), parallelism across keys, and the read back from the
//! forge that keeps late deliveries from deploying a closed PR or an old commit.

mod support;

use previewd::queue::QueueOptions;
use serde_json::{Value, json};
use support::engine::{Call, FakeEngine, Outcome};
use support::{Harness, eventually, payload, payload_json};

const OLD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const NEW: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn with_head(fixture: &str, sha: &str) -> Value {
    let mut v = payload_json(fixture);
    v["pull_request"]["head"]["sha"] = json!(sha);
    v
}

fn statuses_for(h: &Harness, sha: &str) -> Vec<(String, String)> {
    h.github
        .lock()
        .statuses
        .iter()
        .filter(|s| s["sha"] == sha)
        .map(|s| {
            (
                s["state"].as_str().unwrap_or("").to_owned(),
                s["description"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_newer_push_supersedes_a_running_deploy() {
    let engine = FakeEngine::manual();
    let h = Harness::start(engine.clone(), &[]).await;
    h.seed("pull_request.labeled.json");
    h.post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    eventually("first deploy running", || engine.waiting("changes") == 1).await;

    // The PR moves on to NEW, and GitHub says so.
    let sync = with_head("pull_request.synchronize.json", NEW);
    h.github.set_pull(sync["pull_request"].clone());
    let (status, _) = h
        .post("pull_request", &serde_json::to_vec(&sync).unwrap())
        .await;
    assert_eq!(status, 202);
    eventually("old deploy cancelled", || {
        engine
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Cancelled { .. }))
    })
    .await;
    eventually("superseded status", || {
        statuses_for(&h, OLD).last()
            == Some(&("error".to_owned(), "superseded by bbbbbbb".to_owned()))
    })
    .await;
    eventually("second deploy running", || engine.waiting("changes") == 1).await;
    assert!(engine.finish("changes", Outcome::Ready));
    eventually("new commit ready", || {
        statuses_for(&h, NEW).last().map(|s| s.0.as_str()) == Some("success")
    })
    .await;
    // In order: the old deploy started, was cancelled, then the new one ran.
    let calls: Vec<Call> = engine.calls();
    assert!(matches!(&calls[0], Call::Deploy { sha: Some(s), .. } if s == OLD));
    assert!(matches!(&calls[1], Call::Cancelled { .. }));
    assert!(matches!(&calls[2], Call::Deploy { sha: Some(s), .. } if s == NEW));
    assert!(matches!(&calls[3], Call::Deployed { .. }));
    let states: Vec<String> = h
        .github
        .lock()
        .deployment_statuses
        .iter()
        .map(|(_, b)| b["state"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(states, ["in_progress", "error", "in_progress", "success"]);
    h.github.assert_clean();
    h.stop().await;
}

#[tokio::test]
async fn intents_for_one_key_run_in_order() {
    let engine = FakeEngine::manual();
    let h = Harness::start(engine.clone(), &[]).await;
    h.seed("pull_request.labeled.json");
    h.post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    eventually("deploy running", || engine.waiting("changes") == 1).await;
    // The close arrives while the deploy runs: the deploy is cancelled, then the stop runs.
    let mut closed = payload_json("pull_request.closed.not-merged.json");
    closed["pull_request"]["state"] = json!("closed");
    h.github.set_pull(closed["pull_request"].clone());
    h.post("pull_request", &serde_json::to_vec(&closed).unwrap())
        .await;
    eventually("removed", || {
        engine
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Remove { .. }))
    })
    .await;
    let calls = engine.calls();
    assert!(matches!(calls[0], Call::Deploy { .. }));
    assert!(matches!(calls[1], Call::Cancelled { .. }));
    assert!(matches!(calls[2], Call::Remove { .. }));
    eventually("superseded by the stop", || {
        statuses_for(&h, OLD).last()
            == Some(&(
                "error".to_owned(),
                "superseded by a stop request".to_owned(),
            ))
    })
    .await;
    h.stop().await;
}

fn push_to(branch: &str, sha: &str) -> Vec<u8> {
    let mut v = payload_json("push.branch.json");
    v["ref"] = json!(format!("refs/heads/{branch}"));
    v["after"] = json!(sha);
    serde_json::to_vec(&v).unwrap()
}

/// Three keys are queued at once; `limit` of them run together (`limits.parallel`, set
/// through the environment when `env` is), and the others start as slots free up.
async fn three_keys_run_at_most(limit: usize, env: Option<&str>) {
    let engine = FakeEngine::manual();
    let env: Vec<(&str, &str)> = env
        .map(|v| vec![("PREVIEWD_LIMITS_PARALLEL", v)])
        .unwrap_or_default();
    // The queue's own option is overridden by the config.
    let options = QueueOptions {
        parallel: 8,
        ..QueueOptions::default()
    };
    let h = Harness::start_with(engine.clone(), &env, options).await;
    let branches = ["a-patch-1", "b-patch-1", "c-patch-1"];
    for (i, b) in branches.iter().enumerate() {
        let sha = ["a", "b", "c"][i].repeat(40);
        engine.set_branch_head(b, &sha);
        let (status, _) = h.post("push", &push_to(b, &sha)).await;
        assert_eq!(status, 202);
    }
    let deploys = || {
        engine
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Deploy { .. }))
            .count()
    };
    eventually("the first slots fill", || engine.running() == limit).await;
    for started in limit..branches.len() {
        // The others wait for a slot.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(engine.running(), limit);
        assert_eq!(deploys(), started);
        let first = branches
            .iter()
            .find(|b| engine.waiting(b) == 1)
            .expect("one waits");
        assert!(engine.finish(first, Outcome::Ready));
        eventually("the next starts", || deploys() == started + 1).await;
    }
    for b in branches {
        engine.finish(b, Outcome::Ready);
    }
    eventually("all ready", || {
        branches.iter().all(|b| engine.has_preview(b))
    })
    .await;
    assert_eq!(engine.max_running(), limit);
    h.github.assert_clean();
    h.stop().await;
}

#[tokio::test]
async fn different_keys_run_two_at_a_time_by_default() {
    three_keys_run_at_most(2, None).await;
}

#[tokio::test]
async fn limits_parallel_1_runs_one_key_at_a_time() {
    three_keys_run_at_most(1, Some("1")).await;
}

#[tokio::test]
async fn limits_parallel_3_runs_three_keys_at_once() {
    three_keys_run_at_most(3, Some("3")).await;
}

#[tokio::test]
async fn a_late_delivery_for_a_closed_pr_starts_nothing() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let mut pr = payload_json("pull_request.labeled.json")["pull_request"].clone();
    pr["state"] = json!("closed");
    h.github.set_pull(pr);
    h.github.set_permission("Codertocat", "write");
    let (status, _) = h
        .post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    assert_eq!(status, 202);
    eventually("the PR was read back", || {
        h.github.ops().iter().any(|o| o == "pulls/get")
    })
    .await;
    // The positive sign that the worker is done with the intent: it left the queue.
    wait_for_depth(&h, 0).await;
    assert!(h.engine.calls().is_empty(), "{:?}", h.engine.calls());
    assert!(h.github.lock().statuses.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_late_delivery_for_an_old_commit_deploys_the_current_head() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    h.seed("pull_request.labeled.json");
    // GitHub already has NEW as the head; the delivery still names OLD.
    let current = with_head("pull_request.labeled.json", NEW);
    h.github.set_pull(current["pull_request"].clone());
    h.post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    eventually("deployed", || h.engine.has_preview("changes")).await;
    let calls = h.engine.calls();
    assert!(
        matches!(&calls[0], Call::Deploy { sha: Some(s), .. } if s == NEW),
        "{calls:?}"
    );
    assert!(statuses_for(&h, OLD).is_empty());
    // A label removed meanwhile: the late labeled delivery does nothing.
    let mut unlabeled = payload_json("pull_request.labeled.json")["pull_request"].clone();
    unlabeled["labels"] = json!([]);
    h.github.set_pull(unlabeled);
    let reads = h.github.ops().iter().filter(|o| *o == "pulls/get").count();
    h.post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    eventually("the PR was read back again", || {
        h.github.ops().iter().filter(|o| *o == "pulls/get").count() > reads
    })
    .await;
    wait_for_depth(&h, 0).await;
    assert_eq!(
        h.engine
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Deploy { .. }))
            .count(),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn a_push_without_a_pr_reports_on_the_commit_and_deploys_the_branch_head() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let after = "e238171456e973f696a972b80599a849db5fe540";
    h.engine.set_branch_head("ailisp-patch-1", after);
    let (status, json) = h.post("push", &payload("push.branch.json")).await;
    assert_eq!(status, 202, "{json}");
    eventually("success on the pushed commit", || {
        statuses_for(&h, after).last().map(|s| s.0.as_str()) == Some("success")
    })
    .await;
    assert!(h.github.lock().comments.is_empty(), "no PR, no comment");
    let calls = h.engine.calls();
    assert!(matches!(&calls[0], Call::Deploy { sha: Some(s), .. } if s == after));
    // A later push whose delivery came first: the branch head is what runs and is reported.
    let newer = "cccccccccccccccccccccccccccccccccccccccc";
    h.engine.set_branch_head("ailisp-patch-1", newer);
    h.post("push", &payload("push.branch.json")).await;
    eventually("the older commit is marked superseded", || {
        statuses_for(&h, after).last()
            == Some(&("error".to_owned(), "superseded by ccccccc".to_owned()))
    })
    .await;
    eventually("success on the head", || {
        statuses_for(&h, newer).last().map(|s| s.0.as_str()) == Some("success")
    })
    .await;
    // The branch deleted: the preview goes.
    let mut deleted = payload_json("push.branch.json");
    deleted["deleted"] = json!(true);
    deleted["after"] = json!("0000000000000000000000000000000000000000");
    h.post("push", &serde_json::to_vec(&deleted).unwrap()).await;
    eventually("removed", || !h.engine.has_preview("ailisp-patch-1")).await;
    h.github.assert_clean();
    h.stop().await;
}

/// Waits until the queue holds at most `n` intents (waiting or running).
async fn wait_for_depth(h: &Harness, n: i64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let depth = h.queue_depth().await;
        if depth <= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue depth stays {depth}, waiting for {n}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Posts a signed push and returns the status and the `Retry-After` header.
async fn post_push(h: &Harness, delivery: &str, body: &[u8]) -> (u16, Option<String>) {
    let sig = support::sign(support::SECRET, body);
    let req = hyper::Request::post(format!("http://{}/webhooks/github", h.addr))
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", sig)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body,
        )))
        .expect("request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = client.request(req).await.expect("sent");
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (resp.status().as_u16(), retry)
}

#[tokio::test]
async fn pushes_to_one_branch_hold_one_queued_deploy_and_a_full_queue_answers_503() {
    let engine = FakeEngine::manual();
    let h = Harness::start(engine.clone(), &[("PREVIEWD_LIMITS_MAX_QUEUED", "3")]).await;
    // 21 pushes to one branch: each drops the deploy still waiting, so the queue holds at
    // most the running deploy and the newest one.
    let shas: Vec<String> = (0..21).map(|i| format!("{i:040x}")).collect();
    for sha in &shas {
        engine.set_branch_head("a-patch-1", sha);
        let (status, _) = h.post("push", &push_to("a-patch-1", sha)).await;
        assert_eq!(status, 202, "a push that supersedes is always taken");
        assert!(h.queue_depth().await <= 2);
    }
    eventually("the newest deploy runs", || {
        engine.waiting("a-patch-1") == 1
    })
    .await;
    let depth = h.queue_depth().await;
    assert_eq!(depth, 1, "only the newest deploy is left");
    // Two more branches fill the queue (limit 3); a fourth is refused, not queued.
    for b in ["b-patch-1", "c-patch-1"] {
        let sha = "b".repeat(40);
        engine.set_branch_head(b, &sha);
        assert_eq!(h.post("push", &push_to(b, &sha)).await.0, 202);
    }
    let d = "d".repeat(40);
    engine.set_branch_head("d-patch-1", &d);
    let id = h.delivery_id();
    let (status, retry) = post_push(&h, &id, &push_to("d-patch-1", &d)).await;
    assert_eq!((status, retry.as_deref()), (503, Some("30")));
    let (_, metrics) = h.get(h.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"previewd_webhooks_total{event="push",outcome="busy"} 1"#),
        "{metrics}"
    );
    // Room again: the same delivery id is taken (the refusal did not claim it).
    assert!(engine.finish("a-patch-1", Outcome::Ready));
    eventually("a slot frees", || engine.has_preview("a-patch-1")).await;
    wait_for_depth(&h, 2).await;
    assert_eq!(post_push(&h, &id, &push_to("d-patch-1", &d)).await.0, 202);
    let last = shas.last().expect("shas");
    eventually("the newest commit is what ran", || {
        statuses_for(&h, last).last().map(|s| s.0.as_str()) == Some("success")
    })
    .await;
    // Deploys of the branch started in push order (an older commit never runs after a newer
    // one), and only the newest finished.
    let calls = engine.calls();
    let started: Vec<usize> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Deploy { key, sha } if key.branch == "a-patch-1" => {
                shas.iter().position(|s| Some(s) == sha.as_ref())
            }
            _ => None,
        })
        .collect();
    assert!(
        started.windows(2).all(|w| w[0] <= w[1]) && started.last() == Some(&(shas.len() - 1)),
        "deploys started for pushes {started:?} of 0..{}",
        shas.len()
    );
    let finished: Vec<&Option<String>> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Deployed { key, sha } if key.branch == "a-patch-1" => Some(sha),
            _ => None,
        })
        .collect();
    assert_eq!(finished, vec![&Some(last.clone())], "{calls:?}");
    for b in ["b-patch-1", "c-patch-1", "d-patch-1"] {
        eventually("running", || engine.waiting(b) == 1).await;
        engine.finish(b, Outcome::Ready);
    }
    eventually("all ready", || engine.has_preview("d-patch-1")).await;
    h.github.assert_clean();
    h.stop().await;
}
