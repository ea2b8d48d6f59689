//! Route update through the real sync: time from "a new preview's containers run" to "its
//! route answers through the gateway", with N other previews already routed, on Docker. As in
//! a deployment's rollout, the gateway joins the new preview's network while its containers
//! are made and started (`Gateway::join`), so the sync finds it joined; that join's time and
//! the whole step's are printed beside (`join_*`, `made_*`).
//!
//! `previewd-bench-route` times the route table's write against a local Caddy with synthetic
//! previews. This harness times what a deployment actually waits for: `Gateway::sync` itself
//! (the label listing of every container of the instance, the lock, joining the new preview's
//! network, writing the table), then the first 200 through the real gateway container. Each of
//! the N previews has its own network (from `network.subnet_pool`, since Docker's default pools
//! hold ~31) and two routed busybox containers labelled as previewd labels them, so the listing
//! reads 2N+2 containers and the gateway is on N+1 networks, as on a host with N previews.
//!
//! Usage: previewd-bench-sync INSTANCE WORKDIR REPS N   (prints one JSON line)
//! Everything it makes carries `dev.previewd.instance=INSTANCE` and is removed at the end, and
//! by bench/run's EXIT trap if the harness dies.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, ListNetworksOptions, RemoveContainerOptions,
};
use futures_util::stream::{self, StreamExt};
use previewd::config::Config;
use previewd::ids::PreviewId;
use previewd::preview::gateway::Gateway;
use previewd::preview::{labels, network};

/// Containers and networks made at once while seeding: enough to keep Docker busy, few enough
/// not to time out its API on two cores.
const SEED_PARALLEL: usize = 6;

/// The services of every preview: (name, route), both routed, like fixtures/two-service's.
const SERVICES: [(&str, &str); 2] = [("web", "/"), ("api", "/api")];

/// Each container answers 200 on port 8080 from a file it writes itself.
const SERVE: &str = "mkdir -p /w/api && echo ok > /w/index.html && echo ok > /w/api/index.html \
                     && exec httpd -f -p 8080 -h /w";

fn preview_id(i: usize) -> PreviewId {
    PreviewId::parse(&format!("s{i:09}")).expect("ten characters of 0-9a-z")
}

/// Makes preview `id`: its network, then its two containers, started. With `gateway`, the
/// gateway joins the network while the containers are made and started, as a deployment's
/// rollout does (`Gateway::join`); returns how long that join took (zero without).
async fn make_preview(
    docker: &Docker,
    config: &Config,
    id: &PreviewId,
    gateway: Option<&Gateway>,
) -> Duration {
    let inst = &config.instance;
    let net = labels::network_name(inst, id, 1);
    let common = HashMap::from([
        (labels::INSTANCE.to_owned(), inst.to_string()),
        (labels::PREVIEW.to_owned(), id.to_string()),
        (labels::GENERATION.to_owned(), "1".to_owned()),
        (
            labels::CREATED.to_owned(),
            "2026-12-07T00:00:00Z".to_owned(),
        ),
    ]);
    network::create_preview_network(docker, config, &net, common.clone())
        .await
        .expect("create network");
    let join = async {
        let t = Instant::now();
        if let Some(g) = gateway {
            g.join(std::slice::from_ref(&net)).await;
        }
        t.elapsed()
    };
    let (joined, ()) = tokio::join!(join, make_containers(docker, config, id, &net, &common));
    joined
}

/// Creates and starts preview `id`'s two containers on `net`.
async fn make_containers(
    docker: &Docker,
    config: &Config,
    id: &PreviewId,
    net: &str,
    common: &HashMap<String, String>,
) {
    let inst = &config.instance;
    for (service, route) in SERVICES {
        let mut l = common.clone();
        for (k, v) in [
            (labels::ROLE, labels::ROLE_SERVICE),
            (labels::SERVICE, service),
            (labels::REPO, "https://example.invalid/o/r.git"),
            (labels::MODE, "preview"),
            (labels::FORGE, "cli"),
            (labels::ROUTE, route),
            (labels::PORT, "8080"),
            (labels::HEALTH, "/ 200"),
        ] {
            l.insert(k.to_owned(), v.to_owned());
        }
        l.insert(labels::BRANCH.to_owned(), format!("b-{id}"));
        let name = labels::container_name(inst, id, service);
        let body = ContainerCreateBody {
            image: Some("busybox".into()),
            cmd: Some(vec!["sh".into(), "-c".into(), SERVE.into()]),
            labels: Some(l),
            host_config: Some(HostConfig {
                network_mode: Some(net.to_owned()),
                memory: Some(16 << 20),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    net.to_owned(),
                    EndpointSettings {
                        aliases: Some(vec![
                            service.to_owned(),
                            labels::upstream_alias(id, service, 1),
                        ]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        docker
            .create_container(Some(opts), body)
            .await
            .expect("create container");
        docker
            .start_container(&name, None)
            .await
            .expect("start container");
    }
}

/// Removes preview `id`'s containers (the gateway leaves its network at the next sync).
async fn remove_containers(docker: &Docker, config: &Config, id: &PreviewId) {
    for (service, _) in SERVICES {
        let name = labels::container_name(&config.instance, id, service);
        let opts = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let _ = docker.remove_container(&name, Some(opts)).await;
    }
}

/// Everything of the instance: containers (the gateway among them), then networks.
async fn remove_all(docker: &Docker, instance: &str) {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{}={instance}", labels::INSTANCE)],
    )]);
    let opts = ListContainersOptions {
        all: true,
        filters: Some(filters.clone()),
        ..Default::default()
    };
    let ids: Vec<String> = docker
        .list_containers(Some(opts))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    stream::iter(ids)
        .for_each_concurrent(SEED_PARALLEL, |id| async move {
            let opts = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            let _ = docker.remove_container(&id, Some(opts)).await;
        })
        .await;
    let nets = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .unwrap_or_default();
    for n in nets.into_iter().filter_map(|n| n.id) {
        let _ = docker.remove_network(&n).await;
    }
}

/// One GET on a fresh connection; the status code, 0 when there is none.
fn get_status(port: u16, host: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    let mut out = [0u8; 64];
    let n = s.read(&mut out).unwrap_or(0);
    String::from_utf8_lossy(&out[..n])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Polls `host` through the gateway until it answers 200 (every 1 ms, 30 s at most).
fn wait_route(port: u16, host: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if get_status(port, host) == 200 {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("route {host} never answered 200");
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[i]
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("bound").port()
}

async fn run(docker: &Docker, config: Arc<Config>, reps: usize, n: usize) -> serde_json::Value {
    let gateway = Gateway::new(docker.clone(), config.clone());
    let t_seed = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(SEED_PARALLEL, |i| {
            let config = config.clone();
            async move {
                make_preview(docker, &config, &preview_id(i), None).await;
            }
        })
        .await;
    let seed_s = t_seed.elapsed().as_secs_f64();
    // The first sync starts the gateway and joins the N networks: not a route update.
    let t_first = Instant::now();
    gateway.sync().await.expect("first sync");
    let first_sync_s = t_first.elapsed().as_secs_f64();
    let port = config.gateway.port;
    let first = format!("{}.localhost", preview_id(0));
    tokio::task::block_in_place(|| wait_route(port, &first));

    // Each repetition measures both ways in turn, on the same N previews: the new network
    // joined ahead, as a deployment's rollout does now, and joined by the sync itself, as
    // before issue 17's change (`Gateway::join` not called): a before/after side by side.
    let mut ways = [Way::new("ahead"), Way::new("in_sync")];
    for rep in 0..reps {
        for (k, way) in ways.iter_mut().enumerate() {
            let id = preview_id(1_000_000 + 2 * rep + k);
            let ahead = (k == 0).then_some(&gateway);
            let t_made = Instant::now();
            let joined = make_preview(docker, &config, &id, ahead).await;
            way.made_ms.push(t_made.elapsed().as_secs_f64() * 1e3);
            way.join_ms.push(joined.as_secs_f64() * 1e3);
            let host = format!("{id}.localhost");
            let t0 = Instant::now();
            gateway.sync().await.expect("sync");
            way.sync_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            tokio::task::block_in_place(|| wait_route(port, &host));
            way.answer_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            // Back to N previews for the next one: containers, the sync that leaves the
            // network, then the network.
            remove_containers(docker, &config, &id).await;
            gateway.sync().await.expect("sync after removal");
            let net = labels::network_name(&config.instance, &id, 1);
            docker.remove_network(&net).await.expect("remove network");
        }
    }
    let [mut ahead, mut in_sync] = ways;
    let mut out = ahead.json();
    let mut before = in_sync.json();
    out["n"] = n.into();
    out["reps"] = reps.into();
    out["seed_s"] = seed_s.into();
    out["first_sync_s"] = first_sync_s.into();
    before["way"] = "sync, joined by the sync".into();
    out["joined_by_the_sync"] = before;
    out
}

/// One way's samples, in ms.
struct Way {
    name: &'static str,
    sync_ms: Vec<f64>,
    answer_ms: Vec<f64>,
    join_ms: Vec<f64>,
    made_ms: Vec<f64>,
}

impl Way {
    fn new(name: &'static str) -> Way {
        Way {
            name,
            sync_ms: Vec::new(),
            answer_ms: Vec::new(),
            join_ms: Vec::new(),
            made_ms: Vec::new(),
        }
    }

    fn json(&mut self) -> serde_json::Value {
        serde_json::json!({
            "way": format!("sync, joined {}", self.name),
            // p50/p99: sync started → the new host answers 200 through the gateway container.
            "p50_ms": pct(&mut self.answer_ms, 50.0), "p99_ms": pct(&mut self.answer_ms, 99.0),
            "sync_p50_ms": pct(&mut self.sync_ms, 50.0), "sync_p99_ms": pct(&mut self.sync_ms, 99.0),
            // The gateway's join of the new network beside the containers' create and start
            // (off the route's path; 0 when joined by the sync), and that whole step: network
            // made → containers started.
            "join_p50_ms": pct(&mut self.join_ms, 50.0), "join_p99_ms": pct(&mut self.join_ms, 99.0),
            "made_p50_ms": pct(&mut self.made_ms, 50.0), "made_p99_ms": pct(&mut self.made_ms, 99.0),
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, instance, work, reps, n] = args.as_slice() else {
        eprintln!("usage: previewd-bench-sync INSTANCE WORKDIR REPS N");
        std::process::exit(2);
    };
    let reps: usize = reps.parse().expect("REPS: a number");
    let n: usize = n.parse().expect("N: a number");
    let work = PathBuf::from(work);
    std::fs::create_dir_all(&work).expect("WORKDIR");
    let env: Vec<(String, String)> = [
        ("PREVIEWD_INSTANCE", instance.as_str()),
        ("PREVIEWD_GATEWAY_DOMAIN", "localhost"),
        ("PREVIEWD_GATEWAY_PORT", &free_port().to_string()),
        (
            "PREVIEWD_DATA_DIR",
            &work.join("data").display().to_string(),
        ),
        // /28s from a range of its own: 200 networks do not fit Docker's default pools.
        ("PREVIEWD_NETWORK_SUBNET_POOL", "10.231.0.0/16"),
        ("PREVIEWD_NETWORK_SUBNET_SIZE", "28"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config =
        Arc::new(Config::from_parts(None, Path::new("previewd.toml"), &env).expect("config"));
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let docker = Docker::connect_with_local_defaults().expect("docker");
    let out = rt.block_on(async {
        // Cleans up even when a step panics: the run is caught, then everything removed.
        let result = tokio::spawn({
            let docker = docker.clone();
            let config = config.clone();
            async move { run(&docker, config, reps, n).await }
        })
        .await;
        remove_all(&docker, instance).await;
        result
    });
    match out {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("previewd-bench-sync failed: {e}");
            std::process::exit(1);
        }
    }
}
