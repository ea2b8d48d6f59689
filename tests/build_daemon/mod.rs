//! A Docker daemon of a test's own, for what cannot be tried on the shared one: pruning the
//! build cache down to a small size, capping the cgroup in which BuildKit runs its steps.
//! Same engine binary as the host's, its own data root, socket, network namespace (its
//! `docker0` never touches the host's), `cgroup-parent` and busybox (copied from the host's
//! daemon). Dropping it stops the daemon and removes all of it: the namespace, the cgroups,
//! the folders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use futures_util::StreamExt;

pub struct PrivateDaemon {
    pub dir: PathBuf,
    /// `DOCKER_HOST` for it.
    pub host: String,
    /// The daemon's `cgroup-parent` (one component, under each hierarchy's root); BuildKit's
    /// steps run in `<it>/buildkit/<id>`.
    pub cgroup_parent: String,
    netns: String,
    child: Child,
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl PrivateDaemon {
    /// Starts one and waits until it answers; busybox is loaded into it.
    pub async fn start(name: &str) -> PrivateDaemon {
        let tag = format!("pvdbd-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("daemon dir");
        assert!(run("ip", &["netns", "add", &tag]), "ip netns add {tag}");
        run("ip", &["-n", &tag, "link", "set", "lo", "up"]);
        let config = dir.join("daemon.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"storage-driver": "fuse-overlayfs", "mtu": 1400, "iptables": false, "ip-masq": false,
 "bip": "172.31.250.1/24", "default-address-pools": [{{"base": "10.251.0.0/16", "size": 24}}],
 "cgroup-parent": "/{tag}"}}"#
            ),
        )
        .expect("daemon.json");
        let socket = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{tag}"))
            .arg("dockerd")
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd");
        let daemon = PrivateDaemon {
            host: format!("unix://{}", socket.display()),
            cgroup_parent: tag.clone(),
            dir,
            netns: tag,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(d) = daemon.docker()
                && d.ping().await.is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the private daemon did not answer: {}",
                std::fs::read_to_string(daemon.dir.join("dockerd.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        daemon.load_busybox().await;
        daemon
    }

    /// A client of this daemon (its API version: 1.41 on Docker 20.10).
    pub fn docker(&self) -> Result<Docker, bollard::errors::Error> {
        let path = self.host.trim_start_matches("unix://");
        Docker::connect_with_unix(
            path,
            120,
            &bollard::ClientVersion {
                major_version: 1,
                minor_version: 41,
            },
        )
    }

    async fn load_busybox(&self) {
        let host = Docker::connect_with_defaults().expect("host docker");
        let mut tar = Vec::new();
        let mut export = host.export_image("busybox:latest");
        while let Some(chunk) = export.next().await {
            tar.extend_from_slice(&chunk.expect("export busybox from the host's daemon"));
        }
        let docker = self.docker().expect("private docker");
        let mut import = docker.import_image(
            bollard::query_parameters::ImportImageOptions::default(),
            bollard::body_full(tar.into()),
            None,
        );
        while let Some(r) = import.next().await {
            r.expect("import busybox");
        }
    }

    /// `<hierarchy root>/<controller>/<cgroup-parent>/buildkit` on cgroup v1.
    pub fn build_cgroup(&self, controller: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.cgroup_parent)
            .join("buildkit")
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        // The daemon was started by this test: end it by its id (its containerd follows).
        run("kill", &["-TERM", &pid]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        run("ip", &["netns", "del", &self.netns]);
        // The cgroups the daemon and the test made, leaves first.
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let parent = c.path().join(&self.cgroup_parent);
                let buildkit = parent.join("buildkit");
                if let Ok(steps) = std::fs::read_dir(&buildkit) {
                    for s in steps.flatten().filter(|s| s.path().is_dir()) {
                        let _ = std::fs::remove_dir(s.path());
                    }
                }
                let _ = std::fs::remove_dir(&buildkit);
                let _ = std::fs::remove_dir(&parent);
            }
        }
        // Layers the daemon left mounted (fuse-overlayfs) would keep the folder.
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let dir = self.dir.display().to_string();
            for m in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
                if m.starts_with(&dir) {
                    run("umount", &["-l", m]);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The operator config of a test against a private daemon: its own instance and data folder,
/// and `extra` (`PREVIEWD_*` variables).
pub fn config(name: &str, data: &Path, extra: &[(&str, &str)]) -> previewd::config::Config {
    let suffix: String = nanoid::nanoid!(5, &previewd::ids::PREVIEW_ID_ALPHABET);
    let mut env: Vec<(String, String)> = vec![
        ("PREVIEWD_INSTANCE".into(), format!("a-{name}-{suffix}")),
        ("PREVIEWD_DATA_DIR".into(), data.display().to_string()),
        ("PREVIEWD_LIMITS_EGRESS".into(), "all".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    previewd::config::Config::from_parts(None, Path::new("test"), &env).expect("config")
}

/// Builds the context in `dir` (a `Dockerfile` at its root) as service `web` of repository
/// `repo`, the way a deployment does; with every log line.
pub async fn build(
    docker: &Docker,
    config: &previewd::config::Config,
    repo: &str,
    dir: &Path,
) -> (
    Result<previewd::preview::build::Built, previewd::preview::build::BuildError>,
    Vec<String>,
) {
    use std::sync::{Arc, Mutex};
    let id = previewd::ids::PreviewId::parse("bd0000test").expect("id");
    let key = previewd::engine::PreviewKey::pull_request_head("github", repo, None, "main");
    let target = previewd::preview::build::Target {
        id: &id,
        service: "web",
        key: &key,
        egress: config.limits.egress.build,
    };
    let spec = previewd::spec::BuildSpec {
        context: ".".into(),
        dockerfile: "Dockerfile".into(),
        args: Default::default(),
        target: None,
        options: Default::default(),
    };
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let on_line = move |l: &str| {
        if let Ok(mut v) = sink.lock() {
            v.push(l.to_owned());
        }
    };
    let r = previewd::preview::build::build(docker, config, target, dir, &spec, &on_line).await;
    let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
    (r, lines)
}

impl PrivateDaemon {
    /// `GET /v1.41/<path>` of this daemon as JSON: what bollard's newer models do not read of
    /// Docker 20.10's answers (its `/system/df` lists `BuildCache` records).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        use std::io::{Read, Write};
        let socket = self.host.trim_start_matches("unix://");
        let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
        write!(s, "GET /v1.41{path} HTTP/1.0\r\nHost: docker\r\n\r\n").expect("request");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("answer");
        let text = String::from_utf8_lossy(&answer);
        let (_, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}
