//! Form-encoded webhooks (`application/x-www-form-urlencoded`, the JSON in a `payload` field):
//! accepted like JSON when the signature matches the raw form body, refused otherwise.

mod support;

use support::engine::{Call, FakeEngine};
use support::{Harness, SECRET, eventually, payload, sign};

const FORM: &str = "application/x-www-form-urlencoded";

/// Encodes `json` as GitHub does: `payload=` and the JSON percent-encoded, spaces as `+`.
fn form(json: &[u8]) -> Vec<u8> {
    let mut out = b"payload=".to_vec();
    for &b in json {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend(format!("%{b:02X}").bytes()),
        }
    }
    out
}

async fn post_form(h: &Harness, event: &str, body: &[u8], sig: &str) -> (u16, serde_json::Value) {
    let delivery = h.delivery_id();
    h.post_raw(
        &[
            ("x-github-event", event),
            ("x-github-delivery", &delivery),
            ("x-hub-signature-256", sig),
            ("content-type", FORM),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn a_form_encoded_labeled_pr_is_queued_like_json() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    h.seed("pull_request.labeled.json");
    let body = form(&payload("pull_request.labeled.json"));
    let (status, answer) = post_form(&h, "pull_request", &body, &sign(SECRET, &body)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["queued"], "deploy");
    eventually("deployed", || {
        h.engine
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Deployed { .. }))
    })
    .await;
    eventually("success status", || {
        h.github
            .lock()
            .statuses
            .iter()
            .any(|s| s["state"] == "success")
    })
    .await;
    h.github.assert_clean();
    h.stop().await;
}

#[tokio::test]
async fn a_form_encoded_ping_is_answered() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let body = form(&payload("ping.json"));
    let (status, _) = post_form(&h, "ping", &body, &sign(SECRET, &body)).await;
    assert_eq!(status, 200);
    h.stop().await;
}

#[tokio::test]
async fn the_signature_must_be_over_the_raw_form_body() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    h.seed("pull_request.labeled.json");
    let json = payload("pull_request.labeled.json");
    let body = form(&json);
    // Signed over the JSON inside, not over what was sent.
    let (status, _) = post_form(&h, "pull_request", &body, &sign(SECRET, &json)).await;
    assert_eq!(status, 401);
    // One byte changed after signing.
    let sig = sign(SECRET, &body);
    let mut changed = body.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0x01;
    let (status, _) = post_form(&h, "pull_request", &changed, &sig).await;
    assert_eq!(status, 401);
    h.assert_nothing_queued(2).await;
    h.stop().await;
}

#[tokio::test]
async fn a_form_without_a_json_payload_is_refused() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    h.seed("pull_request.labeled.json");
    for body in [
        b"action=labeled&number=2".to_vec(),
        b"payload=%7Bnot+json".to_vec(),
        b"payload=%FF%FE".to_vec(),
        b"payload=%7B%7".to_vec(),
    ] {
        let (status, answer) = post_form(&h, "pull_request", &body, &sign(SECRET, &body)).await;
        assert_eq!(status, 400, "{}: {answer}", String::from_utf8_lossy(&body));
    }
    h.assert_nothing_queued(4).await;
    let (_, deliveries) = h.get(h.admin, "/deliveries").await;
    assert!(deliveries.contains("no `payload` field"), "{deliveries}");
    h.stop().await;
}
