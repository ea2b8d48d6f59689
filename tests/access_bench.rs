//! Benchmark (ignored; `cargo test --release --test access_bench -- --ignored --nocapture`):
//! the latency the access check adds to a request with a valid session, against the same
//! request to a `public` preview, side by side in one run. Two instances on the same Docker
//! host, each with the same one-page preview behind its own real gateway: one `public` (the
//! gateway asks nobody), one `forge` (the gateway asks previewd's edge over its unix socket
//! on every request). Requests alternate between the two so both see the same machine; the
//! fake forge counts its calls during the run (the target: none). Prints p50, p90, p99 of
//! each, the difference and the ratio.

mod engine_support;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine_support::{GitRepo, TestEnv};
use http_body_util::{BodyExt, Empty};
use previewd::access::Keys;
use previewd::access::token::Purpose;
use previewd::edge::auth::Session;
use support::fake_oauth::{CLIENT_ID, CLIENT_SECRET, FakeOAuth};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-session-secret-0123456789";

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn access_check_overhead_against_public() {
    let n: usize = std::env::var("ACCESS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let fake = FakeOAuth::start().await;
    let url = fake.url();
    let public = TestEnv::with("accbpub", &[("PREVIEWD_ACCESS_MODE", "public")]).await;
    let forge = TestEnv::with(
        "accbforge",
        &[
            ("PREVIEWD_ACCESS_MODE", "forge"),
            ("PREVIEWD_ACCESS_SESSION_SECRET", SECRET),
            ("PREVIEWD_GITHUB_WEB_URL", &url),
            ("PREVIEWD_GITHUB_API_URL", &url),
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_ID", CLIENT_ID),
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ],
    )
    .await;
    // The whole edge, as `serve` runs it, with the real engine.
    let shutdown = CancellationToken::new();
    let edge_task = tokio::spawn(previewd::edge::run(
        Arc::new(forge.config.clone()),
        Arc::new(forge.manager.clone()),
        previewd::metrics::Metrics::new().expect("metrics"),
        previewd::edge::SleepSide::system(),
        shutdown.clone(),
    ));
    let repo = GitRepo::from_fixture("access-echo");
    let up = |env: &TestEnv| {
        let mut req = env.request(repo.path());
        req.forge = "github".into();
        req.key_repo = Some("octo/private".into());
        req
    };
    let a = public
        .up_req(up(&public))
        .await
        .expect("public preview")
        .state
        .id;
    let b = forge
        .up_req(up(&forge))
        .await
        .expect("forge preview")
        .state
        .id;
    let cookie = format!(
        "previewd_session={}",
        Keys::from_secret(SECRET, None).signer().sign(
            Purpose::Session,
            &Session {
                u: "octocat".into(),
                f: "github".into(),
                r: "octo/private".into(),
                iat: time::OffsetDateTime::now_utc().unix_timestamp(),
            },
        )
    );
    // One keep-alive client, as a browser has.
    let client = Arc::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Empty<Bytes>>(),
    );
    let once = |port: u16, host: String, cookie: Option<String>| {
        let client = client.clone();
        async move {
            let mut req = hyper::Request::get(format!("http://127.0.0.1:{port}/index.html"))
                .header("host", host);
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let start = Instant::now();
            let r = client
                .request(req.body(Empty::new()).unwrap())
                .await
                .expect("request");
            let status = r.status().as_u16();
            r.into_body().collect().await.expect("body");
            let took = start.elapsed();
            assert_eq!(status, 200);
            took
        }
    };
    let ha = format!("{a}.localhost:{}", public.port);
    let hb = format!("{b}.localhost:{}", forge.port);
    // Warm-up: connections, the edge's lookup cache.
    for _ in 0..200 {
        once(public.port, ha.clone(), None).await;
        once(forge.port, hb.clone(), Some(cookie.clone())).await;
    }
    let calls = fake.calls();
    let (mut pa, mut pb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        pa.push(once(public.port, ha.clone(), None).await);
        pb.push(once(forge.port, hb.clone(), Some(cookie.clone())).await);
    }
    let forge_calls = fake.calls() - calls;
    pa.sort();
    pb.sort();
    println!("access check overhead, {n} requests each, alternating, one keep-alive client");
    println!("{:<34} {:>8} {:>8} {:>8}", "", "p50 ms", "p90 ms", "p99 ms");
    for (name, v) in [
        ("public (no check)", &pa),
        ("forge, valid session (checked)", &pb),
    ] {
        println!(
            "{name:<34} {:>8.3} {:>8.3} {:>8.3}",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99)
        );
    }
    println!(
        "{:<34} {:>8.3} {:>8.3} {:>8.3}",
        "added by the check",
        pct(&pb, 0.5) - pct(&pa, 0.5),
        pct(&pb, 0.9) - pct(&pa, 0.9),
        pct(&pb, 0.99) - pct(&pa, 0.99)
    );
    println!(
        "{:<34} {:>7.2}x {:>7.2}x {:>7.2}x",
        "ratio checked / public",
        pct(&pb, 0.5) / pct(&pa, 0.5),
        pct(&pb, 0.9) / pct(&pa, 0.9),
        pct(&pb, 0.99) / pct(&pa, 0.99)
    );
    println!("forge calls during the {n} checked requests: {forge_calls}");
    assert_eq!(forge_calls, 0, "the check called the forge");

    shutdown.cancel();
    let _ = edge_task.await;
    public.manager.down(&a).await.expect("down");
    forge.manager.down(&b).await.expect("down");
    public.assert_clean().await;
    forge.assert_clean().await;
}
