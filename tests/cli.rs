//! The `previewd` binary as a user runs it: DESIGN.md's CLI contract, exit codes and `--json`.

mod engine_support;
mod support;

use std::process::{Command, Output};
use std::sync::Arc;

use engine_support::{GitRepo, TestEnv, fixture};
use previewd::forge::Forge;
use previewd::forge::github::GitHub;
use previewd::preview::manager::{Mode, UpRequest};
use support::fake_github::FakeGitHub;
use support::{TOKEN, fast_retry};

fn previewd(env: &TestEnv, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_previewd"))
        .args(args)
        .env("PREVIEWD_INSTANCE", env.config.instance.as_str())
        .env("PREVIEWD_DATA_DIR", env.data.path())
        .env("PREVIEWD_GATEWAY_PORT", env.port.to_string())
        .env("PREVIEWD_LIMITS_HEALTH_TIMEOUT", "30s")
        .output()
        .expect("run previewd")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_ls_status_logs_down_follow_the_contract() {
    let env = TestEnv::new("cli").await;
    let repo = GitRepo::from_fixture("two-service");
    let repo_arg = repo.path().display().to_string();

    let up = previewd(&env, &["up", "--repo", &repo_arg, "--json"]);
    assert!(up.status.success(), "up failed: {}", stderr(&up));
    let v: serde_json::Value = serde_json::from_str(&stdout(&up)).expect("one JSON object");
    for key in [
        "id", "url", "repo", "branch", "sha", "mode", "status", "services",
    ] {
        assert!(v.get(key).is_some(), "--json lacks {key}: {v}");
    }
    assert_eq!(v["status"], "running");
    assert_eq!(v["mode"], "preview");
    assert_eq!(v["branch"], "main");
    let id = v["id"].as_str().expect("id").to_owned();
    let api = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "api")
        .expect("api service");
    assert_eq!(api["route"], "/api");
    assert_eq!(api["health"]["ok"], true);
    assert_eq!(api["health"]["status"], 200);

    let ls = previewd(&env, &["ls", "--json"]);
    assert!(ls.status.success());
    let all: serde_json::Value = serde_json::from_str(&stdout(&ls)).expect("an array");
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    assert_eq!(all[0]["id"], id.as_str());

    let status = previewd(&env, &["status", &id]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).contains("ok 200"), "{}", stdout(&status));

    let logs = previewd(&env, &["logs", &id, "web", "--tail", "5"]);
    assert!(logs.status.success(), "{}", stderr(&logs));

    let bad = previewd(&env, &["status", "NOT-AN-ID"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("invalid preview id"),
        "{}",
        stderr(&bad)
    );
    let unknown = previewd(&env, &["down", "zzzzzzzzzz"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no preview has the id"),
        "{}",
        stderr(&unknown)
    );

    let down = previewd(&env, &["down", "--all"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(stdout(&down).contains(&format!("removed {id}")));
    // A preview the CLI made has no PR to tell.
    assert!(!stderr(&down).contains("not told"), "{}", stderr(&down));
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_up_exits_non_zero_with_the_reason_and_check_names_keys() {
    let env = TestEnv::new("clifail").await;
    let up = previewd(
        &env,
        &["up", "--repo", &fixture("build-fail").display().to_string()],
    );
    assert!(!up.status.success());
    let err = stderr(&up);
    assert!(err.contains("build failed for service"), "{err}");
    assert!(
        err.contains("error: something broke"),
        "log tail missing: {err}"
    );
    env.assert_clean().await;

    let ok = previewd(
        &env,
        &["check", &fixture("two-service").display().to_string()],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("route /api"), "{}", stdout(&ok));
    let hostile = previewd(&env, &["check", &fixture("hostile").display().to_string()]);
    assert!(!hostile.status.success());
    assert!(
        stderr(&hostile).contains("privileged"),
        "{}",
        stderr(&hostile)
    );

    let bad_args = previewd(&env, &["up", "--repo", ".", "--mode", "dev"]);
    assert!(!bad_args.status.success());
    assert!(
        stderr(&bad_args).contains("--worktree"),
        "{}",
        stderr(&bad_args)
    );
}

/// Under systemd, Docker or a pipe, log lines must not carry terminal colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_on_a_pipe_have_no_colour_codes() {
    let env = TestEnv::new("clilog").await;
    let out = Command::new(env!("CARGO_BIN_EXE_previewd"))
        .arg("ls")
        .env("PREVIEWD_INSTANCE", env.config.instance.as_str())
        .env("PREVIEWD_DATA_DIR", env.data.path())
        .env("PREVIEWD_LOG", "debug")
        .env_remove("NO_COLOR")
        .output()
        .expect("run previewd");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("DEBUG"), "no log line to check: {err}");
    assert!(!err.contains('\x1b'), "colour codes on a pipe: {err:?}");
}

/// `previewd down` of a preview GitHub asked for tells its PR, as a close would: the
/// deployment goes inactive and the sticky comment says an operator removed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_tells_the_pr_of_a_preview_github_asked_for() {
    const REPO: &str = "Codertocat/Hello-World";
    let github = FakeGitHub::start().await;
    let repo = GitRepo::at("compose-only", &format!("{REPO}.git"), "changes");
    let sha = repo.commit("ok");
    let git_url = format!("file://{}", repo.root().display());
    let api = github.url();
    let gh_env = [
        ("PREVIEWD_GITHUB_TOKEN", TOKEN),
        ("PREVIEWD_GITHUB_API_URL", api.as_str()),
    ];
    let env = TestEnv::with("clidown", &gh_env).await;
    let up = UpRequest {
        repo: format!("{git_url}/{REPO}.git"),
        branch: Some("changes".into()),
        sha: None,
        pr: Some(7),
        forge: "github".into(),
        mode: Mode::Preview,
        key_repo: Some(REPO.into()),
        key_branch: None,
    };
    let id = env.up_req(up).await.expect("up").state.id.to_string();
    let forge: Arc<dyn Forge> =
        Arc::new(GitHub::with_policy(&env.config.github, fast_retry()).expect("github"));
    let deployment = forge
        .create_deployment(
            &previewd::forge::Repo::parse(REPO).expect("repo"),
            &previewd::ids::CommitSha::parse(&sha).expect("sha"),
            "preview/changes",
        )
        .await
        .expect("deployment");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_previewd"));
    cmd.args(["down", &id])
        .env("PREVIEWD_INSTANCE", env.config.instance.as_str())
        .env("PREVIEWD_DATA_DIR", env.data.path())
        .env("PREVIEWD_GATEWAY_PORT", env.port.to_string());
    for (k, v) in &gh_env {
        cmd.env(k, v);
    }
    let down = cmd.output().expect("run previewd");
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(stdout(&down).contains(&format!("removed {id}")));
    env.assert_clean().await;

    let sticky = github.removal_reported(REPO, 7, deployment, "Preview removed by an operator");
    assert!(sticky.contains("An operator"), "{sticky}");
    github.assert_clean();
}
