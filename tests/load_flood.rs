//! Issue 6, point 5: a paced flood of webhooks (200 a second) mixing valid deliveries,
//! forged signatures, replays of delivery ids already answered, and malformed deliveries (bad
//! JSON, a mistyped field, a missing header), through the real receiver and queue on a real
//! socket, with the fake GitHub and the fake engine. Every valid delivery is a labelled PR of
//! its own (its own number and branch, so nothing supersedes anything).
//!
//! It checks that every valid intent reached the engine exactly once and nothing else did,
//! that every answer had the right code, and that nothing panicked. It samples the process's
//! RSS and the queue depth every second and prints them; from 20 s on it also fails when the
//! RSS keeps growing after the warm-up. `LOAD_SECONDS` sets the number of deliveries (200 a
//! second of it; default 5 s, for CI, where a debug build sends them slower);
//! `LOAD_SECONDS=60 cargo test --release --test load_flood -- --nocapture` is the run recorded
//! in docs/SECURITY.md.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use support::engine::FakeEngine;
use support::{Harness, SECRET, payload_json, sign};
use tokio::time::{Instant, MissedTickBehavior};

/// Deliveries a second.
const RATE: u64 = 200;
/// Requests in flight at most (a slow answer must not pile up unbounded client tasks).
const IN_FLIGHT: usize = 256;
/// Invalid deliveries name PRs from here on, so an invalid one acted on would show.
const INVALID_BASE: u64 = 1_000_000;

/// Seconds since the start, RSS in KiB, queue depth, deliveries answered.
type Sample = (u64, u64, i64, usize);

static PANICS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Valid,
    BadSignature,
    NoSignature,
    Replay,
    BadJson,
    MistypedField,
    NoEventHeader,
}

impl Kind {
    /// One cycle of ten deliveries: half valid.
    fn at(i: u64) -> Kind {
        match i % 10 {
            0 | 2 | 4 | 6 | 8 => Kind::Valid,
            1 => Kind::BadSignature,
            3 => Kind::BadJson,
            5 => Kind::Replay,
            7 => Kind::MistypedField,
            _ if i % 20 == 9 => Kind::NoEventHeader,
            _ => Kind::NoSignature,
        }
    }

    fn expected(self) -> u16 {
        match self {
            Kind::Valid => 202,
            Kind::BadSignature | Kind::NoSignature => 401,
            Kind::Replay => 200,
            Kind::BadJson | Kind::MistypedField | Kind::NoEventHeader => 400,
        }
    }
}

fn load_seconds() -> u64 {
    std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(5)
}

fn sha_for(n: u64) -> String {
    format!("{n:040x}")
}

fn branch_for(n: u64) -> String {
    format!("load-{n}")
}

/// The labelled PR fixture as PR `n`, on its own branch and commit.
fn pull(template: &Value, n: u64) -> Value {
    let mut pr = template.clone();
    pr["number"] = json!(n);
    pr["head"]["ref"] = json!(branch_for(n));
    pr["head"]["sha"] = json!(sha_for(n));
    pr
}

fn labeled(template: &Value, n: u64) -> Vec<u8> {
    let mut v = template.clone();
    v["number"] = json!(n);
    v["pull_request"] = pull(&template["pull_request"], n);
    serde_json::to_vec(&v).expect("JSON")
}

/// A stand-in PR number that occurs nowhere else in the fixture.
const PLACEHOLDER: u64 = 987_654_321;

/// The labelled payload serialized once with `PLACEHOLDER`, made PR `n` by replacing text
/// (cheap enough for 200 a second in a debug build).
struct Bodies(String);

impl Bodies {
    fn new(template: &Value) -> Bodies {
        let text = String::from_utf8(labeled(template, PLACEHOLDER)).expect("UTF-8");
        assert_eq!(text.matches(&PLACEHOLDER.to_string()).count(), 3);
        Bodies(text)
    }

    fn make(&self, n: u64) -> Vec<u8> {
        self.0
            .replace(&sha_for(PLACEHOLDER), &sha_for(n))
            .replace(&PLACEHOLDER.to_string(), &n.to_string())
            .into_bytes()
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `previewd_queue_depth` as the admin listener reports it.
async fn queue_depth(h: &Harness) -> i64 {
    let (_, text) = h.get(h.admin, "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix("previewd_queue_depth "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

struct Sent {
    kind: Kind,
    status: u16,
    body: Value,
}

/// Answers by kind and status, and the first few wrong ones.
#[derive(Default)]
struct Tally {
    answered: usize,
    by_kind: BTreeMap<(Kind, u16), usize>,
    wrong: Vec<String>,
}

impl Tally {
    fn add(&mut self, r: Sent) {
        self.answered += 1;
        *self.by_kind.entry((r.kind, r.status)).or_default() += 1;
        let right = r.status == r.kind.expected()
            && (r.kind != Kind::Replay || r.body["duplicate"] == json!(true));
        if !right && self.wrong.len() < 10 {
            self.wrong
                .push(format!("{:?} answered {} {}", r.kind, r.status, r.body));
        }
    }
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: std::net::SocketAddr,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = hyper::Request::post(format!("http://{addr}/webhooks/github"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = client.request(req).await.expect("request sent");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_flood_acts_on_every_valid_delivery_once_and_on_nothing_else() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let seconds = load_seconds();
    let total = RATE * seconds;
    let engine = FakeEngine::auto();
    engine.set_lean();
    // Enough workers that the fake engine keeps up; the queue's cap is not what is tested.
    let h = Arc::new(
        Harness::start(
            engine.clone(),
            &[
                ("PREVIEWD_LIMITS_PARALLEL", "8"),
                ("PREVIEWD_LIMITS_MAX_QUEUED", "100000"),
            ],
        )
        .await,
    );
    let template = payload_json("pull_request.labeled.json");
    let pr_template = template["pull_request"].clone();
    h.github
        .set_pull_fn(move |n| (n < INVALID_BASE).then(|| pull(&pr_template, n)));
    h.github.set_permission("Codertocat", "write");
    h.github.set_lean();

    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    // Valid deliveries answered, newest last: what a replay picks from.
    let answered: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let bodies = Arc::new(Bodies::new(&template));

    let sent_count = Arc::new(AtomicUsize::new(0));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = {
        let (h, samples, sent_count) = (h.clone(), samples.clone(), sent_count.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let depth = queue_depth(&h).await;
                samples.lock().unwrap().push((
                    start.elapsed().as_secs(),
                    rss_kib(),
                    depth,
                    sent_count.load(Ordering::SeqCst),
                ));
            }
        })
    };

    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    // Answers are tallied as they come, so the test keeps nothing per delivery.
    let mut tasks = tokio::task::JoinSet::new();
    let mut tally = Tally::default();
    let mut valid_numbers = HashSet::new();
    let mut next_valid = 1u64;
    for i in 0..total {
        tick.tick().await;
        let permit = slots.clone().acquire_owned().await.expect("open");
        let mut kind = Kind::at(i);
        let replay = match kind {
            Kind::Replay => answered.lock().unwrap().last().cloned(),
            _ => None,
        };
        if kind == Kind::Replay && replay.is_none() {
            kind = Kind::Valid;
        }
        let n = match kind {
            Kind::Valid => {
                next_valid += 1;
                valid_numbers.insert(next_valid);
                next_valid
            }
            Kind::Replay => replay.as_ref().map(|r| r.1).unwrap_or_default(),
            _ => INVALID_BASE + i,
        };
        let delivery = match &replay {
            Some((id, _)) => id.clone(),
            None => h.delivery_id(),
        };
        let (client, answered, bodies, sent_count) = (
            client.clone(),
            answered.clone(),
            bodies.clone(),
            sent_count.clone(),
        );
        let addr = h.addr;
        while let Some(done) = tasks.try_join_next() {
            tally.add(done.expect("client task"));
        }
        tasks.spawn(async move {
            let _permit = permit;
            let mut body = bodies.make(n);
            let mut sig = sign(SECRET, &body);
            let mut event = "pull_request";
            match kind {
                Kind::BadSignature => sig = sign("not the secret", &body),
                Kind::BadJson => {
                    body.truncate(body.len() / 2);
                    sig = sign(SECRET, &body);
                }
                Kind::MistypedField => {
                    let mut v: Value = serde_json::from_slice(&body).expect("JSON");
                    v["pull_request"]["number"] = json!(format!("#{n}"));
                    body = serde_json::to_vec(&v).expect("JSON");
                    sig = sign(SECRET, &body);
                }
                Kind::NoEventHeader => event = "",
                Kind::NoSignature => sig.clear(),
                Kind::Valid | Kind::Replay => {}
            }
            let mut headers = vec![
                ("x-github-delivery", delivery.as_str()),
                ("content-type", "application/json"),
            ];
            if !event.is_empty() {
                headers.push(("x-github-event", event));
            }
            if !sig.is_empty() {
                headers.push(("x-hub-signature-256", sig.as_str()));
            }
            let (status, answer) = post(&client, addr, &headers, body).await;
            sent_count.fetch_add(1, Ordering::SeqCst);
            if kind == Kind::Valid && status == 202 {
                let mut a = answered.lock().unwrap();
                if a.len() >= 64 {
                    a.remove(0);
                }
                a.push((delivery, n));
            }
            Sent {
                kind,
                status,
                body: answer,
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        tally.add(done.expect("client task"));
    }
    let elapsed = start.elapsed();

    // Every valid intent reaches the engine; wait for the queue to drain.
    let deadline = Instant::now() + Duration::from_secs(60 + seconds);
    let deployed = || engine.deployed_count();
    while deployed() < valid_numbers.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} valid intents deployed",
            deployed(),
            valid_numbers.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The queue empties too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue_depth(&h).await != 0 {
        assert!(Instant::now() < deadline, "the queue never emptied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sampler.abort();
    let _ = sampler.await;
    let samples = samples.lock().unwrap().clone();

    // What the engine saw: each valid PR's branch deployed exactly once, at its commit.
    let counts = engine.lean_counts();
    assert!(
        counts.other.is_empty(),
        "unexpected engine calls: {:?}",
        counts.other
    );
    let mut twice = Vec::new();
    for (branch, (times, sha)) in &counts.deploys {
        let n: Option<u64> = branch.strip_prefix("load-").and_then(|n| n.parse().ok());
        assert!(
            n.is_some_and(|n| valid_numbers.contains(&n)),
            "deployed something never sent valid: {branch}"
        );
        assert_eq!(sha.as_deref(), n.map(sha_for).as_deref());
        if *times != 1 && twice.len() < 10 {
            twice.push((branch.clone(), *times));
        }
    }
    let deploys = &counts.deploys;

    println!(
        "load: {} deliveries in {:.1} s = {:.1}/s; {} valid",
        tally.answered,
        elapsed.as_secs_f64(),
        tally.answered as f64 / elapsed.as_secs_f64(),
        valid_numbers.len()
    );
    let Tally { by_kind, wrong, .. } = tally;
    for ((kind, status), n) in &by_kind {
        println!("load: {kind:?} -> {status}: {n}");
    }
    println!(
        "load: pulls/get {}, create-commit-status {}, engine deploys {}",
        h.github.op_count("pulls/get"),
        h.github.op_count("repos/create-commit-status"),
        deploys.len()
    );
    println!("load: t_s rss_mib queue_depth answered");
    for (t, rss, depth, sent) in &samples {
        println!("load: {t} {:.1} {depth} {sent}", *rss as f64 / 1024.0);
    }

    assert!(wrong.is_empty(), "wrong answers: {wrong:#?}");
    assert_eq!(deploys.len(), valid_numbers.len(), "valid intents deployed");
    assert!(twice.is_empty(), "deployed more than once: {twice:?}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
    // A debug build on a small shared runner cannot sign, verify and parse 200 payloads of
    // 31 KB a second next to the fakes' work: the pace is held to in optimized builds only.
    if !cfg!(debug_assertions) {
        assert!(
            elapsed.as_secs_f64() < seconds as f64 * 1.1 + 1.0,
            "the flood could not be sent at {RATE}/s: took {elapsed:?}"
        );
    }
    if seconds >= 20 {
        let flooding: Vec<_> = samples.iter().filter(|s| s.0 <= seconds).copied().collect();
        rss_is_flat(&flooding);
    }
    h.github.assert_clean();
    match Arc::try_unwrap(h) {
        Ok(h) => h.stop().await,
        Err(_) => panic!("the harness is still shared"),
    }
}

/// After the first quarter (warm-up), the RSS of the last quarter is not above that of the
/// second quarter by more than 10% + 4 MiB: no growth trend while the flood goes on.
fn rss_is_flat(samples: &[Sample]) {
    let n = samples.len();
    let max = |s: &[Sample]| s.iter().map(|x| x.1).max().unwrap_or(0);
    let warm = max(&samples[n / 4..n / 2]);
    let late = max(&samples[3 * n / 4..]);
    assert!(
        late <= warm + warm / 10 + 4096,
        "RSS grew under the flood: {warm} KiB after warm-up, {late} KiB at the end"
    );
}
