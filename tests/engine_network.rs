//! Preview networks on the real engine: subnets from `network.subnet_pool`, names that sort
//! after `bridge` (so the gateway's published port never moves), previews that cannot reach
//! each other, and previewd's own environment (its token) never in a preview's.

mod engine_support;

use std::collections::BTreeSet;

use bollard::Docker;

use engine_support::{GitRepo, TestEnv, exec};
use previewd::preview::labels;

/// `GET url` from inside `container`; (exit code, body). `timeout`, not `wget -T`, which
/// crashes in Debian's busybox-static.
async fn fetch(docker: &Docker, container: &str, url: &str) -> (i64, String) {
    exec(
        docker,
        container,
        &["timeout", "3", "wget", "-q", "-O", "-", url],
    )
    .await
}

/// Network name → the container's IPv4 address on it.
async fn networks_of(docker: &Docker, container: &str) -> Vec<(String, String)> {
    let c = docker
        .inspect_container(container, None)
        .await
        .expect("inspect container");
    let mut nets: Vec<(String, String)> = c
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, ep)| (name, ep.ip_address.unwrap_or_default()))
        .collect();
    nets.sort();
    nets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_get_networks_from_the_pool_and_cannot_reach_each_other() {
    let env = TestEnv::with(
        "net",
        &[
            ("PREVIEWD_NETWORK_SUBNET_POOL", "10.213.0.0/16"),
            ("PREVIEWD_GITHUB_TOKEN", "ghp_canary_not_for_previews"),
        ],
    )
    .await;
    let docker = env.manager.docker().clone();
    let inst = env.config.instance.clone();
    let (a_repo, b_repo) = (
        GitRepo::from_fixture("two-service"),
        GitRepo::at("two-service", "other.git", "main"),
    );
    let a = env.up(a_repo.path()).await.expect("up a").state.id;
    let b = env.up(b_repo.path()).await.expect("up b").state.id;
    assert_ne!(a, b);

    // Each generation's network has a subnet from the pool, and a name after `bridge` even
    // though this instance's name ("a-…") sorts before it.
    for id in [&a, &b] {
        let name = labels::network_name(&inst, id, 1);
        assert!(name.as_str() > "bridge", "{name}");
        let n = docker
            .inspect_network(&name, None)
            .await
            .expect("preview network");
        let subnet = n
            .ipam
            .and_then(|i| i.config)
            .and_then(|c| c.into_iter().next())
            .and_then(|c| c.subnet)
            .unwrap_or_default();
        assert!(subnet.starts_with("10.213."), "{name}: {subnet}");
    }

    // A service is on its preview's network only; the gateway is on `bridge` and both.
    let a_api = labels::container_name(&inst, &a, "api");
    let b_web = labels::container_name(&inst, &b, "web");
    let nets: Vec<String> = networks_of(&docker, &a_api)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(nets, vec![labels::network_name(&inst, &a, 1)]);
    let gw: BTreeSet<String> = networks_of(&docker, &labels::gateway_name(&inst))
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(gw.contains("bridge"), "{gw:?}");

    // Inside a preview, its own services answer by name (which also proves the probe works)...
    let (code, out) = fetch(&docker, &a_api, "http://internal:7000/").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("previewd sample: internal"), "{out}");
    // ...but another preview's container is unreachable, at any of its addresses.
    for (net, ip) in networks_of(&docker, &b_web).await {
        let (code, out) = fetch(&docker, &a_api, &format!("http://{ip}:8080/")).await;
        assert_ne!(
            code, 0,
            "preview a reached preview b on {net} ({ip}): {out}"
        );
    }

    // previewd's own settings and secrets never reach a container's environment.
    let (code, vars) = exec(&docker, &a_api, &["env"]).await;
    assert_eq!(code, 0, "{vars}");
    assert!(
        vars.contains("INTERNAL_URL="),
        "the config's env is there: {vars}"
    );
    assert!(
        !vars.contains("ghp_canary") && !vars.contains("PREVIEWD_"),
        "previewd's environment leaked into a preview:\n{vars}"
    );

    env.manager.down(&a).await.expect("down a");
    env.manager.down(&b).await.expect("down b");
    env.assert_clean().await;
}
