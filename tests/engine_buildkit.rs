//! Builds with BuildKit on the real engine: Dockerfiles only BuildKit understands (cache mounts),
//! targets and args, the reuse of an unchanged build, labels, and what a failed,
//! timed-out or cancelled build leaves (nothing). No `# syntax=` lines: nothing can be pulled.

mod engine_support;

use std::sync::Arc;
use std::time::Duration;

use engine_support::{GitRepo, TestEnv, eventually, processes_with};
use previewd::engine::DeployFailure;
use tokio_util::sync::CancellationToken;

const HTTPD: &str =
    "RUN echo ok > /index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/\"]\n";

fn repo_with(name: &str, dockerfile: &str, config: &str) -> GitRepo {
    let repo = GitRepo::from_fixture("build-fail");
    repo.write("Dockerfile", dockerfile);
    repo.write(".previewd.yml", config);
    repo.commit(name);
    repo
}

const WEB: &str = "services:\n  web:\n    build: .\n    port: 8080\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_mount_is_kept_for_the_next_build_of_a_changed_source_of_its_repository_only() {
    let env = TestEnv::new("bkcache").await;
    // No `id=`: BuildKit would key the mount by its target, `/cache`, shared by every build on
    // the host; previewd puts it in a namespace of the instance and the repository.
    let dockerfile = format!(
        "FROM busybox\nCOPY src.txt /src.txt\n\
         RUN --mount=type=cache,target=/cache \
         (ls /cache; true) > /seen && cp /src.txt /cache/from-$(cat /src.txt)\n{HTTPD}"
    );
    let repo = repo_with("cache mount", &dockerfile, WEB);
    repo.write("src.txt", "one");
    repo.commit("one");
    let (first, log) = env
        .up_logged(env.request(repo.path()), CancellationToken::new())
        .await;
    let first = first.expect("first build");
    assert!(log.iter().any(|l| l == "building with BuildKit"), "{log:?}");
    // BuildKit's progress, readable: the step's name, then DONE.
    assert!(
        log.iter().any(|l| l.contains("RUN --mount=type=cache")),
        "{log:?}"
    );
    let pid = first.state.id.to_string();
    let (status, seen) = env.get(&pid, "/seen").await;
    assert_eq!(status, 200);
    assert!(!seen.contains("from-"), "a new cache is empty: {seen:?}");

    repo.write("src.txt", "two");
    repo.commit("two");
    let (second, log) = env
        .up_logged(env.request(repo.path()), CancellationToken::new())
        .await;
    second.expect("second build");
    assert!(!log.iter().any(|l| l.contains("reusing image")), "{log:?}");
    let (_, seen) = env.get(&pid, "/seen").await;
    assert!(
        seen.contains("from-one"),
        "the first build's file in the cache mount: {seen:?}"
    );

    // Another repository with the same Dockerfile gets a cache of its own.
    let other = repo_with("cache mount", &dockerfile, WEB);
    other.write("src.txt", "three");
    other.commit("three");
    let (r, _) = env
        .up_logged(env.request(other.path()), CancellationToken::new())
        .await;
    let other_id = r.expect("other repository").state.id.to_string();
    assert_ne!(other_id, pid);
    let (status, seen) = env.get(&other_id, "/seen").await;
    assert_eq!(status, 200);
    assert!(
        !seen.contains("from-"),
        "another repository's cache: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_stage_with_args_builds_and_is_labelled_and_reused() {
    let env = TestEnv::new("bktarget").await;
    // `COPY --link` needs Dockerfile frontend 1.4: Docker 23's built-in one, or a `# syntax=`
    // image. Docker 20.10 here has neither (its answer: "Unknown flag: link"), so plain COPY.
    let dockerfile = format!(
        "FROM busybox AS base\nARG GREETING=unset\nRUN echo \"$GREETING\" > /greeting\n\
         FROM base AS app\nCOPY page.txt /page.txt\n{HTTPD}\
         FROM base AS broken\nRUN echo 'the last stage must not be built' && exit 1\n"
    );
    let config = "services:\n  web:\n    build:\n      context: .\n      args: {GREETING: hello}\n      target: app\n    port: 8080\n";
    let repo = repo_with("target", &dockerfile, config);
    repo.write("page.txt", "linked page");
    repo.commit("page");
    let (r, log) = env
        .up_logged(env.request(repo.path()), CancellationToken::new())
        .await;
    let deployed = r.unwrap_or_else(|f| panic!("{f}: {:?}", f.log_tail));
    let pid = deployed.state.id.to_string();
    assert_eq!(env.get(&pid, "/greeting").await, (200, "hello\n".into()));
    assert_eq!(
        env.get(&pid, "/page.txt").await,
        (200, "linked page".into())
    );
    assert!(!log.iter().any(|l| l.contains("must not be built")));

    // The image carries the instance label (BuildKit's `labels`, no extra step).
    let docker = bollard::Docker::connect_with_defaults().expect("docker");
    let name = format!("{}-{pid}-web", env.config.instance);
    let container = docker.inspect_container(&name, None).await.expect("web");
    let image = container.image.expect("image id");
    let labels = docker
        .inspect_image(&image)
        .await
        .expect("image")
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default();
    assert_eq!(
        labels.get("dev.previewd.instance").map(String::as_str),
        Some(env.config.instance.as_str()),
        "{labels:?}"
    );

    // Unchanged: no build at all.
    let (r, log) = env
        .up_logged(env.request(repo.path()), CancellationToken::new())
        .await;
    r.expect("second up");
    assert!(log.iter().any(|l| l.contains("reusing image")), "{log:?}");
    assert!(
        !log.iter().any(|l| l == "building with BuildKit"),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_names_its_step_in_the_tail_and_leaves_nothing() {
    let env = TestEnv::new("bkfail").await;
    let dockerfile = format!(
        "FROM busybox\nRUN echo fine > /fine\n\
         RUN echo 'compiling...' && echo 'error: it broke' >&2 && exit 3\n{HTTPD}"
    );
    let repo = repo_with("fail", &dockerfile, WEB);
    let (r, _) = env
        .up_logged(env.request(repo.path()), CancellationToken::new())
        .await;
    let f = r.expect_err("must fail");
    env.assert_clean().await;
    assert_eq!(f.phase.as_str(), "build");
    let tail = &f.log_tail;
    assert!(
        tail.iter().any(|l| l.ends_with("error: it broke")),
        "{tail:?}"
    );
    assert!(
        tail.iter()
            .any(|l| l.starts_with("failed step: [") && l.contains("RUN echo 'compiling...'")),
        "{tail:?}"
    );
    assert!(f.reason.contains("RUN echo 'compiling...'"), "{}", f.reason);
    assert!(f.reason.contains("exit code: 3"), "{}", f.reason);
}

/// A build whose step hangs, cancelled (as a newer push does) once the step's process runs
/// when `cancel_when_running`, else left to the build timeout. Returns how the deployment
/// failed, after checking that the step ran, that its process ended, and that nothing is left.
async fn a_step_that_hangs(env: &TestEnv, cancel_when_running: bool) -> DeployFailure {
    let cancel = CancellationToken::new();
    let marker = format!("hang-{}", env.config.instance);
    let dockerfile = format!("FROM busybox\nRUN sh -c 'sleep 600; echo {marker}'\n{HTTPD}");
    let repo = repo_with("hang", &dockerfile, WEB);
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up = env.up_logged(env.request(repo.path()), cancel.clone());
    let watch = async {
        eventually(Duration::from_secs(60), "the step to run", || async {
            (processes_with(&marker) > 0).then_some(())
        })
        .await;
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
        if cancel_when_running {
            cancel.cancel();
        }
        std::future::pending::<()>().await;
    };
    let f = tokio::select! {
        (r, _) = up => r.expect_err("must not deploy"),
        _ = watch => unreachable!(),
    };
    assert!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        "the step never ran: {f}"
    );
    eventually(
        Duration::from_secs(30),
        "the step's process to end",
        || async { (processes_with(&marker) == 0).then_some(()) },
    )
    .await;
    env.assert_clean().await;
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_build_stops_its_step_and_leaves_nothing() {
    let env = TestEnv::new("bkcancel").await;
    let f = a_step_that_hangs(&env, true).await;
    assert!(f.reason.contains("superseded"), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_past_its_timeout_stops_and_leaves_nothing() {
    let env = TestEnv::with("bktime", &[("PREVIEWD_LIMITS_BUILD_TIMEOUT", "8s")]).await;
    let f = a_step_that_hangs(&env, false).await;
    assert_eq!(f.phase.as_str(), "build");
    assert!(f.reason.contains("limits.build_timeout"), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syntax_directive_whose_frontend_cannot_be_pulled_fails_in_one_line_naming_it() {
    let env = TestEnv::new("bksyntax").await;
    // `.invalid` never resolves: this fails the same way with or without a registry.
    let dockerfile = format!("# syntax=frontend.invalid/dockerfile:1\nFROM busybox\n{HTTPD}");
    let repo = repo_with("syntax", &dockerfile, WEB);
    let (r, _) = env
        .up_logged(env.request(repo.path()), CancellationToken::new())
        .await;
    let f = r.expect_err("must fail");
    env.assert_clean().await;
    assert_eq!(f.phase.as_str(), "build");
    assert!(
        f.reason
            .contains("`# syntax=frontend.invalid/dockerfile:1`: the Dockerfile frontend image"),
        "{}",
        f.reason
    );
    assert!(!f.reason.contains('\n'), "{}", f.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_link_and_heredocs_fail_naming_the_feature_and_the_engine_they_need() {
    let env = TestEnv::new("bknewer").await;
    for (dockerfile, feature) in [
        (
            "FROM busybox\nCOPY --link page.txt /page.txt\n",
            "`COPY --link` (line 2)",
        ),
        (
            "FROM busybox\nRUN <<EOF\necho hello > /page.txt\nEOF\n",
            "a heredoc `RUN <<` (line 2)",
        ),
    ] {
        let repo = repo_with("newer", &format!("{dockerfile}{HTTPD}"), WEB);
        repo.write("page.txt", "page");
        repo.commit("page");
        let (r, _) = env
            .up_logged(env.request(repo.path()), CancellationToken::new())
            .await;
        let failure = r.expect_err("Docker 20.10's frontend does not parse it");
        assert!(
            failure.reason.contains(feature) && failure.reason.contains("23+"),
            "{}",
            failure.reason
        );
    }
}
