//! `POST /webhooks/gitlab` through the real router and a real socket: the answer table (401,
//! 413, 400, 200 ignored with a reason, 202 queued, 200 duplicate, 404 when GitLab is not
//! configured) and the intent each real GitLab payload maps to, every delivery authenticated
//! in the test (the secret token, or a Standard Webhooks signature made here).

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use serde_json::{Value, json};
use sha2::Sha256;
use support::engine::FakeEngine;
use support::fake_gitlab::{FakeGitLab, GITLAB_TOKEN};
use support::{Harness, fixtures_dir, send};

const GL_SECRET: &str = "gitlab-secret-token";
const OLD_SECRET: &str = "gitlab-secret-token-before-rotation";
const SIGNING_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn whsec() -> String {
    format!("whsec_{}", STANDARD.encode(SIGNING_KEY))
}

fn gl_payload(name: &str) -> Value {
    let p = fixtures_dir().join("forge-payloads/gitlab").join(name);
    serde_json::from_slice(&std::fs::read(&p).expect("fixture")).expect("json")
}

fn gl_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join("forge-payloads/gitlab").join(name)).expect("fixture")
}

struct GitLabHarness {
    h: Harness,
    gitlab: FakeGitLab,
}

async fn start() -> GitLabHarness {
    start_with(FakeEngine::auto()).await
}

async fn start_with(engine: FakeEngine) -> GitLabHarness {
    let gitlab = FakeGitLab::start().await;
    let url = gitlab.url();
    let file = format!(
        "[gitlab]\nwebhook_secret = [\"{OLD_SECRET}\", \"{GL_SECRET}\", \"{}\"]\n",
        whsec()
    );
    let h = Harness::start_with_file(
        engine,
        &file,
        &[
            ("PREVIEWD_GITLAB_URL", &url),
            ("PREVIEWD_GITLAB_TOKEN", GITLAB_TOKEN),
            ("PREVIEWD_GITLAB_GIT_URL", "file:///tmp/previewd-test-repos"),
        ],
    )
    .await;
    GitLabHarness { h, gitlab }
}

impl GitLabHarness {
    async fn raw(&self, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        let mut req = hyper::Request::post(format!("http://{}/webhooks/gitlab", self.h.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        let (status, text) = send(req).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Posts `body` as `event` with the secret token and a fresh `Idempotency-Key`.
    async fn post(&self, event: &str, body: &[u8]) -> (u16, Value) {
        let id = self.h.delivery_id();
        self.raw(
            &[
                ("x-gitlab-event", event),
                ("x-gitlab-token", GL_SECRET),
                ("idempotency-key", &id),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }
}

fn sign(id: &str, ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_KEY).expect("key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[tokio::test]
async fn the_route_is_404_until_gitlab_is_configured() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let mut req = hyper::Request::post(format!("http://{}/webhooks/gitlab", h.addr));
    req = req
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-token", GL_SECRET);
    let (status, _) = send(
        req.body(Full::new(Bytes::from_static(b"{}")))
            .expect("request"),
    )
    .await;
    assert_eq!(status, 404);
    h.stop().await;
}

#[tokio::test]
async fn tokens_and_signatures_decide_who_is_gitlab() {
    let g = start().await;
    let body = gl_bytes("push.branch.json");
    let push = [
        ("x-gitlab-event", "Push Hook"),
        ("content-type", "application/json"),
    ];
    let with = |extra: &[(&'static str, String)]| {
        let mut h: Vec<(&str, String)> = push.iter().map(|(k, v)| (*k, v.to_string())).collect();
        h.extend(extra.iter().cloned());
        h
    };
    let post = |headers: Vec<(&'static str, String)>| {
        let g = &g;
        let body = body.clone();
        async move {
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            g.raw(&hs, &body).await
        }
    };
    // No proof, a wrong token: 401 with the reason.
    let (s, b) = post(with(&[("idempotency-key", "k1".into())])).await;
    assert_eq!(s, 401, "{b}");
    assert!(
        b["error"].as_str().unwrap_or("").contains("X-Gitlab-Token"),
        "{b}"
    );
    let (s, _) = post(with(&[
        ("idempotency-key", "k2".into()),
        ("x-gitlab-token", "guess".into()),
    ]))
    .await;
    assert_eq!(s, 401);
    // Either secret of a rotation is taken (the push is to a branch no trigger matches).
    for (key, token) in [("k3", GL_SECRET), ("k4", OLD_SECRET)] {
        let (s, b) = post(with(&[
            ("idempotency-key", key.into()),
            ("x-gitlab-token", token.into()),
        ]))
        .await;
        assert_eq!(s, 200, "{b}");
        assert!(
            b["ignored"]
                .as_str()
                .unwrap_or("")
                .contains("triggers.branches"),
            "{b}"
        );
    }
    // Standard Webhooks: a good signature is taken without a token.
    let ts = now().to_string();
    let (s, b) = post(with(&[
        ("webhook-id", "msg_1".into()),
        ("webhook-timestamp", ts.clone()),
        ("webhook-signature", sign("msg_1", &ts, &body)),
        ("idempotency-key", "msg_1".into()),
    ]))
    .await;
    assert_eq!(s, 200, "{b}");
    // A replay ten minutes late, or a right token beside a wrong signature: 401.
    let old = (now() - 600).to_string();
    let (s, b) = post(with(&[
        ("webhook-id", "msg_2".into()),
        ("webhook-timestamp", old.clone()),
        ("webhook-signature", sign("msg_2", &old, &body)),
        ("idempotency-key", "msg_2".into()),
    ]))
    .await;
    assert_eq!(s, 401, "{b}");
    assert!(
        b["error"].as_str().unwrap_or("").contains("5 minutes"),
        "{b}"
    );
    let (s, _) = post(with(&[
        ("webhook-id", "msg_3".into()),
        ("webhook-timestamp", ts.clone()),
        ("webhook-signature", sign("msg_other", &ts, &body)),
        ("x-gitlab-token", GL_SECRET.into()),
        ("idempotency-key", "msg_3".into()),
    ]))
    .await;
    assert_eq!(s, 401);
    g.h.assert_nothing_queued(7).await;
    g.h.stop().await;
}

#[tokio::test]
async fn the_answer_table() {
    let g = start().await;
    let body = gl_bytes("push.branch.json");
    // Another forge's delivery on GitLab's route: 400, named.
    let (s, b) = g
        .raw(
            &[
                ("x-github-event", "push"),
                ("x-github-delivery", "d1"),
                ("x-hub-signature-256", "sha256=00"),
            ],
            &body,
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap_or("")
            .contains("/webhooks/github"),
        "{b}"
    );
    let (s, b) = g
        .raw(
            &[("x-gitea-event", "push"), ("x-gitea-signature", "00")],
            &body,
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap_or("")
            .contains("/webhooks/gitea"),
        "{b}"
    );
    // Over 25 MiB declared: 413 before anything is read.
    let (s, _) = g
        .raw(
            &[
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-token", GL_SECRET),
                ("content-length", "26214401"),
            ],
            b"",
        )
        .await;
    assert_eq!(s, 413);
    // Authentic, but without an event or a delivery id: 400.
    let (s, _) = g
        .raw(
            &[("x-gitlab-token", GL_SECRET), ("idempotency-key", "x1")],
            &body,
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = g
        .raw(
            &[
                ("x-gitlab-token", GL_SECRET),
                ("x-gitlab-event", "Push Hook"),
            ],
            &body,
        )
        .await;
    assert_eq!(s, 400);
    // Not the event's shape: 400.
    let (s, b) = g.post("Merge Request Hook", b"{\"object_kind\":1}").await;
    assert_eq!(s, 400, "{b}");
    // An event previewd does not use: 200 with the reason.
    let (s, b) = g
        .post("Pipeline Hook", b"{\"object_kind\":\"pipeline\"}")
        .await;
    assert_eq!(s, 200);
    assert!(
        b["ignored"]
            .as_str()
            .unwrap_or("")
            .contains("Pipeline Hook"),
        "{b}"
    );
    // A tag push: ignored, said so.
    let mut tag = gl_payload("push.branch.json");
    tag["object_kind"] = json!("tag_push");
    tag["ref"] = json!("refs/tags/v1.0");
    let (s, b) = g.post("Tag Push Hook", tag.to_string().as_bytes()).await;
    assert_eq!(s, 200);
    assert!(b["ignored"].as_str().unwrap_or("").contains("tag"), "{b}");
    g.h.assert_nothing_queued(8).await;
    g.h.stop().await;
}

/// A merge request hook body for `repo`'s MR !`iid` labelled `labels`.
fn mr_hook(action: &str, labels: &[&str]) -> Value {
    let mut p = gl_payload("merge_request.update.json");
    let ls: Vec<Value> = labels
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": i, "title": t, "color": "#fff", "type": "ProjectLabel"}))
        .collect();
    p["object_attributes"]["action"] = json!(action);
    p["object_attributes"]["labels"] = json!(ls);
    p["labels"] = json!(ls);
    p
}

#[tokio::test]
async fn merge_requests_pushes_and_notes_become_intents() {
    let g = start().await;
    // An update with new commits on a labelled MR: a deploy of its branch, keyed by forge.
    let body = mr_hook("update", &["preview"]).to_string();
    let (s, b) = g.post("Merge Request Hook", body.as_bytes()).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["queued"], "deploy");
    assert_eq!(
        b["preview"], "anbraten/woodpecker anbraten-main-patch-05373",
        "{b}"
    );
    // The same Idempotency-Key again: 200 duplicate, not queued twice.
    let (s, b) = g
        .raw(
            &[
                ("x-gitlab-event", "Merge Request Hook"),
                ("x-gitlab-token", GL_SECRET),
                ("x-gitlab-event-uuid", "uuid-1"),
            ],
            body.as_bytes(),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = g
        .raw(
            &[
                ("x-gitlab-event", "Merge Request Hook"),
                ("x-gitlab-token", GL_SECRET),
                ("x-gitlab-event-uuid", "uuid-1"),
            ],
            body.as_bytes(),
        )
        .await;
    assert_eq!((s, &b["duplicate"]), (200, &json!(true)), "{b}");
    // Without the trigger label: ignored, said so.
    let (s, b) = g
        .post(
            "Merge Request Hook",
            mr_hook("update", &["bugfix"]).to_string().as_bytes(),
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        b["ignored"]
            .as_str()
            .unwrap_or("")
            .contains("no trigger label"),
        "{b}"
    );
    // Merged: the preview goes.
    let (s, b) = g
        .post("Merge Request Hook", &gl_bytes("merge_request.merge.json"))
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["queued"], "stop");
    // A label added by an edit: a deploy.
    let mut labelled = mr_hook("update", &["preview"]);
    labelled["object_attributes"]
        .as_object_mut()
        .expect("attrs")
        .remove("oldrev");
    labelled["changes"]["labels"] = json!({"previous": [], "current": labelled["labels"]});
    let (s, b) = g
        .post("Merge Request Hook", labelled.to_string().as_bytes())
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["queued"], "deploy");
    // A command note on a merge request: queued for the worker to check the author.
    let mut note = gl_payload("note.merge_request.json");
    note["object_attributes"]["note"] = json!("/preview");
    let (s, b) = g.post("Note Hook", note.to_string().as_bytes()).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["preview"], "gitlab-org/gitlab-test#1", "{b}");
    // A note that is no command: ignored.
    let (s, b) = g
        .post("Note Hook", &gl_bytes("note.merge_request.json"))
        .await;
    assert_eq!(s, 200);
    assert!(
        b["ignored"].as_str().unwrap_or("").contains("command"),
        "{b}"
    );
    // /deliveries names the forge.
    let (_, text) = g.h.get(g.h.admin, "/deliveries").await;
    assert!(text.contains("gitlab"), "{text}");
    g.h.stop().await;
    g.gitlab.assert_clean();
}

/// As `until`, showing what the fake GitLab was asked when it times out.
async fn until_or(what: &str, g: &GitLabHarness, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}; GitLab was asked {:?}; engine: {:?}",
            g.gitlab
                .requests()
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect::<Vec<_>>(),
            g.h.engine.calls()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `f` every 20 ms until it holds, failing after 20 s.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The REST merge request the worker reads back, for the hook `mr_hook` builds.
fn rest_mr(source_project: u64, labels: &[&str]) -> Value {
    json!({
        "id": 134400602, "iid": 3, "project_id": 32059612, "title": "t", "state": "opened",
        "source_branch": "anbraten-main-patch-05373", "target_branch": "main",
        "source_project_id": source_project, "target_project_id": 32059612,
        "sha": "c136499ec574e1034b24c5d306de9acda3005367", "labels": labels,
    })
}

#[tokio::test]
async fn a_fork_starts_only_on_a_developers_label() {
    let g = start().await;
    let project = "anbraten/woodpecker";
    g.gitlab.set_project(999, "stranger/woodpecker");
    g.gitlab
        .set_merge_request(project, rest_mr(999, &["preview"]));
    let mut fork = mr_hook("open", &["preview"]);
    fork["object_attributes"]["source_project_id"] = json!(999);
    fork["object_attributes"]["source"]["path_with_namespace"] = json!("stranger/woodpecker");
    let (s, b) = g
        .post("Merge Request Hook", fork.to_string().as_bytes())
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["ignored"].as_str().unwrap_or("").contains("fork"), "{b}");
    // The label added by a Developer (access level 30): a deploy of the fork's branch.
    g.gitlab.set_member(project, 2251488, 30);
    fork["object_attributes"]["action"] = json!("update");
    fork["object_attributes"]
        .as_object_mut()
        .expect("attrs")
        .remove("oldrev");
    fork["changes"]["labels"] = json!({"previous": [], "current": fork["labels"]});
    let (s, b) = g
        .post("Merge Request Hook", fork.to_string().as_bytes())
        .await;
    assert_eq!(s, 202, "{b}");
    until("the fork's preview deployed", || {
        g.h.engine.calls().iter().any(|c| matches!(c,
            support::engine::Call::Deploy { key, .. } if key.branch.starts_with("stranger/woodpecker:")))
    })
    .await;
    // Its status goes to the fork's project (by number), where its commit lives.
    until("a status on the fork", || {
        g.gitlab.lock().statuses.iter().any(|(p, _, _)| p == "999")
    })
    .await;
    g.gitlab.assert_clean();
    g.h.stop().await;
}

#[tokio::test]
async fn a_reporters_command_is_refused_and_previewds_own_notes_are_not_read() {
    let g = start().await;
    let project = "gitlab-org/gitlab-test";
    g.gitlab.set_member(project, 1, 20);
    let mut mr = rest_mr(5, &["preview"]);
    mr["iid"] = json!(1);
    mr["project_id"] = json!(5);
    mr["target_project_id"] = json!(5);
    g.gitlab.set_merge_request(project, mr);
    let mut note = gl_payload("note.merge_request.json");
    note["object_attributes"]["note"] = json!("/preview");
    let (s, b) = g.post("Note Hook", note.to_string().as_bytes()).await;
    assert_eq!(s, 202, "{b}");
    until_or("a refusal note and a confused award", &g, || {
        let st = g.gitlab.lock();
        st.notes
            .iter()
            .any(|n| n.iid == 1 && n.body.contains("permission"))
            && st
                .awards
                .iter()
                .any(|(id, e)| *id == 1244 && e == "confused")
    })
    .await;
    assert!(
        !g.h.engine
            .calls()
            .iter()
            .any(|c| matches!(c, support::engine::Call::Deploy { .. })),
        "{:?}",
        g.h.engine.calls()
    );
    // A note by previewd's own user (GET /user): never a command, however it reads.
    let mut own = note.clone();
    own["user"]["username"] = json!("previewd-bot");
    own["user"]["id"] = json!(77);
    own["object_attributes"]["id"] = json!(1245);
    let (s, b) = g.post("Note Hook", own.to_string().as_bytes()).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["ignored"].is_string(), "{b}");
    g.gitlab.assert_clean();
    g.h.stop().await;
}
