//! (g) of the end-to-end suite: `previewd serve` as a real process, killed with SIGKILL in the
//! middle of a build and started again, ends with the preview running and reported and nothing
//! of the killed attempt left; SIGTERM then stops it cleanly.

mod engine_support;
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;

use engine_support::{GitRepo, TestEnv, eventually, free_port};
use support::fake_github::FakeGitHub;
use support::{SECRET, TOKEN, payload_json, send, sign};

const DEADLINE: Duration = Duration::from_secs(150);

struct Serve {
    child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(env: &TestEnv, vars: &[(String, String)]) -> Serve {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_previewd"));
    cmd.arg("serve")
        .env("PREVIEWD_INSTANCE", env.config.instance.as_str())
        .env("PREVIEWD_DATA_DIR", env.data.path())
        .env("PREVIEWD_GATEWAY_PORT", env.port.to_string())
        .env("PREVIEWD_LIMITS_HEALTH_TIMEOUT", "30s")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    Serve {
        child: cmd.spawn().expect("start previewd serve"),
    }
}

/// 0 while nothing listens yet.
async fn get(addr: &str, path: &str) -> u16 {
    previewd::preview::http::tcp(addr, "localhost", "GET", path, Duration::from_secs(2))
        .await
        .map_or(0, |r| r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_build_then_restarted_converges_with_no_orphans() {
    let github = FakeGitHub::start().await;
    let repo = GitRepo::at("compose-only", "Codertocat/Hello-World.git", "changes");
    // A build slow enough to be killed in the middle of.
    let dockerfile = std::fs::read_to_string(repo.path().join("Dockerfile")).expect("Dockerfile");
    repo.write("Dockerfile", &format!("{dockerfile}\nRUN sleep 6\n"));
    let sha = repo.commit("slow build");
    let env = TestEnv::new("e2e-kill").await;
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

    let first = serve(&env, &vars);
    eventually(DEADLINE, "serve to listen", || async {
        (get(&listen, "/healthz").await == 200).then_some(())
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
        .header("x-github-delivery", "kill-test-1")
        .header("x-hub-signature-256", sign(SECRET, &body))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    assert_eq!(send(req).await.0, 202);

    // The build has begun once the preview's worktree is checked out: kill it there.
    let worktrees = env.config.instance_dir().join("worktrees");
    eventually(DEADLINE, "the build to start", || async {
        std::fs::read_dir(&worktrees)
            .ok()?
            .next()
            .is_some()
            .then_some(())
    })
    .await;
    drop(first); // SIGKILL
    assert!(
        github
            .lock()
            .statuses
            .iter()
            .all(|s| s["state"] != "success"),
        "the first process must not have finished"
    );

    // Started again, it finds the labelled PR with no preview and deploys it.
    let mut second = serve(&env, &vars);
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
    assert_eq!(env.get(&id, "/").await.0, 200);

    // No orphans: one preview, one generation, its network and its worktree only.
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(observed.len(), 1);
    assert_eq!(observed[0].generations.len(), 1);
    let (_, networks, _) = env.objects().await;
    assert_eq!(networks.len(), 1, "{networks:?}");
    let left: Vec<_> = std::fs::read_dir(&worktrees)
        .expect("worktrees")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![id.clone()]);
    github.assert_clean();

    // SIGTERM: a clean, prompt exit.
    let status = Command::new("kill")
        .args(["-TERM", &second.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = second.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exited.success(), "exit status {exited:?}");
    env.manager.down(&observed[0].id).await.expect("down");
    env.assert_clean().await;
}
