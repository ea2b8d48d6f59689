//! GitHub App authentication against the fake GitHub, which verifies every JWT with the
//! test's public key and accepts only installation tokens it handed out and that have not
//! expired: the token is got through the JWT, cached per installation, refreshed before it
//! expires (tokens with a short life prove it), replaced when revoked, shared with git
//! fetches, and never put in an error.

mod support;

use std::path::Path;
use std::time::Duration;

use previewd::config::Config;
use previewd::forge::github::GitHub;
use previewd::forge::github::auth::Credentials;
use previewd::forge::{CommitState, Forge, Repo};
use previewd::ids::CommitSha;
use secrecy::ExposeSecret;
use support::engine::FakeEngine;
use support::fake_app::{APP_ID, TestKey, app_key, other_key, write_key};
use support::fake_github::FakeGitHub;
use support::{Harness, TOKEN, eventually, fast_retry, payload, test_env};
use tempfile::TempDir;

const SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

fn repo() -> Repo {
    Repo::parse("Codertocat/Hello-World").expect("repo")
}

fn sha() -> CommitSha {
    CommitSha::parse(SHA).expect("sha")
}

fn app_env(key_path: &str) -> Vec<(String, String)> {
    vec![
        ("PREVIEWD_GITHUB_APP_ID".into(), APP_ID.to_string()),
        ("PREVIEWD_GITHUB_PRIVATE_KEY_PATH".into(), key_path.into()),
    ]
}

/// A GitHub client configured as the App, signing with `key`, against a fresh fake.
async fn direct(key: &TestKey) -> (FakeGitHub, GitHub, TempDir) {
    let github = FakeGitHub::start().await;
    github.enable_app(&app_key().public);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_key(dir.path(), key);
    let extra = app_env(&path);
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (&**k, &**v)).collect();
    let env = test_env(&github.url(), &extra);
    let config = Config::from_parts(None, Path::new("previewd.toml"), &env).expect("config");
    let forge = GitHub::with_policy(&config.github, fast_retry()).expect("client");
    (github, forge, dir)
}

async fn set_status(forge: &GitHub) -> Result<(), previewd::forge::ForgeError> {
    forge
        .commit_status(&repo(), &sha(), CommitState::Pending, "Building", None)
        .await
}

/// The `Authorization` of each commit-status request, in order.
fn status_auth(github: &FakeGitHub) -> Vec<String> {
    github
        .requests()
        .into_iter()
        .filter(|r| r.op == "repos/create-commit-status")
        .map(|r| r.authorization.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn serve_reports_with_an_installation_token_got_through_a_verified_jwt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_key(dir.path(), app_key());
    let id = APP_ID.to_string();
    let h = Harness::start(
        FakeEngine::auto(),
        &[
            ("PREVIEWD_GITHUB_APP_ID", &id),
            ("PREVIEWD_GITHUB_PRIVATE_KEY_PATH", &path),
        ],
    )
    .await;
    h.github.enable_app(&app_key().public);
    h.seed("pull_request.labeled.json");
    let (status, _) = h
        .post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    assert_eq!(status, 202);
    eventually("success status", || {
        h.github
            .lock()
            .statuses
            .iter()
            .any(|s| s["state"] == "success")
    })
    .await;

    h.github.assert_clean();
    let ops = h.github.ops();
    assert_eq!(ops[0], "apps/get-repo-installation", "{ops:?}");
    assert_eq!(ops[1], "apps/create-installation-access-token", "{ops:?}");
    let issued = h.github.issued();
    assert_eq!(issued.len(), 1, "one token, cached for every call");
    let bearer = format!("Bearer {}", issued[0].token);
    let repo_calls: Vec<_> = h
        .github
        .requests()
        .into_iter()
        .filter(|r| !r.op.starts_with("apps/"))
        .collect();
    assert!(repo_calls.len() >= 5, "{ops:?}");
    for r in &repo_calls {
        assert_eq!(r.authorization.as_deref(), Some(&*bearer), "{}", r.op);
        assert!(!r.body.to_string().contains("ghs_"), "token in {}", r.op);
    }
    assert!(
        h.github.requests().iter().all(|r| !r
            .authorization
            .as_deref()
            .unwrap_or("")
            .contains(TOKEN)),
        "an App never falls back to the token"
    );
    let jwts = h.github.jwts();
    assert!(!jwts.is_empty());
    assert!(jwts.iter().all(|c| c["iss"] == APP_ID));
    h.stop().await;
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire_and_cached_until_then() {
    let (github, forge, _dir) = direct(app_key()).await;

    // Tokens living 4 minutes are inside the 5-minute margin: each call gets a new one.
    github.set_token_ttl(Duration::from_secs(4 * 60));
    set_status(&forge).await.expect("first call");
    set_status(&forge).await.expect("second call");
    assert_eq!(github.issued().len(), 2, "refreshed before it expired");
    assert_eq!(
        status_auth(&github),
        vec!["Bearer ghs_test0001", "Bearer ghs_test0002"]
    );

    // Tokens living an hour are kept: one more token for three calls and a git fetch.
    github.set_token_ttl(Duration::from_secs(3600));
    set_status(&forge).await.expect("third call");
    set_status(&forge).await.expect("fourth call");
    let git = forge
        .credentials()
        .git_token(&repo())
        .await
        .expect("git token")
        .expect("an App has a token");
    assert_eq!(git.expose_secret(), "ghs_test0003");
    set_status(&forge).await.expect("fifth call");
    assert_eq!(github.issued().len(), 3);
    assert_eq!(
        status_auth(&github)[2..],
        ["Bearer ghs_test0003"; 3].map(str::to_owned)
    );
    let lookups = github
        .ops()
        .iter()
        .filter(|o| *o == "apps/get-repo-installation")
        .count();
    assert_eq!(lookups, 1, "the installation of a repository is cached");
    github.assert_clean();
}

#[tokio::test]
async fn a_revoked_token_is_replaced_at_once() {
    let (github, forge, _dir) = direct(app_key()).await;
    set_status(&forge).await.expect("first call");
    github.revoke_tokens();
    set_status(&forge)
        .await
        .expect("second call, with a new token");
    assert_eq!(github.issued().len(), 2);
    assert_eq!(github.lock().statuses.len(), 2);
    let lookups = github
        .ops()
        .iter()
        .filter(|o| *o == "apps/get-repo-installation")
        .count();
    assert_eq!(
        lookups, 2,
        "the installation is looked up again (it may be a new one)"
    );
    github.assert_clean();
}

#[tokio::test]
async fn a_jwt_signed_with_another_key_is_refused_and_nothing_leaks() {
    let (github, forge, _dir) = direct(other_key()).await;
    let err = set_status(&forge)
        .await
        .expect_err("GitHub refuses the JWT");
    let text = format!("{err} {err:?}");
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("eyJ") && !text.contains("ghs_"), "{text}");
    assert!(github.issued().is_empty());
    assert!(github.lock().statuses.is_empty());
    let violations = github.lock().violations.clone();
    assert!(
        violations.iter().any(|v| v.contains("signature")),
        "{violations:?}"
    );
}

#[tokio::test]
async fn a_bad_key_file_is_named_without_its_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("not-a-key.pem");
    std::fs::write(
        &path,
        "-----BEGIN NONSENSE-----\nc2VjcmV0\n-----END NONSENSE-----\n",
    )
    .expect("write");
    let path = path.to_string_lossy().into_owned();
    let env = test_env("http://127.0.0.1:9", &[]);
    let mut env: Vec<(String, String)> = env;
    env.extend(app_env(&path));
    let config = Config::from_parts(None, Path::new("previewd.toml"), &env).expect("config");
    let err = GitHub::from_config(&config.github)
        .err()
        .expect("not an RSA key")
        .to_string();
    assert!(
        err.contains("github.private_key_path") && err.contains(&path),
        "{err}"
    );
    assert!(!err.contains("c2VjcmV0"), "{err}");
}

#[tokio::test]
async fn git_fetches_get_the_configured_token_or_none() {
    let github = FakeGitHub::start().await;
    let load = |extra: &[(&str, &str)]| {
        let env = test_env(&github.url(), extra);
        let config = Config::from_parts(None, Path::new("previewd.toml"), &env).expect("config");
        Credentials::new(&config.github).expect("credentials")
    };
    let token = load(&[]).git_token(&repo()).await.expect("token");
    assert_eq!(token.as_ref().map(|t| t.expose_secret()), Some(TOKEN));
    let none = load(&[("PREVIEWD_GITHUB_TOKEN", "")]);
    assert!(none.git_token(&repo()).await.expect("anonymous").is_none());
    assert!(!format!("{none:?} {:?}", load(&[])).contains(TOKEN));
    assert!(github.requests().is_empty(), "a token needs no call");
}
