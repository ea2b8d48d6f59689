//! The reconciler's comparison with the forge, on the real engine and the fake GitHub: a
//! preview whose PR closed while previewd was away is stopped; a labelled PR without a preview
//! gets one; a preview near its ttl gets one warning comment; the keep label exempts it.

mod engine_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use previewd::forge::Forge;
use previewd::forge::github::GitHub;
use previewd::intent::Policy;
use previewd::metrics::Metrics;
use previewd::preview::manager::{Manager, Mode, UpRequest};
use previewd::queue::{Queue, QueueOptions};
use previewd::reconciler::Reconciler;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use engine_support::{GitRepo, TestEnv, eventually};
use support::fake_github::FakeGitHub;
use support::{SECRET, TOKEN, fast_retry, payload_json};

const REPO: &str = "Codertocat/Hello-World";

fn pr(number: u64, branch: &str, sha: &str, labels: &[&str], open: bool) -> serde_json::Value {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_follows_the_forge_warns_before_ttl_and_honours_keep() {
    let github = FakeGitHub::start().await;
    let repo = GitRepo::at("compose-only", &format!("{REPO}.git"), "changes");
    let sha = repo.commit("ok");
    let git_url = format!("file://{}", repo.root().display());
    let env = TestEnv::with(
        "recon",
        &[
            ("PREVIEWD_GITHUB_WEBHOOK_SECRET", SECRET),
            ("PREVIEWD_GITHUB_TOKEN", TOKEN),
            ("PREVIEWD_GITHUB_API_URL", &github.url()),
            ("PREVIEWD_GITHUB_GIT_URL", &git_url),
            ("PREVIEWD_TRIGGERS_LABELS", "preview"),
            ("PREVIEWD_LIMITS_TTL", "6s"),
        ],
    )
    .await;
    let config = env.config.clone();
    let engine = Arc::new(Manager::connect(config.clone()).await.expect("docker"));
    let forge: Arc<dyn Forge> =
        Arc::new(GitHub::with_policy(&config.github, fast_retry()).expect("github"));
    let shutdown = CancellationToken::new();
    let queue = Queue::new(
        engine.clone(),
        forge.clone(),
        Policy::new(&config.triggers, &config.github.git_url).expect("policy"),
        Metrics::new().expect("metrics"),
        QueueOptions::default(),
        shutdown.clone(),
    );
    let rec = Reconciler::new(engine.clone(), forge, queue.clone(), config.clone());

    // A preview of PR 2, as a webhook would have made it.
    github.set_pull(pr(2, "changes", &sha, &["preview"], true));
    let up = UpRequest {
        repo: format!("{git_url}/{REPO}.git"),
        branch: Some("changes".into()),
        sha: None,
        pr: Some(2),
        forge: "github".into(),
        mode: Mode::Preview,
        key_repo: Some(REPO.into()),
        key_branch: None,
    };
    let d = env.up_req(up).await.expect("up");
    let id = d.state.id.to_string();

    // Near the end of its ttl: one warning comment, found again by its own marker.
    let warned = eventually(Duration::from_secs(20), "a ttl warning", || async {
        let p = rec.pass(false).await.expect("pass");
        (!p.warned.is_empty()).then_some(p.warned)
    })
    .await;
    assert_eq!(warned, vec![(REPO.to_owned(), 2)]);
    let comments = github.lock().comments.clone();
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.contains("previewd:ttl") && comments[0].body.contains("removed"));
    let again = rec.pass(false).await.expect("pass");
    assert!(again.warned.is_empty(), "warned once per generation");

    // The keep label exempts it from the ttl, however old it gets.
    github.set_pull(pr(2, "changes", &sha, &["preview", "preview:keep"], true));
    tokio::time::sleep(Duration::from_secs(6)).await; // let the ttl itself pass
    let kept = rec.pass(false).await.expect("pass");
    assert_eq!(kept.kept.len(), 1);
    assert!(kept.expired.is_empty(), "{kept:?}");
    assert_eq!(env.get(&id, "/").await.0, 200);

    // An open labelled PR with no preview gets one queued.
    {
        let git = git2::Repository::open(repo.path()).expect("open");
        let head = git.head().expect("head").peel_to_commit().expect("commit");
        git.branch("other", &head, true).expect("branch");
    }
    github.set_pull(pr(3, "other", &sha, &["preview"], true));
    let p = rec.pass(false).await.expect("pass");
    assert_eq!(p.started, vec![(REPO.to_owned(), 3)]);
    // While the queue works on it, the next pass does not queue it again.
    let p = rec.pass(false).await.expect("pass");
    assert!(p.started.is_empty(), "queued twice: {p:?}");

    // PR 2 closed while previewd was away: stopped.
    github.set_pull(pr(2, "changes", &sha, &["preview"], false));
    github.set_pull(pr(3, "other", &sha, &["preview"], false));
    let p = rec.pass(false).await.expect("pass");
    assert_eq!(p.stopped.len(), 1);
    eventually(
        Duration::from_secs(60),
        "the closed PR's preview to go",
        || async {
            let left = engine.observed().await.ok()?;
            (!left.iter().any(|o| o.id.as_str() == id)).then_some(())
        },
    )
    .await;
    // A phase-branch preview (a push, no PR) whose branch was deleted: stopped too.
    {
        let git = git2::Repository::open(repo.path()).expect("open");
        let head = git.head().expect("head").peel_to_commit().expect("commit");
        git.branch("team/phase-1", &head, true).expect("branch");
    }
    let push = UpRequest {
        repo: format!("{git_url}/{REPO}.git"),
        branch: Some("team/phase-1".into()),
        sha: None,
        pr: None,
        forge: "github".into(),
        mode: Mode::Preview,
        key_repo: Some(REPO.into()),
        key_branch: None,
    };
    let phase = env.up_req(push).await.expect("phase preview");
    let p = rec.pass(false).await.expect("pass");
    assert!(
        !p.stopped.iter().any(|k| k.branch == "team/phase-1"),
        "the branch still exists: {p:?}"
    );
    git2::Repository::open(repo.path())
        .expect("open")
        .find_branch("team/phase-1", git2::BranchType::Local)
        .expect("branch")
        .delete()
        .expect("delete branch");
    let p = rec.pass(false).await.expect("pass");
    assert!(
        p.stopped.iter().any(|k| k.branch == "team/phase-1"),
        "{p:?}"
    );
    let phase_id = phase.state.id.to_string();
    eventually(
        Duration::from_secs(60),
        "the phase preview to go",
        || async {
            let left = engine.observed().await.ok()?;
            (!left.iter().any(|o| o.id.as_str() == phase_id)).then_some(())
        },
    )
    .await;

    // PR 3's preview may be on its way: stop the workers, then remove whatever is left.
    shutdown.cancel();
    queue.drained().await;
    for o in engine.observed().await.expect("observed") {
        engine.down(&o.id).await.expect("down");
    }
    engine.settle().await.expect("settle");
    env.assert_clean().await;
    github.assert_clean();
}
