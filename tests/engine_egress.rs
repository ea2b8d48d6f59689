//! Egress on the real engine and the real kernel: from inside a preview's container, the host,
//! a server on a private address and a stand-in for the public internet are reachable or
//! refused as `limits.egress` says, the allow-list opens exactly what it names, the rules come
//! back from the labels after they were lost (a reboot, a restart of previewd) and nothing of
//! them is left after the last preview goes.
//!
//! Packets go only to servers these tests start on this machine: a network namespace holds a
//! "private" server (10.231.K.2) and a "public" one (198.51.100.K, a documentation range routed
//! into the namespace only), and the host's own server listens in the test process. The
//! metadata address is never sent a packet: its range is checked in the rules read back.

mod engine_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use engine_support::{GitRepo, TestEnv, exec, free_port};
use previewd::config::egress::Mode;
use previewd::preview::{firewall, labels};

/// A preview of two busybox services: `web` (routed) and `peer` (internal), no build.
const SPEC: &str = r#"services:
  web:
    image: busybox
    port: 8080
    command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
    healthcheck: {path: /hostname}
  peer:
    image: busybox
    internal: true
    port: 7000
    command: ["httpd", "-f", "-p", "7000", "-h", "/etc"]
"#;

/// A network namespace with a veth pair to the host, serving HTTP on a private and a "public"
/// address; removed (with its servers) when dropped, also after a failed assertion.
struct Outside {
    ns: String,
    servers: Vec<Child>,
    private: String,
    public: String,
    ports: [u16; 2],
    _pages: tempfile::TempDir,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Outside {
    /// `k` (1-250) keeps the tests of this file apart: each has its own addresses.
    fn start(k: u8) -> Outside {
        let ns = format!("egress-t{k}-{}", std::process::id());
        let (host_if, ns_if) = (format!("egh{k}"), format!("egn{k}"));
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &ns]);
        let pages = tempfile::tempdir().expect("tempdir");
        std::fs::write(pages.path().join("index.html"), "outside").expect("page");
        let dir = pages.path().to_path_buf();
        let mut me = Outside {
            ns: ns.clone(),
            servers: Vec::new(),
            private: format!("10.231.{k}.2"),
            public: format!("198.51.100.{k}"),
            ports: [free_port(), free_port()],
            _pages: pages,
        };
        ip(&[
            "link",
            "add",
            host_if.as_str(),
            "type",
            "veth",
            "peer",
            "name",
            ns_if.as_str(),
            "netns",
            ns.as_str(),
        ]);
        ip(&["addr", "add", &format!("10.231.{k}.1/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/30", me.private), "dev", &ns_if]);
        inside(&["addr", "add", &format!("{}/32", me.public), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        inside(&["route", "add", "default", "via", &format!("10.231.{k}.1")]);
        ip(&[
            "route",
            "add",
            &format!("{}/32", me.public),
            "via",
            &me.private,
        ]);
        for port in me.ports {
            let child = Command::new("ip")
                .args(["netns", "exec", &ns, "python3", "-m", "http.server"])
                .arg(port.to_string())
                .arg("--directory")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a server in the namespace");
            me.servers.push(child);
        }
        // The host reaches the namespace directly: wait until both servers listen.
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in me.ports {
            let addr = format!("{}:{port}", me.private);
            while std::net::TcpStream::connect_timeout(
                &addr.parse().expect("addr"),
                Duration::from_millis(300),
            )
            .is_err()
            {
                assert!(Instant::now() < deadline, "server {addr} never listened");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        me
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["route", "del", &format!("{}/32", self.public)])
            .output();
        // The veth pair goes with the namespace.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A server on every address of the host, answering `host` to anything.
async fn host_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nhost")
                .await;
        }
    });
    port
}

/// `GET url` from inside `container`: `Ok(body)`, or `Err(output)` when it failed. A refusal
/// must come at once as a refused connection, not as a timeout.
async fn fetch(docker: &Docker, container: &str, url: &str) -> Result<String, String> {
    let started = Instant::now();
    let (code, out) = exec(
        docker,
        container,
        &["timeout", "5", "wget", "-q", "-O", "-", url],
    )
    .await;
    if code == 0 {
        return Ok(out);
    }
    assert!(
        out.contains("refused") && started.elapsed() < Duration::from_secs(4),
        "{url} failed, but not as a refused connection ({:?}): {out}",
        started.elapsed()
    );
    Err(out)
}

/// `GET` the host's server at the host's address on the preview's own network (its gateway).
async fn fetch_host(
    env: &TestEnv,
    container: &str,
    d: &previewd::engine::Deployed,
    port: u16,
) -> Result<String, String> {
    let docker = env.manager.docker();
    let network = labels::network_name(&env.config.instance, &d.state.id, 1);
    let n = docker
        .inspect_network(&network, None)
        .await
        .expect("inspect network");
    let host = n
        .ipam
        .and_then(|i| i.config)
        .and_then(|c| c.into_iter().find_map(|c| c.gateway))
        .expect("the network has a gateway address");
    fetch(docker, container, &format!("http://{host}:{port}/")).await
}

async fn deploy(env: &TestEnv) -> (String, previewd::engine::Deployed) {
    let repo = GitRepo::from_fixture("two-service");
    repo.write(".previewd.yml", SPEC);
    repo.commit("busybox only");
    let d = env.up(repo.path()).await.expect("up");
    let web = labels::container_name(&env.config.instance, &d.state.id, "web");
    (web, d)
}

/// A repository whose one service's build downloads `url` in a `RUN` step.
fn downloading_build(url: &str) -> GitRepo {
    let repo = GitRepo::from_fixture("two-service");
    repo.write(
        ".previewd.yml",
        "services:\n  web:\n    build: probe\n    port: 8080\n    healthcheck: {path: /page}\n",
    );
    repo.write(
        "probe/Dockerfile",
        &format!(
            "FROM busybox\nRUN mkdir -p /www && wget -q -O /www/page {url}\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
        ),
    );
    repo.commit("a build that downloads");
    repo
}

/// The stand-ins (namespace `k`, a server on the host) and an instance `egress-<name>-…` with
/// the settings `extra` makes (it may name the stand-ins' addresses).
async fn setup(
    k: u8,
    name: &str,
    extra: impl FnOnce(&Outside) -> Vec<(&'static str, String)>,
) -> (Outside, u16, TestEnv) {
    let outside = Outside::start(k);
    let host_port = host_server().await;
    let suffix: String = nanoid::nanoid!(5, &previewd::ids::PREVIEW_ID_ALPHABET);
    let mut settings = vec![("PREVIEWD_INSTANCE", format!("egress-{name}-{suffix}"))];
    settings.extend(extra(&outside));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let env = TestEnv::with("egress", &settings).await;
    (outside, host_port, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_mode_reaches_the_internet_but_not_the_host_private_networks_or_other_previews() {
    let (outside, host_port, env) = setup(1, "pub", |_| Vec::new()).await;
    let docker = env.manager.docker().clone();
    let inst = env.config.instance.clone();
    let (web, a) = deploy(&env).await;
    assert_eq!(a.state.egress, Some(Mode::Public), "the default mode");
    let (other_web, b) = deploy(&env).await;
    let [p1, _] = outside.ports;

    // DNS and the preview's own services keep working.
    let own = fetch(&docker, &web, "http://peer:7000/hostname").await;
    assert!(own.is_ok(), "{own:?}");
    // The public stand-in answers; the private server, the host and another preview refuse.
    let public = fetch(&docker, &web, &format!("http://{}:{p1}/", outside.public)).await;
    assert_eq!(public.as_deref(), Ok("outside"), "{public:?}");
    let private = fetch(&docker, &web, &format!("http://{}:{p1}/", outside.private)).await;
    assert!(private.is_err(), "reached a private address: {private:?}");
    let on_host = fetch_host(&env, &web, &a, host_port).await;
    assert!(on_host.is_err(), "reached the host: {on_host:?}");
    let other_net = labels::network_name(&inst, &b.state.id, 1);
    let other = docker
        .inspect_container(&other_web, None)
        .await
        .expect("inspect")
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(&other_net).cloned())
        .and_then(|e| e.ip_address)
        .expect("the other preview's address");
    let to_other = fetch(&docker, &web, &format!("http://{other}:8080/hostname")).await;
    assert!(to_other.is_err(), "reached another preview: {to_other:?}");

    // The metadata range is never sent a packet: it is read back from the rules.
    let rules = firewall::installed(inst.as_str()).await.join("\n");
    assert!(rules.contains("-d 169.254.0.0/16 -j PVD-"), "{rules}");
    assert!(
        rules.contains("ip6tables -A PVD-"),
        "IPv6 is filtered too: {rules}"
    );
    assert!(rules.contains("-d fc00::/7 -j PVD-"), "{rules}");
    assert!(rules.contains("-A INPUT -j PVD-"), "{rules}");
    assert!(rules.contains("-A DOCKER-USER -j PVD-"), "{rules}");

    // Lost rules (a reboot, an iptables flush) come back from the labels at the next
    // reconcile pass, which `serve` runs at its start, in a new process as here.
    firewall::clear(inst.as_str()).await;
    assert!(firewall::installed(inst.as_str()).await.is_empty());
    let restarted = previewd::preview::manager::Manager::connect(env.config.clone())
        .await
        .expect("a second manager");
    let none = std::collections::HashSet::new();
    previewd::preview::cleanup::clean_up(&restarted, Duration::ZERO, &none, &none)
        .await
        .expect("reconcile");
    assert_eq!(
        firewall::installed(inst.as_str()).await.join("\n"),
        rules,
        "the same rules after the restart"
    );
    let private = fetch(&docker, &web, &format!("http://{}:{p1}/", outside.private)).await;
    assert!(private.is_err(), "reached a private address: {private:?}");

    // After the last preview goes, nothing of the policy is left on the host.
    env.manager.down(&a.state.id).await.expect("down a");
    assert!(
        !firewall::installed(inst.as_str()).await.is_empty(),
        "b keeps its rules"
    );
    env.manager.down(&b.state.id).await.expect("down b");
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_mode_reaches_only_its_own_services_and_exactly_what_the_allow_list_names() {
    let allow = |o: &Outside| format!("{}:{}", o.private, o.ports[0]);
    let (outside, host_port, env) = setup(2, "none", |o| {
        vec![
            ("PREVIEWD_LIMITS_EGRESS", "none".to_owned()),
            ("PREVIEWD_LIMITS_EGRESS_ALLOW", allow(o)),
        ]
    })
    .await;
    let [p1, p2] = outside.ports;
    let allowed = allow(&outside);
    let docker = env.manager.docker().clone();
    let (web, a) = deploy(&env).await;
    assert_eq!(a.state.egress, Some(Mode::None));

    let own = fetch(&docker, &web, "http://peer:7000/hostname").await;
    assert!(own.is_ok(), "{own:?}");
    // The allow-list opens the one address and port it names, nothing beside it.
    let open = fetch(&docker, &web, &format!("http://{allowed}/")).await;
    assert_eq!(open.as_deref(), Ok("outside"), "{open:?}");
    let other_port = fetch(&docker, &web, &format!("http://{}:{p2}/", outside.private)).await;
    assert!(other_port.is_err(), "{other_port:?}");
    let public = fetch(&docker, &web, &format!("http://{}:{p1}/", outside.public)).await;
    assert!(public.is_err(), "none reached the internet: {public:?}");
    let on_host = fetch_host(&env, &web, &a, host_port).await;
    assert!(on_host.is_err(), "reached the host: {on_host:?}");
    // The gateway still answers for the preview.
    let (status, _) = env.get(a.state.id.as_str(), "/hostname").await;
    assert_eq!(status, 200);
    env.manager.down(&a.state.id).await.expect("down");

    // Builds follow the mode: a `RUN` step has no network at all (the `all` test's build of
    // the same kind downloads).
    let repo = downloading_build(&format!("http://{}:{p1}/", outside.public));
    let f = env
        .up(repo.path())
        .await
        .expect_err("a build without network");
    let log = f.log_tail.join("\n");
    assert_eq!(f.phase.as_str(), "build", "{f}");
    assert!(log.contains("unreachable"), "{f}\n{log}");
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_mode_reaches_everything_the_other_modes_refuse() {
    // The control: every refusal above is the policy's, not the test set-up's.
    let (outside, host_port, env) = setup(3, "all", |_| {
        vec![("PREVIEWD_LIMITS_EGRESS", "all".to_owned())]
    })
    .await;
    let [p1, _] = outside.ports;
    let docker = env.manager.docker().clone();
    let inst = env.config.instance.clone();
    let (web, a) = deploy(&env).await;
    assert_eq!(a.state.egress, Some(Mode::All));
    assert!(
        firewall::installed(inst.as_str()).await.is_empty(),
        "`all` installs no rule"
    );
    for url in [
        format!("http://{}:{p1}/", outside.public),
        format!("http://{}:{p1}/", outside.private),
    ] {
        let got = fetch(&docker, &web, &url).await;
        assert_eq!(got.as_deref(), Ok("outside"), "{url}: {got:?}");
    }
    let on_host = fetch_host(&env, &web, &a, host_port).await;
    assert_eq!(on_host.as_deref(), Ok("host"), "{on_host:?}");
    env.manager.down(&a.state.id).await.expect("down");

    let repo = downloading_build(&format!("http://{}:{p1}/", outside.public));
    let d = env.up(repo.path()).await.expect("a build that downloads");
    let (status, page) = env.get(d.state.id.as_str(), "/page").await;
    assert_eq!((status, page.as_str()), (200, "outside"));
    env.manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_hold_while_docker_rewrites_its_own_forward_rules() {
    // Docker deletes and re-inserts its `FORWARD -j DOCKER-USER` jump, in two commands, each
    // time any network is created on the host: a policy hooked only into `DOCKER-USER` lets
    // connections through in between. A preview keeps trying a refused address while networks
    // come and go beside it; not one attempt may get through.
    let (outside, _host_port, env) = setup(4, "churn", |_| {
        vec![("PREVIEWD_LIMITS_EGRESS", "none".to_owned())]
    })
    .await;
    let [p1, _] = outside.ports;
    let docker = env.manager.docker().clone();
    let (web, a) = deploy(&env).await;
    let url = format!("http://{}:{p1}/", outside.private);
    let refused = fetch(&docker, &web, &url).await;
    assert!(refused.is_err(), "{refused:?}");

    let script = format!(
        "rm -f /tmp/stop; n=0; got=0; while [ ! -f /tmp/stop ]; do \
         timeout 3 wget -q -O /dev/null {url} 2>/dev/null && got=$((got+1)); n=$((n+1)); done; \
         echo \"$got $n\""
    );
    let prober = {
        let (docker, web) = (docker.clone(), web.clone());
        tokio::spawn(async move { exec(&docker, &web, &["sh", "-c", &script]).await })
    };
    let instance = env.config.instance.to_string();
    for i in 0..12 {
        let name = format!("{instance}-churn-{i}");
        let labels =
            std::collections::HashMap::from([(labels::INSTANCE.to_owned(), instance.clone())]);
        docker
            .create_network(bollard::models::NetworkCreateRequest {
                name: name.clone(),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .expect("create a network");
        docker.remove_network(&name).await.expect("remove it");
    }
    let (code, _) = exec(&docker, &web, &["touch", "/tmp/stop"]).await;
    assert_eq!(code, 0);
    let (code, out) = prober.await.expect("the prober");
    assert_eq!(code, 0, "{out}");
    let counts: Vec<u64> = out
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [got, tried] = counts[..] else {
        panic!("the prober's counts: {out}")
    };
    eprintln!("{got} of {tried} connections got through");
    assert!(tried >= 50, "the prober ran while networks changed: {out}");
    assert_eq!(got, 0, "{got} of {tried} connections got through");
    env.manager.down(&a.state.id).await.expect("down");
    env.assert_clean().await;
}
