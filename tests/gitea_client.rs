//! The Gitea client's calls against the fake Gitea (every request and answer checked against
//! Gitea's API description): the token's user, pull requests one by one and the open ones
//! over Gitea's pages of 50, permissions by Gitea's levels, a branch that exists or not, the
//! sticky comment found again and edited in place, and a refused token that never leaks.

mod support;

use previewd::config::ForgeConfig;
use previewd::forge::gitea::Gitea;
use previewd::forge::{Forge, Permission, Repo};
use secrecy::SecretString;

use support::fake_gitea::{BOT, FakeGitea, GITEA_TOKEN, gitea_pull};
use support::fast_retry;

const SHA: &str = "2eba238e33607c1fa49253182e9fff42baafa1eb";

fn client(g: &FakeGitea, token: &str) -> Gitea {
    let cfg = ForgeConfig {
        url: g.url(),
        token: Some(SecretString::from(token.to_owned())),
        webhook_secrets: Vec::new(),
        git_url: g.url(),
        status_context: "previewd".into(),
        web_url: String::new(),
        oauth: None,
    };
    Gitea::new(&cfg, fast_retry()).expect("client")
}

#[tokio::test]
async fn the_client_speaks_giteas_api() {
    let g = FakeGitea::start().await;
    let gitea = client(&g, GITEA_TOKEN);
    let repo = Repo::parse("team/shop").unwrap();
    assert_eq!(gitea.self_user().await.unwrap().as_deref(), Some(BOT));

    // 60 open PRs and a closed one: the open ones come over two pages, the closed one not.
    for n in 1..=60 {
        g.set_pull(gitea_pull(
            "team/shop",
            n,
            &format!("b{n}"),
            SHA,
            &["preview"],
            true,
            false,
        ));
    }
    g.set_pull(gitea_pull("team/shop", 61, "gone", SHA, &[], false, false));
    let open = gitea.open_pull_requests(&repo).await.unwrap();
    assert_eq!(open.len(), 60);
    assert!(open.iter().all(|p| p.open && p.labels == ["preview"]));
    let pr = gitea.pull_request(&repo, 61).await.unwrap();
    assert!(!pr.open && pr.head_branch == "gone");
    assert!(
        gitea
            .pull_request(&repo, 99)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Gitea's levels: owner and admin are admins, write may trigger, read may not.
    for (level, expected) in [
        ("owner", Permission::Admin),
        ("admin", Permission::Admin),
        ("write", Permission::Write),
        ("read", Permission::Read),
        ("none", Permission::None),
    ] {
        g.set_permission(level, level);
        assert_eq!(
            gitea.permission(&repo, level, None).await.unwrap(),
            expected,
            "{level}"
        );
    }
    assert_eq!(
        gitea.permission(&repo, "../x", None).await.unwrap(),
        Permission::None,
        "an unsafe login never reaches a path"
    );

    // A branch that exists, one that does not, one with a slash (one path segment).
    g.lock().branches.insert("team/phase-1".into());
    assert_eq!(
        gitea.branch_exists(&repo, "team/phase-1").await.unwrap(),
        Some(true)
    );
    assert_eq!(
        gitea.branch_exists(&repo, "team/phase-2").await.unwrap(),
        Some(false)
    );

    // The sticky comment: created once, found again by its marker, edited in place.
    let marker = "<!-- previewd:team/shop#1 -->";
    gitea
        .upsert_comment(&repo, 1, marker, &format!("{marker}\nfirst"))
        .await
        .unwrap();
    gitea
        .upsert_comment(&repo, 1, marker, &format!("{marker}\nsecond"))
        .await
        .unwrap();
    let c = g.sticky("team/shop", 1).expect("sticky");
    assert!(c.body.ends_with("second") && c.edits == 1, "{c:?}");
    assert_eq!(g.lock().comments.len(), 1);
    assert!(
        gitea
            .find_comment(&repo, 1, marker)
            .await
            .unwrap()
            .is_some()
    );
    g.assert_clean();
}

#[tokio::test]
async fn a_refused_token_is_an_error_without_the_token() {
    let g = FakeGitea::start().await;
    let gitea = client(&g, "not-the-token-s3cr3t");
    let err = gitea.self_user().await.unwrap_err();
    assert!(
        matches!(err, previewd::forge::ForgeError::Status { status: 401, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}
