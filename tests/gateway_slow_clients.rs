//! Slow clients against the gateway, the other thing the internet reaches (issue 27): with
//! the gateway's timeouts shortened to seconds, a preview keeps answering while hundreds of
//! connections send half a request header to its host, and Caddy closes those by the header
//! deadline; a WebSocket held open and a download read slowly, both far longer than every
//! timeout, still work end to end. The fixture `streaming/` serves both from busybox.

mod engine_support;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use engine_support::{GitRepo, TestEnv};

const READ_HEADER: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_millis(1500);
const ATTACKERS: usize = 300;
/// Longer than every timeout the test sets (2 s headers, 3 s whole request, 2 s idle).
const LONG: Duration = Duration::from_secs(6);

async fn connect(env: &TestEnv) -> TcpStream {
    TcpStream::connect(("127.0.0.1", env.port))
        .await
        .expect("connect to the gateway")
}

/// Everything up to the end of the response head, and what came after it.
async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(end + 4);
            return (String::from_utf8_lossy(&got).into_owned(), rest);
        }
        let n = s.read(&mut buf).await.expect("read the head");
        assert!(
            n > 0,
            "closed before the head: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn previews_answer_through_a_slow_client_attack_and_long_requests_survive_the_timeouts() {
    let env = TestEnv::with(
        "slowgw",
        &[
            ("PREVIEWD_GATEWAY_READ_HEADER_TIMEOUT", "2s"),
            ("PREVIEWD_GATEWAY_READ_TIMEOUT", "3s"),
            ("PREVIEWD_GATEWAY_IDLE_TIMEOUT", "2s"),
        ],
    )
    .await;
    let repo = GitRepo::from_fixture("streaming");
    let id = env.up(repo.path()).await.expect("up").state.id;
    let host = format!("{id}.localhost");

    // The attack: half a request header each, to the preview's own host.
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let mut s = connect(&env).await;
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow:").as_bytes())
            .await
            .expect("half a header");
        let opened = Instant::now();
        attackers.push(tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let closed = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return Instant::now(),
                        Ok(_) => {}
                    }
                }
            })
            .await;
            (opened, closed.ok())
        }));
    }
    // Meanwhile the preview answers real requests.
    for _ in 0..5 {
        let (status, body) = env.get(id.as_str(), "/").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("previewd sample: streaming"), "{body}");
    }
    for a in attackers {
        let (opened, closed) = a.await.expect("reader");
        let closed = closed.expect("a half-sent header still open after 30 s");
        let held = closed - opened;
        assert!(held <= READ_HEADER + SLACK, "held for {held:?}");
    }

    // A WebSocket: upgraded through the gateway, then quiet and talking for longer than
    // every timeout; each message comes back.
    let mut ws = connect(&env).await;
    ws.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("upgrade request");
    let (head, mut echoed) = read_head(&mut ws).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1500));
    let mut n = 0;
    while started.elapsed() < LONG {
        tick.tick().await;
        let msg = format!("message {n}\n");
        ws.write_all(msg.as_bytes())
            .await
            .expect("send on the socket");
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&echoed).contains(&msg) {
            let got = tokio::time::timeout(Duration::from_secs(5), ws.read(&mut buf))
                .await
                .expect("an echo within 5 s")
                .expect("read the echo");
            assert!(got > 0, "the socket closed after {:?}", started.elapsed());
            echoed.extend_from_slice(&buf[..got]);
        }
        n += 1;
    }

    // A download read slowly: 128 MiB over at least LONG.
    let mut dl = connect(&env).await;
    dl.write_all(format!("GET /big.bin HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("download request");
    let (head, first) = read_head(&mut dl).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let want: usize = 128 << 20;
    let mut got = first.len();
    let started = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    while got < want {
        // Paced: at most `want` bytes over LONG, so the download outlasts every timeout.
        let due = LONG.mul_f64(got as f64 / want as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let n = dl.read(&mut buf).await.expect("read the download");
        assert!(n > 0, "cut after {got} bytes and {:?}", started.elapsed());
        got += n;
    }
    assert_eq!(got, want);
    assert!(started.elapsed() >= LONG - Duration::from_millis(500));

    env.manager.down(&id).await.expect("down");
    env.assert_clean().await;
}
