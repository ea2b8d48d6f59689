//! A swarm node that goes away (issue 22), on a two-node swarm of this binary's own (the test
//! stops its worker's engine, which no other test could share): while no node can take the
//! preview's services, `ls` and `status` say it failed, each service `pending`, and neither
//! they nor `logs` nor `down` hang; once a node can take them, Swarm reschedules them and the
//! gateway follows the names, with no deployment by previewd.

mod engine_support;
mod swarm_support;

use std::time::{Duration, Instant};

use bollard::query_parameters::ListTasksOptions;
use engine_support::{GitRepo, eventually};
use futures_util::StreamExt;
use previewd::preview::manager::LogQuery;
use swarm_support::{get, services_of, swarm_env};

/// How long a call that must not hang may take while a node is gone.
const NO_HANG: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_is_reported_and_its_preview_comes_back_on_the_manager() {
    let cluster = swarm_support::shared();
    let manager = cluster.manager().await;
    // While the manager carries this label it takes no preview service: the worker runs them.
    let hold = |add: bool| {
        let flag = if add { "--label-add" } else { "--label-rm" };
        let label = if add { "pvd_hold=true" } else { "pvd_hold" };
        cluster.cli(
            &cluster.manager_sock,
            &["node", "update", flag, label, &cluster.manager_node],
        );
    };
    hold(true);
    let env = swarm_env(
        "swnode",
        &cluster,
        "node.labels.pvd_hold != true",
        &[("PREVIEWD_LIMITS_HEALTH_TIMEOUT", "30s")],
    )
    .await;
    let instance = env.config.instance.to_string();
    let repo = GitRepo::from_fixture("two-service");
    let deployed = env.up(repo.path()).await.expect("deployed on the worker");
    let id = deployed.state.id.clone();
    let addr = format!("{}:{}", cluster.manager_host_ip, env.port);
    let host = format!("{id}.localhost");
    assert_eq!(get(&addr, &host, "/api/health").await.0, 200);

    cluster.stop_worker();
    let stopped = Instant::now();
    // At once its services' tasks stop ("exited", the preview failed); once Swarm has marked
    // the node down, their replacements wait for a node (`pending`).
    let failed_after = std::sync::Mutex::new(None);
    let state = eventually(
        Duration::from_secs(90),
        "each service said pending",
        || async {
            let observed = tokio::time::timeout(NO_HANG, env.manager.observed())
                .await
                .expect("ls hangs while a node is gone")
                .expect("ls");
            let state = tokio::time::timeout(NO_HANG, env.manager.state_with_health(&observed[0]))
                .await
                .expect("status hangs while a node is gone");
            if state.status.as_str() != "failed" {
                return None;
            }
            if let Ok(mut f) = failed_after.lock() {
                f.get_or_insert(stopped.elapsed());
            }
            state
                .services
                .iter()
                .all(|s| s.state == "pending")
                .then_some(state)
        },
    )
    .await;
    eprintln!(
        "swarm node gone: failed after {:?}, pending after {:?}: {state:?}",
        failed_after.lock().ok().and_then(|f| *f),
        stopped.elapsed()
    );
    let logs = tokio::time::timeout(NO_HANG, async {
        let q = LogQuery {
            tail: 10,
            ..Default::default()
        };
        let logs = env.manager.log_lines(&id, &q).await.expect("logs");
        logs.lines.collect::<Vec<_>>().await
    })
    .await;
    assert!(logs.is_ok(), "logs hang while a node is gone");

    // A node may take them again: Swarm reschedules them there, the gateway follows.
    hold(false);
    let back = Instant::now();
    eventually(
        Duration::from_secs(90),
        "the preview served from the manager",
        || async { (get(&addr, &host, "/api/health").await.0 == 200).then_some(()) },
    )
    .await;
    eprintln!(
        "swarm node gone: served again {:?} after the manager took them",
        back.elapsed()
    );
    let observed = env.manager.observed().await.expect("ls");
    let state = env.manager.state_with_health(&observed[0]).await;
    assert_eq!(state.status.as_str(), "running", "{state:?}");
    let ids: Vec<String> = services_of(&manager, &instance)
        .await
        .into_iter()
        .filter_map(|s| s.id)
        .collect();
    let tasks = manager
        .list_tasks(Some(ListTasksOptions {
            filters: Some(std::collections::HashMap::from([
                ("service".to_owned(), ids),
                ("desired-state".to_owned(), vec!["running".to_owned()]),
            ])),
        }))
        .await
        .expect("tasks");
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    assert!(
        tasks
            .iter()
            .all(|t| t.node_id.as_deref() == Some(cluster.manager_node.as_str())),
        "{tasks:?}"
    );

    tokio::time::timeout(Duration::from_secs(60), env.manager.down(&id))
        .await
        .expect("down hangs while a node is gone")
        .expect("down");
    assert!(services_of(&manager, &instance).await.is_empty());
}
