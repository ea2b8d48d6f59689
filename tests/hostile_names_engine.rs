//! Hostile branch names on the real engine, once: a branch git accepts but a shell, a path or
//! Docker would not (`$(...)`, backticks, `;`, unicode, 255 characters) deploys with the name
//! kept verbatim in a label only: every Docker name stays valid, nothing under the data dir
//! is named after it, and no command runs. Names git refuses (`..`, control characters,
//! spaces, `:`) fail at fetch with nothing left.

mod engine_support;

use std::path::Path;

use engine_support::{GitRepo, TestEnv};
use previewd::engine::Phase;
use previewd::preview::labels;

fn is_docker_name(s: &str) -> bool {
    let b = s.trim_start_matches('/').as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn walk(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        out.push(p.display().to_string());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_branch_names_deploy_verbatim_in_labels_only_or_fail_at_fetch() {
    let env = TestEnv::new("hnames").await;
    let repo = GitRepo::from_fixture("compose-only");
    let marker = format!("/tmp/previewd-pwned-{}", nanoid::nanoid!(6));
    let hostile = [
        format!("team/phase-$(touch${{IFS}}{marker});`touch${{IFS}}{marker}`|ünï-🚀"),
        format!("team/phase-{}", "a".repeat(244)),
    ];
    let invalid = [
        "team/../../etc",
        "team/phase-a\nb",
        "team/phase- x",
        "team/phase-a:b",
        "team/phase-x.lock",
    ];
    {
        let git = git2::Repository::open(repo.path()).expect("open");
        let head = git.head().unwrap().peel_to_commit().unwrap();
        for b in &hostile {
            git.branch(b, &head, false).expect("git accepts the name");
        }
    }
    for branch in &hostile {
        let mut req = env.request(repo.path());
        req.branch = Some(branch.clone());
        let d = env
            .up_req(req)
            .await
            .expect("a hostile but valid branch deploys");
        assert_eq!(&d.state.key.branch, branch);
        let (status, _) = env.get(d.state.id.as_str(), "/").await;
        assert_eq!(status, 200);
    }
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(observed.len(), hostile.len());
    for p in &observed {
        for m in p.live_members() {
            assert!(hostile.contains(&m.branch), "label {:?}", m.branch);
            assert!(is_docker_name(&m.name), "{}", m.name);
            let info = env
                .manager
                .docker()
                .inspect_container(&m.container_id, None)
                .await
                .expect("inspect");
            let labels = info.config.unwrap().labels.unwrap();
            assert!(hostile.contains(&labels[labels::BRANCH]));
        }
    }
    let (containers, networks, _) = env.objects().await;
    for n in containers.iter().chain(&networks) {
        assert!(is_docker_name(n), "{n}");
    }
    // Nothing in the data dir is named after a branch; nothing ran.
    let mut paths = Vec::new();
    walk(env.data.path(), &mut paths);
    let instance_dir = env.config.instance_dir();
    for p in &paths {
        assert!(
            Path::new(p).starts_with(&instance_dir),
            "outside the instance dir: {p}"
        );
        let rel = &p[instance_dir.display().to_string().len()..];
        // Git's own bookkeeping inside the clone keeps refs by name; everything previewd
        // names itself (clones, worktrees) is a hash or an id.
        if rel.contains("/refs/") || rel.contains("/logs/") {
            continue;
        }
        assert!(!p.contains('$') && !p.contains('`'), "{p}");
    }
    assert!(!Path::new(&marker).exists(), "a command ran");

    for branch in invalid {
        let mut req = env.request(repo.path());
        req.branch = Some(branch.to_owned());
        let f = env.up_req(req).await.expect_err("git refuses the name");
        assert_eq!(f.phase, Phase::Fetch, "{branch:?}: {f:?}");
        assert!(
            f.reason.contains("invalid branch name"),
            "{branch:?}: {}",
            f.reason
        );
    }
    assert_eq!(
        env.manager.observed().await.expect("observed").len(),
        hostile.len(),
        "a refused name started nothing"
    );
    for p in observed {
        env.manager.down(&p.id).await.expect("down");
    }
    env.assert_clean().await;
}
