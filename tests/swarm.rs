//! Previews on a real two-node Docker Swarm (`cluster.engine = "swarm"`, issue 22): the
//! two-service sample is built on the manager, pushed to the cluster's registry, run as Swarm
//! services on the worker node, served and health-checked through the gateway (a container on
//! the manager that joins the preview's overlay network), read back from the services' labels,
//! and `down` leaves nothing on either node. The swarm is made by `swarm_support` (two more
//! dockerd in network namespaces, never the host's engine) and removed whole at the end.

mod engine_support;
mod swarm_support;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListServicesOptions, ListTasksOptions,
};
use engine_support::{GitRepo, TestEnv, eventually};
use swarm_support::Cluster;

fn by_instance(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("dev.previewd.instance={instance}")],
    )])
}

/// Containers and networks of `instance` on one node (the gateway included), by name.
async fn on_node(d: &Docker, instance: &str) -> (Vec<String>, Vec<String>) {
    let c = d
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(by_instance(instance)),
            ..Default::default()
        }))
        .await
        .expect("list containers")
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .collect();
    let n = d
        .list_networks(None::<ListNetworksOptions>)
        .await
        .expect("list networks")
        .into_iter()
        .filter_map(|n| n.name)
        .filter(|n| n.starts_with(&format!("pv-{instance}-")))
        .collect();
    (c, n)
}

/// The Swarm services of `instance`.
async fn services_of(d: &Docker, instance: &str) -> Vec<bollard::models::Service> {
    d.list_services(Some(ListServicesOptions {
        filters: Some(by_instance(instance)),
        ..Default::default()
    }))
    .await
    .expect("list services")
}

async fn get(addr: &str, host: &str, path: &str) -> (u16, String) {
    match previewd::preview::http_client::tcp(addr, host, "GET", path, Duration::from_secs(5)).await
    {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_service_sample_runs_on_the_worker_node_and_down_leaves_nothing_on_either() {
    // Declared first, so dropped last: everything the test made goes before the swarm does.
    let cluster = Cluster::up();
    // SAFETY: set before previewd connects, in this binary's only test; nothing else reads the
    // environment concurrently.
    unsafe { std::env::set_var("DOCKER_HOST", cluster.docker_host()) };
    let manager = cluster.manager().await;
    let worker = cluster.worker().await;
    let env = TestEnv::with(
        "swarm",
        &[
            ("PREVIEWD_CLUSTER_ENGINE", "swarm"),
            ("PREVIEWD_CLUSTER_REGISTRY", &cluster.registry),
            // Every service on the worker node. (Draining the manager instead would keep the
            // gateway, a container there, off the overlay: a drained node takes no network
            // attachment either, measured: "attaching to network failed ... deadline exceeded".)
            ("PREVIEWD_CLUSTER_CONSTRAINTS", "node.role == worker"),
            ("PREVIEWD_GATEWAY_BIND", &cluster.manager_host_ip),
            ("PREVIEWD_LIMITS_EGRESS", "all"),
            ("PREVIEWD_LIMITS_IDLE_SLEEP", "0"),
            ("PREVIEWD_LIMITS_HEALTH_TIMEOUT", "90s"),
        ],
    )
    .await;
    let instance = env.config.instance.to_string();
    let repo = GitRepo::from_fixture("two-service");
    let started = std::time::Instant::now();
    let deployed = env.up(repo.path()).await.expect("deployed on the swarm");
    eprintln!(
        "swarm: ready in {:?}: {:?}",
        started.elapsed(),
        deployed.timings
    );
    let id = deployed.state.id.to_string();

    // Three Swarm services, each with the labels a container has on one host, each with its
    // one task running on the worker node.
    let services = services_of(&manager, &instance).await;
    let mut names: Vec<String> = services
        .iter()
        .filter_map(|s| {
            s.spec
                .as_ref()?
                .labels
                .as_ref()?
                .get("dev.previewd.service")
                .cloned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["api", "internal", "web"]);
    for s in &services {
        let l = s
            .spec
            .as_ref()
            .and_then(|s| s.labels.clone())
            .unwrap_or_default();
        assert_eq!(l.get("dev.previewd.preview"), Some(&id), "{l:?}");
        assert_eq!(l.get("dev.previewd.forge").map(String::as_str), Some("cli"));
        assert!(l.contains_key("dev.previewd.repo") && l.contains_key("dev.previewd.created"));
    }
    let ids: Vec<String> = services.iter().filter_map(|s| s.id.clone()).collect();
    let tasks = manager
        .list_tasks(Some(ListTasksOptions {
            filters: Some(HashMap::from([
                ("service".to_owned(), ids),
                ("desired-state".to_owned(), vec!["running".to_owned()]),
            ])),
        }))
        .await
        .expect("list tasks");
    assert_eq!(tasks.len(), 3, "one running task per service: {tasks:?}");
    for t in &tasks {
        assert_eq!(t.node_id.as_deref(), Some(cluster.worker_node.as_str()));
    }
    let (on_worker, _) = on_node(&worker, &instance).await;
    assert_eq!(
        on_worker.len(),
        3,
        "the worker runs the three: {on_worker:?}"
    );

    // Through the gateway on the manager, across the overlay, to the worker's tasks.
    let addr = format!("{}:{}", cluster.manager_host_ip, env.port);
    let host = format!("{id}.localhost");
    let (status, body) = get(&addr, &host, "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("previewd sample: web"), "{body}");
    let (status, body) = get(&addr, &host, "/api/health").await;
    assert_eq!(status, 200, "{body}");

    // `ls` and `status` read the same preview back from the services' labels.
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(observed.len(), 1);
    let state = env.manager.state_with_health(&observed[0]).await;
    assert_eq!(state.id.to_string(), id);
    assert_eq!(state.status.as_str(), "running");
    assert_eq!(state.services.len(), 3, "{state:?}");

    // down: no service, task container, network or image of the preview on either node.
    env.manager.down(&deployed.state.id).await.expect("down");
    let left = services_of(&manager, &instance).await;
    assert!(left.is_empty(), "services left: {left:?}");
    for (node, d) in [("manager", &manager), ("worker", &worker)] {
        let what = format!("the {node} to hold nothing of the preview");
        eventually(Duration::from_secs(30), &what, || async {
            let (c, n) = on_node(d, &instance).await;
            (c.is_empty() && n.is_empty()).then_some(())
        })
        .await;
    }
    let (_, _, images) = env.objects().await;
    assert!(images.is_empty(), "images left on the manager: {images:?}");
}
