//! Sleeping and waking, told to the PR: `previewd serve` with the fake engine and the fake
//! GitHub. A preview nobody visits goes to sleep when serve's clock (moved by the test, never
//! waited for) passes `limits.idle_sleep`, and the sticky comment's status line alone says
//! since when, the commit status staying `success`; a visit wakes it and the line goes back;
//! a wake that fails is reported as a failed deployment is (a failure status, the comment
//! with the service, the reason and the log tail) and the visitor gets a 502 that says why.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use previewd::clock::ManualClock;
use previewd::engine::{PreviewEngine, PreviewStatus};
use previewd::serve::ServeOptions;
use serde_json::Value;
use support::engine::FakeEngine;
use support::{Harness, eventually, payload};

const MARKER: &str = "<!-- previewd:Codertocat/Hello-World#2 -->";
const BRANCH: &str = "changes";

/// What the gateway asks the edge for a visitor of a sleeping preview: `GET /wake`.
async fn wake(socket: &Path, id: &str) -> (u16, String) {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to the edge");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get("/wake")
        .header("host", "edge")
        .header("x-previewd-preview", id)
        .header("user-agent", "curl/8.5")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let res = sender.send_request(req).await.expect("an answer");
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn statuses(h: &Harness) -> Vec<Value> {
    h.github.lock().statuses.clone()
}

/// The PR's sticky comment as it is now, if there is one; never two.
fn sticky(h: &Harness) -> Option<String> {
    let st = h.github.lock();
    let mine: Vec<_> = st
        .comments
        .iter()
        .filter(|c| c.body.contains(MARKER))
        .collect();
    assert!(mine.len() <= 1, "one sticky comment");
    mine.first().map(|c| c.body.clone())
}

async fn sticky_becomes(h: &Harness, what: &str, f: impl Fn(&str) -> bool) -> String {
    eventually(what, || sticky(h).is_some_and(|b| f(&b))).await;
    sticky(h).expect("the sticky comment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_waking_and_a_failed_wake_are_told_to_the_pr() {
    let clock = Arc::new(ManualClock::new());
    let options = ServeOptions {
        clock: Some(clock.clone()),
        ..Default::default()
    };
    // The sweep looks every second (a quarter of idle_sleep); only serve's clock says idle.
    let env = [("PREVIEWD_LIMITS_IDLE_SLEEP", "4s")];
    let h = Harness::start_with_options(FakeEngine::auto(), &env, options).await;
    h.seed("pull_request.labeled.json");
    let (status, _) = h
        .post("pull_request", &payload("pull_request.labeled.json"))
        .await;
    assert_eq!(status, 202);
    let ready = sticky_becomes(&h, "the ready comment", |b| {
        b.contains("### ✅ Preview ready")
    })
    .await;
    let id = h.engine.list().await.expect("list")[0].id.to_string();

    // Nobody visits, serve's clock moves past idle_sleep: asleep, and the comment says so in
    // its status line alone. The commit status is left as it was (the URL works).
    let before = statuses(&h);
    clock.advance(Duration::from_secs(5));
    let asleep = sticky_becomes(&h, "the sleeping line", |b| {
        b.contains("### 💤 Preview sleeping since ")
    })
    .await;
    assert_eq!(h.engine.status_of(BRANCH), Some(PreviewStatus::Sleeping));
    assert!(
        asleep.contains(", wakes on the next visit\n") && !asleep.contains("Preview ready"),
        "{asleep}"
    );
    let (a, b): (Vec<_>, Vec<_>) = (ready.lines().collect(), asleep.lines().collect());
    let changed: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).collect();
    assert_eq!(
        (a.len(), changed.len()),
        (b.len(), 1),
        "{ready}\n---\n{asleep}"
    );

    // A visit wakes it: the comment is the ready one again, and no status was sent.
    assert_eq!(wake(&h.edge_socket, &id).await.0, 200);
    sticky_becomes(&h, "the ready comment again", |b| b == ready).await;
    assert_eq!(h.engine.status_of(BRANCH), Some(PreviewStatus::Running));
    assert_eq!(statuses(&h), before, "sleeping and waking send no status");

    // Asleep again, and this time the wake fails: the visitor's 502 says why, and the PR is
    // told as of a failed deployment, in words that say it was the wake.
    h.engine
        .fail_wakes("GET / did not answer 200 within 30s (last: connection refused)");
    clock.advance(Duration::from_secs(5));
    sticky_becomes(&h, "the sleeping line again", |b| {
        b.contains("### 💤 Preview sleeping since ")
    })
    .await;
    let (code, body) = wake(&h.edge_socket, &id).await;
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains("did not wake: health failed for service web"),
        "{body}"
    );
    let failed = sticky_becomes(&h, "the failed wake", |b| {
        b.contains("### ❌ Preview failed to wake")
    })
    .await;
    assert!(
        failed.contains("**health failed** for service ` web `: ` GET / did not answer 200"),
        "{failed}"
    );
    assert!(failed.contains("panic: no database"), "{failed}");
    eventually("the failure status", || statuses(&h).len() > before.len()).await;
    let last = statuses(&h).last().cloned().expect("a status");
    assert_eq!(last["state"], "failure", "{last}");
    let description = last["description"].as_str().unwrap_or("");
    assert!(
        description.starts_with("wake failed: health failed for service web"),
        "{description}"
    );
    h.github.assert_clean();
    h.stop().await;
}
