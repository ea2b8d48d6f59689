//! Slow and abusive clients against previewd's own listeners (issue 27, docs/SECURITY.md):
//! more half-sent requests than `serve`'s open-files limit, from the real binary started with
//! a lowered `RLIMIT_NOFILE`, while a real signed delivery must still be answered within one
//! second (GitHub gives up after ten and never redelivers) and every slow connection is closed
//! by the header deadline; a body dripped a byte a second, closed at the body deadline with
//! nothing queued; and a keep-alive client that sends whole requests, which none of this may
//! touch. The admin listener gets the same attack: `/metrics` and the status page, what an
//! operator looks at during one, still answer. The gateway's side is `gateway_slow_clients.rs`.

mod engine_support;
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use engine_support::free_port;
use engine_support::slow::drip_until_closed;
use support::engine::FakeEngine;
use support::fake_github::FakeGitHub;
use support::{Harness, SECRET, payload, sign, test_env};

/// `serve`'s open-files limit in the first test: the attack opens more connections than this.
const NOFILE: u64 = 256;
const ATTACKERS: usize = 300;
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Room for the scheduler and the test's own reading on a loaded machine: a connection closed
/// later than the deadline plus this was not closed by the deadline.
const SLACK: Duration = Duration::from_millis(1500);

/// A `previewd serve` child with its stderr kept line by line, SIGKILLed when dropped.
struct Serve {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// `sh`'s `ulimit -n` lowers both the soft and the hard limit, so `serve` cannot raise
    /// it back: it has to live within `nofile` files.
    fn start(vars: &[(String, String)], nofile: u64) -> Serve {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" serve"))
            .arg(env!("CARGO_BIN_EXE_previewd"))
            .env_remove("PREVIEWD_LOG_FORMAT")
            .env("PREVIEWD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start previewd serve");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("stderr piped");
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[serve] {line}");
                kept.lock().unwrap().push(line);
            }
        });
        Serve { child, lines }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// Polls `f` until it holds, failing after 30 s.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTP/1.1 request on a fresh connection: the status and the body, or `None` when the
/// connection failed or closed without an answer.
async fn request(addr: SocketAddr, head: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(body).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn signed_head(addr: SocketAddr, event: &str, delivery: &str, body: &[u8]) -> String {
    format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nX-GitHub-Event: {event}\r\n\
         X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
        sign(SECRET, body),
        body.len()
    )
}

/// One response from a kept-alive connection: its status and body (by `Content-Length`).
async fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .expect("a content-length");
            if body.len() >= len {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .expect("a status");
                return (status, body.to_owned());
            }
        }
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "the server closed a kept-alive connection: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// The value of the metric line starting with `prefix` (`name{labels}`), 0 when absent.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until the server closes `s` (EOF or reset) and says when; `give_up` bounds the wait.
async fn closed_at(mut s: TcpStream, give_up: Duration) -> Option<Instant> {
    let mut buf = [0u8; 512];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(give_up, read_all).await.ok()
}

/// `previewd serve`, the real binary, living within `nofile` open files with a 2 s header
/// deadline, once it answers `/healthz`; with its fake forge and data folder, kept as long
/// as it runs.
struct Limited {
    serve: Serve,
    addr: SocketAddr,
    admin: SocketAddr,
    _github: FakeGitHub,
    _data: tempfile::TempDir,
}

impl Limited {
    async fn start(name: &str, nofile: u64) -> Limited {
        let github = FakeGitHub::start().await;
        let data = tempfile::tempdir().expect("tempdir");
        let (listen, admin) = (free_port(), free_port());
        let mut vars = test_env(
            &github.url(),
            &[
                ("PREVIEWD_LISTEN", &format!("127.0.0.1:{listen}")),
                ("PREVIEWD_ADMIN_LISTEN", &format!("127.0.0.1:{admin}")),
                ("PREVIEWD_SERVER_HEADER_TIMEOUT", "2s"),
            ],
        );
        vars.retain(|(k, _)| k != "PREVIEWD_DATA_DIR");
        vars.push((
            "PREVIEWD_DATA_DIR".into(),
            data.path().display().to_string(),
        ));
        vars.push((
            "PREVIEWD_INSTANCE".into(),
            format!("{name}-{}", std::process::id()),
        ));
        let serve = Serve::start(&vars, nofile);
        let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
        until("serve answers /healthz", || async {
            request(addr, HEALTHZ, b"")
                .await
                .is_some_and(|(s, _)| s == 200)
        })
        .await;
        Limited {
            serve,
            addr,
            admin,
            _github: github,
            _data: data,
        }
    }

    /// `/metrics` from the admin listener.
    async fn metrics(&self) -> String {
        let (status, text) = request(self.admin, &get("/metrics"), b"")
            .await
            .expect("metrics");
        assert_eq!(status, 200, "{text}");
        text
    }
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

/// `n` connections to `addr` that each send `half` (half a request header) and then nothing;
/// each task tells when its connection opened and when the server closed it.
async fn half_sent(
    addr: SocketAddr,
    half: &'static [u8],
    n: usize,
) -> Vec<tokio::task::JoinHandle<(Instant, Option<Instant>)>> {
    let mut attackers = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(half).await.expect("half a header");
        let opened = Instant::now();
        attackers.push(tokio::spawn(async move {
            (opened, closed_at(s, Duration::from_secs(30)).await)
        }));
    }
    attackers
}

/// Every half-sent connection was closed by the server within the header deadline.
async fn closed_by_the_header_deadline(
    attackers: Vec<tokio::task::JoinHandle<(Instant, Option<Instant>)>>,
) {
    for a in attackers {
        let (opened, closed) = a.await.expect("reader");
        let closed = closed.expect("a half-sent connection still open after 30 s");
        let held = closed - opened;
        assert!(held <= HEADER_TIMEOUT + SLACK, "held for {held:?}");
    }
}

/// `previewd_connections_closed_total` of `listener` for `reason` in `text`.
fn closed(text: &str, listener: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!(
            "previewd_connections_closed_total{{listener=\"{listener}\",reason=\"{reason}\"}} "
        ),
    )
}

/// The attack's closures on `listener` were counted: some by the header deadline, some for
/// newer connections at the cap, together at least one per attacker.
fn attack_counted(text: &str, listener: &str) {
    let (slow, over) = (
        closed(text, listener, "slow_headers"),
        closed(text, listener, "over_capacity"),
    );
    assert!(slow >= 1.0, "{text}");
    assert!(over >= 1.0, "{text}");
    assert!(slow + over >= ATTACKERS as f64, "{text}");
}

/// The attack, against the real binary with 256 open files: 300 connections that each
/// send half a request header. A signed delivery sent during the attack is answered, 200,
/// within one second; every half-sent connection is closed by the header deadline (the
/// oldest ones earlier, for newer connections at the cap); `/metrics` counts both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_sent_headers_beyond_the_open_files_limit_do_not_keep_a_delivery_out() {
    let serve = Limited::start("slowhdr", NOFILE).await;
    let addr = serve.addr;
    // It said at start what the limit and the cap are: the cap fits the lowered limit.
    let cap = previewd::listener::connection_cap(NOFILE, 1024, 2);
    let log = serve.serve.log();
    assert!(
        log.contains(&format!("open_files_limit={NOFILE}"))
            && log.contains(&format!("connection_cap={cap}")),
        "{log}"
    );

    let attackers = half_sent(
        addr,
        b"POST /webhooks/github HTTP/1.1\r\nHost: previewd\r\nX-GitHub-Ev",
        ATTACKERS,
    )
    .await;
    let body = payload("ping.json");
    let head = signed_head(addr, "ping", "72d3162e-cc78-11e3-81ab-000000000001", &body);
    let sent = Instant::now();
    let answer = request(addr, &head, &body).await;
    let took = sent.elapsed();
    assert_eq!(answer.map(|(s, _)| s), Some(200), "the delivery's answer");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");

    closed_by_the_header_deadline(attackers).await;
    let text = serve.metrics().await;
    attack_counted(&text, "webhook");
    assert_eq!(
        metric(&text, "previewd_connections_max{listener=\"webhook\"} "),
        cap as f64
    );
}

/// The same attack on the admin listener (it has its own cap, and an operator opens it
/// during an attack): `/metrics` and the status page still answer within one second, every
/// half-sent connection is closed by the header deadline, and the closures are counted
/// under `listener="admin"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_sent_headers_on_the_admin_listener_do_not_keep_an_operator_out() {
    let serve = Limited::start("slowadm", NOFILE).await;
    let attackers = half_sent(
        serve.admin,
        b"GET /metrics HTTP/1.1\r\nHost: previewd\r\nAcce",
        ATTACKERS,
    )
    .await;
    for path in ["/metrics", "/"] {
        let sent = Instant::now();
        let answer = request(serve.admin, &get(path), b"").await;
        let took = sent.elapsed();
        assert_eq!(answer.map(|(s, _)| s), Some(200), "{path}'s answer");
        assert!(
            took < Duration::from_secs(1),
            "{path} answered after {took:?}"
        );
    }

    closed_by_the_header_deadline(attackers).await;
    let text = serve.metrics().await;
    attack_counted(&text, "admin");
    let cap = previewd::listener::connection_cap(NOFILE, 1024, 2);
    assert_eq!(
        metric(&text, "previewd_connections_max{listener=\"admin\"} "),
        cap as f64
    );
    // The webhook listener was not the one attacked.
    assert_eq!(closed(&text, "webhook", "slow_headers"), 0.0, "{text}");
}

/// Whole headers with a large `Content-Length`, then the body a byte a second: previewd
/// closes the connection at the body deadline, answers nothing for it, queues nothing, and
/// counts it. The delivery sent afterwards is the positive sign that input is handled.
#[tokio::test]
async fn a_body_dripped_a_byte_a_second_is_closed_at_the_body_deadline_and_nothing_queued() {
    let body_timeout = Duration::from_secs(2);
    let h = Harness::start(
        FakeEngine::auto(),
        &[("PREVIEWD_SERVER_BODY_TIMEOUT", "2s")],
    )
    .await;
    let real = payload("pull_request.labeled.json");
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let head = signed_head(
        h.addr,
        "pull_request",
        "72d3162e-cc78-11e3-81ab-00000000dead",
        &real,
    )
    .replace(
        &format!("Content-Length: {}", real.len()),
        "Content-Length: 1000000",
    );
    s.write_all(head.as_bytes()).await.expect("headers");
    let started = Instant::now();
    let dripped = drip_until_closed(s, Duration::from_secs(30)).await;
    let (closed, answer) = (dripped.closed, dripped.answer);
    let closed = closed.expect("a dripped body still open after 30 s");
    let held = closed - started;
    assert!(
        held >= body_timeout - Duration::from_millis(200) && held <= body_timeout + SLACK,
        "closed after {held:?}"
    );
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    let (status, _) = h.post("ping", &payload("ping.json")).await;
    assert_eq!(status, 200);
    h.assert_nothing_queued(1).await;
    let (_, text) = h.get(h.admin, "/metrics").await;
    assert_eq!(
        metric(
            &text,
            "previewd_connections_closed_total{listener=\"webhook\",reason=\"slow_body\"} "
        ),
        1.0,
        "{text}"
    );
    h.stop().await;
}

/// A harness with a 1 s header deadline and a 20 s idle timeout, and one connection to it.
async fn short_headers_long_idle() -> (Harness, TcpStream) {
    let h = Harness::start(
        FakeEngine::auto(),
        &[
            ("PREVIEWD_SERVER_HEADER_TIMEOUT", "1s"),
            ("PREVIEWD_SERVER_IDLE_TIMEOUT", "20s"),
        ],
    )
    .await;
    let s = TcpStream::connect(h.addr).await.expect("connect");
    (h, s)
}

/// A signed ping on a kept-alive connection, answered 200.
async fn ping_on(s: &mut TcpStream, addr: SocketAddr, delivery: &str) {
    let body = payload("ping.json");
    let head = signed_head(addr, "ping", delivery, &body).replace("Connection: close\r\n", "");
    s.write_all(head.as_bytes()).await.expect("request sent");
    s.write_all(&body).await.expect("body sent");
    let (status, text) = read_response(s).await;
    assert_eq!(status, 200, "{text}");
}

/// A keep-alive client that sends whole requests, pausing longer than the header deadline
/// between them (but less than the idle timeout), keeps its one connection: the header
/// deadline is for headers, not for the wait between requests.
#[tokio::test]
async fn a_keep_alive_client_sending_whole_requests_keeps_its_connection() {
    let (h, mut s) = short_headers_long_idle().await;
    for n in 0..3 {
        ping_on(
            &mut s,
            h.addr,
            &format!("72d3162e-cc78-11e3-81ab-00000000100{n}"),
        )
        .await;
        // Longer than the header deadline: the next request comes on the same connection.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    h.stop().await;
}

/// A connection opened ahead of need (a client's pool, a browser's preconnect) that sends
/// nothing for longer than the header deadline is idle, not slow: its request, when it comes,
/// is answered. Once it starts a request and stalls, the header deadline runs from that first
/// byte and closes it, long before the idle timeout would.
#[tokio::test]
async fn a_connection_opened_ahead_of_need_is_idle_not_slow() {
    let header_timeout = Duration::from_secs(1);
    let (h, mut s) = short_headers_long_idle().await;
    // The client's own pause before its first request: longer than the header deadline.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ping_on(&mut s, h.addr, "72d3162e-cc78-11e3-81ab-000000002001").await;

    s.write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: previewd\r\nX-GitHub-Ev")
        .await
        .expect("half a header");
    let started = Instant::now();
    let closed = closed_at(s, Duration::from_secs(15))
        .await
        .expect("a stalled request still open after 15 s");
    let held = closed - started;
    assert!(held <= header_timeout + SLACK, "held for {held:?}");
    h.stop().await;
}

/// Past the open-files limit itself: `serve` started with a few files more than it holds
/// when idle (fewer than a listener's least cap, so its cap cannot step in first) gets
/// EMFILE from `accept` under the attack. It closes the slowest connection to make room, so
/// a signed delivery is still answered, and counts the failed accepts on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn running_out_of_files_is_counted_and_a_delivery_still_answered() {
    // What `serve` holds when idle, measured: its own start-up, not a guess.
    let idle = {
        let probe = Limited::start("slowfdprobe", NOFILE).await;
        open_files(&probe.serve)
    };
    let serve = Limited::start("slowfd", idle + 4).await;
    let text = serve.metrics().await;
    let refused = |text: &str| {
        metric(
            text,
            "previewd_connections_refused_total{listener=\"webhook\",reason=\"out_of_files\"} ",
        )
    };
    assert_eq!(refused(&text), 0.0, "{text}");

    let attackers = half_sent(
        serve.addr,
        b"POST /webhooks/github HTTP/1.1\r\nHost: previewd\r\nX-GitHub-Ev",
        20,
    )
    .await;
    let body = payload("ping.json");
    let head = signed_head(
        serve.addr,
        "ping",
        "72d3162e-cc78-11e3-81ab-000000003001",
        &body,
    );
    let sent = Instant::now();
    let answer = request(serve.addr, &head, &body).await;
    let took = sent.elapsed();
    assert_eq!(answer.map(|(s, _)| s), Some(200), "the delivery's answer");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");

    closed_by_the_header_deadline(attackers).await;
    let text = serve.metrics().await;
    assert!(refused(&text) >= 1.0, "{text}");
    assert!(
        serve.serve.log().contains("cannot accept a connection"),
        "{}",
        serve.serve.log()
    );
}

/// The file descriptors `serve` holds now.
fn open_files(serve: &Serve) -> u64 {
    let fds = std::fs::read_dir(format!("/proc/{}/fd", serve.child.id())).expect("/proc");
    fds.count() as u64
}

/// EMFILE and ENFILE (the process's or the system's files) are counted as `out_of_files`, the
/// listener's other failures apart; the numbers are this system's.
#[test]
fn accept_failures_for_lack_of_files_are_told_from_the_others() {
    use previewd::listener::Refused;
    use std::io::Error;
    let kind = |errno| Refused::of(&Error::from_raw_os_error(errno));
    for (errno, text) in [
        (24, "Too many open files"),
        (23, "Too many open files in system"),
    ] {
        assert!(
            Error::from_raw_os_error(errno)
                .to_string()
                .starts_with(text)
        );
        assert_eq!(kind(errno), Refused::OutOfFiles, "{text}");
    }
    // ENOMEM, ENOBUFS
    assert_eq!(kind(12), Refused::Other);
    assert_eq!(kind(105), Refused::Other);
}
