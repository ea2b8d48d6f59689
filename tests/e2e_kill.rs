//! SIGKILL of `previewd serve` at each step of a deployment, then a restart: the deployment
//! converges (success reported, the preview answers through the gateway) and nothing of the
//! killed attempt is left. `PREVIEWD_FAULT_PAUSE_AT` (src/preview/fault.rs) holds the first
//! process inside the step, after the step's side effects, so the kill always leaves that
//! step's partial state; each test checks that state is really there before the restart, so
//! a restart that cleaned nothing up would fail it. One more test kills `serve` inside a step,
//! while Docker is running a build's `RUN` command, not between steps. After every restart the
//! PR has exactly one sticky comment (found again by its marker, not written anew). Each test
//! has its own instance, so they run in parallel.

mod engine_support;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use tokio::sync::mpsc;

use engine_support::{GitRepo, TestEnv, eventually, free_port};
use support::fake_github::FakeGitHub;
use support::{SECRET, TOKEN, payload_json, send, sign};

const DEADLINE: Duration = Duration::from_secs(60);

/// A `previewd serve` child, SIGKILLed when dropped (also when a test fails).
struct Serve {
    child: Child,
    /// Its stderr, line by line (only when piped).
    lines: Option<mpsc::UnboundedReceiver<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(env: &TestEnv, vars: &[(String, String)], pause_at: Option<&str>) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_previewd"));
        cmd.arg("serve")
            .env("PREVIEWD_INSTANCE", env.config.instance.as_str())
            .env("PREVIEWD_DATA_DIR", env.data.path())
            .env("PREVIEWD_GATEWAY_PORT", env.port.to_string())
            .env("PREVIEWD_LIMITS_HEALTH_TIMEOUT", "30s")
            .env_remove(previewd::preview::fault::PAUSE_AT)
            .stdout(Stdio::null())
            .stderr(if pause_at.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        for (k, v) in vars {
            cmd.env(k, v);
        }
        if let Some(phase) = pause_at {
            cmd.env(previewd::preview::fault::PAUSE_AT, phase);
        }
        let mut child = cmd.spawn().expect("start previewd serve");
        let lines = child.stderr.take().map(|err| {
            let (tx, rx) = mpsc::unbounded_channel();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    eprintln!("[killed serve] {line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Serve { child, lines }
    }

    /// Waits until the child prints `line` on stderr.
    async fn wait_for_line(&mut self, line: &str) {
        let rx = self.lines.as_mut().expect("stderr piped");
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(l)) if l.trim() == line => return,
                Ok(Some(_)) => {}
                Ok(None) => panic!("serve exited before printing {line:?}"),
                Err(_) => panic!("timed out waiting for {line:?}"),
            }
        }
    }

    fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, then the exit status within a deadline.
    async fn sigterm(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not exit on SIGTERM");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// 0 while nothing listens yet.
async fn get(addr: &str, host: &str, path: &str) -> u16 {
    previewd::preview::http_client::tcp(addr, host, "GET", path, Duration::from_secs(2))
        .await
        .map_or(0, |r| r.status)
}

/// What the killed process left of its attempt, checked to be that step's partial state.
struct Leftovers {
    id: String,
    containers: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
}

async fn partial_state(env: &TestEnv, phase: &str) -> Leftovers {
    let inst = env.config.instance.to_string();
    let wts = env.worktrees();
    let (containers, networks, images) = env.objects().await;
    assert_eq!(
        wts.len(),
        1,
        "{phase}: the attempt's worktree: {wts:?} {containers:?} {networks:?} {images:?}"
    );
    let id = wts[0].clone();
    let gateway = format!("/{inst}-gateway");
    let staging: Vec<&String> = containers.iter().filter(|c| **c != gateway).collect();
    let ours = |n: &String| n.contains(&format!("{inst}-{id}-"));
    match phase {
        "fetch" | "config" => {
            assert!(containers.is_empty(), "{phase}: {containers:?}");
            assert!(networks.is_empty(), "{phase}: {networks:?}");
            assert!(images.is_empty(), "{phase}: {images:?}");
        }
        // Killed while the builder ran a step: no container of previewd's own yet (the step
        // is BuildKit's, which cancels it when the build's client goes); the generation's
        // network, made beside the build, may be there.
        "inside-build" => {
            assert!(
                containers.iter().all(|c| !c.ends_with(".g1")),
                "{phase}: {containers:?}"
            );
            assert!(
                networks.iter().all(|n| *n == format!("pv-{inst}-{id}-1")),
                "{phase}: {networks:?}"
            );
            // Only the builder's untagged steps so far: no image of the preview's.
            assert!(images.iter().all(|i| !ours(i)), "{phase}: {images:?}");
        }
        // Built, and the generation's network made beside the build; no container yet.
        "build" => {
            assert!(containers.is_empty(), "{phase}: {containers:?}");
            assert_eq!(networks, vec![format!("pv-{inst}-{id}-1")], "{phase}");
            assert_eq!(images.len(), 1, "{phase}: the built image: {images:?}");
            assert!(ours(&images[0]), "{phase}: {images:?}");
        }
        _ => {
            // start, route, health: the new generation's staging container and network.
            assert_eq!(staging.len(), 1, "{phase}: {containers:?}");
            assert!(
                staging[0].ends_with(".g1") && ours(staging[0]),
                "{phase}: a staging container: {containers:?}"
            );
            assert_eq!(networks, vec![format!("pv-{inst}-{id}-1")], "{phase}");
            assert_eq!(images.len(), 1, "{phase}: {images:?}");
            let has_gateway = containers.contains(&gateway);
            let staging_host = format!("{id}-1.localhost");
            let addr = format!("127.0.0.1:{}", env.port);
            match phase {
                // The routes (and with the first one the gateway) are made while the
                // containers start: the gateway may be there already, or not yet.
                "start" => {}
                // Routed, and (health) checked healthy through the gateway.
                _ => {
                    assert!(has_gateway, "{phase}: {containers:?}");
                    if phase == "health" {
                        assert_eq!(get(&addr, &staging_host, "/").await, 200);
                    }
                }
            }
        }
    }
    Leftovers {
        id,
        containers: staging.into_iter().cloned().collect(),
        networks,
        images,
    }
}

async fn killed_at_then_restarted(phase: &str) {
    let started = Instant::now();
    let github = FakeGitHub::start().await;
    let repo = GitRepo::at("compose-only", "Codertocat/Hello-World.git", "changes");
    repo.write("marker.txt", phase);
    let inside_build = phase == "inside-build";
    // The step's process is found by this word in its command line (BuildKit's steps are no
    // Docker containers, but their processes are the host's).
    let step_marker = format!(
        "step-{}",
        nanoid::nanoid!(8, &previewd::ids::PREVIEW_ID_ALPHABET)
    );
    if inside_build {
        // A step long enough to be killed in (it runs again, whole, after the restart).
        repo.write(
            "Dockerfile",
            &std::fs::read_to_string(engine_support::fixture("compose-only").join("Dockerfile"))
                .expect("the fixture's Dockerfile")
                .replace(
                    "EXPOSE 8080",
                    &format!("EXPOSE 8080\nRUN sh -c 'sleep 6; echo {step_marker}'"),
                ),
        );
    }
    let sha = repo.commit(&format!("killed at {phase}"));
    let env = TestEnv::new(&format!("kill-{phase}")).await;
    let inst = env.config.instance.to_string();
    let (listen, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let vars: Vec<(String, String)> = [
        ("PREVIEWD_LISTEN", listen.as_str()),
        ("PREVIEWD_ADMIN_LISTEN", admin.as_str()),
        ("PREVIEWD_GITHUB_WEBHOOK_SECRET", SECRET),
        ("PREVIEWD_GITHUB_TOKEN", TOKEN),
        ("PREVIEWD_GITHUB_API_URL", &github.url()),
        (
            "PREVIEWD_GITHUB_GIT_URL",
            &format!("file://{}", repo.root().display()),
        ),
        ("PREVIEWD_TRIGGERS_LABELS", "preview"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    let mut first = Serve::start(&env, &vars, (!inside_build).then_some(phase));
    eventually(DEADLINE, "serve to listen", || async {
        (get(&listen, "localhost", "/healthz").await == 200).then_some(())
    })
    .await;
    let mut p = payload_json("pull_request.labeled.json");
    let label = json!({"id": 1, "node_id": "L1", "url": "", "name": "preview", "color": "ffffff", "default": false, "description": null});
    p["label"] = label.clone();
    p["pull_request"]["labels"] = json!([label]);
    p["pull_request"]["head"]["sha"] = json!(sha);
    github.set_pull(p["pull_request"].clone());
    github.set_permission("Codertocat", "write");
    let body = serde_json::to_vec(&p).expect("json");
    let req = hyper::Request::post(format!("http://{listen}/webhooks/github"))
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", format!("kill-{phase}"))
        .header("x-hub-signature-256", sign(SECRET, &body))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    assert_eq!(send(req).await.0, 202);

    if inside_build {
        eventually(DEADLINE, "the build's RUN step to be running", || async {
            (engine_support::processes_with(&step_marker) > 0).then_some(())
        })
        .await;
    } else {
        first
            .wait_for_line(&format!("previewd: fault: paused at {phase}"))
            .await;
    }
    first.sigkill();
    // The kill left the step's partial state (containers are `unless-stopped`: they outlive
    // previewd), so what follows proves the restart cleans it up.
    let left = partial_state(&env, phase).await;
    assert!(
        github
            .lock()
            .statuses
            .iter()
            .all(|s| s["state"] != "success"),
        "the killed process must not have finished"
    );

    // Started again without the hook, it finds the labelled PR with no preview and deploys it.
    let second = Serve::start(&env, &vars, None);
    let ok = eventually(DEADLINE, "the success status after the restart", || async {
        let st = github.lock().statuses.clone();
        st.into_iter()
            .find(|s| s["state"] == "success" && s["sha"] == sha.as_str())
    })
    .await;
    let url = ok["target_url"].as_str().expect("target_url").to_owned();
    let id = url
        .trim_start_matches("http://")
        .split('.')
        .next()
        .expect("id")
        .to_owned();
    eventually(DEADLINE, "the preview through the gateway", || async {
        let (status, body) = env.get(&id, "/").await;
        (status == 200 && body.contains("compose-only")).then_some(())
    })
    .await;
    // The restarted process found the PR's sticky comment again (the killed one had written
    // it): one comment, now saying the preview is ready.
    github.comment_containing("Preview ready").await;
    let comments: Vec<(u64, String)> = github
        .lock()
        .comments
        .iter()
        .map(|c| (c.issue, c.body.clone()))
        .collect();
    assert_eq!(comments.len(), 1, "one sticky comment: {comments:?}");

    // Exactly one preview with one generation, live under its canonical names.
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(observed.len(), 1, "{observed:?}");
    assert_eq!(observed[0].id.as_str(), id);
    assert_eq!(observed[0].generations.len(), 1, "{observed:?}");
    assert_eq!(
        observed[0].live_members()[0].sha.as_deref(),
        Some(sha.as_str())
    );
    let (containers, networks, images) = env.objects().await;
    // The live app, its ready mark (time to ready, never started) and the gateway.
    let mut want = vec![
        format!("/{inst}-gateway"),
        format!("/{inst}-{id}-app"),
        format!("/{inst}-{id}.ready"),
    ];
    want.sort();
    let mut have = containers.clone();
    have.sort();
    assert_eq!(have, want, "no staging (.g<N>) containers");
    assert!(
        containers.iter().all(|c| !c.contains(".g")),
        "{containers:?}"
    );
    let live_gen = observed[0].live().expect("live");
    assert_eq!(networks, vec![format!("pv-{inst}-{id}-{live_gen}")]);
    assert!(
        images
            .iter()
            .all(|i| i.starts_with(&format!("{inst}-{id}-"))),
        "only the live preview's images: {images:?}"
    );
    assert_eq!(env.worktrees(), vec![id.clone()]);
    // Nothing of the killed attempt (the same id is new objects under new names, or a new id).
    for c in &left.containers {
        assert!(
            !containers.contains(c),
            "killed attempt's container {c} left"
        );
    }
    for n in &left.networks {
        assert!(
            !networks.contains(n) || left.id == id,
            "killed attempt's network {n} left"
        );
    }
    if left.id != id {
        assert!(
            left.images.iter().all(|i| !images.contains(i)),
            "killed attempt's images left: {images:?}"
        );
    }
    github.assert_clean();

    // SIGTERM: a clean, prompt exit; then removing the preview leaves nothing of the instance.
    let exited = second.sigterm().await;
    assert!(exited.success(), "exit status {exited:?}");
    env.manager.down(&observed[0].id).await.expect("down");
    env.assert_clean().await;
    eprintln!("killed at {phase}: converged in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_fetch_then_restarted_converges_with_no_orphans() {
    killed_at_then_restarted("fetch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_config_then_restarted_converges_with_no_orphans() {
    killed_at_then_restarted("config").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_build_then_restarted_converges_with_no_orphans() {
    killed_at_then_restarted("build").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_inside_a_running_build_step_then_restarted_converges_with_no_orphans() {
    killed_at_then_restarted("inside-build").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_start_then_restarted_converges_with_no_orphans() {
    killed_at_then_restarted("start").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_route_then_restarted_converges_with_no_orphans() {
    killed_at_then_restarted("route").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_health_then_restarted_converges_with_no_orphans() {
    killed_at_then_restarted("health").await;
}
