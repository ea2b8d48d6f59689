//! A real two-node Docker Swarm for the swarm tests, made on this machine and removed whole
//! (also when a test fails): `cluster.sh` beside this file does the work and says how. The
//! host's own engine is never made a swarm node: `docker swarm init` there would change the
//! networking of every other test using it. Needs root (network namespaces, a second and third
//! dockerd), fuse-overlayfs and Debian's docker-registry; without them the test fails and says
//! what is missing, it never skips.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

use bollard::Docker;
use bollard::query_parameters::ListServicesOptions;

use crate::engine_support::TestEnv;

/// A previewd on `cluster`'s manager with every service placed by `constraints` (the worker
/// node with `node.role == worker`), and `extra` settings.
pub async fn swarm_env(
    name: &str,
    cluster: &Cluster,
    constraints: &str,
    extra: &[(&str, &str)],
) -> TestEnv {
    let mut env = vec![
        ("PREVIEWD_CLUSTER_ENGINE", "swarm"),
        ("PREVIEWD_CLUSTER_REGISTRY", cluster.registry.as_str()),
        // (Draining the manager instead of a constraint would keep the gateway, a container
        // there, off the overlay: a drained node takes no network attachment either, measured:
        // "attaching to network failed ... deadline exceeded".)
        ("PREVIEWD_CLUSTER_CONSTRAINTS", constraints),
        ("PREVIEWD_GATEWAY_BIND", cluster.manager_host_ip.as_str()),
        ("PREVIEWD_LIMITS_EGRESS", "all"),
        ("PREVIEWD_LIMITS_IDLE_SLEEP", "0"),
        ("PREVIEWD_LIMITS_HEALTH_TIMEOUT", "90s"),
    ];
    env.extend_from_slice(extra);
    TestEnv::with(name, &env).await
}

pub fn by_instance(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("dev.previewd.instance={instance}")],
    )])
}

/// The Swarm services of `instance`.
pub async fn services_of(d: &Docker, instance: &str) -> Vec<bollard::models::Service> {
    d.list_services(Some(ListServicesOptions {
        filters: Some(by_instance(instance)),
        ..Default::default()
    }))
    .await
    .expect("list services")
}

pub use crate::engine_support::load::get;

/// The cluster the tests of one binary share while any of them runs (each with its own
/// instance): made by the first, removed when the last lets go of it.
static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
/// Held while a cluster is made or removed: one that goes is gone before the next one comes
/// (they would meet on the host's link and addresses).
static LIFECYCLE: Mutex<()> = Mutex::new(());

/// The binary's shared cluster, made now if no test holds one; `DOCKER_HOST` names its
/// manager.
pub fn shared() -> Arc<Cluster> {
    let mut weak = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = weak.upgrade() {
        return c;
    }
    let c = Arc::new(Cluster::up());
    // SAFETY: set before any previewd of the new cluster connects; tests read it only when
    // they connect, under this lock or after it.
    unsafe { std::env::set_var("DOCKER_HOST", c.docker_host()) };
    *weak = Arc::downgrade(&c);
    c
}

pub struct Cluster {
    name: String,
    index: u8,
    dir: PathBuf,
    pub manager_sock: String,
    pub worker_sock: String,
    /// The manager's address on the host's link: where the gateway publishes its port.
    pub manager_host_ip: String,
    /// `host:port` of the registry both nodes pull from.
    pub registry: String,
    pub manager_node: String,
    pub worker_node: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/swarm_support/cluster.sh")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .expect("run tests/swarm_support/cluster.sh")
}

impl Cluster {
    /// Makes the cluster; panics with the script's own words when it cannot.
    pub fn up() -> Cluster {
        let missing: Vec<&str> = [
            ("dockerd", "docker.io"),
            ("docker-registry", "docker-registry"),
            ("fuse-overlayfs", "fuse-overlayfs"),
            ("nsenter", "util-linux"),
            ("ip", "iproute2"),
        ]
        .into_iter()
        .filter(|(bin, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(_, pkg)| pkg)
        .collect();
        assert!(
            missing.is_empty(),
            "the swarm tests need {missing:?} (./run setup installs them)"
        );
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the swarm tests make network namespaces and run dockerd: they need root"
        );
        let name: String = nanoid::nanoid!(6, &previewd::ids::PREVIEW_ID_ALPHABET);
        // Addresses 10.213.<index>.0/24 and 10.212.<index>.0/30: one per cluster at a time.
        let index = (std::process::id() % 200 + 1) as u8;
        let _made = LIFECYCLE.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(format!("previewd-swarm-{name}"));
        let mut cluster = Cluster {
            name,
            index,
            dir,
            manager_sock: String::new(),
            worker_sock: String::new(),
            manager_host_ip: String::new(),
            registry: String::new(),
            manager_node: String::new(),
            worker_node: String::new(),
        };
        let out = run(&["up", &cluster.name, &index.to_string(), &cluster.dir_str()]);
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        eprint!("{said}");
        assert!(out.status.success(), "cluster.sh up failed:\n{said}");
        let v: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let get = |k: &str| {
            v.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("cluster.sh said no {k}"))
        };
        cluster.manager_sock = get("MANAGER_SOCK");
        cluster.worker_sock = get("WORKER_SOCK");
        cluster.manager_host_ip = get("MANAGER_HOST_IP");
        cluster.registry = get("REGISTRY");
        cluster.manager_node = get("MANAGER_NODE");
        cluster.worker_node = get("WORKER_NODE");
        cluster
    }

    /// Stops the worker's engine, as a node that goes away (its tasks stop with it).
    pub fn stop_worker(&self) {
        let out = run(&[
            "stop-worker",
            &self.name,
            &self.index.to_string(),
            &self.dir_str(),
        ]);
        assert!(
            out.status.success(),
            "cluster.sh stop-worker: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What the registry logged so far (one access line per request).
    pub fn registry_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    fn dir_str(&self) -> String {
        self.dir.display().to_string()
    }

    pub async fn manager(&self) -> bollard::Docker {
        connect(&self.manager_sock).await
    }

    pub async fn worker(&self) -> bollard::Docker {
        connect(&self.worker_sock).await
    }

    /// `DOCKER_HOST` for previewd: the manager's socket.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.manager_sock)
    }

    /// The docker CLI against one node, for what the test arranges (never the product's path).
    pub fn cli(&self, sock: &str, args: &[&str]) -> String {
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{sock}"))
            .args(args)
            .output()
            .expect("docker CLI");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

async fn connect(sock: &str) -> bollard::Docker {
    bollard::Docker::connect_with_unix(sock, 120, bollard::API_DEFAULT_VERSION)
        .expect("connect to a node's engine")
        .negotiate_version()
        .await
        .expect("a node's engine answers")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _gone = LIFECYCLE.lock().unwrap_or_else(|e| e.into_inner());
        let out = run(&["down", &self.name, &self.index.to_string(), &self.dir_str()]);
        if !out.status.success() {
            eprintln!(
                "cluster.sh down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
