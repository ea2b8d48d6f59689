//! 20 pushes in about 5 s to one labelled PR, on the real engine: exactly one build finishes
//! (the last commit's), every older commit is superseded and never reported `success`, one
//! sticky comment is created and then only edited, the gateway serves the last commit, and
//! Docker holds the images, containers, network and worktree of that one build only.

mod e2e_support;
mod engine_support;
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;

use e2e_support::{DEADLINE, E2e};
use engine_support::eventually;
use support::send;

const PUSHES: usize = 20;
const SPREAD: Duration = Duration::from_secs(5);

/// Intents queued or running, from `/metrics` on the admin listener.
async fn queue_depth(e: &E2e) -> Option<i64> {
    let req = hyper::Request::get(format!("http://{}/metrics", e.admin))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, text) = send(req).await;
    (status == 200).then_some(())?;
    text.lines()
        .find_map(|l| l.strip_prefix("previewd_queue_depth "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pushes_in_five_seconds_build_only_the_last_commit() {
    let started = Instant::now();
    let e = E2e::start("flood", "compose-only", "changes").await;
    let inst = e.env.config.instance.to_string();
    // What the service serves comes from the image, so each commit is a build of its own
    // and the page tells which commit is live.
    let dockerfile = std::fs::read_to_string(e.repo.path().join("Dockerfile")).expect("read");
    let dockerfile = dockerfile.replace(
        "exec httpd",
        "cp /version.txt /www/version.txt && exec httpd",
    );
    e.repo.write(
        "Dockerfile",
        &format!("{dockerfile}\nCOPY version.txt /version.txt\n"),
    );

    let mut shas = Vec::new();
    for n in 1..=PUSHES {
        e.repo.write("version.txt", &format!("push {n}\n"));
        shas.push(e.repo.commit(&format!("push {n}")));
    }
    let last = shas.last().expect("a commit").clone();

    // One delivery every 250 ms: pacing the flood, not waiting for anything.
    let mut tick = tokio::time::interval(SPREAD / PUSHES as u32);
    let flood_started = Instant::now();
    for (n, sha) in shas.iter().enumerate() {
        tick.tick().await;
        let action = if n == 0 { "labeled" } else { "synchronize" };
        e.pr(action, sha, "Codertocat", "write").await;
    }
    let flood = flood_started.elapsed();
    assert!(flood < 2 * SPREAD, "the flood took {flood:?}");

    let ok = e.status(&last, "success").await;
    let url = ok["target_url"].as_str().expect("target_url").to_owned();
    // Nothing else is left to run once the last commit is live.
    eventually(DEADLINE, "the queue to drain", || async {
        (queue_depth(&e).await? == 0).then_some(())
    })
    .await;

    // Only the last commit succeeded; an older commit is either never reported or ends
    // `error` "superseded" (a deploy cancelled mid-way is not left `pending`).
    for (n, sha) in shas.iter().enumerate().take(PUSHES - 1) {
        let st = e.statuses(sha);
        assert!(
            st.iter().all(|s| s["state"] != "success"),
            "push {} reached success: {st:?}",
            n + 1
        );
        if let Some(final_state) = st.last() {
            assert_eq!(final_state["state"], "error", "push {}: {st:?}", n + 1);
            let why = final_state["description"].as_str().unwrap_or_default();
            assert!(why.contains("superseded"), "push {}: {why}", n + 1);
        }
    }
    let reported: Vec<String> = shas
        .iter()
        .map(|sha| {
            let st = e.statuses(sha);
            let states: Vec<&str> = st.iter().filter_map(|s| s["state"].as_str()).collect();
            states.join(">")
        })
        .collect();
    eprintln!("statuses per push: {reported:?}");
    let successes: Vec<_> = e
        .github
        .lock()
        .statuses
        .iter()
        .filter(|s| s["state"] == "success")
        .cloned()
        .collect();
    assert_eq!(
        successes.len(),
        1,
        "exactly one build finished: {successes:?}"
    );

    // One sticky comment: created once, then edited.
    let creates = e
        .github
        .lock()
        .requests
        .iter()
        .filter(|r| r.op == "issues/create-comment")
        .count();
    assert_eq!(creates, 1, "one comment POST");
    let comments = e.comments();
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body.contains(&last[..7]),
        "the comment names the last commit: {}",
        comments[0].body
    );

    // The gateway serves the last commit's build.
    let (status, body) = e.get(&url, "/version.txt").await;
    assert_eq!(
        (status, body.trim()),
        (200, format!("push {PUSHES}").as_str())
    );

    // Docker holds that one build only: one preview, one generation, one image, one network,
    // one worktree; no staging container of a superseded attempt.
    let observed = e.env.manager.observed().await.expect("observed");
    assert_eq!(observed.len(), 1, "{observed:?}");
    assert_eq!(observed[0].generations.len(), 1, "{observed:?}");
    let live = observed[0].live_members();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].sha.as_deref(), Some(last.as_str()));
    let id = observed[0].id.to_string();
    let (containers, networks, images) = e.env.objects().await;
    let mut have = containers.clone();
    have.sort();
    // The live app, its ready mark (time to ready, never started) and the gateway.
    let mut want = vec![
        format!("/{inst}-{id}-app"),
        format!("/{inst}-{id}.ready"),
        format!("/{inst}-gateway"),
    ];
    want.sort();
    assert_eq!(have, want, "no container of a superseded attempt");
    let live_gen = observed[0].live().expect("live");
    assert_eq!(networks, vec![format!("pv-{inst}-{id}-{live_gen}")]);
    assert_eq!(images.len(), 1, "images of one build only: {images:?}");
    assert!(
        images[0].starts_with(&format!("{inst}-{id}-app:")),
        "{images:?}"
    );
    assert_eq!(e.env.worktrees(), vec![id.clone()]);

    // Closing the PR removes everything of the instance.
    e.close_and_wait_gone(&last).await;
    eprintln!(
        "flood: {PUSHES} pushes in {flood:?}, converged and cleaned up in {:?}",
        started.elapsed()
    );
    e.stop().await;
}
