//! A failure at any step names the step, the service and the reason, carries the log's tail,
//! and leaves nothing behind.

mod engine_support;

use engine_support::{GitRepo, TestEnv};
use previewd::preview::manager::UpRequest;

async fn fails(env: &TestEnv, req: UpRequest) -> previewd::engine::DeployFailure {
    let f = env.up_req(req).await.expect_err("must fail");
    env.assert_clean().await;
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_failure_names_service_and_shows_log() {
    let env = TestEnv::new("fbuild").await;
    let repo = GitRepo::from_fixture("build-fail");
    let f = fails(&env, env.request(repo.path())).await;
    assert_eq!(f.phase.as_str(), "build");
    assert!(f.service.is_some());
    assert!(
        f.log_tail
            .iter()
            .any(|l| l.contains("error: something broke")),
        "{:?}",
        f.log_tail
    );
    assert!(f.log_tail.len() <= 50);
    // The classic builder colours a step's stderr; a PR comment and a terminal get plain text.
    assert!(
        f.log_tail
            .iter()
            .all(|l| !l.contains('\u{1b}') && !l.trim().is_empty()),
        "{:?}",
        f.log_tail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_timeout_and_dead_container_fail_with_their_logs() {
    let env = TestEnv::new("fhealth").await;
    let repo = GitRepo::from_fixture("health-fail");
    let f = fails(&env, env.request(repo.path())).await;
    assert_eq!(f.phase.as_str(), "health");
    assert!(
        f.reason.contains("404") || f.reason.contains("did not answer"),
        "{f}"
    );

    let repo = GitRepo::from_fixture("exits");
    let f = fails(&env, env.request(repo.path())).await;
    assert!(matches!(f.phase.as_str(), "start" | "health"), "{f}");
    assert!(f.reason.contains("exited"), "{f}");
    assert!(
        f.log_tail.iter().any(|l| l.contains("fatal: cannot start")),
        "{:?}",
        f.log_tail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_config_unknown_branch_and_missing_config_are_refused() {
    let env = TestEnv::new("frefuse").await;
    let repo = GitRepo::from_fixture("hostile");
    let f = fails(&env, env.request(repo.path())).await;
    assert_eq!(f.phase.as_str(), "config");
    assert!(f.reason.contains("privileged"), "{f}");

    let repo = GitRepo::from_fixture("two-service");
    let mut req = env.request(repo.path());
    req.branch = Some("no-such-branch".into());
    let f = fails(&env, req).await;
    assert_eq!(f.phase.as_str(), "fetch");
    assert!(f.reason.contains("no-such-branch"), "{f}");

    let empty = tempfile::tempdir().expect("tempdir");
    std::fs::write(empty.path().join("README"), "nothing to preview").expect("write");
    let f = fails(&env, env.request(empty.path())).await;
    assert_eq!(f.phase.as_str(), "config");
    assert!(f.reason.contains(".previewd.yml"), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_cannot_borrow_another_previews_built_image() {
    let env = TestEnv::new("fborrow").await;
    let victim = GitRepo::from_fixture("compose-only");
    let d = env.up(victim.path()).await.expect("up victim");
    let observed = env.manager.observed().await.expect("observed");
    let image = observed[0].live_members()[0].image.clone();
    assert!(image.starts_with(env.config.instance.as_str()), "{image}");

    let thief = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        thief.path().join(".previewd.yml"),
        format!("services:\n  web:\n    image: {image}\n    port: 8080\n"),
    )
    .expect("write config");
    let f = env.up(thief.path()).await.expect_err("refused");
    assert_eq!(f.phase.as_str(), "config");
    assert!(f.reason.contains("built by previewd"), "{f}");
    assert_eq!(
        env.manager.observed().await.expect("ls").len(),
        1,
        "only the victim runs"
    );
    env.manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_port_taken_is_named_and_the_next_deploy_recovers() {
    let env = TestEnv::new("fport").await;
    let repo = GitRepo::from_fixture("compose-only");
    let holder = std::net::TcpListener::bind(("127.0.0.1", env.port)).expect("hold the port");
    let f = fails(&env, env.request(repo.path())).await;
    assert_eq!(f.phase.as_str(), "route", "{f}");
    let addr = format!("127.0.0.1:{}", env.port);
    assert!(
        f.reason.contains(&format!("cannot listen on {addr}")),
        "the reason names the address: {f}"
    );
    assert!(
        f.reason.chars().count() <= 140,
        "fits a commit status: {}",
        f.reason
    );
    drop(holder);
    let up = env.up(repo.path()).await.expect("up once the port is free");
    let id = up.state.id.to_string();
    assert_eq!(env.get(&id, "/").await.0, 200);
    env.manager.down(&up.state.id).await.expect("down");
    env.assert_clean().await;
}

/// A repository asking for `forge` where nobody could sign in (no OAuth client for its forge,
/// or a `previewd up` preview, which belongs to no forge) is refused at the config step, the
/// message naming the file, the key and what to write instead; with a client, the same
/// repository deploys, labelled `forge`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forge_access_nobody_could_sign_in_to_is_refused_at_deploy() {
    let web = "services:\n  web:\n    image: busybox\n    port: 8080\n    command: [sh, -c, \
               'mkdir -p /w && echo ok > /w/index.html && exec httpd -f -p 8080 -h /w']\n";
    let yml = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        yml.path().join(".previewd.yml"),
        format!("access: forge\n{web}"),
    )
    .expect("write");
    let compose = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        compose.path().join("compose.yaml"),
        "x-previewd: {access: forge}\nservices:\n  web:\n    image: busybox\n    \
         ports: ['8080']\n",
    )
    .expect("write");

    let env = TestEnv::new("fforge").await;
    let github = |dir: &std::path::Path| {
        let mut req = env.request(dir);
        req.forge = "github".into();
        req
    };
    let f = fails(&env, github(yml.path())).await;
    assert_eq!(f.phase.as_str(), "config", "{f}");
    for part in [
        ".previewd.yml: `access: forge`",
        "no GitHub OAuth client",
        "`github.oauth_client_id`",
        "use `access: password`",
    ] {
        assert!(f.reason.contains(part), "{part}: {f}");
    }
    let f = fails(&env, github(compose.path())).await;
    assert_eq!(f.phase.as_str(), "config", "{f}");
    assert!(
        f.reason
            .contains("compose.yaml: `x-previewd.access: forge`")
            && f.reason.contains("use `x-previewd.access: password`"),
        "{f}"
    );
    let f = fails(&env, env.request(yml.path())).await;
    assert_eq!(f.phase.as_str(), "config", "{f}");
    assert!(f.reason.contains("previewd up"), "{f}");

    // With GitHub's OAuth client, a GitHub repository's ask is honoured.
    let env = TestEnv::with(
        "fforge2",
        &[
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_ID", "test-client"),
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_SECRET", "test-client-secret"),
        ],
    )
    .await;
    let mut req = env.request(yml.path());
    req.forge = "github".into();
    let d = env.up_req(req).await.expect("deploys with a client");
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(
        observed[0].live_members()[0].access,
        Some(previewd::config::AccessMode::Forge)
    );
    env.manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}
