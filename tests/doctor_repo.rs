//! `previewd doctor`: each forge's token (its user) and, with `--repo`, whether it sees the
//! repository and may write there (statuses, comments), checked against the fake GitHub, Gitea
//! and GitLab (every request checked against the forge's API description), by running the
//! binary.

mod support;

use std::process::Output;

use serde_json::Value;
use support::fake_gitea::{BOT, FakeGitea, GITEA_TOKEN};
use support::fake_github::FakeGitHub;
use support::fake_github_ops::TOKEN_USER;
use support::fake_gitlab::{FakeGitLab, GITLAB_TOKEN};

/// Runs `previewd doctor --json ARGS` off the runtime (the fakes answer on it) with only the
/// given PREVIEWD_* variables.
async fn doctor(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    doctor_as_is(&with_json, env).await
}

/// `previewd doctor ARGS`, as `doctor` runs it, without `--json`.
async fn doctor_as_is(args: &[&str], env: &[(&str, String)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_previewd"));
    cmd.arg("doctor").args(args);
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
    finding(out, "repository")
}

/// Every finding of doctor's JSON answer.
fn findings(out: &Output) -> Vec<Value> {
    let all: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    all.as_array().cloned().unwrap_or_default()
}

/// The finding `check` of doctor's JSON answer.
fn finding(out: &Output, check: &str) -> Value {
    let all = findings(out);
    all.iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding: {all:?}"))
        .clone()
}

/// The checks other than `except` that failed.
fn other_failures(out: &Output, except: &str) -> Vec<Value> {
    findings(out)
        .into_iter()
        .filter(|f| f["status"] == "fail" && f["check"] != except)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_github_token_its_user_and_its_permission() {
    let github = FakeGitHub::start().await;
    let token = "ghp_doctor_secret_never_printed";
    let env = vec![
        ("PREVIEWD_GITHUB_API_URL", github.url()),
        ("PREVIEWD_GITHUB_TOKEN", token.to_owned()),
        ("PREVIEWD_GITHUB_WEBHOOK_SECRET", "s3cret".to_owned()),
    ];

    // A good token: the user it acts as; no repository named, and the line says so.
    let good = doctor(&[], &env).await;
    let f = finding(&good, "forge token");
    assert_eq!(f["status"], "ok", "{f}");
    let detail = f["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("GitHub: acts as {TOKEN_USER}")),
        "{f}"
    );
    assert!(detail.contains("no repository given"), "{f}");
    let others = other_failures(&good, "forge token");
    let expected = if others.is_empty() { 0 } else { 1 };
    assert_eq!(good.status.code(), Some(expected), "{others:?}");
    let asked = github.requests();
    let user = asked
        .iter()
        .find(|r| r.op == "users/get-authenticated")
        .unwrap_or_else(|| panic!("GET /user was not asked: {:?}", github.ops()));
    assert_eq!(
        user.authorization.as_deref(),
        Some(&*format!("Bearer {token}"))
    );

    // A repository: the token's user's permission there.
    github.set_permission(TOKEN_USER, "write");
    let f = repository(&doctor(&["--repo", "team/app"], &env).await);
    assert_eq!(f["status"], "ok", "{f}");
    assert!(
        f["detail"]
            .as_str()
            .is_some_and(|d| d.contains("may write (write)")),
        "{f}"
    );
    github.set_permission(TOKEN_USER, "read");
    let f = repository(&doctor(&["--repo", "github:team/app"], &env).await);
    assert_eq!(f["status"], "fail", "{f}");
    assert!(
        f["detail"].as_str().is_some_and(|d| d.contains("read")),
        "{f}"
    );

    // The token revoked: GitHub answers 401, a FAIL with its fix, and doctor exits 1.
    github.revoke(token);
    let revoked = doctor(&[], &env).await;
    let f = finding(&revoked, "forge token");
    assert_eq!(f["status"], "fail", "{f}");
    assert!(
        f["detail"].as_str().is_some_and(|d| d.contains("401")),
        "{f}"
    );
    assert!(
        f["fix"]
            .as_str()
            .is_some_and(|d| d.contains("[github] token")),
        "{f}"
    );
    assert_eq!(revoked.status.code(), Some(1));
    assert_eq!(other_failures(&revoked, "forge token"), others);
    // The token is never printed, in JSON or as text.
    let text = doctor_as_is(&["--repo", "team/app"], &env).await;
    assert_eq!(text.status.code(), Some(1));
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(shown.contains("FAIL  forge token"), "{shown}");
    for out in [&good, &revoked, &text] {
        for stream in [&out.stdout, &out.stderr] {
            let s = String::from_utf8_lossy(stream);
            assert!(!s.contains(token), "the token was printed:\n{s}");
        }
    }
    github.assert_clean();
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
