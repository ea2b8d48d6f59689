//! Egress across a restart of Docker under a running `serve`: a preview deployed through
//! `serve` with `limits.egress = "none"`, its engine stopped (SIGTERM) and started again. Its
//! containers come back by their restart policy, and the policy must be in force from their
//! first instant: the preview's own code probes a refused server as the very first thing it
//! does at each start, before its server answers, and keeps probing while it runs.
//!
//! The host's engine is never restarted (other tests use it). The test runs a Docker daemon of
//! its own in a network namespace of its own, whose iptables are the namespace's, with a veth
//! pair to a second namespace that holds the refused server. previewd's firewall runs
//! iptables in the namespace it runs in, so the part of the test that runs `serve` is this same
//! binary started again inside the daemon's namespace (`nsenter --net`, the
//! `#[ignore]`d test below). Dropping the [`Namespaces`] removes all of it, also after a
//! failure: the daemon if still up, its mounts, both namespaces (their iptables go with them),
//! the folder.

mod e2e_support;
mod engine_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use e2e_support::{DEADLINE, E2e};
use engine_support::{eventually, exec};
use previewd::preview::{firewall, http_client, labels};

/// The test run inside the daemon's namespace, and the variables that hand it its folder
/// (daemon and server files) and the refused server's URL.
const INNER: &str = "inner_rules_are_back_before_the_preview_serves_again";
const DIR_VAR: &str = "PVD_EGRESS_RESTART_DIR";
const TARGET_VAR: &str = "PVD_EGRESS_RESTART_TARGET";
const HOST_DOCKER_VAR: &str = "PVD_EGRESS_RESTART_HOST_DOCKER";

/// The refused server's address, in the outside namespace (a /30 between the two namespaces
/// only: nothing on the host ever routes it).
const OUTSIDE: &str = "10.233.7.2";
const PORT: u16 = 8000;

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .expect("run a command");
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The daemon's namespace, the outside one with its server, and the folder.
struct Namespaces {
    daemon: String,
    outside: String,
    dir: PathBuf,
    server: Option<Child>,
}

impl Namespaces {
    fn start() -> Namespaces {
        let tag = std::process::id();
        let dir = std::env::temp_dir().join(format!("pvdegr-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pages")).expect("folder");
        for page in ["probe", "control"] {
            std::fs::write(dir.join("pages").join(page), page).expect("page");
        }
        let me = Namespaces {
            daemon: format!("pvdegr-d-{tag}"),
            outside: format!("pvdegr-o-{tag}"),
            dir,
            server: None,
        };
        let (d, o) = (me.daemon.as_str(), me.outside.as_str());
        must("ip", &["netns", "add", d]);
        must("ip", &["netns", "add", o]);
        must("ip", &["-n", d, "link", "set", "lo", "up"]);
        must("ip", &["-n", o, "link", "set", "lo", "up"]);
        must(
            "ip",
            &[
                "-n", d, "link", "add", "pvdegr0", "type", "veth", "peer", "name", "pvdegr1",
                "netns", o,
            ],
        );
        must(
            "ip",
            &["-n", d, "addr", "add", "10.233.7.1/30", "dev", "pvdegr0"],
        );
        must("ip", &["-n", d, "link", "set", "pvdegr0", "up"]);
        let cidr = format!("{OUTSIDE}/30");
        must("ip", &["-n", o, "addr", "add", &cidr, "dev", "pvdegr1"]);
        must("ip", &["-n", o, "link", "set", "pvdegr1", "up"]);
        must(
            "ip",
            &["-n", o, "route", "add", "default", "via", "10.233.7.1"],
        );
        me
    }

    /// The refused server, logging every request it answers to `server.log`.
    fn serve(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.outside,
                "python3",
                "-m",
                "http.server",
            ])
            .arg(PORT.to_string())
            .args(["--bind", OUTSIDE, "--directory"])
            .arg(self.dir.join("pages"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the refused server");
        self.server = Some(child);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if let Some(s) = &mut self.server {
            let _ = s.kill();
            let _ = s.wait();
        }
        // The inner test stops its daemon itself; this is for one that was killed.
        stop_pid_file(&self.dir.join("dockerd.pid"));
        stop_pid_file(&self.dir.join("exec/containerd/containerd.pid"));
        unmount_under(&self.dir);
        run("ip", &["netns", "del", &self.daemon]);
        run("ip", &["netns", "del", &self.outside]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ends the process whose id `file` holds (one this test started), waiting for it to go.
fn stop_pid_file(file: &Path) {
    let Some(pid) = std::fs::read_to_string(file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
    else {
        return;
    };
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    run("kill", &["-TERM", &pid.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(40);
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive() {
        run("kill", &["-KILL", &pid.to_string()]);
    }
}

/// Whatever the daemon mounted under `dir` (fuse-overlayfs layers, netns files, shm).
fn unmount_under(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort_unstable_by(|a, b| b.cmp(a));
    for m in points {
        if !run("umount", &["-l", m]) {
            run("fusermount", &["-uz", m]);
        }
    }
}

#[test]
fn rules_are_back_before_a_preview_serves_after_docker_restarts() {
    let mut ns = Namespaces::start();
    ns.serve();
    let host_docker =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let exe = std::env::current_exe().expect("this test binary");
    let mut inner = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.daemon))
        .arg(exe)
        .args([
            INNER,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, &ns.dir)
        .env(TARGET_VAR, format!("http://{OUTSIDE}:{PORT}"))
        .env(HOST_DOCKER_VAR, host_docker)
        .env(
            "DOCKER_HOST",
            format!("unix://{}/docker.sock", ns.dir.display()),
        )
        .spawn()
        .expect("run the test inside the daemon's namespace");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = inner.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = inner.kill();
            let _ = inner.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "the test inside the daemon's namespace failed or timed out ({status:?}): its output is above"
    );
    let log = std::fs::read_to_string(ns.dir.join("server.log")).unwrap_or_default();
    assert!(
        log.contains("GET /control"),
        "the control reached the server: {log}"
    );
    assert!(
        !log.contains("GET /probe"),
        "a probe of the preview reached the refused server: {log}"
    );
}

/// The private daemon, a child of the inner test (it runs in the test's namespace).
struct Daemon {
    dir: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        std::fs::write(
            dir.join("daemon.json"),
            r#"{"storage-driver": "fuse-overlayfs", "mtu": 1400, "bip": "172.31.252.1/24",
 "default-address-pools": [{"base": "10.253.0.0/16", "size": 24}]}"#,
        )
        .expect("daemon.json");
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            child: None,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .expect("log");
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}/docker.sock", self.dir.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd");
        self.child = Some(child);
    }

    /// SIGTERM, as `systemctl restart docker` does, and waits for it to end.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        run("kill", &["-TERM", &child.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "dockerd did not stop in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    async fn answers(&self) {
        eventually(
            Duration::from_secs(60),
            "the private daemon to answer",
            || async {
                let d = Docker::connect_with_defaults().ok()?;
                d.ping().await.ok().map(|_| ())
            },
        )
        .await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let host = format!("unix://{}/docker.sock", self.dir.display());
        // Containers first: a daemon stopped with running containers leaves their shims behind.
        if let Ok(out) = Command::new("docker")
            .args(["-H", &host, "ps", "-aq"])
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: Vec<&str> = text.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["-H", host.as_str(), "rm", "-f"];
                args.extend(ids);
                run("docker", &args);
            }
        }
        self.stop();
        unmount_under(&self.dir);
    }
}

/// The preview: one busybox service whose command probes the refused server first at each of
/// its starts (a line `start refused` or `start reached` in `/www/probes`), then keeps probing
/// (a line `reached` for each probe that gets through) while its HTTP server runs. (No
/// `wget -T`: this busybox's wget crashes with it on a refused connection.)
fn spec(target: &str) -> String {
    format!(
        r#"services:
  web:
    image: busybox
    port: 8080
    healthcheck: {{path: /hostname}}
    command:
      - sh
      - -c
      - |
        mkdir -p /www; hostname > /www/hostname
        if timeout 3 wget -q -O /dev/null {target}/probe; then r=reached; else r=refused; fi
        echo "start $r" >> /www/probes
        (while :; do echo >> /www/tries; timeout 3 wget -q -O /dev/null {target}/probe && echo reached >> /www/probes; sleep 0.3; done) &
        exec httpd -f -p 8080 -h /www
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by rules_are_back_before_a_preview_serves_after_docker_restarts, in its namespace"]
async fn inner_rules_are_back_before_the_preview_serves_again() {
    let (Ok(dir), Ok(target), Ok(host_docker)) = (
        std::env::var(DIR_VAR),
        std::env::var(TARGET_VAR),
        std::env::var(HOST_DOCKER_VAR),
    ) else {
        eprintln!("only run inside rules_are_back_before_a_preview_serves_after_docker_restarts");
        return;
    };
    let mut daemon = Daemon::start(Path::new(&dir));
    daemon.answers().await;
    let private = std::env::var("DOCKER_HOST").expect("DOCKER_HOST");
    must(
        "sh",
        &[
            "-c",
            &format!(
                "docker -H {host_docker} save busybox:latest caddy:2 | docker -H {private} load"
            ),
        ],
    );
    // The control: from the daemon's namespace the server answers, so a refusal below is the
    // policy's, not the set-up's.
    let control = format!("{target}/control");
    let addr = target.trim_start_matches("http://").to_owned();
    eventually(
        Duration::from_secs(20),
        "the refused server to listen",
        || {
            let addr = addr.clone();
            async move {
                let got =
                    http_client::tcp(&addr, OUTSIDE, "GET", "/control", Duration::from_secs(2));
                got.await.ok().filter(|r| r.status == 200).map(|_| ())
            }
        },
    )
    .await;

    let e = E2e::start_with(
        "egrestart",
        "two-service",
        "changes",
        &[("PREVIEWD_LIMITS_EGRESS", "none")],
    )
    .await;
    e.repo.write(".previewd.yml", &spec(&target));
    let sha = e.repo.commit("a preview that probes").to_string();
    e.pr("labeled", &sha, "Codertocat", "write").await;
    let ok = e.status(&sha, "success").await;
    let url = ok["target_url"].as_str().expect("target_url").to_owned();
    let probes = |want: usize| {
        let (e, url) = (&e, url.clone());
        eventually(DEADLINE, "the preview to serve its probes", move || {
            let url = url.clone();
            async move {
                let (status, body) = e.get(&url, "/probes").await;
                (status == 200 && body.matches("start ").count() >= want).then_some(body)
            }
        })
    };
    assert_eq!(probes(1).await.trim(), "start refused");
    let instance = e.env.config.instance.to_string();
    let rules = sorted(firewall::installed(&instance).await);
    let joined = rules.join("\n");
    assert!(joined.contains("-A DOCKER-USER -j PVD-"), "{joined}");
    assert!(joined.contains("-A FORWARD -j PVD-"), "{joined}");
    let docker = e.env.manager.docker().clone();
    let web = web_container(&docker, &instance).await;
    assert_refused(&docker, &web, &control).await;

    // Docker restarts under `serve`: stopped (its containers with it), then started again.
    daemon.stop();
    let stopped = sorted(firewall::installed(&instance).await);
    assert_same(&rules, &stopped, "while Docker is down");
    daemon.spawn();
    daemon.answers().await;
    let back = sorted(firewall::installed(&instance).await);
    assert_same(&rules, &back, "as soon as Docker answers again");

    // The preview serves again through the gateway; its first probe at this start, made before
    // its server listened, was refused, and not one probe got through since the first start.
    let body = probes(2).await;
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines, ["start refused", "start refused"], "{body}");
    assert_refused(&docker, &web, &control).await;
    let (_, tries) = e.get(&url, "/tries").await;
    eprintln!(
        "{} probes since the first start, none through",
        tries.lines().count()
    );
    let after = sorted(firewall::installed(&instance).await);
    let after_text = after.join("\n");
    assert!(
        after_text.contains("-A DOCKER-USER -j PVD-"),
        "{after_text}"
    );

    e.close_and_wait_gone(&sha).await;
    e.stop().await;
    drop(daemon);
}

/// `GET url` from inside `container` fails at once as a refused connection.
async fn assert_refused(docker: &Docker, container: &str, url: &str) {
    let cmd = ["timeout", "5", "wget", "-q", "-O", "-", url];
    let (code, out) = exec(docker, container, &cmd).await;
    assert!(code != 0 && out.contains("refused"), "{url}: {code}: {out}");
}

/// The rules `now` are those `before`; else which are missing and which are new.
fn assert_same(before: &[String], now: &[String], when: &str) {
    let missing: Vec<&String> = before.iter().filter(|r| !now.contains(r)).collect();
    let new: Vec<&String> = now.iter().filter(|r| !before.contains(r)).collect();
    assert!(
        missing.is_empty() && new.is_empty(),
        "the rules {when} differ: missing {missing:#?}, new {new:#?}"
    );
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The running `web` container of the instance's one preview.
async fn web_container(docker: &Docker, instance: &str) -> String {
    let all = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            filters: Some(std::collections::HashMap::from([(
                "label".to_owned(),
                vec![
                    format!("{}={instance}", labels::INSTANCE),
                    format!("{}=web", labels::SERVICE),
                ],
            )])),
            ..Default::default()
        }))
        .await
        .expect("list containers");
    let names = all
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .collect::<Vec<_>>();
    let [name] = &names[..] else {
        panic!("one web container: {names:?}")
    };
    name.trim_start_matches('/').to_owned()
}
