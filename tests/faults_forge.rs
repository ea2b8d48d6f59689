//! Fault: the forge answers 500 and 429 (with `Retry-After`) for a while, on every call a
//! deployment makes (reading the PR, the permission, statuses, the deployment, the comment).
//! A real `serve` with the real engine: once the forge recovers, every status, the
//! deployment's success and the one sticky comment are delivered, and the preview serves as
//! if nothing happened.

mod e2e_support;
mod engine_support;
mod support;

use std::time::Duration;

use serde_json::json;

use e2e_support::E2e;
use engine_support::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forge_500_and_429_for_a_while_then_everything_is_delivered() {
    let e = E2e::start("fforge", "compose-only", "changes").await;
    let github = e.github.clone();

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

    let sha = e.repo.commit("empty");
    e.pr("labeled", &sha, "octocat", "write").await;

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
    github.comment_containing("Preview ready").await;
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
    let (status, page) = e.env.get(&id, "/").await;
    assert_eq!(status, 200, "{page}");
    e.stop().await;
}
