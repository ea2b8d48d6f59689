//! The operator's side of the binary that needs no Docker: `config` (effective values, their
//! origins, secrets masked), `check` without an operator config, `-v`, completions and the
//! manual page. Each runs the built binary as an operator would.

mod support;

use std::process::{Command, Output};

fn previewd(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_previewd"));
    cmd.args(args).current_dir(dir).env("HOME", dir);
    // The test's own PREVIEWD_* variables (a CI runner's) must not leak into what is checked.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PREVIEWD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("XDG_CONFIG_HOME");
    cmd.envs(env.iter().copied());
    cmd.output().expect("run previewd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_shows_each_value_with_its_origin_and_masks_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("previewd.toml"),
        "instance = \"opsfile\"\n[github]\nwebhook_secret = \"file-secret-xyzzy\"\n",
    )
    .expect("write previewd.toml");
    let env = [
        ("PREVIEWD_GATEWAY_PORT", "8123"),
        ("PREVIEWD_GITHUB_TOKEN", "env-token-plugh"),
    ];
    let out = previewd(dir.path(), &["config"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("# file: previewd.toml"), "{shown}");
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no line for {key}: {shown}"))
            .to_owned()
    };
    assert!(line("instance").contains("\"opsfile\""), "{shown}");
    assert!(line("instance").ends_with("# file"), "{shown}");
    assert!(line("port").contains("8123"), "{shown}");
    assert!(
        line("port").ends_with("# environment PREVIEWD_GATEWAY_PORT"),
        "{shown}"
    );
    assert!(line("domain").ends_with("# default"), "{shown}");
    assert!(shown.contains("# app_id = (not set)"), "{shown}");
    for secret in ["xyzzy", "plugh"] {
        assert!(!shown.contains(secret), "a secret was printed: {shown}");
    }
    assert!(line("token").contains("********"), "{shown}");

    let out = previewd(dir.path(), &["config", "--json"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["file"], "previewd.toml");
    let setting = |key: &str| {
        v["settings"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["key"] == key))
            .unwrap_or_else(|| panic!("no {key} in {v}"))
            .clone()
    };
    assert_eq!(setting("gateway.port")["value"], 8123);
    assert_eq!(setting("gateway.port")["origin"], "environment");
    assert_eq!(setting("gateway.port")["variable"], "PREVIEWD_GATEWAY_PORT");
    assert_eq!(setting("instance")["origin"], "file");
    assert_eq!(setting("github.app_id")["origin"], "unset");
    assert!(!v.to_string().contains("plugh"), "{v}");
}

#[test]
fn config_names_the_bad_key_of_a_broken_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("previewd.toml"),
        "[gateway]\nport = \"x\"\n",
    )
    .expect("write");
    let out = previewd(dir.path(), &["config"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("port"), "{}", text(&out.stderr));
}

/// A repository's check must work where the operator's config is broken or absent.
#[test]
fn check_needs_no_operator_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("previewd.toml"), "this is not toml = = =\n").expect("write");
    std::fs::write(
        dir.path().join(".previewd.yml"),
        "services:\n  web: {image: busybox, port: 80}\n",
    )
    .expect("write .previewd.yml");
    let out = previewd(
        dir.path(),
        &["check", "."],
        &[("PREVIEWD_NO_SUCH_KEY", "1")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("web"), "{}", text(&out.stdout));
    // The same broken file stops a command that needs it, naming the file.
    let ls = previewd(dir.path(), &["ls"], &[]);
    assert_eq!(ls.status.code(), Some(1));
    assert!(
        text(&ls.stderr).contains("previewd.toml"),
        "{}",
        text(&ls.stderr)
    );
}

/// `check --json`: the plan a script can read, or every problem with its file and key, and
/// the same exit status as without `--json`.
#[test]
fn check_prints_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yml = dir.path().join(".previewd.yml");
    std::fs::write(
        &yml,
        "services:\n  web: {image: busybox, port: 80}\n  db: {image: busybox, internal: true}\n",
    )
    .expect("write .previewd.yml");
    let out = previewd(dir.path(), &["check", ".", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["plan"]["file"], ".previewd.yml", "{v}");
    let services = v["plan"]["services"].as_array().expect("services");
    let web = services.iter().find(|s| s["name"] == "web").expect("web");
    assert_eq!(web["route"]["url"], "http://<id>.<domain>/", "{v}");
    assert_eq!(web["route"]["port"], 80, "{v}");
    let db = services.iter().find(|s| s["name"] == "db").expect("db");
    assert!(
        db["route"].is_null(),
        "an internal service has no route: {v}"
    );

    std::fs::write(
        &yml,
        "services:\n  web: {image: busybox, port: 80, privileged: true}\n  \
         api: {image: busybox, port: 81, cap_add: [ALL]}\n",
    )
    .expect("write .previewd.yml");
    let out = previewd(dir.path(), &["check", ".", "--json"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["valid"], false, "{v}");
    assert!(v.get("plan").is_none(), "{v}");
    let problems = v["problems"].as_array().expect("problems");
    for key in ["privileged", "cap_add"] {
        let p = problems
            .iter()
            .find(|p| p["key"].as_str().is_some_and(|k| k.contains(key)))
            .unwrap_or_else(|| panic!("no problem names {key}: {v}"));
        assert_eq!(p["kind"], "refused", "{v}");
        assert_eq!(p["file"], ".previewd.yml", "{v}");
        assert!(
            p["message"].as_str().is_some_and(|m| m.contains(key)),
            "{v}"
        );
    }
}

/// A reader that went away (`previewd check --json | head -1`) ends the command quietly: no
/// panic about a broken pipe. The pipe's read end is closed before previewd starts, so its
/// first write fails with EPIPE every time.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(".previewd.yml"),
        "services:\n  web: {image: busybox, port: 80}\n",
    )
    .expect("write .previewd.yml");
    for args in [&["check", ".", "--json"][..], &["check", "."][..]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_previewd"))
            .args(args)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run previewd");
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// `PREVIEWD_LOG_FORMAT=json`: every log line is one JSON object with the same fields, for a
/// log shipper; an unknown format is refused by name.
#[test]
fn log_lines_are_json_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("PREVIEWD_LOG_FORMAT", "json"),
        ("PREVIEWD_INSTANCE", "logjson"),
        (
            "PREVIEWD_DATA_DIR",
            dir.path().to_str().expect("utf-8 path"),
        ),
    ];
    // `ls` of an instance with no previews: one debug line about the config, nothing made.
    let out = previewd(dir.path(), &["-v", "ls"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stderr).lines().map(str::to_owned).collect();
    assert!(
        !lines.is_empty(),
        "-v logs at least which config was loaded"
    );
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{v}"
        );
    }
    let bad = previewd(dir.path(), &["config"], &[("PREVIEWD_LOG_FORMAT", "yaml")]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("PREVIEWD_LOG_FORMAT"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn verbose_says_which_config_file_was_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("previewd.toml"),
        "instance = \"opsverbose\"\n",
    )
    .expect("write");
    // `ls` without Docker fails after reading the config; the line comes before that.
    let out = previewd(
        dir.path(),
        &["-v", "ls"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("config file loaded") && err.contains("previewd.toml"),
        "{err}"
    );
    let quiet = previewd(
        dir.path(),
        &["ls"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert!(!text(&quiet.stderr).contains("config file loaded"));
}

#[test]
fn completions_and_manual_come_from_the_command_line_definition() {
    let dir = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        let out = previewd(dir.path(), &["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for sub in ["serve", "status", "config", "check"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let bad = previewd(dir.path(), &["completions", "cmd.exe"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    let man = previewd(dir.path(), &["man"], &[]);
    assert!(man.status.success());
    let page = text(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH previewd"),
        "{page}"
    );
    assert!(page.contains("status"), "{page}");
}

/// The finding `check` of `doctor --json`'s answer.
fn finding(out: &Output, check: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON array");
    v.as_array()
        .and_then(|a| a.iter().find(|f| f["check"] == check))
        .unwrap_or_else(|| panic!("no {check} in {v}"))
        .clone()
}

/// `doctor` names what would break the first preview, each with a fix, and exits 1 for it.
#[test]
fn doctor_names_what_would_break_the_first_preview_with_its_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let env = [
        ("PREVIEWD_INSTANCE", "doctortest"),
        ("PREVIEWD_GATEWAY_IMAGE", "previewd-doctor-absent:1"),
        ("PREVIEWD_GATEWAY_PORT", port.as_str()),
        ("PREVIEWD_GATEWAY_DOMAIN", "doctor.invalid"),
    ];
    let out = previewd(dir.path(), &["doctor", "--json"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON array");
    let status = |check: &str| {
        v.as_array()
            .and_then(|a| a.iter().find(|f| f["check"] == check))
            .unwrap_or_else(|| panic!("no {check} in {v}"))
            .clone()
    };
    assert_eq!(status("docker")["status"], "ok", "{v}");
    for check in ["gateway image", "gateway port", "dns"] {
        let f = status(check);
        assert_eq!(f["status"], "fail", "{check}: {f}");
        assert!(f["fix"].as_str().is_some_and(|s| !s.is_empty()), "{f}");
    }
    // No webhook secret: `serve` refuses to start, so doctor fails, with serve's words.
    let forges = status("forges");
    assert_eq!(forges["status"], "fail", "{forges}");
    assert!(
        forges["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no webhook secret configured")),
        "{forges}"
    );
    // A Gitea section with its URL and token but no secret: refused by serve as well.
    let gitea = [
        ("PREVIEWD_GITHUB_WEBHOOK_SECRET", "doctor-secret"),
        ("PREVIEWD_GITEA_URL", "http://127.0.0.1:9"),
        ("PREVIEWD_GITEA_TOKEN", "doctor-token"),
    ];
    let out = previewd(dir.path(), &["doctor", "--json"], &gitea);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let forges = finding(&out, "forges");
    assert_eq!(forges["status"], "fail", "{forges}");
    assert!(
        forges["detail"]
            .as_str()
            .is_some_and(|d| d.contains("gitea.webhook_secret")),
        "{forges}"
    );

    // The same host with the defaults' shape, a webhook secret and a token GitHub (the fake)
    // knows: nothing that breaks a first preview.
    drop(taken);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let github = runtime.block_on(support::fake_github::FakeGitHub::start());
    let api = github.url();
    let fine = previewd(
        dir.path(),
        &["doctor"],
        &[
            ("PREVIEWD_INSTANCE", "doctortest"),
            ("PREVIEWD_GATEWAY_PORT", port.as_str()),
            ("PREVIEWD_GITHUB_WEBHOOK_SECRET", "doctor-secret"),
            ("PREVIEWD_GITHUB_TOKEN", "doctor-token"),
            ("PREVIEWD_GITHUB_API_URL", api.as_str()),
        ],
    );
    github.assert_clean();
    assert_eq!(fine.status.code(), Some(0), "{}", text(&fine.stdout));
    assert!(
        text(&fine.stdout).contains("ok    docker"),
        "{}",
        text(&fine.stdout)
    );

    let no_docker = previewd(
        dir.path(),
        &["doctor"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(no_docker.status.code(), Some(1));
    assert!(
        text(&no_docker.stdout).contains("fix: start Docker"),
        "{}",
        text(&no_docker.stdout)
    );
    // An egress policy that cannot be written (no iptables on the PATH here) breaks every
    // deployment; `all` writes none.
    let empty = tempfile::tempdir().expect("tempdir");
    let no_tools = ("PATH", empty.path().to_str().expect("utf-8 path"));
    let egress = finding(
        &previewd(dir.path(), &["doctor", "--json"], &[no_tools]),
        "egress",
    );
    assert_eq!(egress["status"], "fail", "{egress}");
    let fix = egress["fix"].as_str().unwrap_or_default();
    assert!(fix.contains("CAP_NET_ADMIN"), "{egress}");
    let all = [no_tools, ("PREVIEWD_LIMITS_EGRESS", "all")];
    let egress = finding(&previewd(dir.path(), &["doctor", "--json"], &all), "egress");
    assert_eq!(egress["status"], "ok", "{egress}");
}

/// At a terminal (a real pty, `script`) `ok` is green and `FAIL` red; `NO_COLOR` turns colour
/// off there too. On a pipe there is never colour (the other tests read plain text).
#[test]
fn colour_at_a_terminal_only_and_never_with_no_color() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |no_color: bool| {
        let inner = format!("exec {} doctor", env!("CARGO_BIN_EXE_previewd"));
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &inner, "/dev/null"])
            .current_dir(dir.path())
            .env("PREVIEWD_GATEWAY_IMAGE", "previewd-doctor-absent:1")
            .env("TERM", "xterm")
            .env_remove("NO_COLOR");
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        text(&cmd.output().expect("run script").stdout)
    };
    let coloured = run(false);
    assert!(coloured.contains("\x1b[32mok"), "{coloured:?}");
    assert!(coloured.contains("\x1b[31mFAIL"), "{coloured:?}");
    let plain = run(true);
    assert!(plain.contains("FAIL"), "{plain:?}");
    assert!(!plain.contains("\x1b[3"), "{plain:?}");
}

/// The config file is found at `--config`, then `PREVIEWD_CONFIG`, then `./previewd.toml`,
/// then `$XDG_CONFIG_HOME/previewd/previewd.toml`: each one found wins over those after it.
#[test]
fn config_discovery_follows_its_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("previewd")).expect("xdg dir");
    std::fs::create_dir_all(&work).expect("work dir");
    let write = |path: std::path::PathBuf, instance: &str| {
        std::fs::write(&path, format!("instance = \"{instance}\"\n")).expect("write a config");
        path.display().to_string()
    };
    let flag = write(dir.path().join("flag.toml"), "fromflag");
    let env = write(dir.path().join("env.toml"), "fromenv");
    write(work.join("previewd.toml"), "fromcwd");
    write(xdg.join("previewd").join("previewd.toml"), "fromxdg");
    let xdg = xdg.display().to_string();
    let instance = |args: &[&str], vars: &[(&str, &str)]| {
        let mut all = vec!["config", "--json"];
        all.extend_from_slice(args);
        let out = previewd(&work, &all, vars);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        let found = v["settings"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["key"] == "instance"))
            .map(|s| s["value"].clone());
        (found, v["file"].clone())
    };
    let both = [
        ("PREVIEWD_CONFIG", env.as_str()),
        ("XDG_CONFIG_HOME", xdg.as_str()),
    ];
    assert_eq!(
        instance(&["--config", &flag], &both).0,
        Some("fromflag".into())
    );
    assert_eq!(instance(&[], &both).0, Some("fromenv".into()));
    let xdg_only = [("XDG_CONFIG_HOME", xdg.as_str())];
    let (found, file) = instance(&[], &xdg_only);
    assert_eq!(found, Some("fromcwd".into()), "{file}");
    std::fs::remove_file(work.join("previewd.toml")).expect("remove ./previewd.toml");
    let (found, file) = instance(&[], &xdg_only);
    assert_eq!(found, Some("fromxdg".into()), "{file}");
    assert!(
        file.as_str()
            .is_some_and(|f| f.ends_with("xdg/previewd/previewd.toml")),
        "{file}"
    );
    // None of them: the defaults (HOME has no .config here).
    let (found, file) = instance(&[], &[]);
    assert_eq!(found, Some("previewd".into()), "{file}");
}
