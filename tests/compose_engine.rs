//! A compose project, used as it is, on the real Docker engine and the real gateway: bind
//! mounts, secrets and configs readable where compose puts them, aliases resolvable across the
//! project's networks (and not across them where the file does not join them), no host port
//! published, a service on a host of its own, a named volume whose data survives a push and
//! goes with `down`, and a database-like service replaced stop-first: never two processes on
//! its volume.

mod engine_support;

use std::collections::HashMap;

use bollard::query_parameters::{EventsOptions, InspectContainerOptions};
use engine_support::{GitRepo, TestEnv, volumes};
use futures_util::StreamExt;

/// Container events seen: action and time in nanoseconds.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, i64)>>>;

/// Starts recording the `start`/`die` events of `service`'s containers of this instance, with
/// their times in nanoseconds, as Docker reports them (live: Docker keeps only its last events
/// for a query of the past, and a busy host overruns them).
fn record_lifecycle(env: &TestEnv, service: &str) -> (tokio::task::JoinHandle<()>, Seen) {
    let filters = HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        (
            "event".to_owned(),
            vec!["start".to_owned(), "die".to_owned()],
        ),
        (
            "label".to_owned(),
            vec![
                format!("dev.previewd.instance={}", env.config.instance),
                format!("dev.previewd.service={service}"),
            ],
        ),
    ]);
    let opts = EventsOptions {
        since: None,
        until: None,
        filters: Some(filters),
    };
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let docker = env.manager.docker().clone();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = docker.events(Some(opts));
        while let Some(Ok(e)) = events.next().await {
            if let Ok(mut v) = out.lock() {
                v.push((
                    e.action.unwrap_or_default(),
                    e.time_nano.unwrap_or_default(),
                ));
            }
        }
    });
    (task, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_project_runs_with_its_meaning_across_a_push_and_down_removes_it() {
    let env = TestEnv::new("cshop").await;
    let repo = GitRepo::from_fixture("compose-shop");
    let d = env.up(repo.path()).await.expect("up");
    let id = d.state.id.to_string();
    assert_eq!(d.state.status.as_str(), "running");
    assert!(d.downtime.is_empty(), "a first deployment replaces nothing");

    // The proxy has the preview's host; its bind-mounted folder is the repository's.
    let (status, body) = env.get(&id, "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("previewd sample: compose-shop"), "{body}");
    let (_, body) = env.get(&id, "/static/index.html").await;
    assert!(body.contains("compose-shop static page"), "{body}");
    // The backend, by its network alias `api` on the frontend network: its secret and config
    // where compose mounts them, its env_file, and the database by its hostname on the
    // backend network.
    let (_, body) = env.get(&id, "/cgi-bin/backend?secret").await;
    assert_eq!(body.trim(), "s3cret-preview-password");
    let (_, body) = env.get(&id, "/cgi-bin/backend?config").await;
    assert_eq!(body.trim(), "mode=preview");
    let (_, body) = env.get(&id, "/cgi-bin/backend?env").await;
    assert_eq!(body.trim(), "greeting=hello from env_file");
    let (_, body) = env.get(&id, "/cgi-bin/backend?db").await;
    assert!(
        body.contains("log=start, rows=row written at first start"),
        "{body}"
    );
    // The proxy is on the frontend network only: the database is out of its reach.
    let (_, body) = env.get(&id, "/cgi-bin/db").await;
    assert_eq!(body.trim(), "db unreachable");
    // The database publishes a port: it has a host of its own, through the gateway.
    let (status, body) = env.get_host(&format!("{id}-db.localhost"), "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("rows=row written"), "{body}");

    // No container publishes a host port, whatever `ports:` said.
    let observed = env.manager.observed().await.expect("observed");
    let live = observed[0].live_members().to_vec();
    let services: Vec<&str> = live.iter().map(|m| m.service.as_str()).collect();
    assert_eq!(
        services,
        ["backend", "db", "migrate", "proxy"],
        "no debug profile"
    );
    let docker = env.manager.docker();
    for m in &live {
        let info = docker
            .inspect_container(&m.container_id, None::<InspectContainerOptions>)
            .await
            .expect("inspect");
        let bindings = info.host_config.and_then(|h| h.port_bindings);
        assert!(
            bindings
                .as_ref()
                .is_none_or(|b| b.values().all(Option::is_none)),
            "{} publishes {bindings:?}",
            m.service
        );
        let ports = info
            .network_settings
            .and_then(|n| n.ports)
            .unwrap_or_default();
        assert!(
            ports.values().all(|b| b.as_ref().is_none_or(Vec::is_empty)),
            "{} has host ports {ports:?}",
            m.service
        );
    }
    let inst = env.config.instance.to_string();
    assert_eq!(volumes(&inst).await, [format!("{inst}-{id}-db-data")]);

    // A push: the database is replaced stop-first and keeps its data; the rest switches as
    // before.
    // Recording starts now; the old database stops only after the new generation's build, so
    // the stream is open long before.
    let (recorder, seen) = record_lifecycle(&env, "db");
    repo.write(
        "proxy/static/index.html",
        "compose-shop static page, second push\n",
    );
    repo.commit("second push");
    let d2 = env.up(repo.path()).await.expect("update");
    assert_eq!(d2.state.id.to_string(), id, "same preview");
    assert_eq!(
        d2.downtime,
        ["db"],
        "the service with a named volume had downtime"
    );
    let (_, body) = env.get(&id, "/static/index.html").await;
    assert!(body.contains("second push"), "{body}");
    let (_, body) = env.get(&id, "/cgi-bin/backend?db").await;
    assert!(
        body.contains("log=start,stop,start, rows=row written at first start"),
        "the volume kept its data and saw one process at a time: {body}"
    );
    // Docker's own record agrees: the old database died before the new one started.
    recorder.abort();
    let events = seen.lock().expect("events").clone();
    let actions: Vec<&str> = events.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["die", "start"], "{events:?}");
    assert!(events[0].1 < events[1].1, "{events:?}");
    assert_eq!(volumes(&inst).await.len(), 1, "one volume across pushes");

    env.manager.down(&d2.state.id).await.expect("down");
    assert!(volumes(&inst).await.is_empty(), "down removes the volume");
    env.assert_clean().await;
}

/// `build.target` picks the stage that runs (the proxy's Dockerfile has a later `debug` stage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_target_is_the_stage_that_runs() {
    let env = TestEnv::new("ctarget").await;
    let repo = GitRepo::from_fixture("compose-shop");
    let d = env.up(repo.path()).await.expect("up");
    let (_, body) = env.get(d.state.id.as_str(), "/stage.txt").await;
    assert_eq!(body.trim(), "stage: runtime");
    env.manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}

/// `gc` removes the named volumes of a preview whose containers are gone (a crash, a removal
/// by hand), and keeps those of a live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_the_volumes_of_a_preview_that_is_gone_and_keeps_a_live_ones() {
    let env = TestEnv::new("cvolgc").await;
    let repo = GitRepo::from_fixture("compose-volume");
    let d = env.up(repo.path()).await.expect("up");
    let inst = env.config.instance.to_string();
    let id = d.state.id.to_string();
    assert_eq!(volumes(&inst).await, [format!("{inst}-{id}-data")]);
    let report = env.clean_up_now().await;
    assert!(report.volumes.is_empty(), "a live preview keeps its volume");
    assert_eq!(volumes(&inst).await.len(), 1);
    // The preview's containers go behind previewd's back.
    for m in env.manager.observed().await.expect("observed")[0].live_members() {
        previewd::preview::docker::remove_container(env.manager.docker(), &m.container_id)
            .await
            .expect("remove");
    }
    let report = env.clean_up_now().await;
    assert_eq!(report.volumes, [format!("{inst}-{id}-data")]);
    assert!(volumes(&inst).await.is_empty());
    env.assert_clean().await;
}
