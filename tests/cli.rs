//! The `previewd` binary as a user runs it: the design's (docs/architecture.md) CLI contract, exit codes and `--json`.

mod engine_support;
mod support;

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use engine_support::{GitRepo, TestEnv, eventually, fixture};
use previewd::forge::Forge;
use previewd::forge::github::GitHub;
use previewd::preview::manager::{Mode, UpRequest};
use support::fake_github::FakeGitHub;
use support::{TOKEN, fast_retry, pull_json};

/// `previewd ARGS` against the test's instance.
fn command(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_previewd"));
    cmd.args(args)
        .env("PREVIEWD_INSTANCE", env.config.instance.as_str())
        .env("PREVIEWD_DATA_DIR", env.data.path())
        .env("PREVIEWD_GATEWAY_PORT", env.port.to_string())
        .env("PREVIEWD_LIMITS_HEALTH_TIMEOUT", "30s");
    cmd
}

fn previewd(env: &TestEnv, args: &[&str]) -> Output {
    command(env, args).output().expect("run previewd")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_ls_status_logs_down_follow_the_contract() {
    let env = TestEnv::new("cli").await;
    let repo = GitRepo::from_fixture("two-service");
    let repo_arg = repo.path().display().to_string();

    let up = previewd(&env, &["up", "--repo", &repo_arg, "--json"]);
    assert!(up.status.success(), "up failed: {}", stderr(&up));
    let v: serde_json::Value = serde_json::from_str(&stdout(&up)).expect("one JSON object");
    for key in [
        "id", "url", "repo", "branch", "sha", "mode", "status", "services",
    ] {
        assert!(v.get(key).is_some(), "--json lacks {key}: {v}");
    }
    assert_eq!(v["status"], "running");
    assert_eq!(v["mode"], "preview");
    assert_eq!(v["branch"], "main");
    let id = v["id"].as_str().expect("id").to_owned();
    let api = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "api")
        .expect("api service");
    assert_eq!(api["route"], "/api");
    assert_eq!(api["health"]["ok"], true);
    assert_eq!(api["health"]["status"], 200);

    let ls = previewd(&env, &["ls", "--json"]);
    assert!(ls.status.success());
    let all: serde_json::Value = serde_json::from_str(&stdout(&ls)).expect("an array");
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    assert_eq!(all[0]["id"], id.as_str());

    // An update: `up` reports it ready at the switch (the last phase of its `ready in` line)
    // and exits only once the generation it replaced is gone.
    repo.write("web/index.html", "<h1>previewd sample: web v2</h1>");
    repo.commit("web v2");
    let again = previewd(&env, &["up", "--repo", &repo_arg]);
    assert!(again.status.success(), "{}", stderr(&again));
    let ready = stderr(&again);
    let ready = ready
        .lines()
        .find(|l| l.starts_with("ready in "))
        .unwrap_or_else(|| panic!("no ready line: {}", stderr(&again)));
    assert!(
        ready.ends_with("s)") && ready.contains(", switch "),
        "{ready}"
    );
    let observed = env.manager.observed().await.expect("observed");
    assert_eq!(observed.len(), 1);
    assert_eq!(
        observed[0].generations.keys().collect::<Vec<_>>(),
        [&2],
        "the replaced generation is gone when up exits"
    );

    let status = previewd(&env, &["status", &id]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).contains("ok 200"), "{}", stdout(&status));
    let status = previewd(&env, &["status", &id, "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let v: serde_json::Value = serde_json::from_str(&stdout(&status)).expect("one JSON object");
    assert_eq!(
        (&v["id"], &v["status"]),
        (&id.as_str().into(), &"running".into())
    );
    assert_eq!(v["services"].as_array().map(Vec::len), Some(3), "{v}");
    let web = v["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "web"))
        .expect("web service");
    assert_eq!(
        (&web["health"]["ok"], &web["health"]["status"]),
        (&true.into(), &200.into())
    );

    // By hand to sleep and back, as JSON; a second sleep changes nothing and says so.
    let sleep = |args: &[&str]| {
        let out = previewd(&env, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).expect("one JSON object")
    };
    let asleep = serde_json::json!({"id": id, "status": "sleeping", "changed": true});
    assert_eq!(sleep(&["sleep", &id, "--json"]), asleep);
    let again = serde_json::json!({"id": id, "status": "sleeping", "changed": false});
    assert_eq!(sleep(&["sleep", &id, "--json"]), again);
    let awake = serde_json::json!({"id": id, "status": "running", "changed": true});
    assert_eq!(sleep(&["wake", &id, "--json"]), awake);
    // A reader that went away (`| head -0`) ends the command quietly, not with a panic.
    let mut closed = command(&env, &["sleep", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run previewd sleep");
    drop(closed.stdout.take());
    let closed = closed.wait_with_output().expect("previewd sleep ends");
    assert_eq!(closed.status.code(), Some(0), "{}", stderr(&closed));
    assert!(!stderr(&closed).contains("panicked"), "{}", stderr(&closed));
    let woken = previewd(&env, &["wake", &id]);
    assert_eq!(
        stdout(&woken).trim(),
        format!("{id} is awake"),
        "{}",
        stderr(&woken)
    );

    let logs = previewd(&env, &["logs", &id, "web", "--tail", "5"]);
    assert!(logs.status.success(), "{}", stderr(&logs));

    // A line the web service writes (to its PID 1's stdout, as its server would), read back
    // three ways: followed as it comes, as JSON lines, and not at all from a later time on.
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let web = format!("{}-{id}-web", env.config.instance);
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_previewd"))
        .args(["logs", "-f", "--tail", "0", &id, "web"])
        .env("PREVIEWD_INSTANCE", env.config.instance.as_str())
        .env("PREVIEWD_DATA_DIR", env.data.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run previewd logs -f");
    let followed = std::thread::spawn({
        let out = follow.stdout.take().expect("piped stdout");
        move || {
            use std::io::BufRead;
            std::io::BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.contains("cli-log-marker"))
        }
    });
    // Written until the follower has it: it may start reading after the first write.
    eventually(Duration::from_secs(30), "logs -f prints a new line", || {
        let docker = docker.clone();
        let web = web.clone();
        let done = followed.is_finished();
        async move {
            if done {
                return Some(());
            }
            let cmd = ["sh", "-c", "echo cli-log-marker > /proc/1/fd/1"];
            engine_support::exec(&docker, &web, &cmd).await;
            None
        }
    })
    .await;
    let _ = follow.kill();
    let _ = follow.wait();
    let line = followed.join().expect("reader thread");
    assert_eq!(line.as_deref(), Some("cli-log-marker"));

    // `--tail N` prints the last N lines, no more.
    let three = "for n in 1 2 3; do echo cli-tail-$n > /proc/1/fd/1; done";
    engine_support::exec(&docker, &web, &["sh", "-c", three]).await;
    let tail = eventually(Duration::from_secs(30), "logs --tail 2", || {
        let out = stdout(&previewd(&env, &["logs", &id, "web", "--tail", "2"]));
        async move { out.contains("cli-tail-3").then_some(out) }
    })
    .await;
    assert_eq!(
        tail.lines().collect::<Vec<_>>(),
        ["cli-tail-2", "cli-tail-3"],
        "{tail}"
    );

    let json = previewd(&env, &["logs", &id, "web", "--json", "--since", "1h"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let marker = stdout(&json)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("one JSON object a line"))
        .find(|v| v["line"] == "cli-log-marker")
        .expect("the marker among the JSON lines");
    assert_eq!(
        (&marker["service"], &marker["stream"]),
        (&"web".into(), &"stdout".into())
    );
    let later = previewd(
        &env,
        &["logs", &id, "web", "--since", "2099-01-01T00:00:00Z"],
    );
    assert!(later.status.success(), "{}", stderr(&later));
    assert!(
        !stdout(&later).contains("cli-log-marker"),
        "{}",
        stdout(&later)
    );

    // A preview that is there but not running: `status` prints it and exits 3, which a script
    // tells apart from 1 (the question could not be answered) and 2 (a usage error).
    let api = format!("{}-{id}-api", env.config.instance);
    docker
        .stop_container(
            &api,
            None::<bollard::query_parameters::StopContainerOptions>,
        )
        .await
        .expect("stop the api container");
    let stopped = previewd(&env, &["status", &id]);
    assert_eq!(stopped.status.code(), Some(3), "{}", stdout(&stopped));
    assert!(stdout(&stopped).contains("api"), "{}", stdout(&stopped));

    let bad = previewd(&env, &["status", "NOT-AN-ID"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("invalid preview id"),
        "{}",
        stderr(&bad)
    );
    let unknown = previewd(&env, &["down", "zzzzzzzzzz"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no preview has the id"),
        "{}",
        stderr(&unknown)
    );

    // gc with no preview past its ttl: its report, as JSON, expires nothing.
    let gc = previewd(&env, &["gc", "--json"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    let report: serde_json::Value = serde_json::from_str(&stdout(&gc)).expect("one JSON object");
    assert_eq!(report["expired"], serde_json::json!([]), "{report}");
    assert!(report["containers"].is_array(), "{report}");

    let down = previewd(&env, &["down", &id, "--json"]);
    assert!(down.status.success(), "{}", stderr(&down));
    let gone: serde_json::Value = serde_json::from_str(&stdout(&down)).expect("one JSON object");
    assert_eq!(gone["removed"], serde_json::json!([id]), "{gone}");
    // A preview the CLI made has no PR to tell.
    assert_eq!(gone["not_told"], serde_json::json!([]), "{gone}");
    let none = previewd(&env, &["down", "--all"]);
    assert!(none.status.success(), "{}", stderr(&none));
    assert_eq!(stdout(&none).trim(), "no previews");
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_up_exits_non_zero_with_the_reason_and_check_names_keys() {
    let env = TestEnv::new("clifail").await;
    let up = previewd(
        &env,
        &["up", "--repo", &fixture("build-fail").display().to_string()],
    );
    assert!(!up.status.success());
    let err = stderr(&up);
    assert!(err.contains("build failed for service"), "{err}");
    assert!(
        err.contains("error: something broke"),
        "log tail missing: {err}"
    );
    env.assert_clean().await;

    let ok = previewd(
        &env,
        &["check", &fixture("two-service").display().to_string()],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("route /api"), "{}", stdout(&ok));
    let hostile = previewd(&env, &["check", &fixture("hostile").display().to_string()]);
    assert!(!hostile.status.success());
    assert!(
        stderr(&hostile).contains("privileged"),
        "{}",
        stderr(&hostile)
    );

    let bad_args = previewd(&env, &["up", "--repo", ".", "--mode", "dev"]);
    assert!(!bad_args.status.success());
    assert!(
        stderr(&bad_args).contains("--worktree"),
        "{}",
        stderr(&bad_args)
    );
}

/// An error names its cause once: a missing config file, and `serve` on a port already taken.
#[test]
fn errors_say_their_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("absent.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_previewd"))
        .args(["--config", &missing.display().to_string(), "ls"])
        .output()
        .expect("run previewd");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("absent.toml"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_previewd"))
        .arg("serve")
        .env("PREVIEWD_INSTANCE", "clierr")
        .env("PREVIEWD_DATA_DIR", dir.path())
        .env("PREVIEWD_LISTEN", &addr)
        .env("PREVIEWD_ADMIN_LISTEN", "127.0.0.1:0")
        .env("PREVIEWD_GITHUB_WEBHOOK_SECRET", "s")
        .env("PREVIEWD_GITHUB_TOKEN", "t")
        .env("PREVIEWD_GITHUB_API_URL", "http://127.0.0.1:9")
        .output()
        .expect("run previewd");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert_eq!(err.matches("already in use").count(), 1, "{err}");
}

/// `check` of a path that is not a folder says so, rather than "no preview config".
#[test]
fn check_of_something_not_a_folder_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(".previewd.yml");
    std::fs::write(&file, "services: {}\n").expect("write");
    for path in [dir.path().join("absent"), file] {
        let out = Command::new(env!("CARGO_BIN_EXE_previewd"))
            .args(["check", &path.display().to_string()])
            .output()
            .expect("run previewd");
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("not a folder"), "{err}");
        assert!(!err.contains("no preview config"), "{err}");
    }
}

/// `check` says what a service's Dockerfile needs of the host: a newer engine for `COPY --link`
/// and heredocs, the operator's build secrets for secret mounts.
#[test]
fn check_notes_what_a_dockerfile_needs_of_the_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write =
        |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write(
        ".previewd.yml",
        "services:\n  web:\n    build: .\n    port: 8080\n",
    );
    write(
        "Dockerfile",
        "FROM busybox\nCOPY --link a /a\nRUN --mount=type=secret,id=npm_token true\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_previewd"))
        .args(["check", &dir.path().display().to_string()])
        .output()
        .expect("run previewd");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("note: `COPY --link` (line 2) needs Docker 23+"),
        "{text}"
    );
    assert!(text.contains("note: build secrets npm_token"), "{text}");
}

/// Under systemd, Docker or a pipe, log lines must not carry terminal colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_on_a_pipe_have_no_colour_codes() {
    let env = TestEnv::new("clilog").await;
    let out = Command::new(env!("CARGO_BIN_EXE_previewd"))
        .arg("ls")
        .env("PREVIEWD_INSTANCE", env.config.instance.as_str())
        .env("PREVIEWD_DATA_DIR", env.data.path())
        .env("PREVIEWD_LOG", "debug")
        .env_remove("NO_COLOR")
        .output()
        .expect("run previewd");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("DEBUG"), "no log line to check: {err}");
    assert!(!err.contains('\x1b'), "colour codes on a pipe: {err:?}");
}

/// `up` at a terminal 40 columns wide: the status line (spinner, phase, elapsed time, newest
/// build line) is cut to the width, so it never wraps and leaves no debris; finished phases
/// stay on lines of their own. The terminal is a real pty (`script`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_at_a_narrow_terminal_keeps_its_status_line_within_the_width() {
    let env = TestEnv::new("clitty").await;
    let repo = fixture("two-service").display().to_string();
    let inner = format!(
        "stty cols 40 rows 20; exec {} up --repo {repo}",
        env!("CARGO_BIN_EXE_previewd")
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("PREVIEWD_INSTANCE", env.config.instance.as_str())
        .env("PREVIEWD_DATA_DIR", env.data.path())
        .env("PREVIEWD_GATEWAY_PORT", env.port.to_string())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .output()
        .expect("run script");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{screen}");
    let ansi = regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").expect("regex");
    let plain = ansi.replace_all(&screen, "");
    let spinner = |c: char| ('\u{2800}'..='\u{28ff}').contains(&c);
    let status: Vec<&str> = plain
        .split(['\r', '\n'])
        .map(str::trim_end)
        .filter(|l| l.starts_with(spinner))
        .collect();
    assert!(
        status.iter().any(|l| l.contains("build")),
        "no status line seen: {plain:?}"
    );
    for l in &status {
        assert!(
            l.chars().count() <= 40,
            "a status line wider than 40 columns: {l:?}"
        );
    }
    // indicatif pads the line it leaves to the width, so the next one starts a row of its own.
    let finished = regex::Regex::new(r"(?m)^  build [0-9]+\.[0-9]s").expect("regex");
    assert!(
        plain.split('\r').any(|l| finished.is_match(l)),
        "no line for the finished build phase: {plain:?}"
    );
    let down = previewd(&env, &["down", "--all"]);
    assert!(down.status.success(), "{}", stderr(&down));
    env.assert_clean().await;
}

/// A preview of PR 7 that GitHub asked for, with its deployment on the fake GitHub, for the
/// commands that must tell the PR when they remove it.
struct PrPreview {
    github: FakeGitHub,
    env: TestEnv,
    gh_env: Vec<(&'static str, String)>,
    id: String,
    sha: String,
    deployment: u64,
}

const PR_REPO: &str = "Codertocat/Hello-World";

impl PrPreview {
    async fn start(name: &str, extra: &[(&'static str, &str)]) -> PrPreview {
        let github = FakeGitHub::start().await;
        let repo = GitRepo::at("compose-only", &format!("{PR_REPO}.git"), "changes");
        let sha = repo.commit("ok");
        let git_url = format!("file://{}", repo.root().display());
        let mut gh_env = vec![
            ("PREVIEWD_GITHUB_TOKEN", TOKEN.to_owned()),
            ("PREVIEWD_GITHUB_API_URL", github.url()),
        ];
        gh_env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let pairs: Vec<(&str, &str)> = gh_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let env = TestEnv::with(name, &pairs).await;
        let up = UpRequest {
            repo: format!("{git_url}/{PR_REPO}.git"),
            branch: Some("changes".into()),
            sha: None,
            pr: Some(7),
            forge: "github".into(),
            mode: Mode::Preview,
            key_repo: Some(PR_REPO.into()),
            key_branch: None,
            received: None,
        };
        let id = env.up_req(up).await.expect("up").state.id.to_string();
        let forge: Arc<dyn Forge> =
            Arc::new(GitHub::with_policy(&env.config.github, fast_retry()).expect("github"));
        let deployment = forge
            .environment_started(
                &previewd::forge::Repo::parse(PR_REPO).expect("repo"),
                &previewd::ids::CommitSha::parse(&sha).expect("sha"),
                "preview/changes",
                "building",
            )
            .await
            .expect("deployment")
            .expect("a deployment id");
        PrPreview {
            github,
            env,
            gh_env,
            id,
            sha,
            deployment,
        }
    }

    /// Runs `previewd ARGS` with the GitHub credentials; it must succeed. Its stdout.
    fn previewd(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_previewd"));
        cmd.args(args)
            .env("PREVIEWD_INSTANCE", self.env.config.instance.as_str())
            .env("PREVIEWD_DATA_DIR", self.env.data.path())
            .env("PREVIEWD_GATEWAY_PORT", self.env.port.to_string());
        for (k, v) in &self.gh_env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run previewd");
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    }
}

/// `previewd down` of a preview GitHub asked for tells its PR, as a close would: the
/// deployment goes inactive and the sticky comment says an operator removed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_tells_the_pr_of_a_preview_github_asked_for() {
    let t = PrPreview::start("clidown", &[]).await;
    let out = t.previewd(&["down", &t.id]);
    assert!(out.contains(&format!("removed {}", t.id)), "{out}");
    t.env.assert_clean().await;

    let sticky =
        t.github
            .removal_reported(PR_REPO, 7, t.deployment, "Preview removed by an operator");
    assert!(sticky.contains("An operator"), "{sticky}");
    t.github.assert_clean();
}

/// `previewd gc` expires a preview GitHub asked for as `serve` does: not while its PR carries
/// `limits.keep_label` (gc reads the PR for it), and when it goes, the PR is told why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_expires_a_pr_preview_past_the_ttl_unless_kept_and_tells_the_pr() {
    let t = PrPreview::start("cligc", &[("PREVIEWD_LIMITS_TTL", "2s")]).await;
    let (github, id, sha) = (&t.github, &t.id, &t.sha);

    // Past the ttl, but its PR carries the keep label: left, and nothing reported.
    github.set_pull(pull_json(
        7,
        "changes",
        sha,
        &["preview", "preview:keep"],
        true,
    ));
    let kept = eventually(
        Duration::from_secs(30),
        "gc to find it past the ttl",
        || {
            let out = t.previewd(&["gc"]);
            async move { out.contains("past limits.ttl").then_some(out) }
        },
    )
    .await;
    assert!(
        kept.contains(&format!(
            "kept {id} past limits.ttl: {PR_REPO}#7 carries the `preview:keep` label"
        )),
        "{kept}"
    );
    assert!(!kept.contains("removed"), "{kept}");
    let listed = stdout(&previewd(&t.env, &["ls", "--json"]));
    assert!(listed.contains(id.as_str()), "{listed}");
    assert!(github.lock().deployment_statuses.is_empty());

    // The label goes: the next gc removes it and tells the PR, with the commit it ran.
    github.set_pull(pull_json(7, "changes", sha, &["preview"], true));
    let out = t.previewd(&["gc"]);
    assert!(
        out.contains(&format!("removed expired preview {id}")),
        "{out}"
    );
    t.env.assert_clean().await;
    let sticky =
        github.removal_reported(PR_REPO, 7, t.deployment, "Preview removed after limits.ttl");
    assert!(
        sticky.contains(&format!("<!-- previewd:expired:{sha} -->")),
        "{sticky}"
    );
    github.assert_clean();
}

/// Route changes are serialized across the instance's processes: `previewd gc` (which syncs the
/// gateway) waits while another process holds the gateway lock, and goes on once it is released.
/// Without it, a CLI that listed the labels before `serve` routed a new preview, and wrote its
/// table after, would take that preview's routes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_waits_for_another_process_changing_the_gateway() {
    let env = TestEnv::new("clilock").await;
    let path = previewd::preview::gateway::lock_path(&env.config);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("admin dir");
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("lock file");
    held.lock().expect("lock");

    let mut gc = command(&env, &["gc"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run previewd");
    // Unblocked, gc with nothing to do takes ~0.1 s; it must still be waiting after 2 s.
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        if let Some(status) = gc.try_wait().expect("wait") {
            panic!("gc did not wait for the gateway lock: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    let end = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = gc.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < end,
            "gc still waiting after the lock went"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = gc.wait_with_output().expect("output");
    assert!(status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing to clean up"),
        "{}",
        stdout(&out)
    );
    env.assert_clean().await;
}
