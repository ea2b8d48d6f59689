//! `previewd doctor --repo`: the forge's token must see the repository and may write there
//! (statuses, comments), checked against the fake Gitea and the fake GitLab (every request and
//! answer checked against the forge's API description), by running the binary.

mod support;

use std::process::Output;

use serde_json::Value;
use support::fake_gitea::{BOT, FakeGitea, GITEA_TOKEN};
use support::fake_gitlab::{FakeGitLab, GITLAB_TOKEN};

/// Runs `previewd doctor --json ARGS` off the runtime (the fakes answer on it) with only the
/// given PREVIEWD_* variables.
async fn doctor(args: &[&str], env: &[(&str, String)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_previewd"));
    cmd.arg("doctor").arg("--json").args(args);
    cmd.current_dir(dir.path()).env("HOME", dir.path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PREVIEWD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("XDG_CONFIG_HOME");
    cmd.env("PREVIEWD_INSTANCE", "doctorrepo");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || {
        let out = cmd.output().expect("run previewd doctor");
        drop(dir);
        out
    })
    .await
    .expect("doctor ran")
}

/// The `repository` finding of doctor's JSON answer.
fn repository(out: &Output) -> Value {
    let all: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    all.as_array()
        .and_then(|a| a.iter().find(|f| f["check"] == "repository"))
        .unwrap_or_else(|| panic!("no repository finding: {all}"))
        .clone()
}

fn gitea_env(g: &FakeGitea) -> Vec<(&'static str, String)> {
    vec![
        ("PREVIEWD_GITEA_URL", g.url()),
        ("PREVIEWD_GITEA_TOKEN", GITEA_TOKEN.to_owned()),
        ("PREVIEWD_GITEA_WEBHOOK_SECRET", "s3cret".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_repo_checks_the_tokens_access_on_gitea() {
    let gitea = FakeGitea::start().await;
    let env = gitea_env(&gitea);

    // The fake's default for a user it was not told of is `read`.
    let out = doctor(&["--repo", "team/app"], &env).await;
    let f = repository(&out);
    assert_eq!(f["status"], "fail", "{f}");
    assert!(
        f["detail"].as_str().is_some_and(|d| d.contains("read")),
        "{f}"
    );
    assert!(
        f["fix"].as_str().is_some_and(|d| d.contains("write")),
        "{f}"
    );
    assert_eq!(out.status.code(), Some(1));

    gitea.set_permission(BOT, "write");
    let f = repository(&doctor(&["--repo", "gitea:team/app"], &env).await);
    assert_eq!(f["status"], "ok", "{f}");
    assert!(
        f["detail"].as_str().is_some_and(|d| d.contains("team/app")),
        "{f}"
    );
    assert!(
        gitea.ops().iter().any(|op| op == "repoGetRepoPermissions"),
        "the permission was asked of the forge: {:?}",
        gitea.ops()
    );
    gitea.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_repo_checks_the_tokens_access_on_gitlab() {
    let gitlab = FakeGitLab::start().await;
    let bot = gitlab.lock().user.0;
    let mut env = vec![
        ("PREVIEWD_GITLAB_URL", gitlab.url()),
        ("PREVIEWD_GITLAB_TOKEN", GITLAB_TOKEN.to_owned()),
        ("PREVIEWD_GITLAB_WEBHOOK_SECRET", "s3cret".to_owned()),
    ];

    // Not a member: GitLab answers 404, which is no access at all.
    let f = repository(&doctor(&["--repo", "group/sub/app"], &env).await);
    assert_eq!(f["status"], "fail", "{f}");
    assert!(
        f["detail"].as_str().is_some_and(|d| d.contains("none")),
        "{f}"
    );

    // Developer (30) may set statuses and write notes.
    gitlab.set_member("group/sub/app", bot, 30);
    let f = repository(&doctor(&["--repo", "group/sub/app"], &env).await);
    assert_eq!(f["status"], "ok", "{f}");

    // With two forges configured, a repository without its forge is ambiguous.
    let gitea = FakeGitea::start().await;
    env.extend(gitea_env(&gitea));
    let f = repository(&doctor(&["--repo", "group/sub/app"], &env).await);
    assert_eq!(f["status"], "fail", "{f}");
    assert!(
        f["fix"].as_str().is_some_and(|d| d.contains("gitea:")),
        "{f}"
    );
    let f = repository(&doctor(&["--repo", "gitlab:group/sub/app"], &env).await);
    assert_eq!(f["status"], "ok", "{f}");
    gitlab.assert_clean();
}

#[tokio::test]
async fn doctor_repo_refuses_what_is_not_a_repository() {
    for bad in ["nope", "svn:team/app", "team/../app"] {
        let out = doctor(&["--repo", bad], &[]).await;
        assert_eq!(out.status.code(), Some(2), "{bad}: a usage error");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--repo"), "{bad}: {err}");
    }
}
