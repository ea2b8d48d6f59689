//! Dev mode and reconcile: a mounted worktree served live; routes rebuilt from labels after the
//! gateway is lost; orphans of a crashed deployment removed.

mod engine_support;

use std::collections::HashMap;
use std::time::Duration;

use engine_support::{GitRepo, TestEnv, copy_dir, eventually, fixture};
use previewd::ids::PreviewId;
use previewd::preview::labels;
use previewd::preview::manager::Mode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_serves_the_mounted_worktree_live() {
    let env = TestEnv::new("dev").await;
    let wt = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture("dev-mode"), wt.path());
    let mut req = env.request(wt.path());
    req.mode = Mode::Dev {
        worktree: wt.path().to_path_buf(),
    };
    let d = env.up_req(req).await.expect("dev up");
    let id = d.state.id.to_string();
    let (status, body) = env.get(&id, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("dev mode"), "{body}");
    assert_eq!(env.get(&id, "/mode.txt").await.0, 404, "nothing was built");
    // An edit shows at once: the folder is mounted, not copied.
    std::fs::write(wt.path().join("public/index.html"), "edited live").expect("edit");
    eventually(Duration::from_secs(10), "the edit to be served", || async {
        env.get(&id, "/")
            .await
            .1
            .contains("edited live")
            .then_some(())
    })
    .await;
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(observed[0].live_members()[0].mode, "dev");
    env.manager.down(&d.state.id).await.expect("down");
    assert!(
        wt.path().join("public/index.html").exists(),
        "the user's worktree is kept"
    );
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_restores_routes_and_removes_orphans() {
    let env = TestEnv::new("gc").await;
    let repo = GitRepo::from_fixture("compose-only");
    let d = env.up(repo.path()).await.expect("up");
    let id = d.state.id.to_string();
    let docker = env.manager.docker();

    // The gateway is lost: reconcile recreates it from the labels, with the route.
    previewd::preview::docker::remove_container(
        docker,
        &labels::gateway_name(&env.config.instance),
    )
    .await
    .expect("remove gateway");
    assert_eq!(env.get(&id, "/").await.0, 0);
    // Orphans: a network nothing uses, a worktree of a preview that is gone.
    let orphan_net = format!("{}-aaaaaaaaaa-1", env.config.instance);
    previewd::preview::network::create_preview_network(
        docker,
        &env.config,
        &orphan_net,
        HashMap::from([
            (labels::INSTANCE.to_owned(), env.config.instance.to_string()),
            (labels::PREVIEW.to_owned(), "aaaaaaaaaa".to_owned()),
        ]),
    )
    .await
    .expect("orphan network");
    let orphan_wt = env.config.instance_dir().join("worktrees/bbbbbbbbbb");
    std::fs::create_dir_all(&orphan_wt).expect("orphan worktree");

    let report = env.clean_up_now().await;
    assert!(report.networks.contains(&orphan_net), "{report:?}");
    assert!(
        report.worktrees.contains(&"bbbbbbbbbb".to_owned()),
        "{report:?}"
    );
    assert!(!orphan_wt.exists());
    let (status, body) = env.get(&id, "/").await;
    assert_eq!(status, 200, "route restored: {body}");

    // A preview past its ttl is removed by the next pass.
    let short = TestEnv::with("gcttl", &[("PREVIEWD_LIMITS_TTL", "1s")]).await;
    let repo2 = GitRepo::from_fixture("compose-only");
    let d2 = short.up(repo2.path()).await.expect("up");
    // The ttl counts on the manager's clock, not on the time the deployment took.
    let report = short.clean_up_now().await;
    assert!(
        report.expired.is_empty(),
        "expired before its ttl: {report:?}"
    );
    short.clock.advance(Duration::from_secs(2)); // past the ttl
    let report = short.clean_up_now().await;
    assert_eq!(report.expired, vec![d2.state.id.to_string()]);
    short.assert_clean().await;

    env.manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}

/// A preview network the gateway is still joined to, with no container of a preview on it (a
/// crash between a generation's removal and its network's): the next route sync leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_sync_leaves_a_network_no_preview_uses() {
    let env = TestEnv::new("gcleave").await;
    let repo = GitRepo::from_fixture("compose-only");
    let d = env.up(repo.path()).await.expect("up");
    let docker = env.manager.docker();
    let gw = labels::gateway_name(&env.config.instance);
    let gone = PreviewId::parse("zzzzzzzzzz").expect("id");
    let net = labels::network_name(&env.config.instance, &gone, 1);
    previewd::preview::network::create_preview_network(
        docker,
        &env.config,
        &net,
        HashMap::from([(labels::INSTANCE.to_owned(), env.config.instance.to_string())]),
    )
    .await
    .expect("network");
    docker
        .connect_network(
            &net,
            bollard::models::NetworkConnectRequest {
                container: gw.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("join the gateway");
    let on_net = |net: String| async move {
        docker
            .inspect_network(
                &net,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .expect("inspect")
            .containers
            .unwrap_or_default()
            .len()
    };
    assert_eq!(on_net(net.clone()).await, 1, "the gateway joined");
    env.manager.gateway().sync().await.expect("sync");
    assert_eq!(on_net(net.clone()).await, 0, "the gateway left {net}");
    // The live preview's own network stays joined, and the preview answers.
    assert_eq!(env.get(d.state.id.as_str(), "/").await.0, 200);
    env.manager.down(&d.state.id).await.expect("down");
    docker.remove_network(&net).await.expect("remove");
    env.assert_clean().await;
}

/// A network the gateway joined ahead of a generation's containers (`Gateway::join`, while a
/// rollout makes them) stays joined through a route sync that finds nothing on it yet: the
/// sync would otherwise leave it and the route would wait for a new join. Leaving it before
/// its removal still works, and then a sync leaves it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_joined_ahead_is_kept_until_the_gateway_leaves_it() {
    let env = TestEnv::new("gcahead").await;
    let repo = GitRepo::from_fixture("compose-only");
    let d = env.up(repo.path()).await.expect("up");
    let docker = env.manager.docker();
    let coming = PreviewId::parse("yyyyyyyyyy").expect("id");
    let net = labels::network_name(&env.config.instance, &coming, 1);
    previewd::preview::network::create_preview_network(
        docker,
        &env.config,
        &net,
        HashMap::from([(labels::INSTANCE.to_owned(), env.config.instance.to_string())]),
    )
    .await
    .expect("network");
    let on_net = |net: String| async move {
        docker
            .inspect_network(
                &net,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .expect("inspect")
            .containers
            .unwrap_or_default()
            .len()
    };
    let gateway = env.manager.gateway();
    gateway.join(std::slice::from_ref(&net)).await;
    assert_eq!(on_net(net.clone()).await, 1, "the gateway joined ahead");
    gateway.sync().await.expect("sync");
    assert_eq!(on_net(net.clone()).await, 1, "the sync kept {net}");
    gateway.leave(&net).await;
    assert_eq!(on_net(net.clone()).await, 0, "the gateway left {net}");
    gateway.sync().await.expect("sync");
    assert_eq!(
        on_net(net.clone()).await,
        0,
        "the sync did not join it again"
    );
    assert_eq!(env.get(d.state.id.as_str(), "/").await.0, 200);
    env.manager.down(&d.state.id).await.expect("down");
    docker.remove_network(&net).await.expect("remove");
    env.assert_clean().await;
}
