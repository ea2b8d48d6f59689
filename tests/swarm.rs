//! Previews on a real two-node Docker Swarm (`cluster.engine = "swarm"`, issue 22): the
//! two-service sample is built on the manager, pushed to the cluster's registry, run as Swarm
//! services on the worker node, served and health-checked through the gateway (a container on
//! the manager that joins the preview's overlay network), read back from the services' labels
//! (also by a previewd started afresh), its logs read from the worker, updated with no failed
//! request and only the changed service built and pushed, a crash reported with its log tail,
//! a half-switched generation finished by `gc`, and `down` leaves nothing on either node. The
//! swarm is made by `swarm_support` (two more dockerd in network namespaces, never the host's
//! engine), shared by this binary's tests (each with its own instance) and removed whole once
//! the last of them ends.

mod engine_support;
mod swarm_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, ListTasksOptions,
    PruneImagesOptions,
};
use engine_support::load::{UpdateLoad, recorder};
use engine_support::{GitRepo, eventually};
use futures_util::StreamExt;
use previewd::preview::manager::{LogQuery, Manager};
use swarm_support::{Cluster, by_instance, get, services_of, swarm_env};

/// Every preview service on the worker node.
const WORKER: &str = "node.role == worker";

/// How often the registry was sent a manifest for `repo`: once per push that sent anything.
fn manifest_puts(cluster: &Cluster, repo: &str) -> usize {
    let put = format!("PUT /v2/{repo}/manifests/");
    cluster
        .registry_log()
        .lines()
        .filter(|l| l.contains(&put))
        .count()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_service_sample_runs_on_the_worker_node_and_down_leaves_nothing_on_either() {
    // Declared first, so dropped last: everything the test made goes before the swarm does.
    let cluster = swarm_support::shared();
    let manager = cluster.manager().await;
    let worker = cluster.worker().await;
    let env = swarm_env("swarm", &cluster, WORKER, &[]).await;
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

    // `previewd logs`: the api's lines, written on the worker, read through the manager.
    let query = LogQuery {
        service: Some("api".to_owned()),
        tail: 50,
        ..Default::default()
    };
    let lines = eventually(Duration::from_secs(20), "the api's log line", || async {
        let logs = env
            .manager
            .log_lines(&deployed.state.id, &query)
            .await
            .expect("logs");
        let lines: Vec<String> = logs.lines.map(|l| l.text).collect().await;
        lines
            .iter()
            .any(|l| l.contains("api: GET /api/health -> 200"))
            .then_some(lines)
    })
    .await;
    assert!(!lines.is_empty());

    // `ls` and `status` read the same preview back from the services' labels, in this
    // previewd and in one started afresh (a restart: nothing but the swarm's labels to go by),
    // whose reconcile pass finds nothing to remove and whose gateway still routes it.
    let restarted = Manager::connect(env.config.clone()).await.expect("restart");
    for m in [&env.manager, &restarted] {
        let observed = m.observed().await.expect("observed");
        assert_eq!(observed.len(), 1);
        let state = m.state_with_health(&observed[0]).await;
        assert_eq!(state.id.to_string(), id);
        assert_eq!(state.status.as_str(), "running");
        assert_eq!(state.services.len(), 3, "{state:?}");
        assert!(
            state.services.iter().all(|s| s.state == "running"),
            "{state:?}"
        );
    }
    let none = std::collections::HashSet::new();
    let report = previewd::preview::cleanup::clean_up(&restarted, Duration::ZERO, &none, &none)
        .await
        .expect("gc after a restart");
    assert!(report.is_empty(), "a restart's gc removed: {report:?}");
    let (status, body) = get(&addr, &host, "/api/health").await;
    assert_eq!(status, 200, "after the restart's gc: {body}");

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

    // The worker's image cache is Docker's (docs/cluster.md): what the tasks pulled is left
    // there, every image carrying the instance's label, so that the prune the docs give an
    // operator for each node removes exactly those.
    let pulled = images_on(&worker, Some(instance.as_str())).await;
    assert!(!pulled.is_empty(), "the worker pulled the preview's images");
    let label = format!("dev.previewd.instance={instance}");
    worker
        .prune_images(Some(PruneImagesOptions {
            filters: Some(HashMap::from([
                ("dangling".to_owned(), vec!["false".to_owned()]),
                ("label".to_owned(), vec![label]),
            ])),
        }))
        .await
        .expect("the documented prune");
    let left = images_on(&worker, Some(instance.as_str())).await;
    assert!(
        left.is_empty(),
        "left on the worker after the prune: {left:?}"
    );
}

/// Image ids on a node: all, or those with `instance`'s label.
async fn images_on(d: &Docker, instance: Option<&str>) -> Vec<String> {
    d.list_images(Some(ListImagesOptions {
        all: true,
        filters: instance.map(by_instance),
        ..Default::default()
    }))
    .await
    .expect("list images")
    .into_iter()
    .map(|i| i.id)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_fails_no_request_pushes_only_the_changed_service_and_gc_finishes_a_half_switch()
{
    let cluster = swarm_support::shared();
    let manager = cluster.manager().await;
    let env = Arc::new(swarm_env("swupd", &cluster, WORKER, &[]).await);
    let instance = env.config.instance.to_string();
    let repo = GitRepo::from_fixture("two-service");
    let first = env.up(repo.path()).await.expect("first up");
    let id = first.state.id.to_string();
    let addr = format!("{}:{}", cluster.manager_host_ip, env.port);
    let host = format!("{id}.localhost");
    let repo_of = |svc: &str| format!("{instance}-{id}-{svc}");
    for svc in ["api", "internal", "web"] {
        assert_eq!(
            manifest_puts(&cluster, &repo_of(svc)),
            1,
            "{svc} pushed once"
        );
    }

    // A client polls the preview through the gateway for the whole update, and slow requests
    // start all along it: those in flight at the switch finish on the old services.
    let load = UpdateLoad::start(addr.clone(), host.clone());

    // Change the api only.
    let serve = std::fs::read_to_string(repo.path().join("api/serve.sh")).expect("serve.sh");
    repo.write(
        "api/serve.sh",
        &serve.replace("hello from api", "hello from api v2"),
    );
    repo.commit("api v2");
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
    env.manager.retired().await;
    let seen = load.finish().await;
    eprintln!(
        "swarm update: {} requests, ready in {:?}",
        seen.ok, second.timings
    );
    assert!(seen.ok > 10, "the poller ran");
    assert!(
        seen.failures.is_empty(),
        "requests failed during the update: {:?}",
        seen.failures
    );
    assert!(
        seen.slow_failures.is_empty(),
        "slow requests cut off: {:?}",
        seen.slow_failures
    );
    assert_eq!(second.state.id.to_string(), id, "same id");
    assert_eq!(second.state.url, first.state.url, "same URL");
    let (status, body) = get(&addr, &host, "/api/hello").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello from api v2"), "{body}");

    // Only the api was built and pushed: the registry was sent one more api manifest and
    // nothing else, and the build log says why.
    assert_eq!(
        manifest_puts(&cluster, &repo_of("api")),
        2,
        "api pushed again"
    );
    for svc in ["internal", "web"] {
        assert_eq!(
            manifest_puts(&cluster, &repo_of(svc)),
            1,
            "{svc} not pushed again"
        );
    }
    let lines = lines.lock().unwrap().clone();
    let said = |svc: &str, what: &str| lines.iter().any(|(s, l)| s == svc && l.contains(what));
    for svc in ["internal", "web"] {
        assert!(said(svc, "reusing image"), "{svc}: {lines:?}");
        assert!(said(svc, "not pushed again"), "{svc}: {lines:?}");
    }
    assert!(!said("api", "reusing image"), "{lines:?}");
    assert!(said("api", "pushed to the cluster's registry"), "{lines:?}");
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(
        observed[0].generations.len(),
        1,
        "the old generation is gone"
    );
    assert_eq!(observed[0].live(), Some(2));

    // A crash in the switch's middle leaves some of the generation's services marked live,
    // not all: `gc` finishes the switch.
    for svc in ["api", "internal"] {
        let name = format!("{instance}-{id}-{svc}-g2");
        cluster.cli(
            &cluster.manager_sock,
            &[
                "service",
                "update",
                "-d",
                "--label-rm",
                "dev.previewd.live",
                &name,
            ],
        );
    }
    let observed = env.manager.observed().await.expect("observed");
    let unmarked = observed[0]
        .live_members()
        .iter()
        .filter(|m| !m.canonical)
        .count();
    assert_eq!(
        (observed[0].live(), unmarked),
        (Some(2), 2),
        "half-switched"
    );
    let report = env.clean_up_now().await;
    let mut switched = report.switched.clone();
    switched.sort();
    assert_eq!(switched.len(), 2, "{report:?}");
    for s in services_of(&manager, &instance).await {
        let l = s.spec.and_then(|s| s.labels).unwrap_or_default();
        assert_eq!(
            l.get("dev.previewd.live").map(String::as_str),
            Some("true"),
            "{l:?}"
        );
    }
    let (status, body) = get(&addr, &host, "/api/hello").await;
    assert_eq!(status, 200, "{body}");

    env.manager.down(&second.state.id).await.expect("down");
    assert!(services_of(&manager, &instance).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_crashing_on_the_worker_fails_the_deployment_with_its_log_tail() {
    let cluster = swarm_support::shared();
    let manager = cluster.manager().await;
    let env = swarm_env("swcrash", &cluster, WORKER, &[]).await;
    let instance = env.config.instance.to_string();
    let repo = GitRepo::from_fixture("two-service");
    repo.write(
        "web/Dockerfile",
        "FROM busybox\nEXPOSE 8080\nCMD [\"sh\", \"-c\", \"echo 'fatal: cannot start' >&2; exit 3\"]\n",
    );
    repo.commit("web crashes");
    let started = std::time::Instant::now();
    let f = env.up(repo.path()).await.expect_err("a crashing service");
    eprintln!("swarm crash: failed after {:?}: {f:?}", started.elapsed());
    assert_eq!(f.phase.as_str(), "health", "{f:?}");
    assert_eq!(f.service.as_deref(), Some("web"), "{f:?}");
    assert!(f.reason.contains("exited with code 3"), "{f:?}");
    assert!(
        f.log_tail.iter().any(|l| l.contains("fatal: cannot start")),
        "the tail, from the worker: {:?}",
        f.log_tail
    );
    // Well before the health timeout (90 s): a crash is said as soon as it is seen.
    assert!(
        started.elapsed() < Duration::from_secs(75),
        "{:?}",
        started.elapsed()
    );
    let left = services_of(&manager, &instance).await;
    assert!(left.is_empty(), "the failed preview's services: {left:?}");
}
