//! Preview networks on the real engine: internal per generation, subnets from
//! `network.subnet_pool`, egress through a shared network on which previews cannot reach each
//! other, and none at all with `network.egress = false`; and previewd's own environment (its
//! token) never reaches a preview's.

mod engine_support;

use std::collections::BTreeSet;

use bollard::Docker;

use engine_support::{GitRepo, TestEnv, exec};
use previewd::preview::{labels, network};

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
async fn previews_get_internal_networks_from_the_pool_and_cannot_reach_each_other() {
    let env = TestEnv::with("net", &[("PREVIEWD_NETWORK_SUBNET_POOL", "10.213.0.0/16")]).await;
    let docker = env.manager.docker().clone();
    let inst = env.config.instance.clone();
    let (a_repo, b_repo) = (
        GitRepo::from_fixture("two-service"),
        GitRepo::at("two-service", "other.git", "main"),
    );
    let a = env.up(a_repo.path()).await.expect("up a").state.id;
    let b = env.up(b_repo.path()).await.expect("up b").state.id;
    assert_ne!(a, b);

    // Each generation's network is internal, with a subnet from the pool.
    for id in [&a, &b] {
        let name = labels::network_name(&inst, id, 1);
        let n = docker
            .inspect_network(&name, None)
            .await
            .expect("preview network");
        assert_eq!(n.internal, Some(true), "{name} must be internal");
        let subnet = n
            .ipam
            .and_then(|i| i.config)
            .and_then(|c| c.into_iter().next())
            .and_then(|c| c.subnet)
            .unwrap_or_default();
        assert!(subnet.starts_with("10.213."), "{name}: {subnet}");
    }
    // The egress network keeps containers apart.
    let egress = docker
        .inspect_network(&network::egress_name(&inst), None)
        .await
        .expect("egress network");
    assert_ne!(egress.internal, Some(true));
    assert_eq!(
        egress
            .options
            .unwrap_or_default()
            .get("com.docker.network.bridge.enable_icc")
            .map(String::as_str),
        Some("false")
    );

    // A service is on its preview's network and the egress network; the gateway never joins
    // egress (it keeps its published port on `bridge`).
    let a_api = labels::container_name(&inst, &a, "api");
    let b_web = labels::container_name(&inst, &b, "web");
    let nets: BTreeSet<String> = networks_of(&docker, &a_api)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        nets,
        BTreeSet::from([
            network::egress_name(&inst),
            labels::network_name(&inst, &a, 1)
        ])
    );
    let gw: BTreeSet<String> = networks_of(&docker, &labels::gateway_name(&inst))
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(gw.contains("bridge"), "{gw:?}");
    assert!(!gw.contains(&network::egress_name(&inst)), "{gw:?}");

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

    env.manager.down(&a).await.expect("down a");
    env.manager.down(&b).await.expect("down b");
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_egress_a_preview_has_only_its_own_network() {
    let env = TestEnv::with(
        "noegress",
        &[
            ("PREVIEWD_NETWORK_EGRESS", "false"),
            ("PREVIEWD_GITHUB_TOKEN", "ghp_canary_not_for_previews"),
        ],
    )
    .await;
    let docker = env.manager.docker().clone();
    let inst = env.config.instance.clone();
    let repo = GitRepo::from_fixture("two-service");
    let d = env.up(repo.path()).await.expect("up");
    let id = d.state.id;
    assert_eq!(env.get(id.as_str(), "/api/hello").await.0, 200);
    let api = labels::container_name(&inst, &id, "api");
    let nets: Vec<String> = networks_of(&docker, &api)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    // Only its own internal network: Docker drops whatever it would forward out of the host.
    assert_eq!(nets, vec![labels::network_name(&inst, &id, 1)]);
    let n = docker
        .inspect_network(&labels::network_name(&inst, &id, 1), None)
        .await
        .expect("preview network");
    assert_eq!(n.internal, Some(true));
    // previewd's own settings and secrets never reach a container's environment.
    let (code, vars) = exec(&docker, &api, &["env"]).await;
    assert_eq!(code, 0, "{vars}");
    assert!(
        vars.contains("INTERNAL_URL="),
        "the config's env is there: {vars}"
    );
    assert!(
        !vars.contains("ghp_canary") && !vars.contains("PREVIEWD_"),
        "previewd's environment leaked into a preview:\n{vars}"
    );
    assert!(
        docker
            .inspect_network(&network::egress_name(&inst), None)
            .await
            .is_err(),
        "no egress network is made"
    );
    env.manager.down(&id).await.expect("down");
    env.assert_clean().await;
}
