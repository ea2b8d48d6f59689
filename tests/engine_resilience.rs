//! What must hold while other things happen: a preview keeps answering while another is added
//! and removed (the gateway is never restarted, nor its config reloaded), a cancelled
//! deployment leaves nothing, and a generation that never finished is removed by reconcile
//! while the live one keeps serving.

mod engine_support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, InspectContainerOptions};
use engine_support::{GitRepo, TestEnv};
use previewd::engine::Phase;
use previewd::preview::cleanup::clean_up;
use previewd::preview::labels;
use previewd::preview::manager::{Event, Progress};
use tokio_util::sync::CancellationToken;

async fn gateway_identity(env: &TestEnv) -> (String, i64) {
    let info = env
        .manager
        .docker()
        .inspect_container(
            &labels::gateway_name(&env.config.instance),
            None::<InspectContainerOptions>,
        )
        .await
        .expect("gateway");
    (
        info.id.unwrap_or_default(),
        info.restart_count.unwrap_or(-1),
    )
}

/// How many configs the gateway has been sent (Caddy logs every admin request). A load is a
/// full reload, which drops connections the old server accepted but had not read yet.
async fn config_loads(env: &TestEnv) -> usize {
    let gw = labels::gateway_name(&env.config.instance);
    previewd::preview::docker::log_tail(env.manager.docker(), &gw, 100_000)
        .await
        .iter()
        .filter(|l| l.contains(r#""uri":"/load""#))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_and_removing_a_preview_never_disturbs_another() {
    let env = Arc::new(TestEnv::new("calm").await);
    let a = GitRepo::from_fixture("compose-only");
    let da = env.up(a.path()).await.expect("up a");
    let id = da.state.id.to_string();
    let before = gateway_identity(&env).await;
    let loads = config_loads(&env).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let poller = {
        let (env, id, stop, ok, bad) = (
            env.clone(),
            id.clone(),
            stop.clone(),
            ok.clone(),
            bad.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match env.get(&id, "/").await.0 {
                    200 => ok.fetch_add(1, Ordering::SeqCst),
                    _ => bad.fetch_add(1, Ordering::SeqCst),
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let b = GitRepo::from_fixture("two-service");
    let db = env.up(b.path()).await.expect("up b");
    env.manager.down(&db.state.id).await.expect("down b");
    stop.store(true, Ordering::SeqCst);
    poller.await.expect("poller");

    assert!(ok.load(Ordering::SeqCst) > 20, "the poller ran");
    assert_eq!(
        bad.load(Ordering::SeqCst),
        0,
        "a request to the other preview failed"
    );
    assert_eq!(
        gateway_identity(&env).await,
        before,
        "the gateway was restarted or replaced"
    );
    // Not a timing matter: a reload can break a request on any run, so none may happen.
    assert_eq!(
        config_loads(&env).await,
        loads,
        "adding or removing a preview reloaded the gateway's config"
    );
    env.manager.down(&da.state.id).await.expect("down a");
    env.assert_clean().await;
}

/// A token cancelled as soon as a deployment reports `phase`, and that progress callback.
fn cancel_at(phase: Phase) -> (CancellationToken, Progress) {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let progress: Progress = Arc::new(move |e: Event| {
        if matches!(e, Event::Phase(p) if p == phase) {
            c.cancel();
        }
    });
    (cancel, progress)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_deployment_leaves_nothing_and_an_old_generation_keeps_serving() {
    let env = TestEnv::new("cancel").await;
    let repo = GitRepo::from_fixture("compose-only");

    // A first deployment cancelled once its containers start: nothing may remain.
    let (cancel, progress) = cancel_at(Phase::Health);
    let f = env
        .manager
        .up(env.request(repo.path()), progress, cancel)
        .await
        .expect_err("cancelled");
    assert!(f.cancelled, "{f}");
    env.assert_clean().await;

    // A live preview, then an update cancelled mid-way: the live generation keeps serving.
    let live = env.up(repo.path()).await.expect("up");
    let id = live.state.id.to_string();
    repo.write("app/extra.txt", "v2");
    repo.commit("v2");
    let (cancel, progress) = cancel_at(Phase::Health);
    let f = env
        .manager
        .up(env.request(repo.path()), progress, cancel)
        .await
        .expect_err("cancelled update");
    assert!(f.cancelled);
    assert_eq!(env.get(&id, "/").await.0, 200, "the old generation serves");
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(
        observed[0].generations.len(),
        1,
        "the cancelled generation is gone"
    );
    env.manager.down(&live.state.id).await.expect("down");
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_removes_a_generation_that_never_finished() {
    let env = TestEnv::new("crash").await;
    let repo = GitRepo::from_fixture("compose-only");
    let d = env.up(repo.path()).await.expect("up");
    let id = d.state.id.clone();
    let inst = &env.config.instance;
    // What a crash mid-deployment leaves: a labelled container of a newer generation under its
    // staging name.
    let l: HashMap<String, String> = [
        (labels::INSTANCE, inst.to_string()),
        (labels::ROLE, labels::ROLE_SERVICE.to_owned()),
        (labels::PREVIEW, id.to_string()),
        (labels::SERVICE, "app".to_owned()),
        (labels::GENERATION, "7".to_owned()),
        (
            labels::CREATED,
            previewd::clock::rfc3339(time::OffsetDateTime::now_utc()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let name = labels::staging_name(inst, &id, "app", 7);
    env.manager
        .docker()
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some("busybox".into()),
                cmd: Some(vec!["sleep".into(), "600".into()]),
                labels: Some(l),
                host_config: Some(HostConfig::default()),
                ..Default::default()
            },
        )
        .await
        .expect("create leftover");

    // Young leftovers may be another process's deployment in progress: kept.
    let report = clean_up(
        &env.manager,
        Duration::from_secs(3600),
        &HashSet::new(),
        &HashSet::new(),
    )
    .await
    .expect("reconcile");
    assert!(report.containers.is_empty(), "{report:?}");
    // A preview with a deployment running in this process is never touched, whatever its age.
    let busy = HashSet::from([id.clone()]);
    let report = clean_up(&env.manager, Duration::ZERO, &busy, &HashSet::new())
        .await
        .expect("reconcile");
    assert!(report.containers.is_empty(), "{report:?}");
    // Past the grace (or at start-up), removed; the live generation is untouched.
    let report = env.clean_up_now().await;
    assert_eq!(report.containers, vec![name]);
    assert_eq!(env.get(id.as_str(), "/").await.0, 200);
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(observed[0].live(), Some(1));
    assert_eq!(observed[0].generations.len(), 1);
    env.manager.down(&id).await.expect("down");
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_gateway_settings_take_effect_with_every_route() {
    let env = TestEnv::new("regate").await;
    let repo = GitRepo::from_fixture("compose-only");
    let d = env.up(repo.path()).await.expect("up");
    let id = d.state.id.to_string();
    assert_eq!(env.get(&id, "/").await.0, 200);

    // The operator moves the gateway to another port; the next sync applies it.
    let mut moved = env.config.clone();
    moved.gateway.port = engine_support::free_port();
    let manager = previewd::preview::manager::Manager::connect(moved.clone())
        .await
        .expect("docker");
    manager.settle().await.expect("settle");
    let answer = previewd::preview::http_client::tcp(
        &format!("127.0.0.1:{}", moved.gateway.port),
        &format!("{id}.localhost"),
        "GET",
        "/",
        Duration::from_secs(5),
    )
    .await
    .expect("the new port answers");
    assert_eq!(answer.status, 200);
    assert_eq!(env.get(&id, "/").await.0, 0, "the old port is closed");
    manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}
