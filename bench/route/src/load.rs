//! A closed-loop HTTP/1.1 load generator for the ingest benchmark, beside `wrk`: N keep-alive
//! connections, each sending its next signed delivery as soon as the last one is answered, for
//! a fixed time. Every request carries a fresh `X-GitHub-Delivery` (so de-duplication never
//! short-cuts the work) and the same body, shared (`Bytes`), never copied or rebuilt.
//!
//! Why not only `wrk`: a varying header needs wrk's Lua `request()`, which builds a new Lua
//! string of the whole request every time. For a 1 MiB body that string is a fresh `mmap` that
//! is faulted in page by page and unmapped again by the collector: `perf` puts half of wrk's CPU
//! in page faults, 1.7-1.9 ms per request, taken from the same 2 cores the servers share. Here
//! the client's own cost per request is the kernel's copy of what it sends.
//!
//! Usage: previewd-bench-load URL CONNECTIONS THREADS SECONDS BODY_FILE SIG_FILE EVENT
//! Prints one JSON object, the fields of bench/lib/signed.lua's summary (latency in µs; errors by
//! kind; `status` counts answers >= 400, as wrk does).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What one connection saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    connect: u64,
    read: u64,
    write: u64,
    status: u64,
}

struct Plan {
    host: String,
    path: String,
    event: String,
    signature: String,
    body: Bytes,
    /// Makes delivery ids unique across runs against one long-lived server.
    run: String,
    deadline: Instant,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("previewd-bench-load: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, conns, threads, secs, body, sig, event] = args.as_slice() else {
        return Err(
            "usage: previewd-bench-load URL CONNECTIONS THREADS SECONDS BODY_FILE SIG_FILE EVENT"
                .into(),
        );
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let number = |s: &str, what: &str| {
        s.parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("{what} must be a positive number, not {s:?}"))
    };
    let conns = number(conns, "CONNECTIONS")?;
    let threads = number(threads, "THREADS")? as usize;
    let secs = number(secs, "SECONDS")?;
    let body = std::fs::read(body).map_err(|e| format!("{body}: {e}"))?;
    let signature = std::fs::read_to_string(sig).map_err(|e| format!("{sig}: {e}"))?;
    let started = Instant::now();
    let plan = Arc::new(Plan {
        host: host.to_owned(),
        path: path.to_owned(),
        event: event.clone(),
        signature: signature.trim().to_owned(),
        body: Bytes::from(body),
        run: format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ),
        deadline: started + Duration::from_secs(secs),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let tallies = rt.block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|c| tokio::spawn(connection(plan.clone(), c)))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_default());
        }
        out
    });
    let elapsed = started.elapsed();
    let mut all = Tally::default();
    for t in tallies {
        all.latencies_us.extend(t.latencies_us);
        all.connect += t.connect;
        all.read += t.read;
        all.write += t.write;
        all.status += t.status;
    }
    all.latencies_us.sort_unstable();
    let pct = |p: f64| -> u32 {
        let v = &all.latencies_us;
        if v.is_empty() {
            return 0;
        }
        let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[i.clamp(1, v.len()) - 1]
    };
    println!(
        "{{\"requests\":{},\"duration_us\":{},\"connect\":{},\"read\":{},\"write\":{},\"status\":{},\"timeout\":0,\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        all.latencies_us.len(),
        elapsed.as_micros(),
        all.connect,
        all.read,
        all.write,
        all.status,
        pct(50.0),
        pct(99.0),
        all.latencies_us.last().copied().unwrap_or(0),
    );
    Ok(())
}

/// One keep-alive connection, reopened after an error, until the deadline.
async fn connection(plan: Arc<Plan>, conn: u64) -> Tally {
    let mut tally = Tally::default();
    let mut n: u64 = 0;
    'connect: while Instant::now() < plan.deadline {
        let Ok(stream) = TcpStream::connect(&plan.host).await else {
            tally.connect += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, driver)) = http1::handshake(TokioIo::new(stream)).await else {
            tally.connect += 1;
            continue;
        };
        tokio::spawn(driver);
        while Instant::now() < plan.deadline {
            n += 1;
            let request = Request::post(plan.path.as_str())
                .header("host", plan.host.as_str())
                .header("content-type", "application/json")
                .header("x-github-event", plan.event.as_str())
                .header("x-hub-signature-256", plan.signature.as_str())
                .header("user-agent", "GitHub-Hookshot/bench")
                .header(
                    "x-github-delivery",
                    format!("bench-{}-{conn}-{n}", plan.run),
                )
                .body(Full::new(plan.body.clone()));
            let Ok(request) = request else {
                tally.write += 1;
                break 'connect;
            };
            if sender.ready().await.is_err() {
                tally.write += 1;
                continue 'connect;
            }
            let sent = Instant::now();
            let answer = match sender.send_request(request).await {
                Ok(r) => r,
                Err(_) => {
                    tally.read += 1;
                    continue 'connect;
                }
            };
            let status = answer.status();
            if answer.into_body().collect().await.is_err() {
                tally.read += 1;
                continue 'connect;
            }
            let took = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
            tally.latencies_us.push(took);
            if status.as_u16() >= 400 {
                tally.status += 1;
            }
        }
        break;
    }
    tally
}
