//! The GitLab REST client against the fake GitLab, which checks every request against GitLab's
//! API description: what each call sends, how it reads GitLab's answers, and GitLab's own
//! rules (a repeated commit status state, an environment deleted only once stopped, an award
//! given twice, a missing member or branch).

mod support;

use std::time::Duration;

use previewd::config::ForgeConfig;
use previewd::forge::gitlab::{EnvironmentState, GitLab, ProjectRef, StatusState};
use previewd::forge::retry::RetryPolicy;
use previewd::forge::{ForgeError, Repo};
use previewd::ids::CommitSha;
use secrecy::SecretString;
use serde_json::{Value, json};
use support::fake_gitlab::{FakeGitLab, GITLAB_TOKEN};

const SHA: &str = "c136499ec574e1034b24c5d306de9acda3005367";

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        budget: Duration::from_secs(2),
    }
}

fn client(fake: &FakeGitLab, token: &str) -> GitLab {
    let cfg = ForgeConfig {
        url: fake.url(),
        token: Some(SecretString::from(token.to_owned())),
        webhook_secrets: Vec::new(),
        git_url: fake.url(),
        status_context: "previewd".into(),
        web_url: String::new(),
        oauth: None,
    };
    GitLab::new(&cfg, quick()).expect("client")
}

fn repo() -> Repo {
    Repo::parse("acme/web/shop").expect("repo")
}

fn mr(iid: u64, branch: &str, labels: &[&str], source: u64, target: u64) -> Value {
    json!({
        "id": 900 + iid, "iid": iid, "project_id": target, "title": "t", "state": "opened",
        "source_branch": branch, "target_branch": "main", "source_project_id": source,
        "target_project_id": target, "sha": SHA, "labels": labels, "draft": false,
        "web_url": "http://gitlab.example/acme/web/shop/-/merge_requests/1",
    })
}

#[tokio::test]
async fn merge_requests_are_read_back_with_their_fork_source() {
    let fake = FakeGitLab::start().await;
    let gl = client(&fake, GITLAB_TOKEN);
    let repo = repo();
    fake.set_merge_request("acme/web/shop", mr(3, "feature/x", &["preview"], 14, 14));
    fake.set_merge_request("acme/web/shop", mr(4, "patch-1", &[], 99, 14));
    fake.set_project(99, "someone/shop");

    let pr = gl.merge_request(&repo, 3).await.expect("read back");
    assert_eq!(pr.number, 3);
    assert!(pr.open && !pr.fork);
    assert_eq!(pr.head_branch, "feature/x");
    assert_eq!(pr.head_repo.as_ref(), Some(&repo));
    assert_eq!(pr.labels, vec!["preview".to_owned()]);

    let fork = gl.merge_request(&repo, 4).await.expect("fork read back");
    assert!(fork.fork);
    assert_eq!(
        fork.head_repo.map(|r| r.full_name()).as_deref(),
        Some("someone/shop")
    );
    let open = gl.open_merge_requests(&repo).await.expect("list");
    assert_eq!(open.len(), 2);
    assert!(
        gl.merge_request(&repo, 5)
            .await
            .expect_err("404")
            .is_not_found()
    );

    // The project path is one URL-encoded segment.
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths.contains(&"/api/v4/projects/acme%2Fweb%2Fshop/merge_requests/3".to_owned()),
        "{paths:?}"
    );
    fake.assert_clean();
}

#[tokio::test]
async fn access_levels_branches_and_the_token_user() {
    let fake = FakeGitLab::start().await;
    let gl = client(&fake, GITLAB_TOKEN);
    let repo = repo();
    fake.set_member("acme/web/shop", 5, 30);
    fake.set_branch("acme/web/shop", "feature/a b");
    assert_eq!(gl.access_level(&repo, 5).await.expect("member"), Some(30));
    assert_eq!(gl.access_level(&repo, 6).await.expect("no member"), None);
    assert!(gl.has_branch(&repo, "feature/a b").await.expect("branch"));
    assert!(!gl.has_branch(&repo, "gone").await.expect("no branch"));
    let me = gl.current_user().await.expect("user");
    assert_eq!((me.id, me.username.as_str()), (77, "previewd-bot"));
    fake.assert_clean();

    // A wrong token is GitLab's 401, named, never retried, never echoed.
    let bad = client(&fake, "glpat-wrong");
    let e = bad.current_user().await.expect_err("401");
    assert!(matches!(e, ForgeError::Status { status: 401, .. }), "{e}");
    assert!(!e.to_string().contains("glpat-wrong"));
}

#[tokio::test]
async fn a_repeated_status_state_is_not_an_error_and_forks_get_theirs() {
    let fake = FakeGitLab::start().await;
    let gl = client(&fake, GITLAB_TOKEN);
    let repo = repo();
    let sha = CommitSha::parse(SHA).expect("sha");
    let target = ProjectRef::Path(&repo);
    gl.set_status(target.clone(), &sha, StatusState::Running, "building", None)
        .await
        .expect("running");
    // GitLab refuses running -> running with 400 "Cannot transition status": done already.
    gl.set_status(target.clone(), &sha, StatusState::Running, "building", None)
        .await
        .expect("running again");
    gl.set_status(
        target,
        &sha,
        StatusState::Success,
        "ready",
        Some("http://abc.preview.test"),
    )
    .await
    .expect("success");
    // A fork's merge request: the status goes on the source project, by number.
    gl.set_status(ProjectRef::Id(99), &sha, StatusState::Failed, "no", None)
        .await
        .expect("fork");
    let st = fake.lock();
    let states: Vec<(String, String)> = st
        .statuses
        .iter()
        .map(|(p, _, b)| (p.clone(), b["state"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(
        states,
        [
            ("acme/web/shop".to_owned(), "running".to_owned()),
            ("acme/web/shop".into(), "success".into()),
            ("99".into(), "failed".into()),
        ]
    );
    let ok = &st.statuses[1].2;
    assert_eq!(ok["name"], "previewd");
    assert_eq!(ok["target_url"], "http://abc.preview.test");
    drop(st);
    fake.assert_clean();
}

#[tokio::test]
async fn an_environment_is_created_updated_then_stopped_and_deleted() {
    let fake = FakeGitLab::start().await;
    let gl = client(&fake, GITLAB_TOKEN);
    let repo = repo();
    let name = "preview/feature/x";
    let env = gl
        .upsert_environment(&repo, name, Some("http://one.preview.test"))
        .await
        .expect("create");
    assert_eq!(env.state, EnvironmentState::Available);
    let again = gl
        .upsert_environment(&repo, name, Some("http://two.preview.test"))
        .await
        .expect("update");
    assert_eq!(again.id, env.id, "the same environment, not a second one");
    assert_eq!(
        again.external_url.as_deref(),
        Some("http://two.preview.test")
    );
    let sha = CommitSha::parse(SHA).expect("sha");
    let dep = gl
        .create_deployment(&repo, name, &sha, "feature/x")
        .await
        .expect("deployment");
    gl.update_deployment(&repo, dep, StatusState::Success)
        .await
        .expect("deployment success");

    gl.remove_environment(&repo, name).await.expect("remove");
    {
        let st = fake.lock();
        let e = st
            .environments
            .iter()
            .find(|e| e.id == env.id)
            .expect("env");
        assert_eq!(e.state, "stopped");
        assert!(e.deleted);
    }
    // Removing what is gone is done.
    gl.remove_environment(&repo, name)
        .await
        .expect("gone already");
    let ops = fake.ops();
    let stop = ops.iter().position(|o| o.ends_with("EnvironmentIdStop"));
    let delete = ops
        .iter()
        .position(|o| o.starts_with("deleteApiV4ProjectsIdEnvironments"));
    assert!(stop < delete && stop.is_some(), "{ops:?}");
    fake.assert_clean();
}

#[tokio::test]
async fn the_sticky_note_is_found_and_edited_and_awards_are_idempotent() {
    let fake = FakeGitLab::start().await;
    let gl = client(&fake, GITLAB_TOKEN);
    let repo = repo();
    for i in 0..130 {
        gl.create_note(&repo, 3, &format!("chatter {i}"))
            .await
            .expect("note");
    }
    gl.create_note(&repo, 3, "<!-- marker --> first")
        .await
        .expect("sticky");
    let (id, body) = gl
        .find_note(&repo, 3, "<!-- marker -->")
        .await
        .expect("find")
        .expect("found on the second page");
    assert_eq!(body, "<!-- marker --> first");
    gl.edit_note(&repo, 3, id, "<!-- marker --> second")
        .await
        .expect("edit");
    assert_eq!(
        gl.find_note(&repo, 3, "<!-- marker -->")
            .await
            .expect("find")
            .map(|f| f.1),
        Some("<!-- marker --> second".to_owned())
    );
    assert_eq!(
        gl.find_note(&repo, 4, "<!-- marker -->")
            .await
            .expect("none"),
        None
    );
    gl.award_emoji(&repo, 3, id, "eyes").await.expect("award");
    gl.award_emoji(&repo, 3, id, "eyes")
        .await
        .expect("awarded already");
    assert_eq!(fake.lock().awards.len(), 1);
    fake.assert_clean();
}

#[tokio::test]
async fn transient_failures_are_retried_and_refusals_are_not() {
    let fake = FakeGitLab::start().await;
    let gl = client(&fake, GITLAB_TOKEN);
    let repo = repo();
    fake.set_member("acme/web/shop", 5, 40);
    fake.fault("getApiV4ProjectsIdMembersAllUserId", 502);
    fake.fault("getApiV4ProjectsIdMembersAllUserId", 503);
    assert_eq!(
        gl.access_level(&repo, 5).await.expect("third try"),
        Some(40)
    );
    fake.fault("getApiV4ProjectsIdMembersAllUserId", 403);
    let e = gl.access_level(&repo, 5).await.expect_err("403");
    assert!(matches!(e, ForgeError::Status { status: 403, .. }), "{e}");
    fake.go_down();
    assert!(gl.current_user().await.is_err());
    fake.recover();
    assert!(gl.current_user().await.is_ok());
    fake.assert_clean();
}
