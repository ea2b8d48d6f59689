//! The receiver's answers (the design's (docs/architecture.md) table) and the signature check, driven through a real
//! socket with real GitHub payloads signed in the test.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use previewd::config::Config;
use previewd::serve::{LogDrops, ServeError, ServeOptions, bind};
use support::engine::{Call, FakeEngine};
use support::{Harness, SECRET, eventually, payload, sign};
use tokio_util::sync::CancellationToken;

fn headers<'a>(event: &'a str, delivery: &'a str, sig: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("x-github-event", event),
        ("x-github-delivery", delivery),
        ("x-hub-signature-256", sig),
        ("content-type", "application/json"),
    ]
}

#[tokio::test]
async fn bad_signatures_are_401_and_nothing_is_queued() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let body = payload("pull_request.labeled.json");
    let good = sign(SECRET, &body);
    let wrong_secret = sign("not the secret", &body);
    let truncated = good[..good.len() - 2].to_owned();
    let non_hex = format!("sha256={}", "zz".repeat(32));
    let no_prefix = good.trim_start_matches("sha256=").to_owned();
    let mut changed = body.clone();
    let i = changed.len() / 2;
    changed[i] ^= 0x01;

    for (what, sig, sent) in [
        ("wrong secret", wrong_secret.as_str(), &body),
        ("truncated digest", truncated.as_str(), &body),
        ("non-hex digest", non_hex.as_str(), &body),
        ("digest without sha256=", no_prefix.as_str(), &body),
        ("body changed by one byte", good.as_str(), &changed),
        ("empty", "", &body),
    ] {
        let id = h.delivery_id();
        let (status, _) = h.post_raw(&headers("pull_request", &id, sig), sent).await;
        assert_eq!(status, 401, "{what}");
    }
    // No signature header at all, and only the old sha1 header.
    let id = h.delivery_id();
    let (status, _) = h
        .post_raw(
            &[
                ("x-github-event", "pull_request"),
                ("x-github-delivery", &id),
            ],
            &body,
        )
        .await;
    assert_eq!(status, 401, "missing header");
    let (status, _) = h
        .post_raw(
            &[
                ("x-github-event", "pull_request"),
                ("x-github-delivery", &id),
                (
                    "x-hub-signature",
                    "sha1=0123456789abcdef0123456789abcdef01234567",
                ),
            ],
            &body,
        )
        .await;
    assert_eq!(status, 401, "only X-Hub-Signature (sha1)");
    h.assert_nothing_queued(8).await;

    // Every refusal is on /deliveries with its reason.
    let (status, text) = h.get(h.admin, "/deliveries").await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 8);
    assert!(
        list.iter()
            .all(|d| d["outcome"] == "unauthorized" && d["status"] == 401)
    );
    assert!(text.contains("X-Hub-Signature-256 header missing"));
    assert!(!text.contains(SECRET));
    h.stop().await;
}

#[tokio::test]
async fn upper_case_hex_is_accepted() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let body = payload("ping.json");
    let sig = sign(SECRET, &body);
    let upper = format!(
        "sha256={}",
        sig.trim_start_matches("sha256=").to_uppercase()
    );
    let id = h.delivery_id();
    let (status, json) = h.post_raw(&headers("ping", &id, &upper), &body).await;
    assert_eq!(status, 200, "{json}");
    h.stop().await;
}

#[tokio::test]
async fn several_secrets_rotate() {
    let h = Harness::start(
        FakeEngine::auto(),
        &[("PREVIEWD_GITHUB_WEBHOOK_SECRETS", "old-secret,new-secret")],
    )
    .await;
    let body = payload("ping.json");
    for (secret, expected) in [
        (SECRET, 200),
        ("old-secret", 200),
        ("new-secret", 200),
        ("other", 401),
    ] {
        let sig = sign(secret, &body);
        let id = h.delivery_id();
        let (status, _) = h.post_raw(&headers("ping", &id, &sig), &body).await;
        assert_eq!(status, expected, "signed with {secret:?}");
    }
    h.stop().await;
}

#[tokio::test]
async fn serve_refuses_to_start_without_a_secret() {
    let env = vec![
        ("PREVIEWD_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        (
            "PREVIEWD_ADMIN_LISTEN".to_string(),
            "127.0.0.1:0".to_string(),
        ),
    ];
    let config = Config::from_parts(None, Path::new("previewd.toml"), &env).unwrap();
    let r = bind(
        config,
        Arc::new(FakeEngine::auto()),
        ServeOptions::default(),
        CancellationToken::new(),
    )
    .await;
    let err = r.err().expect("must refuse");
    assert!(matches!(err, ServeError::NoWebhookSecret));
    assert!(err.to_string().contains("webhook_secret"));
}

#[tokio::test]
async fn oversized_body_is_413() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let mut body = payload("ping.json");
    body.resize(25 * 1024 * 1024 + 1, b' ');
    let sig = sign(SECRET, &body);
    let id = h.delivery_id();
    let (status, _) = h.post_raw(&headers("ping", &id, &sig), &body).await;
    assert_eq!(status, 413);
    h.assert_nothing_queued(1).await;
    h.stop().await;
}

/// Writes `head` and `body` on a raw connection, half-closes it if `hang_up` (the sender
/// stops there), and returns what came back before the server closed it. A server that
/// refuses early may close before the whole body is written: write and read errors end the
/// exchange with what was read so far.
async fn raw_exchange(
    addr: std::net::SocketAddr,
    head: String,
    body: &[u8],
    hang_up: bool,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write head");
    let _ = s.write_all(body).await;
    if hang_up {
        let _ = s.shutdown().await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer in 30 s");
    String::from_utf8_lossy(&answer).into_owned()
}

fn raw_head(sig: &str, framing: &str) -> String {
    format!(
        "POST /webhooks/github HTTP/1.1\r\nhost: previewd\r\nx-github-event: ping\r\n\
         x-github-delivery: raw-1\r\nx-hub-signature-256: {sig}\r\n\
         content-type: application/json\r\nconnection: close\r\n{framing}\r\n"
    )
}

/// Chunked encoding, as any HTTP/1.1 sender may use it.
fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn bodies_are_read_whole_however_framed_and_limited_as_they_arrive() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let body = payload("ping.json");
    let sig = sign(SECRET, &body);

    // Chunked, in small pieces: read whole, so the digest is the body's.
    let answer = raw_exchange(
        h.addr,
        raw_head(&sig, "transfer-encoding: chunked\r\n"),
        &chunked(&body, 7),
        false,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("pong"), "{answer}");

    // Fewer bytes than Content-Length, then the sender stops: refused, not waited for.
    let half = &body[..body.len() / 2];
    let framing = format!("content-length: {}\r\n", body.len());
    let answer = raw_exchange(h.addr, raw_head(&sig, &framing), half, true).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    // Over 25 MiB with no Content-Length to refuse it by: refused once that much has arrived.
    let mut big = body.clone();
    big.resize(25 * 1024 * 1024 + 1, b' ');
    let big_sig = sign(SECRET, &big);
    let answer = raw_exchange(
        h.addr,
        raw_head(&big_sig, "transfer-encoding: chunked\r\n"),
        &chunked(&big, 1 << 20),
        false,
    )
    .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 413"),
        "{answer}"
    );

    let (_, text) = h.get(h.admin, "/deliveries").await;
    let log: serde_json::Value = serde_json::from_str(&text).expect("deliveries JSON");
    let reasons: Vec<&str> = log
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"body over 25 MiB"), "{reasons:?}");
    assert!(
        reasons.contains(&"body cut short or badly framed"),
        "{reasons:?}"
    );
    h.assert_nothing_queued(reasons.len() as u64).await;
    h.stop().await;
}

#[tokio::test]
async fn authentic_but_malformed_is_400() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    for (event, body) in [
        ("pull_request", b"{not json".to_vec()),
        ("pull_request", b"{}".to_vec()),
        ("push", br#"{"ref": 42}"#.to_vec()),
        ("issue_comment", b"[]".to_vec()),
        ("ping", b"\"just a string\"".to_vec()),
        // The right shape but a commit id that is not one.
        (
            "pull_request",
            String::from_utf8(payload("pull_request.labeled.json"))
                .unwrap()
                .replace("ec26c3e57ca3a959ca5aad62de7213c562f8c821", "not-a-sha")
                .into_bytes(),
        ),
    ] {
        let (status, json) = h.post(event, &body).await;
        assert_eq!(status, 400, "{event} {json}");
        assert!(json["error"].is_string());
    }
    // A missing event header on an authentic body is a 400 too.
    let body = payload("ping.json");
    let sig = sign(SECRET, &body);
    let (status, _) = h
        .post_raw(
            &[("x-github-delivery", "d-1"), ("x-hub-signature-256", &sig)],
            &body,
        )
        .await;
    assert_eq!(status, 400);
    h.assert_nothing_queued(7).await;
    h.stop().await;
}

#[tokio::test]
async fn ping_ignored_queued_and_duplicate() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let (status, _) = h.post("ping", &payload("ping.json")).await;
    assert_eq!(status, 200);

    let (status, json) = h.post("star", br#"{"action":"created"}"#).await;
    assert_eq!(status, 200);
    assert!(json["ignored"].as_str().unwrap().contains("star"), "{json}");

    h.seed("pull_request.labeled.json");
    let body = payload("pull_request.labeled.json");
    let started = Instant::now();
    let (status, json) = h.post_as("pull_request", "dup-1", &body).await;
    let took = started.elapsed();
    assert_eq!(status, 202, "{json}");
    assert!(took < Duration::from_millis(500), "answered in {took:?}");
    eventually("the deploy", || {
        h.engine
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Deployed { .. }))
    })
    .await;

    let (status, json) = h.post_as("pull_request", "dup-1", &body).await;
    assert_eq!(status, 200);
    assert_eq!(json, serde_json::json!({"duplicate": true}));
    // Counted before it was answered: one delivery queued, the redelivery not.
    let answered = h.answered().await;
    assert_eq!(answered.get("duplicate"), Some(&1), "{answered:?}");
    assert_eq!(answered.get("queued"), Some(&1), "{answered:?}");
    let deploys = h
        .engine
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Deploy { .. }))
        .count();
    assert_eq!(deploys, 1, "a redelivery is not acted on twice");

    let (_, text) = h.get(h.admin, "/deliveries").await;
    for outcome in ["ping", "ignored", "queued", "duplicate"] {
        assert!(
            text.contains(&format!("\"outcome\":\"{outcome}\"")),
            "{outcome}: {text}"
        );
    }
    h.github.assert_clean();
    h.stop().await;
}

#[tokio::test]
async fn health_and_admin_endpoints() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    assert_eq!(h.get(h.addr, "/healthz").await.0, 200);
    assert_eq!(h.get(h.admin, "/healthz").await.0, 200);
    // Operators' endpoints are not on the public listener.
    assert_eq!(h.get(h.addr, "/metrics").await.0, 404);
    assert_eq!(h.get(h.addr, "/deliveries").await.0, 404);

    h.seed("pull_request.labeled.json");
    let (status, _) = h
        .post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    assert_eq!(status, 202);
    eventually("the preview", || h.engine.has_preview("changes")).await;
    let (status, text) = h.get(h.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"previewd_webhooks_total{event="pull_request",outcome="queued"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"previewd_previews{state="running"} 1"#),
        "{text}"
    );
    assert!(text.contains("previewd_queue_depth"), "{text}");
    for h in [
        "build_seconds",
        "start_seconds",
        "health_seconds",
        "time_to_ready_seconds",
    ] {
        assert!(text.contains(&format!("previewd_{h}_bucket")), "{h}");
    }
    h.stop().await;
}

/// The binary's log writer drops lines rather than stall a request when stderr does not keep
/// up; `/metrics` says how many, so operators learn of gaps before the process exits.
#[tokio::test]
async fn metrics_count_dropped_log_lines() {
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let read = dropped.clone();
    let options = ServeOptions {
        log_drops: Some(LogDrops::new(move || {
            read.load(std::sync::atomic::Ordering::SeqCst)
        })),
        ..Default::default()
    };
    let h = Harness::start_with_options(FakeEngine::auto(), &[], options).await;
    let (status, text) = h.get(h.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("\npreviewd_log_lines_dropped_total 0\n"),
        "{text}"
    );
    dropped.store(7, std::sync::atomic::Ordering::SeqCst);
    let (_, text) = h.get(h.admin, "/metrics").await;
    assert!(
        text.contains("\npreviewd_log_lines_dropped_total 7\n"),
        "{text}"
    );
    dropped.store(9, std::sync::atomic::Ordering::SeqCst);
    let (_, text) = h.get(h.admin, "/metrics").await;
    assert!(
        text.contains("\npreviewd_log_lines_dropped_total 9\n"),
        "{text}"
    );
    h.stop().await;
}
