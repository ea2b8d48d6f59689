//! Faults on the real engine: the gateway killed or removed (every route of every preview
//! comes back), a service container killed (`status` says `failed`, a redeploy brings it
//! back), and a build past `limits.build_timeout` (a clear error, nothing left). Each test has
//! its own instance and cleans up by label.

mod engine_support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::query_parameters::{KillContainerOptions, ListContainersOptions};
use engine_support::{GitRepo, TestEnv, eventually};
use previewd::engine::{Phase, PreviewEngine};
use previewd::preview::cleanup::clean_up;
use previewd::preview::labels;

async fn kill(env: &TestEnv, name: &str) {
    env.manager
        .docker()
        .kill_container(name, None::<KillContainerOptions>)
        .await
        .unwrap_or_else(|e| panic!("kill {name}: {e}"));
}

/// Every route of both previews answers as it should.
async fn all_routes_answer(env: &TestEnv, two: &str, one: &str) -> bool {
    let (a, body) = env.get(two, "/api/hello").await;
    let (b, _) = env.get(two, "/").await;
    let (c, page) = env.get(one, "/").await;
    a == 200
        && body.contains("internal says")
        && b == 200
        && c == 200
        && page.contains("compose-only")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_or_removed_comes_back_with_every_route() {
    let env = TestEnv::new("fgw").await;
    let two_repo = GitRepo::from_fixture("two-service");
    let one_repo = GitRepo::from_fixture("compose-only");
    let two = env.up(two_repo.path()).await.expect("up two-service");
    let one = env.up(one_repo.path()).await.expect("up compose-only");
    let (two, one) = (two.state.id.to_string(), one.state.id.to_string());
    assert!(all_routes_answer(&env, &two, &one).await);
    let gw = labels::gateway_name(&env.config.instance);

    // Killed: the next reconcile pass brings it back with every route.
    kill(&env, &gw).await;
    let none = HashSet::new();
    clean_up(&env.manager, Duration::from_secs(600), &none, &none)
        .await
        .expect("reconcile");
    eventually(Duration::from_secs(20), "routes after a kill", || async {
        all_routes_answer(&env, &two, &one).await.then_some(())
    })
    .await;

    // Removed: the next deployment (of either preview) recreates it with the other's routes.
    previewd::preview::docker::remove_container(env.manager.docker(), &gw)
        .await
        .expect("remove gateway");
    assert_eq!(env.get(&one, "/").await.0, 0, "the gateway is gone");
    one_repo.write("NEW", "x");
    one_repo.commit("a push");
    let again = env.up(one_repo.path()).await.expect("redeploy");
    assert_eq!(again.state.id.to_string(), one);
    eventually(
        Duration::from_secs(20),
        "routes after a removal",
        || async { all_routes_answer(&env, &two, &one).await.then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_service_shows_failed_and_a_redeploy_brings_it_back() {
    let env = TestEnv::new("fsvc").await;
    let repo = GitRepo::from_fixture("compose-only");
    let d = env.up(repo.path()).await.expect("up");
    let id = d.state.id.to_string();
    let key = d.state.key.clone();
    kill(
        &env,
        &labels::container_name(&env.config.instance, &d.state.id, "app"),
    )
    .await;
    let s = env
        .manager
        .status(key.clone())
        .await
        .expect("status")
        .expect("preview");
    assert_eq!(s.status.as_str(), "failed", "{s:?}");
    let app = &s.services[0];
    assert!(!app.healthy && app.state != "running", "{app:?}");
    assert_ne!(env.get(&id, "/").await.0, 200);

    // A redeploy (what `/preview` does) brings it back under the same id.
    let again = env.up(repo.path()).await.expect("redeploy");
    assert_eq!(again.state.id.to_string(), id);
    let s = env
        .manager
        .status(key)
        .await
        .expect("status")
        .expect("preview");
    assert_eq!(s.status.as_str(), "running", "{s:?}");
    assert_eq!(env.get(&id, "/").await.0, 200);
    env.manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_past_build_timeout_fails_clearly_and_leaves_nothing() {
    let env = TestEnv::with("fbto", &[("PREVIEWD_LIMITS_BUILD_TIMEOUT", "3s")]).await;
    let repo = GitRepo::from_fixture("compose-only");
    // A marker only this build runs, to find its build container afterwards.
    let marker = format!("sleep 4{}", nanoid::nanoid!(4, &['1', '2', '3', '4', '5']));
    repo.write(
        "Dockerfile",
        &format!("FROM busybox\nRUN {marker}\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\"]\n"),
    );
    repo.commit("slow build");
    let started = std::time::Instant::now();
    let f = env
        .up(repo.path())
        .await
        .expect_err("the build must time out");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(f.phase, Phase::Build, "{f:?}");
    assert_eq!(f.service.as_deref(), Some("app"), "{f:?}");
    assert!(f.reason.contains("limits.build_timeout"), "{}", f.reason);
    env.assert_clean().await;
    // The builder's own container for the RUN step is gone too (the build was aborted).
    let docker = env.manager.docker();
    eventually(
        Duration::from_secs(20),
        "the build container to go",
        || async {
            let running = docker
                .list_containers(Some(ListContainersOptions {
                    all: false,
                    filters: Some(HashMap::from([("status".into(), vec!["running".into()])])),
                    ..Default::default()
                }))
                .await
                .expect("list");
            let left = running
                .iter()
                .any(|c| c.command.as_deref().unwrap_or("").contains(&marker));
            (!left).then_some(())
        },
    )
    .await;
}
