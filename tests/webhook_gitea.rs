//! `POST /webhooks/gitea` (Gitea and Forgejo) against a running `serve`, a fake Gitea that
//! checks every call against Gitea's API description, and the fake engine: the answer table
//! (401 / 413 / 400 / 200 ignored / 202 / 200 duplicate, 404 when Gitea is not configured),
//! secret rotation, Forgejo's headers, form bodies, and the worker's reports in Gitea's terms
//! (status pending then success with the URL, the sticky comment, reactions), with the same
//! policy as GitHub's (writers only, forks gated, previewd's own comments ignored).

mod support;

use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use previewd::config::Config;
use previewd::serve::{ServeError, ServeOptions, bind};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use support::engine::{Call, FakeEngine};
use support::fake_gitea::{BOT, FakeGitea, GITEA_TOKEN, gitea_pull};
use support::{GITEA_OLD_SECRET, GITEA_SECRET, Harness, eventually, fixtures_dir};

const SHA: &str = "2eba238e33607c1fa49253182e9fff42baafa1eb";
const REPO: &str = "jcitizen/my-repo";

fn fixture(name: &str) -> Vec<u8> {
    let p = fixtures_dir().join("forge-payloads").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Gitea's signature: the bare lower-case hex HMAC-SHA256 of the payload.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The headers a Gitea 1.2x sends, GitHub's compatibility headers included.
fn gitea_headers(event_type: &str, delivery: &str, sig: &str) -> Vec<(String, String)> {
    let family = previewd::forge::gitea::payload::family(event_type).to_owned();
    [
        ("x-gitea-event", family.as_str()),
        ("x-gitea-event-type", event_type),
        ("x-gitea-delivery", delivery),
        ("x-gitea-signature", sig),
        ("x-github-event", family.as_str()),
        ("x-github-delivery", delivery),
        ("x-hub-signature-256", &format!("sha256={sig}")),
        ("content-type", "application/json"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn post(h: &Harness, headers: &[(String, String)], body: &[u8]) -> (u16, Value) {
    let hs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    h.post_to("gitea", &hs, body).await
}

/// Posts a Gitea delivery signed with the current secret under a fresh id.
async fn deliver(h: &Harness, event_type: &str, body: &[u8]) -> (u16, Value) {
    let id = h.delivery_id();
    post(
        h,
        &gitea_headers(event_type, &id, &sign(GITEA_SECRET, body)),
        body,
    )
    .await
}

/// A `pull_request` payload of our own, from Gitea's documented shape (the opened fixture's
/// objects): `action` on PR 1 of `REPO` with `labels`, sent by `sender`.
fn pr_payload(action: &str, labels: &[&str], sender: &str, fork: bool) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("gitea/pull_request.opened.json")).unwrap();
    v["action"] = json!(action);
    v["pull_request"] = gitea_pull(REPO, 1, "feature", SHA, labels, true, fork);
    v["sender"]["login"] = json!(sender);
    serde_json::to_vec(&v).unwrap()
}

fn comment_payload(id: u64, body: &str, author: &str, is_pull: bool) -> Vec<u8> {
    let mut v: Value =
        serde_json::from_slice(&fixture("gitea/issue_comment.created.json")).unwrap();
    v["repository"]["full_name"] = json!(REPO);
    v["issue"]["number"] = json!(1);
    v["comment"]["id"] = json!(id);
    v["comment"]["body"] = json!(body);
    v["comment"]["user"]["login"] = json!(author);
    v["sender"]["login"] = json!(author);
    v["is_pull"] = json!(is_pull);
    if !is_pull {
        v["issue"]["pull_request"] = Value::Null;
    }
    serde_json::to_vec(&v).unwrap()
}

fn gitea(h: &Harness) -> &FakeGitea {
    h.gitea.as_ref().expect("a fake Gitea")
}

#[tokio::test]
async fn the_answer_table_holds_for_gitea() {
    let h = Harness::start_gitea(FakeEngine::auto(), &[]).await;
    let body = fixture("gitea/pull_request.opened.json");
    let id = h.delivery_id();
    let good = sign(GITEA_SECRET, &body);
    let with_sig = |sig: &str| gitea_headers("pull_request", &id, sig);
    // Missing, empty, wrong, not hex: 401, unread.
    let mut missing = with_sig(&good);
    missing.retain(|(k, _)| k != "x-gitea-signature");
    assert_eq!(post(&h, &missing, &body).await.0, 401, "no signature");
    assert_eq!(
        post(&h, &with_sig(""), &body).await.0,
        401,
        "empty signature"
    );
    let wrong = sign("another secret", &body);
    assert_eq!(post(&h, &with_sig(&wrong), &body).await.0, 401);
    assert_eq!(post(&h, &with_sig("zz-not-hex"), &body).await.0, 401);
    // GitHub's headers alone (a GitHub hook pointed here): 400 with the route to use.
    let gh = [
        ("x-github-event".to_string(), "pull_request".to_string()),
        ("x-github-delivery".into(), id.clone()),
        ("x-hub-signature-256".into(), format!("sha256={good}")),
    ];
    let (status, answer) = post(&h, &gh, &body).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("/webhooks/github"),
        "{answer}"
    );
    // Authentic but not JSON: 400.
    let junk = b"{not json";
    let (status, _) = post(
        &h,
        &gitea_headers("pull_request", &h.delivery_id(), &sign(GITEA_SECRET, junk)),
        junk,
    )
    .await;
    assert_eq!(status, 400);
    // Over 25 MiB: 413.
    let mut big = body.clone();
    big.resize(25 * 1024 * 1024 + 1, b' ');
    let (status, _) = deliver(&h, "pull_request", &big).await;
    assert_eq!(status, 413);
    // The fixture carries no trigger label: ignored, with the reason.
    let (status, answer) = post(&h, &with_sig(&good), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["ignored"]
            .as_str()
            .unwrap()
            .contains("carries no trigger label"),
        "{answer}"
    );
    // The same delivery id again: a duplicate.
    let (status, answer) = post(&h, &with_sig(&good), &body).await;
    assert_eq!((status, answer), (200, json!({"duplicate": true})));
    // The previous secret still works (rotation), and a new id is a new delivery.
    let (status, _) = post(
        &h,
        &gitea_headers(
            "pull_request",
            &h.delivery_id(),
            &sign(GITEA_OLD_SECRET, &body),
        ),
        &body,
    )
    .await;
    assert_eq!(status, 200);
    // An event previewd does not read: ignored.
    let (status, answer) = deliver(&h, "pull_request_review_approved", &body).await;
    assert_eq!(status, 200);
    assert!(answer["ignored"].is_string(), "{answer}");
    // /deliveries names the forge.
    let (_, text) = h.get(h.admin, "/deliveries").await;
    let list: Value = serde_json::from_str(&text).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|d| d["forge"] == "gitea"),
        "{list}"
    );
    h.assert_nothing_queued(10).await;
    h.stop().await;
}

#[tokio::test]
async fn forgejo_headers_and_form_bodies_are_read() {
    let h = Harness::start_gitea(
        FakeEngine::auto(),
        &[("PREVIEWD_TRIGGERS_LABELS", "Kind/Enhancement")],
    )
    .await;
    let g = gitea(&h);
    // Forgejo's own capture: a label set that holds the trigger label, on a PR with no preview.
    let body = fixture("forgejo/pull_request.label_updated.json");
    let v: Value = serde_json::from_slice(&body).unwrap();
    g.set_pull(v["pull_request"].clone());
    g.set_permission("6543", "write");
    let sig = sign(GITEA_SECRET, &body);
    let id = h.delivery_id();
    let headers: Vec<(String, String)> = [
        ("x-forgejo-event", "pull_request"),
        ("x-forgejo-event-type", "pull_request_label"),
        ("x-forgejo-delivery", id.as_str()),
        ("x-forgejo-signature", sig.as_str()),
        ("content-type", "application/json"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (status, answer) = post(&h, &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["queued"], "deploy");
    // A form body: Gitea signs the `payload` field, not the form.
    let payload = fixture("gitea/pull_request.synchronized.json");
    let form = format!(
        "payload={}",
        url_encode(std::str::from_utf8(&payload).unwrap())
    );
    let mut headers = gitea_headers(
        "pull_request_sync",
        &h.delivery_id(),
        &sign(GITEA_SECRET, &payload),
    );
    headers.retain(|(k, _)| k != "content-type");
    headers.push((
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    let (status, answer) = post(&h, &headers, form.as_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["ignored"].is_string(), "{answer}");
    eventually("the label's deploy", || {
        h.engine.calls().iter().any(|c| matches!(c, Call::Deployed { key, .. } if key.forge == "gitea" && key.repo == "test_it/test_ci_thing"))
    })
    .await;
    g.assert_clean();
    h.stop().await;
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn routes_of_forges_not_configured_answer_404_unread() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let body = fixture("gitea/pull_request.opened.json");
    let headers = gitea_headers("pull_request", "d1", &sign(GITEA_SECRET, &body));
    let (status, _) = post(&h, &headers, &body).await;
    assert_eq!(status, 404);
    let (status, _) = h
        .post_to("gitlab", &[("x-gitlab-event", "Merge Request Hook")], b"{}")
        .await;
    assert_eq!(status, 404);
    h.stop().await;
}

#[tokio::test]
async fn a_labelled_pr_is_reported_in_giteas_terms() {
    let h = Harness::start_gitea(FakeEngine::auto(), &[]).await;
    let g = gitea(&h);
    g.set_pull(gitea_pull(
        REPO,
        1,
        "feature",
        SHA,
        &["preview"],
        true,
        false,
    ));
    g.set_permission("jcitizen", "write");
    let (status, answer) = deliver(
        &h,
        "pull_request_label",
        &pr_payload("label_updated", &["preview"], "jcitizen", false),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    eventually("success status", || {
        g.statuses_of(SHA).iter().any(|s| s["state"] == "success")
    })
    .await;
    let statuses = g.statuses_of(SHA);
    assert_eq!(statuses[0]["state"], "pending");
    assert_eq!(statuses[0]["context"], "previewd");
    let ok = statuses.last().unwrap();
    assert!(
        ok["target_url"].as_str().unwrap().starts_with("http://"),
        "{ok}"
    );
    eventually("the sticky comment says ready", || {
        g.sticky(REPO, 1)
            .is_some_and(|c| c.body.contains(ok["target_url"].as_str().unwrap()))
    })
    .await;
    let deployed: Vec<_> = h
        .engine
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Deployed { .. }))
        .collect();
    assert!(
        matches!(&deployed[..], [Call::Deployed { key, .. }] if key.forge == "gitea" && key.repo == REPO)
    );
    // Another label added beside the trigger label, the preview there: nothing to do.
    let (status, answer) = deliver(
        &h,
        "pull_request_label",
        &pr_payload("label_updated", &["preview", "bug-x"], "jcitizen", false),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // The label set without the trigger label, with the preview there: a stop.
    g.set_pull(gitea_pull(REPO, 1, "feature", SHA, &[], true, false));
    let (status, answer) = deliver(
        &h,
        "pull_request_label",
        &pr_payload("label_cleared", &[], "jcitizen", false),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["queued"], "stop");
    eventually("removed", || {
        g.sticky(REPO, 1)
            .is_some_and(|c| c.body.contains("stopped and its containers removed"))
    })
    .await;
    // Another label changing on a PR without a preview: nothing.
    let (status, answer) = deliver(
        &h,
        "pull_request_label",
        &pr_payload("label_updated", &["bug-x"], "jcitizen", false),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    g.assert_clean();
    assert!(!g.ops().contains(&"unknown".to_string()));
    h.stop().await;
}

#[tokio::test]
async fn commands_follow_the_same_policy_as_on_github() {
    let h = Harness::start_gitea(FakeEngine::auto(), &[]).await;
    let g = gitea(&h);
    g.set_pull(gitea_pull(REPO, 1, "feature", SHA, &[], true, false));
    g.set_permission("reader", "read");
    g.set_permission("writer", "write");
    // previewd's own comment (its token's user, from GET /user): never a command.
    let (status, answer) = deliver(
        &h,
        "issue_comment",
        &comment_payload(1, "/preview", BOT, true),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["ignored"].as_str().unwrap().contains("bot"),
        "{answer}"
    );
    // A comment on an issue, not a PR.
    let (_, answer) = deliver(
        &h,
        "issue_comment",
        &comment_payload(2, "/preview", "writer", false),
    )
    .await;
    assert!(
        answer["ignored"]
            .as_str()
            .unwrap()
            .contains("not a pull request"),
        "{answer}"
    );
    // A reader's command: refused with a reply and a confused reaction, nothing deployed.
    let (status, _) = deliver(
        &h,
        "issue_comment",
        &comment_payload(3, "/preview", "reader", true),
    )
    .await;
    assert_eq!(status, 202);
    eventually("the refusal", || {
        g.lock()
            .comments
            .iter()
            .any(|c| c.body.contains("`reader` has `read` permission"))
    })
    .await;
    eventually("confused", || {
        g.lock().reactions.contains(&(3, "confused".into()))
    })
    .await;
    assert!(h.engine.calls().is_empty(), "{:?}", h.engine.calls());
    // A fork PR opened with the label: not built on its own.
    let (status, answer) = deliver(
        &h,
        "pull_request",
        &pr_payload("opened", &["preview"], "writer", true),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        answer["ignored"].as_str().unwrap().contains("fork"),
        "{answer}"
    );
    // A writer's command: eyes, deployed, rocket.
    let (status, _) = deliver(
        &h,
        "pull_request_comment",
        &comment_payload(4, "/preview", "writer", true),
    )
    .await;
    assert_eq!(status, 202);
    eventually("rocket", || {
        g.lock().reactions.contains(&(4, "rocket".into()))
    })
    .await;
    assert!(g.lock().reactions.contains(&(4, "eyes".into())));
    assert!(
        h.engine
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Deployed { key, .. } if key.forge == "gitea"))
    );
    g.assert_clean();
    h.stop().await;
}

fn serve_env(gitea: &FakeGitea, token: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![
        ("PREVIEWD_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("PREVIEWD_ADMIN_LISTEN".into(), "127.0.0.1:0".into()),
        (
            "PREVIEWD_DATA_DIR".into(),
            "/tmp/previewd-webhook-tests".into(),
        ),
        ("PREVIEWD_GITEA_URL".into(), gitea.url()),
    ];
    if let Some(t) = token {
        env.push(("PREVIEWD_GITEA_TOKEN".into(), t.into()));
    }
    env
}

async fn bind_with(env: &[(String, String)]) -> Result<(), ServeError> {
    // A data dir of its own: a server that binds makes its gateway sockets there.
    let data = tempfile::tempdir().expect("data dir");
    let mut env = env.to_vec();
    env.retain(|(k, _)| k != "PREVIEWD_DATA_DIR");
    env.push((
        "PREVIEWD_DATA_DIR".into(),
        data.path().display().to_string(),
    ));
    let config = Config::from_parts(None, Path::new("previewd.toml"), &env).expect("config");
    bind(
        config,
        Arc::new(FakeEngine::auto()),
        ServeOptions {
            retry: support::fast_retry(),
            ..Default::default()
        },
        CancellationToken::new(),
    )
    .await
    .map(drop)
}

#[tokio::test]
async fn serve_says_which_forge_lacks_a_secret_or_a_good_token() {
    let g = FakeGitea::start().await;
    let err = bind_with(&serve_env(&g, Some(GITEA_TOKEN)))
        .await
        .expect_err("no secret");
    assert!(
        matches!(err, ServeError::ForgeWithoutSecret { forge: "Gitea", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("gitea.webhook_secret"), "{err}");
    let mut env = serve_env(&g, None);
    env.push(("PREVIEWD_GITEA_WEBHOOK_SECRET".into(), "s".into()));
    let err = bind_with(&env).await.expect_err("no token");
    assert!(err.to_string().contains("gitea.token is not set"), "{err}");
    let mut env = serve_env(&g, Some("wrong"));
    env.push(("PREVIEWD_GITEA_WEBHOOK_SECRET".into(), "s".into()));
    let err = bind_with(&env).await.expect_err("a wrong token");
    assert!(err.to_string().contains("401"), "{err}");
    // The good token: serve starts with Gitea alone, no GitHub.
    let mut env = serve_env(&g, Some(GITEA_TOKEN));
    env.push(("PREVIEWD_GITEA_WEBHOOK_SECRET".into(), "s".into()));
    bind_with(&env).await.expect("starts");
    assert!(g.ops().contains(&"userGetCurrent".to_string()));
    g.assert_clean();
}
