//! Updates: same id and URL, zero downtime, only changed services rebuilt, and a failed update
//! that leaves the old generation serving.

mod engine_support;

use std::time::Duration;

use engine_support::load::{UpdateLoad, recorder};
use engine_support::{GitRepo, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_keeps_url_has_no_downtime_and_rebuilds_only_what_changed() {
    let env = TestEnv::new("upd").await;
    let repo = GitRepo::from_fixture("two-service");
    let first = env.up(repo.path()).await.expect("first up");
    let id = first.state.id.to_string();
    let images_before = service_images(&env).await;

    // A client polls the preview for the whole update, and slow requests start all along it:
    // those in flight at the switch must finish on the old generation before it goes.
    let load = UpdateLoad::start(format!("127.0.0.1:{}", env.port), format!("{id}.localhost"));

    // Change the api only.
    let serve = std::fs::read_to_string(repo.path().join("api/serve.sh")).expect("serve.sh");
    repo.write(
        "api/serve.sh",
        &serve.replace("hello from api", "hello from api v2"),
    );
    let sha2 = repo.commit("api v2");
    // The build log says which services were found unchanged and reused (a rebuild from
    // Docker's layer cache would give the same image id, so the ids alone cannot tell).
    let (progress, lines) = recorder();
    let second = env
        .manager
        .up(
            env.request(repo.path()),
            progress,
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .expect("second up");
    // Ready at the switch: the old generation is still there, draining the slow requests sent
    // to it before the switch, and goes afterwards. The phases account for the whole time.
    let at_ready = env.manager.observed().await.expect("observed")[0]
        .generations
        .len();
    env.manager.retired().await;
    assert_eq!(
        at_ready, 2,
        "up returned only after the old generation was retired"
    );
    let phases: Duration = second.timings.phases.iter().map(|(_, d)| *d).sum();
    let last = second.timings.phases.last().map(|(p, _)| p.as_str());
    assert_eq!(last, Some("switch"), "{:?}", second.timings);
    assert!(
        second.timings.total.saturating_sub(phases) < Duration::from_millis(250),
        "time outside the phases: {:?}",
        second.timings
    );
    let seen = load.finish().await;
    assert!(
        seen.slow_failures.is_empty(),
        "slow requests cut off by the switch: {:?}",
        seen.slow_failures
    );
    assert!(seen.ok > 10, "the poller ran");
    assert!(
        seen.failures.is_empty(),
        "requests failed during the update: {:?}",
        seen.failures
    );

    assert_eq!(second.state.id.to_string(), id, "same id");
    assert_eq!(second.state.url, first.state.url, "same URL");
    assert_eq!(second.state.sha.as_ref().map(|s| s.to_string()), Some(sha2));
    let (_, body) = env.get(&id, "/api/hello").await;
    assert!(body.contains("hello from api v2"), "{body}");
    let images_after = service_images(&env).await;
    assert_eq!(
        images_before["web"], images_after["web"],
        "web was not rebuilt"
    );
    assert_eq!(
        images_before["internal"], images_after["internal"],
        "internal was not rebuilt"
    );
    assert_ne!(images_before["api"], images_after["api"], "api was rebuilt");
    let lines = lines.lock().unwrap().clone();
    let reused = |svc: &str| {
        lines
            .iter()
            .any(|(s, l)| s == svc && l.contains("reusing image"))
    };
    assert!(reused("web") && reused("internal"), "{lines:?}");
    assert!(!reused("api"), "{lines:?}");
    // One generation is left, with its canonical names; the old one is gone.
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(observed[0].generations.len(), 1);
    assert_eq!(observed[0].live(), Some(2));

    // A broken update fails and leaves generation 2 serving.
    repo.write(
        "web/Dockerfile",
        "FROM busybox\nRUN echo 'error: broken on purpose' && exit 7\n",
    );
    repo.commit("break web");
    let err = env.up(repo.path()).await.expect_err("broken update");
    assert_eq!(err.phase.as_str(), "build");
    assert_eq!(err.service.as_deref(), Some("web"));
    assert!(
        err.log_tail.iter().any(|l| l.contains("broken on purpose")),
        "{:?}",
        err.log_tail
    );
    let (status, body) = env.get(&id, "/api/hello").await;
    assert_eq!(status, 200);
    assert!(body.contains("hello from api v2"));
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(
        observed[0].generations.len(),
        1,
        "the failed generation left nothing"
    );

    env.manager.down(&second.state.id).await.expect("down");
    env.assert_clean().await;
}

async fn service_images(env: &TestEnv) -> std::collections::HashMap<String, String> {
    let observed = env.manager.observed().await.expect("observed");
    let mut out = std::collections::HashMap::new();
    for m in observed[0].live_members() {
        let info = env
            .manager
            .docker()
            .inspect_container(
                &m.container_id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .expect("inspect");
        out.insert(m.service.clone(), info.image.unwrap_or_default());
    }
    out
}
