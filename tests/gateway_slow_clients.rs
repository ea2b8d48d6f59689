//! Slow clients against the gateway, the other thing the internet reaches (issue 27): with
//! the gateway's timeouts shortened to seconds, a preview keeps answering while hundreds of
//! connections send half a request header to its host, and Caddy closes those by the header
//! deadline; likewise while uploads drip their bodies a byte a second, which Caddy closes at
//! its read timeout. A WebSocket held open, a download read slowly and a server-sent event
//! stream, all far longer than every timeout, still work end to end. The fixture `streaming/`
//! serves them from busybox.

mod engine_support;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use engine_support::slow::drip_until_closed;
use engine_support::{GitRepo, TestEnv};

const READ_HEADER: Duration = Duration::from_secs(2);
/// The gateway's read timeout in the test: a whole request, body included.
const READ: Duration = Duration::from_secs(3);
/// The gateway's idle timeout in the test.
const IDLE: Duration = Duration::from_secs(2);
/// Uploads dripping their bodies during the second attack.
const DRIPPERS: usize = 20;
const SLACK: Duration = Duration::from_millis(1500);
const ATTACKERS: usize = 300;
/// Longer than every timeout the test sets (2 s headers, 3 s whole request, 2 s idle); the
/// event stream's 8 events a second apart last 7 s.
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
            ("PREVIEWD_GATEWAY_READ_HEADER_TIMEOUT", "2s"), // READ_HEADER
            ("PREVIEWD_GATEWAY_READ_TIMEOUT", "3s"),        // READ
            ("PREVIEWD_GATEWAY_IDLE_TIMEOUT", "2s"),        // IDLE
        ],
    )
    .await;
    let repo = GitRepo::from_fixture("streaming");
    let id = env.up(repo.path()).await.expect("up").state.id;
    let host = format!("{id}.localhost");

    slow_headers(&env, id.as_str(), &host).await;
    slow_bodies(&env, id.as_str(), &host).await;
    websocket(&env, &host).await;
    download(&env, &host).await;
    event_stream(&env, &host).await;

    env.manager.down(&id).await.expect("down");
    env.assert_clean().await;
}

/// Whether the preview answers its page, as a visitor asks for it.
async fn answers(env: &TestEnv, id: &str) {
    let (status, body) = env.get(id, "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("previewd sample: streaming"), "{body}");
}

/// Half a request header each, to the preview's own host: the preview answers meanwhile,
/// and Caddy closes each by the header deadline.
async fn slow_headers(env: &TestEnv, id: &str, host: &str) {
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let mut s = connect(env).await;
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
        answers(env, id).await;
    }
    for a in attackers {
        let (opened, closed) = a.await.expect("reader");
        let closed = closed.expect("a half-sent header still open after 30 s");
        let held = closed - opened;
        assert!(held <= READ_HEADER + SLACK, "held for {held:?}");
    }
}

/// Whole headers with a large `Content-Length` to an upload handler that waits for the whole
/// body, then the body a byte a second: the preview answers meanwhile (an upload sent whole
/// included), and Caddy ends each dripped request at its read timeout, not before, and
/// closes the connection by the idle timeout after.
async fn slow_bodies(env: &TestEnv, id: &str, host: &str) {
    let mut drippers = Vec::new();
    for _ in 0..DRIPPERS {
        let mut s = connect(env).await;
        s.write_all(
            format!(
                "POST /cgi-bin/sink HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("the headers");
        let started = Instant::now();
        drippers.push(tokio::spawn(async move {
            (started, drip_until_closed(s, Duration::from_secs(30)).await)
        }));
    }
    for _ in 0..5 {
        answers(env, id).await;
    }
    let mut upload = connect(env).await;
    upload
        .write_all(
            format!(
                "POST /cgi-bin/sink HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
                 Content-Length: 5\r\n\r\nwhole"
            )
            .as_bytes(),
        )
        .await
        .expect("a whole upload");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), upload.read_to_string(&mut answer))
        .await
        .expect("the upload answered within 5 s")
        .expect("read the upload's answer");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("read\n"),
        "{answer}"
    );
    for d in drippers {
        let (started, dripped) = d.await.expect("dripper");
        let answer = String::from_utf8_lossy(&dripped.answer);
        // Caddy ends the request at its read timeout, with 499 (the body never came; none
        // when a write timeout has passed too), and cancels it upstream: the handler never
        // got the whole body.
        let ended = dripped
            .answered
            .or(dripped.closed)
            .unwrap_or_else(|| panic!("a dripped body still open after 30 s: {answer}"))
            - started;
        assert!(
            ended >= READ - Duration::from_millis(300) && ended <= READ + SLACK,
            "ended after {ended:?}: {answer}"
        );
        assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");
        assert!(!answer.contains("read\n"), "{answer}");
        // The drip's further bytes are no request: the connection closes by the idle timeout.
        let closed = dripped
            .closed
            .unwrap_or_else(|| panic!("a dripped body still open after 30 s: {answer}"))
            - started;
        assert!(
            closed <= READ + IDLE + SLACK,
            "closed after {closed:?}: {answer}"
        );
    }
}

/// A WebSocket: upgraded through the gateway, then quiet and talking for longer than every
/// timeout; each message comes back.
async fn websocket(env: &TestEnv, host: &str) {
    let mut ws = connect(env).await;
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
}

/// A download read slowly: 128 MiB over at least LONG.
async fn download(env: &TestEnv, host: &str) {
    let mut dl = connect(env).await;
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
}

/// A server-sent event stream, an event a second for longer than every timeout: each event
/// arrives when it is sent (not all at the end), and the stream runs to its last one.
async fn event_stream(env: &TestEnv, host: &str) {
    let events: u32 = 8;
    let mut es = connect(env).await;
    es.write_all(
        format!(
            "GET /cgi-bin/events?n={events} HTTP/1.1\r\nHost: {host}\r\n\
             Accept: text/event-stream\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("the stream's request");
    let started = Instant::now();
    let (head, mut got) = read_head(&mut es).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    let mut buf = [0u8; 1024];
    for n in 1..=events {
        let want = format!("data: event {n}\n\n");
        while !String::from_utf8_lossy(&got).contains(&want) {
            let read = tokio::time::timeout(Duration::from_secs(5), es.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("event {n} not within 5 s of the last"))
                .expect("read the stream");
            assert!(
                read > 0,
                "the stream ended after {:?} before event {n}: {}",
                started.elapsed(),
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..read]);
        }
        if n == 1 {
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "the first event came after {:?}: the stream was held back",
                started.elapsed()
            );
        }
    }
    assert!(
        started.elapsed() >= LONG,
        "{events} events took {:?}",
        started.elapsed()
    );
}
