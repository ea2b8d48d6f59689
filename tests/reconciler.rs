//! The reconciler's comparison with the forge, on the real engine and the fake GitHub: a
//! preview whose PR closed while previewd was away is stopped; a labelled PR without a preview
//! gets one; a preview near its ttl gets one warning comment; the keep label exempts it.

mod engine_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use previewd::forge::github::GitHub;
use previewd::forge::{Forge, ForgeKind, Forges};
use previewd::intent::Policies;
use previewd::metrics::Metrics;
use previewd::preview::manager::{Manager, Mode, UpRequest};
use previewd::queue::{Queue, QueueOptions};
use previewd::reconciler::Reconciler;
use tokio_util::sync::CancellationToken;

use engine_support::{GitRepo, TestEnv, eventually};
use support::fake_github::FakeGitHub;
use support::{SECRET, TOKEN, fast_retry, pull_json as pr};

const REPO: &str = "Codertocat/Hello-World";

/// The fake GitHub, a git repository with branch `changes` at `sha`, the real engine, a queue
/// and the reconciler under test, with `limits.ttl` = `ttl`.
struct Setup {
    github: FakeGitHub,
    repo: GitRepo,
    sha: String,
    git_url: String,
    env: TestEnv,
    engine: Arc<Manager>,
    forge: Arc<dyn Forge>,
    shutdown: CancellationToken,
    queue: Queue,
    rec: Reconciler,
}

impl Setup {
    async fn new(name: &str, ttl: &str) -> Setup {
        let github = FakeGitHub::start().await;
        let repo = GitRepo::at("compose-only", &format!("{REPO}.git"), "changes");
        let sha = repo.commit("ok");
        let git_url = format!("file://{}", repo.root().display());
        let env = TestEnv::with(
            name,
            &[
                ("PREVIEWD_GITHUB_WEBHOOK_SECRET", SECRET),
                ("PREVIEWD_GITHUB_TOKEN", TOKEN),
                ("PREVIEWD_GITHUB_API_URL", &github.url()),
                ("PREVIEWD_GITHUB_GIT_URL", &git_url),
                ("PREVIEWD_TRIGGERS_LABELS", "preview"),
                ("PREVIEWD_LIMITS_TTL", ttl),
            ],
        )
        .await;
        let config = env.config.clone();
        let engine = Arc::new(
            Manager::connect(config.clone())
                .await
                .expect("docker")
                .with_clock(env.clock.clone()),
        );
        let forge: Arc<dyn Forge> =
            Arc::new(GitHub::with_policy(&config.github, fast_retry()).expect("github"));
        let shutdown = CancellationToken::new();
        let policies = Policies::new(
            &config.triggers,
            &[(ForgeKind::GitHub, config.github.git_url.clone())],
        )
        .expect("policy");
        let mut forges = Forges::default();
        forges.insert(forge.clone());
        let queue = Queue::new(
            engine.clone(),
            &forges,
            &policies,
            Metrics::new().expect("metrics"),
            QueueOptions::default(),
            shutdown.clone(),
        );
        let rec = Reconciler::new(engine.clone(), forges, queue.clone(), config, policies)
            .with_clock(env.clock.clone());
        Setup {
            github,
            repo,
            sha,
            git_url,
            env,
            engine,
            forge,
            shutdown,
            queue,
            rec,
        }
    }

    /// A preview of PR `number` on branch `changes`, as a webhook would have made it.
    async fn preview_of_pr(&self, number: u64) -> String {
        let up = UpRequest {
            repo: format!("{}/{REPO}.git", self.git_url),
            branch: Some("changes".into()),
            sha: None,
            pr: Some(number),
            forge: "github".into(),
            mode: Mode::Preview,
            key_repo: Some(REPO.into()),
            key_branch: None,
            received: None,
        };
        let d = self.env.up_req(up).await.expect("up");
        d.state.id.to_string()
    }

    /// Stops the queue's workers, then removes whatever is left; checks nothing remains.
    async fn finish(self) {
        self.shutdown.cancel();
        self.queue.drained().await;
        for o in self.engine.observed().await.expect("observed") {
            self.engine.down(&o.id).await.expect("down");
        }
        self.engine.settle().await.expect("settle");
        self.env.assert_clean().await;
        self.github.assert_clean();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_follows_the_forge_warns_before_ttl_and_honours_keep() {
    let t = Setup::new("recon", "6s").await;
    let (github, repo, sha, git_url) = (&t.github, &t.repo, &t.sha, &t.git_url);
    let (env, engine, rec) = (&t.env, &t.engine, &t.rec);
    // A preview of PR 2, as a webhook would have made it.
    github.set_pull(pr(2, "changes", sha, &["preview"], true));
    let id = t.preview_of_pr(2).await;

    // Not yet warned; near the end of its ttl (a warning comes ttl/2 ahead when the ttl is
    // short): one warning comment, found again by its own marker.
    let early = rec.pass(false).await.expect("pass");
    assert!(early.warned.is_empty(), "warned at once: {early:?}");
    // The ttl counts from the last visit too: a visit 2 s in puts the warning off.
    env.clock.advance(Duration::from_secs(2));
    engine.visited(&previewd::ids::PreviewId::parse(&id).expect("id"));
    env.clock.advance(Duration::from_secs(1));
    let visited = rec.pass(false).await.expect("pass");
    assert!(
        visited.warned.is_empty(),
        "warned 1 s after a visit: {visited:?}"
    );
    env.clock.advance(Duration::from_secs(3));
    let warned = rec.pass(false).await.expect("pass").warned;
    assert_eq!(warned, vec![(REPO.to_owned(), 2)]);
    let comments = github.lock().comments.clone();
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.contains("previewd:ttl") && comments[0].body.contains("removed"));
    assert!(
        comments[0]
            .body
            .contains("has been neither redeployed nor visited for 4s")
            && comments[0]
                .body
                .contains("counts from the last deployment or visit, whichever is later"),
        "{}",
        comments[0].body
    );
    let again = rec.pass(false).await.expect("pass");
    assert!(again.warned.is_empty(), "warned once per generation");

    // The keep label exempts it from the ttl, however old it gets.
    github.set_pull(pr(2, "changes", sha, &["preview", "preview:keep"], true));
    env.clock.advance(Duration::from_secs(6)); // past the ttl itself
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
    github.set_pull(pr(3, "other", sha, &["preview"], true));
    let p = rec.pass(false).await.expect("pass");
    assert_eq!(p.started, vec![(REPO.to_owned(), 3)]);
    // While the queue works on it, the next pass does not queue it again.
    let p = rec.pass(false).await.expect("pass");
    assert!(p.started.is_empty(), "queued twice: {p:?}");

    // PR 2 closed while previewd was away: stopped.
    github.set_pull(pr(2, "changes", sha, &["preview"], false));
    github.set_pull(pr(3, "other", sha, &["preview"], false));
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
        received: None,
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
    t.finish().await;
}

/// A preview past `limits.ttl` is removed and its PR told why (deployment inactive, sticky
/// comment); a labelled PR whose preview expired at its head commit is not started again by
/// the next passes (that would undo the ttl), until its head moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_preview_is_reported_and_stays_down_until_its_head_moves() {
    let t = Setup::new("expire", "3s").await;
    let (github, sha, engine, rec) = (&t.github, &t.sha, &t.engine, &t.rec);
    github.set_pull(pr(2, "changes", sha, &["preview"], true));
    let id = t.preview_of_pr(2).await;
    let gh_repo = previewd::forge::Repo::parse(REPO).expect("repo");
    let sha_id = previewd::ids::CommitSha::parse(sha).expect("sha");
    let deployment = t
        .forge
        .environment_started(&gh_repo, &sha_id, "preview/changes", "building")
        .await
        .expect("deployment")
        .expect("a deployment id");

    let early = rec.pass(false).await.expect("pass");
    assert!(early.expired.is_empty(), "expired at once: {early:?}");
    t.env.clock.advance(Duration::from_secs(4)); // past the 3 s ttl
    // GitHub down: the PR's keep label cannot be read, so nothing is expired.
    for _ in 0..4 {
        github.fault("pulls/get", 502, &[]);
    }
    let down = rec.pass(false).await.expect("pass");
    assert_eq!(down.unread.len(), 1, "{down:?}");
    assert!(
        down.expired.is_empty(),
        "expired while GitHub was down: {down:?}"
    );
    let p = rec.pass(false).await.expect("pass");
    assert_eq!(p.expired.len(), 1, "{p:?}");
    assert!(p.started.is_empty(), "started again at once: {p:?}");
    assert_eq!(p.left_expired, vec![(REPO.to_owned(), 2)]);
    assert!(
        !engine
            .observed()
            .await
            .expect("observed")
            .iter()
            .any(|o| o.id.as_str() == id),
        "the preview is gone"
    );
    let sticky = github.removal_reported(REPO, 2, deployment, "Preview removed after limits.ttl");
    assert!(sticky.contains("`limits.ttl`"), "{sticky}");
    assert!(sticky.contains("`/preview`"), "{sticky}");
    assert!(
        sticky.contains(&format!("<!-- previewd:expired:{sha} -->")),
        "{sticky}"
    );

    // The next pass leaves it down: the PR still carries the label, at the same commit.
    let p = rec.pass(false).await.expect("pass");
    assert!(p.started.is_empty(), "{p:?}");
    assert_eq!(p.left_expired, vec![(REPO.to_owned(), 2)]);

    // A new head commit (a push previewd missed): the labelled PR gets its preview back.
    let newer = t.repo.commit("newer");
    github.set_pull(pr(2, "changes", &newer, &["preview"], true));
    let p = rec.pass(false).await.expect("pass");
    assert_eq!(p.started, vec![(REPO.to_owned(), 2)], "{p:?}");
    assert!(p.left_expired.is_empty(), "{p:?}");
    t.finish().await;
}
