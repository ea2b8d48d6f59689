//! What this machine can check of `deploy/` and the operator docs: the example config loads
//! and documents every key of the config table (`src/config/keys.rs`) with its default; the compose file is valid and
//! keeps the data directory at the same path inside and outside; the systemd unit passes
//! `systemd-analyze verify`; the Dockerfile's inputs exist; the docs' links resolve. The tools
//! that may be missing (docker-compose, systemd-analyze) are skipped with a printed note on a
//! developer's machine, but fail the test under `CI=true` (`./run setup` installs both there, so
//! a check that silently stopped running shows); the image itself is not built (no registry here).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use previewd::config::Config;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

const EXAMPLE: &str = "deploy/previewd.toml.example";

/// Keys the example shows commented out: secrets, and values with no fixed default.
const OPTIONAL_KEYS: &[&str] = &[
    "data_dir",
    "cluster.registry",
    "cluster.registry_username",
    "cluster.registry_password",
    "gateway.public_url",
    "gateway.acme_email",
    "gateway.cert_file",
    "gateway.key_file",
    "github.webhook_secret",
    "github.webhook_secrets",
    "github.token",
    "github.app_id",
    "github.private_key_path",
    "gitea.url",
    "gitea.token",
    "gitea.webhook_secret",
    "gitea.git_url",
    "gitlab.url",
    "gitlab.token",
    "gitlab.webhook_secret",
    "gitlab.git_url",
    "network.subnet_pool",
    "limits.egress_allow",
    "limits.build_egress",
    "github.oauth_client_id",
    "github.oauth_client_secret",
    "gitea.web_url",
    "gitea.oauth_client_id",
    "gitea.oauth_client_secret",
    "gitlab.web_url",
    "gitlab.oauth_client_id",
    "gitlab.oauth_client_secret",
    "access.mode",
    "access.session_secret",
    "access.bypass_token",
    "build_secrets",
];

fn load(text: &str) -> Result<Config, previewd::config::ConfigError> {
    Config::from_parts(Some(text), Path::new(EXAMPLE), &[])
}

/// The example with every `# key = value` line uncommented, so commented keys are checked too.
fn uncommented(text: &str) -> (String, Vec<String>) {
    let mut keys = Vec::new();
    let out = text
        .lines()
        .map(|line| {
            if let Some(rest) = line.strip_prefix("# ")
                && let Some((key, _)) = rest.split_once(" = ")
                && !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                keys.push(key.to_owned());
                return rest.to_owned();
            }
            line.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n");
    (out, keys)
}

/// `section.key` (or `key` at the top level) for every key of a TOML document.
fn toml_keys(text: &str) -> BTreeSet<String> {
    let table: toml::Table = toml::from_str(text).expect("the example is TOML");
    let mut out = BTreeSet::new();
    for (k, v) in &table {
        match v {
            // A section; a key whose value is a table (`build_secrets`) is a key.
            toml::Value::Table(t) if !config_keys().contains(k) => {
                out.extend(t.keys().map(|s| format!("{k}.{s}")))
            }
            _ => {
                out.insert(k.clone());
            }
        }
    }
    out
}

#[test]
fn example_config_loads_and_means_the_defaults() {
    let text = read(EXAMPLE);
    let example = load(&text).unwrap_or_else(|e| panic!("{EXAMPLE} does not load: {e}"));
    let defaults = Config::from_parts(None, Path::new(EXAMPLE), &[]).unwrap();
    // Config has no PartialEq; its Debug form shows every value (secrets redacted).
    assert_eq!(
        format!("{example:#?}"),
        format!("{defaults:#?}"),
        "{EXAMPLE} claims to show every default: a value in it differs from src/config/keys.rs"
    );
    // Every key is set (so loading the file checks it), except those without a fixed default
    // or that hold secrets, which are shown commented out.
    let active = toml_keys(&text);
    let optional: BTreeSet<String> = OPTIONAL_KEYS.iter().map(|k| k.to_string()).collect();
    let unset: BTreeSet<String> = config_keys().difference(&active).cloned().collect();
    assert!(
        unset.is_subset(&optional),
        "{EXAMPLE} should set every key that has a default; it leaves {:?} commented",
        unset.difference(&optional).collect::<Vec<_>>()
    );
}

#[test]
fn every_key_in_the_example_is_real_even_commented_ones() {
    let text = read(EXAMPLE);
    let (all, commented) = uncommented(&text);
    assert!(
        commented.len() >= 5,
        "expected the optional keys commented out: {commented:?}"
    );
    let c = load(&all).unwrap_or_else(|e| {
        panic!("{EXAMPLE} with its commented keys ({commented:?}) uncommented does not load: {e}")
    });
    assert_eq!(
        c.gateway.public_url.as_deref(),
        Some("https://{id}.preview.example.com")
    );
    assert_eq!(c.data_dir, Path::new("/var/lib/previewd"));
    // The check has teeth: the parser refuses a key it does not know.
    let bogus = format!("{all}\nbogus_key = 1\n");
    let err = load(&bogus)
        .expect_err("an unknown key must be refused")
        .to_string();
    assert!(err.contains("bogus_key"), "{err}");
}

/// The keys the operator config accepts: its key table, which its shape is tested against.
fn config_keys() -> BTreeSet<String> {
    previewd::config::KEYS
        .iter()
        .map(|k| k.name.to_owned())
        .collect()
}

#[test]
fn example_documents_every_key_of_config_rs() {
    let (all, _) = uncommented(&read(EXAMPLE));
    let documented = toml_keys(&all);
    let known = config_keys();
    let missing: Vec<_> = known.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "{EXAMPLE} does not document {missing:?}: add each with its default and meaning"
    );
}

fn run(cmd: &mut Command) -> Option<Output> {
    cmd.output().ok()
}

/// Skips a check whose tool is missing, except in CI, where `./run setup` installed it: a
/// skipped check there would be a test that can no longer fail.
fn skip_unless_ci(note: &str) {
    assert!(
        std::env::var_os("CI").is_none_or(|v| v != "true"),
        "{note}, and CI=true: ./run setup should have installed it"
    );
    println!("note: {note}; check skipped");
}

/// `docker-compose` (v1) or `docker compose` (v2), when either is installed.
fn compose() -> Option<Vec<&'static str>> {
    if run(Command::new("docker-compose").arg("version")).is_some_and(|o| o.status.success()) {
        return Some(vec!["docker-compose"]);
    }
    if run(Command::new("docker").args(["compose", "version"])).is_some_and(|o| o.status.success())
    {
        return Some(vec!["docker", "compose"]);
    }
    None
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn compose_file_keeps_paths_and_needs_no_gateway_service() {
    let doc: yaml_serde::Value = yaml_serde::from_str(&read("deploy/compose.yaml")).unwrap();
    let services = doc["services"].as_mapping().expect("services");
    assert_eq!(
        services.len(),
        1,
        "previewd creates its gateway itself; compose runs previewd only"
    );
    let p = &doc["services"]["previewd"];
    assert_eq!(
        p["network_mode"].as_str(),
        Some("host"),
        "health checks go to the gateway's published port on the host"
    );
    let data_dir = p["environment"]["PREVIEWD_DATA_DIR"]
        .as_str()
        .expect("PREVIEWD_DATA_DIR");
    let volumes: Vec<&str> = p["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        volumes.contains(&format!("{data_dir}:{data_dir}").as_str()),
        "the data dir must be mounted at the same path: {volumes:?}"
    );
    assert!(volumes.iter().any(|v| v.ends_with(":/var/run/docker.sock")));
    let config = p["environment"]["PREVIEWD_CONFIG"]
        .as_str()
        .expect("PREVIEWD_CONFIG");
    assert!(
        volumes
            .iter()
            .any(|v| v.ends_with(&format!(":{config}:ro"))),
        "the config is mounted read-only at PREVIEWD_CONFIG: {volumes:?}"
    );
    // The Dockerfile it builds exists.
    let df = p["build"]["dockerfile"].as_str().expect("build.dockerfile");
    assert!(root().join(df).is_file(), "{df} is missing");
}

#[test]
fn compose_file_is_valid() {
    let Some(cmd) = compose() else {
        skip_unless_ci("neither docker-compose nor `docker compose` is installed");
        return;
    };
    let file = root().join("deploy/compose.yaml");
    let check = |secret: Option<&str>| {
        let mut c = Command::new(cmd[0]);
        c.args(&cmd[1..])
            .arg("-f")
            .arg(&file)
            .args(["config", "-q"]);
        c.env_remove("PREVIEWD_GITHUB_WEBHOOK_SECRET");
        if let Some(s) = secret {
            c.env("PREVIEWD_GITHUB_WEBHOOK_SECRET", s);
        }
        run(&mut c).expect("run compose")
    };
    let ok = check(Some("not-a-real-secret"));
    assert!(ok.status.success(), "{cmd:?} config: {}", text(&ok));
    // Without the webhook secret compose refuses to start previewd (unless deploy/.env has one).
    if !root().join("deploy/.env").exists() {
        let no_secret = check(None);
        assert!(
            !no_secret.status.success(),
            "compose should refuse to run without PREVIEWD_GITHUB_WEBHOOK_SECRET"
        );
    }
}

const UNIT: &str = "deploy/previewd.service";

#[test]
fn unit_has_what_an_operator_relies_on() {
    let unit = read(UNIT);
    for line in [
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "SupplementaryGroups=docker",
        "StateDirectory=previewd",
        "Environment=PREVIEWD_DATA_DIR=/var/lib/previewd",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.lines().any(|l| l == line), "{UNIT} lacks {line}");
    }
    for prefix in [
        "EnvironmentFile=",
        "TimeoutStopSec=",
        "ExecStart=/usr/local/bin/previewd serve",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(prefix)),
            "{UNIT} lacks {prefix}"
        );
    }
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if run(Command::new("systemd-analyze").arg("--version")).is_none_or(|o| !o.status.success()) {
        skip_unless_ci("systemd-analyze is not installed");
        return;
    }
    // verify checks that ExecStart's binary exists: point it at the one cargo just built.
    let unit = read(UNIT);
    assert!(unit.contains("ExecStart=/usr/local/bin/previewd "));
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/previewd ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_previewd")),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("previewd.service");
    std::fs::write(&path, unit).unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&path)).unwrap();
    // verify exits 0 on unknown keys and unparsable values, and only warns: any line about our
    // file is a failure.
    let about_us: Vec<String> = text(&out)
        .lines()
        .filter(|l| l.contains("previewd.service"))
        .map(str::to_owned)
        .collect();
    assert!(
        out.status.success() && about_us.is_empty(),
        "systemd-analyze verify {UNIT}:\n{}",
        text(&out)
    );
}

#[test]
fn dockerfile_builds_from_what_the_repository_has() {
    let df = read("deploy/Dockerfile");
    assert!(df.contains("FROM rust:1-bookworm AS build"));
    assert!(df.contains("FROM debian:bookworm-slim"));
    assert!(df.contains("ca-certificates libssl3"));
    assert!(df.contains(r#"ENTRYPOINT ["/usr/local/bin/previewd"]"#));
    assert!(df.contains(r#"CMD ["serve"]"#));
    // Everything it copies exists and is let through its .dockerignore.
    let ignore = read("deploy/Dockerfile.dockerignore");
    for line in df
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(
                root().join(src).exists(),
                "COPY {src}: not in the repository"
            );
            assert!(
                ignore.lines().any(|l| l == format!("!{src}")),
                "COPY {src}: excluded by deploy/Dockerfile.dockerignore"
            );
        }
    }
}

const DOCS: &[&str] = &[
    "docs/github.md",
    "docs/gitlab.md",
    "docs/tls.md",
    "docs/operations.md",
    "docs/security-model.md",
];

/// Relative link targets of a markdown file: `](target)` without a scheme or an anchor-only.
fn links(md: &str) -> Vec<String> {
    md.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(t, _)| t))
        .filter(|t| !t.contains("://") && !t.starts_with('#') && !t.starts_with("mailto:"))
        .map(|t| t.split('#').next().unwrap_or("").to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

#[test]
fn docs_links_resolve_and_readme_lists_them() {
    for doc in DOCS {
        let md = read(doc);
        let base = root().join(doc).parent().unwrap().to_path_buf();
        for l in links(&md) {
            assert!(base.join(&l).exists(), "{doc}: link {l} leads nowhere");
        }
    }
    let readme = read("README.md");
    let further = readme
        .split("## Further reading")
        .nth(1)
        .expect("README.md has a Further reading section");
    for doc in DOCS.iter().chain(["docs/config.md"].iter()) {
        assert!(
            further.contains(&format!("]({doc})")),
            "README's Further reading lacks {doc}"
        );
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn tls_doc_follows_the_code() {
    let doc = read("docs/tls.md");
    // "(planned)" exactly while src/ does not serve the on-demand ask endpoint.
    let served = files(&root().join("src"))
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("/tls/ask")));
    let planned = doc.contains("(planned)");
    assert_ne!(
        served, planned,
        "docs/tls.md says planned: {planned}, src/ has /tls/ask: {served}; update docs/tls.md"
    );
    // Every TLS key of the gateway is shown in use.
    for key in config_keys() {
        let Some(field) = key.strip_prefix("gateway.") else {
            continue;
        };
        if ["tls", "cert", "key_file", "acme"]
            .iter()
            .any(|w| field.contains(w))
        {
            assert!(
                doc.contains(&format!("{field} = ")),
                "docs/tls.md does not show gateway.{field}"
            );
        }
    }
}

/// The deploy kit raises the open-files limit to what the default connection cap needs
/// (`serve` would otherwise lower the cap to fit, and say so at start): the unit's
/// `LimitNOFILE`, the compose file's `ulimits.nofile`, and the Dockerfile's note.
#[test]
fn deploy_kit_raises_the_open_files_limit_to_what_the_connection_cap_needs() {
    let defaults = Config::from_parts(None, Path::new(EXAMPLE), &[]).unwrap();
    let needed = previewd::listener::FdBudget::needed(defaults.server.max_connections, 2);
    let unit: u64 = read(UNIT)
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{UNIT} lacks a numeric LimitNOFILE"));
    assert!(unit >= needed, "{UNIT}: LimitNOFILE={unit} < {needed}");
    let doc: yaml_serde::Value = yaml_serde::from_str(&read("deploy/compose.yaml")).unwrap();
    let nofile = &doc["services"]["previewd"]["ulimits"]["nofile"];
    for which in ["soft", "hard"] {
        let n = nofile[which].as_u64().unwrap_or(0);
        assert!(
            n >= needed,
            "compose.yaml ulimits.nofile.{which} = {n} < {needed}"
        );
    }
    let df = read("deploy/Dockerfile");
    let flag = df
        .split("--ulimit nofile=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("deploy/Dockerfile names --ulimit nofile=N:N");
    assert!(
        flag >= needed,
        "deploy/Dockerfile: nofile={flag} < {needed}"
    );
}
