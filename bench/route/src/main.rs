//! Route update: time from "a new preview's containers are healthy" to "its route answers
//! through the gateway", with N other previews already routed.
//!
//! previewd's way: the route table of N+1 synthetic `Observed` previews (two routed services
//! each, like fixtures/two-service) written with `previewd::preview::gateway::routes::write`
//! into the directory the gateway's `file` matcher reads (what `gateway::sync` does after
//! reading the labels; Caddy's config does not change), then polling the new host until it
//! answers 200.
//! The seed's way: write a whole Caddyfile for the N+1 previews and run `caddy reload`.
//! Both against the same Caddy process (the binary of the local `caddy:2` image). Upstreams
//! are rewritten to one local HTTP responder, since the synthetic previews have no containers.
//!
//! Usage: previewd-bench-route CADDY_BIN WORKDIR REPS N...   (prints one JSON line per cell)

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use previewd::config::Config;
use previewd::ids::PreviewId;
use previewd::preview::gateway::{self, routes};
use previewd::preview::labels::{Member, Observed};
use serde_json::Value;

fn member(id: &PreviewId, service: &str, route: Option<&str>, port: Option<u16>) -> Member {
    Member {
        container_id: format!("{id}{service}"),
        name: format!("bench-{id}-{service}"),
        preview: id.clone(),
        service: service.into(),
        generation: 1,
        repo: "https://example.invalid/o/r.git".into(),
        branch: format!("b-{id}"),
        sha: Some("0".repeat(40)),
        pr: Some(1),
        mode: "preview".into(),
        route: route.map(str::to_owned),
        port,
        created: "2026-11-27T00:00:00Z".into(),
        forge: "github".into(),
        health: route.map(|r| (r.to_owned(), 200)),
        state: "running".into(),
        image: format!("bench-{id}-{service}:0"),
        canonical: true,
        networks: Vec::new(),
        volumes: Vec::new(),
        own_host: false,
        oneshot: false,
        depends: None,
        egress: None,
        access: None,
        hooks: None,
    }
}

fn preview(i: usize) -> Observed {
    let id = PreviewId::parse(&format!("p{i:09}")).expect("valid id");
    let members = vec![
        member(&id, "api", Some("/api"), Some(3000)),
        member(&id, "internal", None, None),
        member(&id, "web", Some("/"), Some(8080)),
    ];
    Observed {
        id,
        generations: BTreeMap::from([(1, members)]),
        asleep: None,
        ready_in: None,
    }
}

/// A tiny HTTP responder standing in for every preview's containers.
fn backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve_conn(s));
        }
    });
    port
}

fn serve_conn(mut s: TcpStream) {
    let mut buf = [0u8; 8192];
    let mut acc = Vec::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => acc.extend_from_slice(&buf[..n]),
        }
        while let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
            acc.drain(..end + 4);
            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
                .is_err()
            {
                return;
            }
        }
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status code.
fn request(mut s: impl Read + Write, head: &str, body: &[u8]) -> std::io::Result<u16> {
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let line = String::from_utf8_lossy(&out);
    Ok(line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

fn load(sock: &Path, body: &[u8]) {
    let s = UnixStream::connect(sock).expect("admin socket");
    let head = format!(
        "POST /load HTTP/1.1\r\nHost: caddy\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let code = request(s, &head, body).expect("POST /load");
    assert_eq!(code, 200, "caddy refused the config");
}

/// Polls the gateway for `host` until it answers 200 (every 1 ms).
fn wait_route(port: u16, host: &str) {
    let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port))
            && request(s, &head, b"").ok() == Some(200)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("route {host} never answered");
}

/// Times `count` requests to `host` through the gateway, one at a time, each on a connection
/// of its own (as `wait_route` sends them), in milliseconds.
fn request_times(port: u16, host: &str, count: usize) -> Vec<f64> {
    let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    (0..count)
        .map(|_| {
            let t0 = Instant::now();
            let s = TcpStream::connect(("127.0.0.1", port)).expect("gateway");
            assert_eq!(request(s, &head, b"").ok(), Some(200), "{host}");
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

/// Rewrites what only makes sense inside Docker: the listen port, the admin socket, the route
/// table's directory and the upstream (the table still decides whether a host and path are
/// routed; every routed request goes to the local responder).
fn localise(v: &mut Value, listen: &str, admin: &str, dial: &str, root: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match (k.as_str(), &mut *x) {
                    ("dial", Value::String(s)) => *s = dial.into(),
                    ("root", Value::String(s)) => *s = root.into(),
                    ("listen", Value::Array(a)) => *a = vec![Value::String(listen.into())],
                    ("listen", Value::String(s)) => *s = admin.into(),
                    _ => localise(x, listen, admin, dial, root),
                }
            }
        }
        Value::Array(a) => a
            .iter_mut()
            .for_each(|x| localise(x, listen, admin, dial, root)),
        _ => {}
    }
}

fn caddyfile(previews: &[Observed], domain: &str, port: u16, admin: &str, dial: &str) -> String {
    let mut s = format!("{{\n\tadmin {admin}\n\tauto_https off\n}}\n\n");
    for p in previews {
        s.push_str(&format!("http://{}.{domain}:{port} {{\n", p.id));
        s.push_str("\tbind 127.0.0.1\n");
        s.push_str(&format!(
            "\thandle /api* {{\n\t\treverse_proxy {dial}\n\t}}\n"
        ));
        s.push_str(&format!(
            "\thandle {{\n\t\treverse_proxy {dial}\n\t}}\n}}\n\n"
        ));
    }
    s
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[i]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let caddy = PathBuf::from(&args[1]);
    let work = PathBuf::from(&args[2]);
    let reps: usize = args[3].parse().unwrap();
    let ns: Vec<usize> = args[4..].iter().map(|n| n.parse().unwrap()).collect();
    std::fs::create_dir_all(&work).unwrap();
    let sock = work.join("admin.sock");
    let _ = std::fs::remove_file(&sock);
    let admin = format!("unix/{}", sock.display());
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let dial = format!("127.0.0.1:{}", backend());
    let env = vec![
        ("PREVIEWD_INSTANCE".to_string(), "bench".to_string()),
        (
            "PREVIEWD_GATEWAY_DOMAIN".to_string(),
            "localhost".to_string(),
        ),
    ];
    let config = Config::from_parts(None, Path::new("previewd.toml"), &env).expect("config");

    let boot = work.join("boot.json");
    std::fs::write(
        &boot,
        serde_json::json!({"admin": {"listen": admin}}).to_string(),
    )
    .unwrap();
    let mut child: Child = Command::new(&caddy)
        .args(["run", "--config"])
        .arg(&boot)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("caddy.log")).unwrap())
        .spawn()
        .expect("caddy");
    let end = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }

    let table_dir = work.join("routes");
    let mut cfg = gateway::caddy_config(&config);
    localise(
        &mut cfg,
        &listen,
        &admin,
        &dial,
        &table_dir.display().to_string(),
    );
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let mut next = 0usize;
    for &n in &ns {
        let existing: Vec<Observed> = (0..n).map(|i| preview(1_000_000 + i)).collect();
        for way in ["table", "reload"] {
            if way == "table" {
                // The gateway's config, once: it does not depend on the previews. The table
                // starts with the N existing previews.
                load(&sock, &cfg);
                routes::write(&table_dir, &routes::table(&config, &existing)).unwrap();
            }
            let mut times = Vec::new();
            let mut own = Vec::new();
            for _ in 0..reps {
                next += 1;
                let mut all = existing.clone();
                let new = preview(next);
                let host = format!("{}.localhost", new.id);
                all.push(new);
                let t0 = Instant::now();
                if way == "table" {
                    routes::write(&table_dir, &routes::table(&config, &all)).unwrap();
                    own.push(t0.elapsed().as_secs_f64() * 1e3);
                } else {
                    let text = caddyfile(&all, "localhost", port, &admin, &dial);
                    let file = work.join("Caddyfile");
                    std::fs::write(&file, text).unwrap();
                    own.push(t0.elapsed().as_secs_f64() * 1e3);
                    let st = Command::new(&caddy)
                        .args([
                            "reload",
                            "--adapter",
                            "caddyfile",
                            "--address",
                            &admin,
                            "--config",
                        ])
                        .arg(&file)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .expect("caddy reload");
                    assert!(st.success(), "caddy reload failed");
                }
                wait_route(port, &host);
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            let (p50, p99) = (pct(&mut times.clone(), 50.0), pct(&mut times, 99.0));
            let own50 = pct(&mut own, 50.0);
            // What the route table costs every request: the last preview added is the last
            // entry of previewd's table (the worst case) and the last site of the Caddyfile.
            let last = format!("{}.localhost", preview(next).id);
            let mut req = request_times(port, &last, 300);
            let (req50, req99) = (pct(&mut req.clone(), 50.0), pct(&mut req, 99.0));
            println!(
                "{}",
                serde_json::json!({"n": n, "way": way, "reps": reps, "p50_ms": p50, "p99_ms": p99, "own_p50_ms": own50,
                                   "request_p50_ms": req50, "request_p99_ms": req99})
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
