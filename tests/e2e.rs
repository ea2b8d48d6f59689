//! End to end, as a team runs previewd: a real `serve` with the real engine, the real Caddy
//! gateway and real git repositories (`github.git_url = file://...`), driven by real GitHub
//! payloads signed with the test secret, reporting to the fake GitHub that rejects any request
//! the real API would reject. Each test asserts what a user would see on the pull request.

mod e2e_support;
mod engine_support;
mod support;

use serde_json::{Value, json};

use e2e_support::{DEADLINE, E2e};
use engine_support::{copy_dir, eventually};
use support::payload_json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labeled_pr_gets_a_preview_that_follows_pushes_and_goes_when_closed() {
    let e = E2e::start("e2e-life", "two-service", "changes").await;
    let sha1 = e.repo.commit("nothing new").to_string();

    // (a) labeled → 202 → pending → success whose target_url answers through the gateway.
    e.pr("labeled", &sha1, "Codertocat", "write").await;
    e.status(&sha1, "pending").await;
    let ok = e.status(&sha1, "success").await;
    let url = ok["target_url"].as_str().expect("target_url").to_owned();
    assert!(
        url.starts_with("http://") && url.contains(".localhost:"),
        "{url}"
    );
    let (status, body) = e.get(&url, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("previewd sample: web"));
    let deployments = e.github.lock().deployments.clone();
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0]["environment"], "preview/changes");
    let ds = e.github.lock().deployment_statuses.clone();
    assert!(
        ds.iter()
            .any(|(_, s)| s["state"] == "success" && s["environment_url"] == url.as_str()),
        "{ds:?}"
    );
    let host = url
        .trim_start_matches("http://")
        .split(':')
        .next()
        .expect("host");
    assert_eq!(
        e.tls_ask(host).await,
        200,
        "a live preview's host may get a certificate"
    );
    assert_eq!(e.tls_ask("zzzzzzzzzz.localhost").await, 403);
    assert_eq!(e.tls_ask("example.com").await, 403);
    let comments = e.comments();
    assert_eq!(comments.len(), 1, "one sticky comment");
    let c = &comments[0].body;
    assert!(c.contains(&url), "{c}");
    assert!(c.contains("api") && c.contains("/api"), "health table: {c}");
    assert!(c.contains("build"), "time split by phase: {c}");
    // Time to ready counts from the webhook: the queue (wait and the PR's read-back) is the
    // first phase, then every phase of the deployment, adding up to the total shown.
    let (total, phases) = time_to_ready(c);
    let names: Vec<&str> = phases.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "queue", "fetch", "config", "build", "start", "route", "health", "switch"
        ],
        "{c}"
    );
    let sum: f64 = phases.iter().map(|(_, s)| s).sum();
    // The phases run back to back and end with the total; each figure is rounded to 0.1 s.
    let rounding = 0.05 * (phases.len() + 1) as f64 + 0.01;
    assert!((sum - total).abs() <= rounding, "{sum} vs {total}: {c}");

    // (b) a new commit: same URL, new content, the same comment edited, statuses on the new sha.
    e.repo
        .write("web/index.html", "<h1>previewd sample: web v2</h1>");
    let sha2 = e.repo.commit("web v2");
    e.pr("synchronize", &sha2, "Codertocat", "write").await;
    let ok2 = e.status(&sha2, "success").await;
    assert_eq!(ok2["target_url"], url.as_str(), "same URL");
    let (_, body) = e.get(&url, "/").await;
    assert!(body.contains("web v2"), "{body}");
    let comments = e.comments();
    assert_eq!(comments.len(), 1, "still one comment");
    assert!(
        comments[0].edits >= 1 && comments[0].body.contains(&sha2[..7]),
        "{}",
        comments[0].body
    );

    // (d) closed → everything gone, deployment inactive, the comment says so.
    e.close_and_wait_gone(&sha2).await;
    let c = &e.comments()[0].body;
    assert!(c.to_lowercase().contains("removed"), "{c}");
    assert_eq!(
        e.get(&url, "/").await.0,
        0,
        "gateway gone with the last preview"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_stop_obeys_writers_only_and_build_failures_show_the_log() {
    // (f) a build failure: failure status, the log tail in the comment, nothing running.
    let e = E2e::start("e2e-fail", "build-fail", "changes").await;
    let sha = e.repo.commit("broken").to_string();
    e.pr("labeled", &sha, "Codertocat", "write").await;
    let failed = e.status(&sha, "failure").await;
    let description = failed["description"].as_str().unwrap_or("");
    assert!(description.chars().count() <= 140, "{description}");
    assert!(
        description.contains("build"),
        "the reason names the step: {description}"
    );
    eventually(DEADLINE, "the comment to show the log", || async {
        e.comments()
            .first()
            .filter(|c| c.body.contains("error: something broke"))
            .map(|_| ())
    })
    .await;
    e.env.assert_clean().await;
    e.stop().await;

    // (c) /preview stop by a reader is refused with a reply; by a writer it tears down.
    let e = E2e::start("e2e-stop", "compose-only", "changes").await;
    let sha = e.repo.commit("ok").to_string();
    e.pr("labeled", &sha, "Codertocat", "write").await;
    e.status(&sha, "success").await;
    e.command("/preview stop", "reader", "read").await;
    eventually(DEADLINE, "a refusal reply", || async {
        e.comments()
            .iter()
            .any(|c| c.body.contains("reader") || c.body.to_lowercase().contains("permission"))
            .then_some(())
    })
    .await;
    assert_eq!(
        e.env.manager.observed().await.expect("ls").len(),
        1,
        "still running"
    );
    e.command("/preview stop", "writer", "write").await;
    eventually(DEADLINE, "the preview to be removed", || async {
        e.env
            .manager
            .observed()
            .await
            .ok()?
            .is_empty()
            .then_some(())
    })
    .await;
    e.deployment_inactive().await;
    e.env.assert_clean().await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_branch_push_without_pr_and_fork_rules() {
    // (e) a push to a phase branch with no PR: status on the pushed commit, preview up.
    let e = E2e::start("e2e-push", "compose-only", "team/phase-1").await;
    let sha = e.repo.commit("phase 1 ready").to_string();
    let mut p = payload_json("push.branch.json");
    p["repository"] = payload_json("pull_request.labeled.json")["repository"].clone();
    p["ref"] = json!("refs/heads/team/phase-1");
    p["after"] = json!(sha);
    p["head_commit"]["id"] = json!(sha);
    assert_eq!(
        e.post("push", &serde_json::to_vec(&p).expect("json")).await,
        202
    );
    let ok = e.status(&sha, "success").await;
    let url = ok["target_url"].as_str().expect("url").to_owned();
    assert_eq!(e.get(&url, "/").await.0, 200);
    let observed = e.env.manager.observed().await.expect("ls");
    assert_eq!(observed.len(), 1);
    e.env.manager.down(&observed[0].id).await.expect("down");
    e.stop().await;

    // (h) fork PRs: opened with the label by its author (no write) → nothing; labelled by a
    // writer → a preview.
    let e = E2e::start("e2e-fork", "compose-only", "changes").await;
    let sha = e.repo.commit("from a fork").to_string();
    copy_dir(e.repo.path(), &e.repo.root().join("forker/Hello-World.git"));
    let fork = |action: &str, sender: &str, permission: &str| {
        let body = e.pr_event(action, &sha, sender, permission);
        let mut p: Value = serde_json::from_slice(&body).expect("json");
        p["pull_request"]["head"]["repo"]["full_name"] = json!("forker/Hello-World");
        p["pull_request"]["head"]["repo"]["name"] = json!("Hello-World");
        p["pull_request"]["head"]["repo"]["owner"]["login"] = json!("forker");
        p["pull_request"]["head"]["repo"]["fork"] = json!(true);
        p["pull_request"]["head"]["label"] = json!("forker:changes");
        e.github.set_pull(p["pull_request"].clone());
        serde_json::to_vec(&p).expect("json")
    };
    // The author's own label on opening is not enough: answered "ignored", nothing queued.
    let (status, answer) = e
        .post_json("pull_request", &fork("opened", "forker", "read"))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["ignored"].as_str().unwrap_or("").contains("fork"),
        "{answer}"
    );
    assert!(
        e.statuses(&sha).is_empty(),
        "nothing reported for the refused event"
    );
    assert_eq!(
        e.post("pull_request", &fork("labeled", "Codertocat", "write"))
            .await,
        202
    );
    let ok = e.status(&sha, "success").await;
    let url = ok["target_url"].as_str().expect("url").to_owned();
    assert_eq!(e.get(&url, "/").await.0, 200);
    let observed = e.env.manager.observed().await.expect("ls");
    assert_eq!(observed.len(), 1, "exactly one preview: the writer's label");
    // Keyed apart from the base repository's own `changes`, fetched from the fork's `changes`.
    let member = observed[0].any().expect("a member");
    assert_eq!(member.branch, "forker/Hello-World:changes");
    // The base repository's own PR #3 from its own `changes`: a preview of its own, beside the
    // fork's, not in its place.
    let base_sha = e.repo.commit("the base's own changes").to_string();
    let mut base: Value =
        serde_json::from_slice(&e.pr_event("labeled", &base_sha, "Codertocat", "write"))
            .expect("json");
    fork("labeled", "Codertocat", "write"); // PR #2 is the fork's again on the fake
    base["number"] = json!(3);
    base["pull_request"]["number"] = json!(3);
    e.github.set_pull(base["pull_request"].clone());
    assert_eq!(
        e.post("pull_request", &serde_json::to_vec(&base).expect("json"))
            .await,
        202
    );
    let base_ok = e.status(&base_sha, "success").await;
    let base_url = base_ok["target_url"].as_str().expect("url").to_owned();
    assert_ne!(base_url, url, "the base's PR got the fork's preview");
    assert_eq!(
        e.get(&url, "/").await.0,
        200,
        "the fork's preview is still up"
    );
    assert_eq!(e.get(&base_url, "/").await.0, 200);
    let observed = e.env.manager.observed().await.expect("ls");
    assert_eq!(observed.len(), 2, "one preview each");
    for p in &observed {
        e.env.manager.down(&p.id).await.expect("down");
    }
    e.env.assert_clean().await;
    e.stop().await;
}

/// The comment's "Time to ready: T s (phase t s · ...)" as (T, [(phase, t)]).
fn time_to_ready(comment: &str) -> (f64, Vec<(String, f64)>) {
    let line = comment
        .lines()
        .find_map(|l| l.strip_prefix("Time to ready: "))
        .unwrap_or_else(|| panic!("no time to ready: {comment}"));
    let (total, rest) = line.split_once(" s (").expect("total");
    let phases = rest
        .trim_end_matches(')')
        .split(" · ")
        .map(|p| {
            let (name, secs) = p.split_once(' ').expect("phase");
            let secs = secs.trim_end_matches(" s").parse().expect("seconds");
            (name.to_owned(), secs)
        })
        .collect();
    (total.parse().expect("total"), phases)
}
