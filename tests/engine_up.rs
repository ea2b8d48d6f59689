//! The preview engine on the real Docker engine, the real Caddy gateway and real git
//! repositories: start, route, label, limit, list, remove.

mod engine_support;

use engine_support::{GitRepo, TestEnv, fixture};
use previewd::preview::labels;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_service_app_routes_by_path_and_down_leaves_nothing() {
    let env = TestEnv::new("up").await;
    let repo = GitRepo::from_fixture("two-service");
    let d = env.up(repo.path()).await.expect("up");
    let id = d.state.id.to_string();
    assert_eq!(d.state.status.as_str(), "running");
    assert_eq!(d.state.url, format!("http://{id}.localhost:{}", env.port));
    assert!(
        d.state.sha.is_some(),
        "a git repository's preview knows its commit"
    );
    let healthy: Vec<_> = d
        .state
        .services
        .iter()
        .filter(|s| s.route.is_some())
        .collect();
    assert_eq!(healthy.len(), 2);
    assert!(healthy.iter().all(|s| s.healthy && s.status == Some(200)));

    let (status, body) = env.get(&id, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("previewd sample: web"), "{body}");
    // /api goes to the api service, which reaches the internal one by its service name.
    let (status, body) = env.get(&id, "/api/hello").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("internal says: previewd sample: internal"),
        "{body}"
    );
    // A prefix is a whole segment and matches case-sensitively, like most proxies' path
    // prefixes: /api/ and /api/x/y are the api's, /apix and /API/hello the web's.
    // (The api's own 404 names the path; the web's does not.)
    let (_, body) = env.get(&id, "/api/x/y").await;
    assert!(body.contains("not found: /api/x/y"), "{body}");
    let (_, body) = env.get(&id, "/API/hello").await;
    assert!(!body.contains("not found: /API/hello"), "{body}");
    let (_, body) = env.get(&id, "/apix").await;
    assert!(!body.contains("not found: /apix"), "{body}");
    // Dot segments are refused, not resolved to another service's prefix.
    let (status, body) = env.get(&id, "/api/../").await;
    assert_eq!(status, 400, "{body}");
    // .dockerignore kept web/.env out of the image.
    assert_eq!(env.get(&id, "/.env").await.0, 404);
    // An unknown host says so.
    let (status, body) = env.get("zzzzzzzzzz", "/").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("no preview has the id \"zzzzzzzzzz\""),
        "{body}"
    );

    // Every container carries the design's (docs/architecture.md) names, labels and limits.
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(observed.len(), 1);
    let docker = env.manager.docker();
    for m in observed[0].live_members() {
        assert_eq!(
            m.name,
            format!("{}-{id}-{}", env.config.instance, m.service)
        );
        let info = docker
            .inspect_container(
                &m.container_id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .expect("inspect");
        let l = info.config.and_then(|c| c.labels).expect("labels");
        for key in [
            labels::INSTANCE,
            labels::PREVIEW,
            labels::SERVICE,
            labels::REPO,
            labels::BRANCH,
            labels::SHA,
            labels::MODE,
            labels::GENERATION,
            labels::CREATED,
            labels::FORGE,
        ] {
            assert!(l.contains_key(key), "{} lacks {key}", m.name);
        }
        assert_eq!(l[labels::BRANCH], "main");
        let hc = info.host_config.expect("host config");
        assert_eq!(hc.memory, Some(512 << 20));
        assert_eq!(hc.pids_limit, Some(512));
        assert_eq!(hc.nano_cpus, Some(1_000_000_000));
        assert!(hc.privileged != Some(true));
        assert!(
            hc.port_bindings.unwrap_or_default().is_empty(),
            "no published ports"
        );
    }
    let listed = env.manager.observed().await.expect("ls");
    assert_eq!(listed[0].id.to_string(), id);

    env.manager.down(&d.state.id).await.expect("down");
    assert_eq!(
        env.get(&id, "/").await.0,
        0,
        "the gateway is gone with the last preview"
    );
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_previews_get_distinct_hosts_and_cannot_reach_each_other() {
    let env = TestEnv::new("two").await;
    let a = GitRepo::from_fixture("two-service");
    let b = GitRepo::from_fixture("compose-only");
    let da = env.up(a.path()).await.expect("up a");
    let db = env.up(b.path()).await.expect("up b");
    let (ia, ib) = (da.state.id.to_string(), db.state.id.to_string());
    assert_ne!(ia, ib);
    assert!(env.get(&ia, "/").await.1.contains("previewd sample: web"));
    let (status, body) = env.get(&ib, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("GREETING=hello from compose"), "{body}");

    // From a's api container, b's service does not resolve: no shared network.
    let docker = env.manager.docker();
    let target = format!("{}-app-1", ib);
    let exec = docker
        .create_exec(
            &format!("{}-{ia}-api", env.config.instance),
            bollard::exec::CreateExecOptions {
                cmd: Some(vec![
                    "sh",
                    "-c",
                    &format!(
                        "timeout 3 wget -q -O- http://internal:7000/ >/dev/null && echo OWN-REACHED; \
                         timeout 3 wget -q -O- http://{target}:8080/ && echo REACHED || echo BLOCKED"
                    ),
                ]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("exec");
    let out = match docker.start_exec(&exec.id, None).await.expect("start exec") {
        bollard::exec::StartExecResults::Attached { mut output, .. } => {
            use futures_util::StreamExt;
            let mut s = String::new();
            while let Some(Ok(chunk)) = output.next().await {
                s.push_str(&chunk.to_string());
            }
            s
        }
        _ => String::new(),
    };
    assert!(
        out.contains("OWN-REACHED"),
        "a cannot reach its own service: {out}"
    );
    assert!(out.contains("BLOCKED"), "a reached b: {out}");

    // Removing one preview leaves the other serving, through the same gateway.
    env.manager.down(&da.state.id).await.expect("down a");
    assert_eq!(env.get(&ib, "/").await.0, 200);
    env.manager.down(&db.state.id).await.expect("down b");
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_folder_is_used_as_it_is_and_max_previews_is_enforced() {
    let env = TestEnv::with("folder", &[("PREVIEWD_LIMITS_MAX_PREVIEWS", "1")]).await;
    let d = env.up(&fixture("compose-only")).await.expect("up folder");
    assert!(d.state.sha.is_none());
    let other = GitRepo::from_fixture("compose-only");
    let err = env.up(other.path()).await.expect_err("over the limit");
    assert!(err.reason.contains("max_previews"), "{err}");
    env.manager.down(&d.state.id).await.expect("down");
    // The user's folder is never removed.
    assert!(fixture("compose-only").join("compose.yaml").exists());
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_no_service_routes_gets_a_404_naming_the_preview() {
    let env = TestEnv::new("noroot").await;
    let repo = GitRepo::from_fixture("two-service");
    let yml = std::fs::read_to_string(repo.path().join(".previewd.yml")).expect("read");
    let unrouted = yml.replacen(
        "    route: /\n    healthcheck: {path: /}\n",
        "    internal: true\n",
        1,
    );
    assert_ne!(unrouted, yml, "the fixture's web service changed shape");
    repo.write(".previewd.yml", &unrouted);
    repo.commit("no root route");
    let d = env.up(repo.path()).await.expect("up");
    let id = d.state.id.to_string();
    assert!(env.get(&id, "/api/hello").await.1.contains("internal says"));
    let (status, body) = env.get(&id, "/other").await;
    assert_eq!(status, 404);
    assert!(
        body.contains(&format!("preview {id} has no service at this path")),
        "{body}"
    );
    env.manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}
