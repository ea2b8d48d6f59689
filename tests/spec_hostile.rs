//! Hostile and broken repository configs: each must be refused with an error that names the
//! offending key, quickly, without exhausting the stack or the memory.

use std::path::Path;
use std::time::{Duration, Instant};

use previewd::spec::{self, SpecError};

/// A worktree with Dockerfiles, and links that lead out of it.
fn worktree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(p.join("Dockerfile"), "FROM scratch\n").expect("write");
    std::fs::create_dir(p.join("api")).expect("mkdir");
    std::fs::write(p.join("api/Dockerfile"), "FROM scratch\n").expect("write");
    std::os::unix::fs::symlink("/", p.join("escape")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", p.join("evil.Dockerfile")).expect("symlink");
    dir
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Refused,
    Invalid,
    Syntax,
    Unreadable,
}

fn classify(e: &SpecError) -> (Kind, String) {
    match e {
        SpecError::Refused { key, .. } => (Kind::Refused, key.clone()),
        SpecError::Invalid { key, .. } => (Kind::Invalid, key.clone()),
        SpecError::Syntax { reason, .. } => (Kind::Syntax, reason.clone()),
        SpecError::Unreadable { reason, .. } => (Kind::Unreadable, reason.clone()),
        SpecError::Missing => panic!("unexpected Missing"),
        SpecError::Several(all) => classify(&all[0]),
    }
}

fn parse(compose: bool, doc: &str, wt: &Path) -> Result<spec::Spec, SpecError> {
    if compose {
        spec::parse_compose("compose.yaml", doc.as_bytes(), wt)
    } else {
        spec::parse_previewd_yml(".previewd.yml", doc.as_bytes(), wt)
    }
}

const WEB: &str = "services:\n  web:\n    build: .\n    port: 8080\n";

/// `WEB` plus one more line in the `web` service.
fn web_with(line: &str) -> String {
    format!("{WEB}    {line}\n")
}

#[test]
fn hostile_configs_are_refused_naming_the_key() {
    use Kind::*;
    let many_services: String = std::iter::once("services:\n".to_owned())
        .chain((0..51).map(|i| format!("  s{i}: {{image: redis, internal: true}}\n")))
        .collect();
    let many_env: String = (0..201).map(|i| format!("V{i}: x, ")).collect();
    let big_value = "x".repeat(64 * 1024 + 1);
    // (compose?, document, expected kind, key the message must name)
    let cases: Vec<(bool, String, Kind, &str)> = vec![
        (false, web_with("privileged: true"), Refused, "services.web.privileged"),
        (false, web_with("network_mode: host"), Refused, "services.web.network_mode"),
        (false, web_with("pid: host"), Refused, "services.web.pid"),
        (false, web_with("ipc: host"), Refused, "services.web.ipc"),
        (false, web_with("userns_mode: host"), Refused, "services.web.userns_mode"),
        (false, web_with("cap_add: [SYS_ADMIN]"), Refused, "services.web.cap_add"),
        (false, web_with("devices: [/dev/sda]"), Refused, "services.web.devices"),
        (false, web_with("security_opt: [seccomp=unconfined]"), Refused, "services.web.security_opt"),
        (false, web_with("volumes: ['/:/host']"), Refused, "services.web.volumes"),
        (false, web_with("volumes: ['/var/run/docker.sock:/var/run/docker.sock']"), Refused, "services.web.volumes"),
        (false, web_with("user: root"), Refused, "services.web.user"),
        (true, "services:\n  web: {build: ., ports: ['80'], network_mode: host}\n".into(), Refused, "services.web.network_mode"),
        (true, "services:\n  web: {build: {context: ., network: host}, ports: ['80']}\n".into(), Refused, "services.web.build.network"),
        (true, "x-bad: &bad {privileged: true}\nservices:\n  web:\n    <<: *bad\n    build: .\n    ports: ['80']\n".into(), Refused, "services.web.privileged"),
        (true, "services:\n  web: {build: ., ports: ['80'], environment: [GITHUB_TOKEN]}\n".into(), Refused, "services.web.environment.GITHUB_TOKEN"),
        (false, "services:\n  web: {build: /etc, port: 80}\n".into(), Refused, "services.web.build"),
        (false, "services:\n  web: {build: ../other, port: 80}\n".into(), Refused, "services.web.build"),
        (false, "services:\n  web: {build: escape, port: 80}\n".into(), Refused, "services.web.build"),
        (false, "services:\n  web: {build: 'https://github.com/o/r.git', port: 80}\n".into(), Refused, "services.web.build"),
        (false, "services:\n  web: {build: {context: ., dockerfile: ../Dockerfile}, port: 80}\n".into(), Refused, "services.web.build.dockerfile"),
        (false, "services:\n  web: {build: {context: ., dockerfile: /etc/passwd}, port: 80}\n".into(), Refused, "services.web.build.dockerfile"),
        (false, "services:\n  web: {build: {context: ., dockerfile: evil.Dockerfile}, port: 80}\n".into(), Refused, "services.web.build.dockerfile"),
        (false, "services:\n  web: {build: {context: escape/etc}, port: 80}\n".into(), Refused, "services.web.build.context"),
        (false, web_with("route: /a/../b"), Invalid, "services.web.route"),
        (false, web_with("route: //evil.example"), Invalid, "services.web.route"),
        (false, web_with("route: http://evil.example/"), Invalid, "services.web.route"),
        (false, web_with("route: /a?x=1"), Invalid, "services.web.route"),
        (false, web_with("route: '/a b'"), Invalid, "services.web.route"),
        (false, web_with("route: api"), Invalid, "services.web.route"),
        (false, "services:\n  web: {build: ., port: 0}\n".into(), Invalid, "services.web.port"),
        (false, "services:\n  web: {build: ., port: 65536}\n".into(), Invalid, "services.web.port"),
        (false, "services:\n  web: {build: ., port: -1}\n".into(), Invalid, "services.web.port"),
        (true, "services:\n  web: {build: ., ports: ['0']}\n".into(), Invalid, "services.web.ports"),
        (false, many_services, Invalid, "services"),
        (false, format!("{WEB}    env: {{BIG: {big_value}}}\n"), Invalid, "services.web.env.BIG"),
        (false, format!("{WEB}    env: {{{many_env}}}\n"), Invalid, "services.web.env"),
        (false, web_with("env: {1BAD: x}"), Invalid, "services.web.env.1BAD"),
        (false, web_with("env: {'A=B': x}"), Invalid, "services.web.env.A=B"),
        (false, web_with("env: {SECRET: }"), Refused, "services.web.env.SECRET"),
        (false, "services:\n  web: {build: ., port: 80, route: /x}\n  api: {build: api, port: 80, route: /x/}\n".into(), Invalid, "services.web.route"),
        (false, "services:\n  web: {build: ., port: 80}\n  api: {build: api, port: 80}\n".into(), Invalid, "services.api.route"),
        (false, web_with("depends_on: [db]"), Invalid, "services.web.depends_on"),
        (false, "services:\n  web: {build: ., port: 80, depends_on: [api]}\n  api: {build: api, port: 1, route: /api, depends_on: [web]}\n".into(), Invalid, "services.api.depends_on"),
        (false, web_with("depends_on: [web]"), Invalid, "services.web.depends_on"),
        (false, "services:\n  web: {build: .}\n".into(), Invalid, "services.web.port"),
        (false, "services:\n  web: {build: ., port: 80}\n  web: {image: redis}\n".into(), Invalid, "services.web"),
        (false, "services:\n  Web: {build: ., port: 80}\n".into(), Invalid, "services.Web"),
        (false, "services:\n  we_b: {build: ., port: 80}\n".into(), Invalid, "services.we_b"),
        (false, "services:\n  web: {build: ., image: redis, port: 80}\n".into(), Invalid, "services.web.image"),
        (false, "services:\n  web: {image: '-rm redis', port: 80}\n".into(), Invalid, "services.web.image"),
        (false, "services:\n  web: {image: redis, internal: true, route: /r}\n".into(), Invalid, "services.web.route"),
        (false, "services:\n  web: {build: ., port: 80}\n  api: {build: api, port: 80, route: /api, healthcheck: {path: /health}}\n".into(), Invalid, "services.api.healthcheck.path"),
        (false, web_with("healthcheck: {status: 42}"), Invalid, "services.web.healthcheck.status"),
        (false, web_with("healthcheck: {timeout: soon}"), Invalid, "services.web.healthcheck.timeout"),
        (false, web_with("healthcheck: {test: [CMD, id]}"), Refused, "services.web.healthcheck.test"),
        (false, format!("{WEB}dev:\n  web: {{image: node, workdir: /}}\n"), Invalid, "dev.web.workdir"),
        (false, format!("{WEB}dev:\n  web: {{image: node, workdir: /app/../etc}}\n"), Invalid, "dev.web.workdir"),
        (false, format!("{WEB}dev:\n  web: {{image: node, workdir: /app, privileged: true}}\n"), Refused, "dev.web.privileged"),
        (false, format!("{WEB}dev:\n  other: {{image: node, workdir: /app}}\n"), Invalid, "dev.other"),
        (false, format!("{WEB}extra: 1\n"), Refused, "extra"),
        (false, "services: {}\n".into(), Invalid, "services"),
    ];
    assert!(cases.len() >= 20);
    let wt = worktree();
    for (compose, doc, kind, key) in cases {
        let result = parse(compose, &doc, wt.path());
        let Err(e) = result else {
            panic!("accepted:\n{doc}");
        };
        let (got_kind, got_key) = classify(&e);
        assert_eq!(
            (got_kind, got_key.as_str()),
            (kind, key),
            "for:\n{doc}\nerror: {e}"
        );
        // The message people read names the key too.
        assert!(e.to_string().contains(key), "{e}");
    }
}

#[test]
fn docker_socket_is_named_in_the_reason() {
    let wt = worktree();
    let doc = web_with("volumes: ['/var/run/docker.sock:/var/run/docker.sock']");
    let e = parse(false, &doc, wt.path()).expect_err("refused");
    assert!(e.to_string().contains("Docker socket"), "{e}");
}

fn assert_fast_error(doc: &[u8], want: Kind) {
    let wt = worktree();
    for compose in [false, true] {
        let start = Instant::now();
        let result = if compose {
            spec::parse_compose("compose.yaml", doc, wt.path())
        } else {
            spec::parse_previewd_yml(".previewd.yml", doc, wt.path())
        };
        let e = result.expect_err("refused");
        assert_eq!(classify(&e).0, want, "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn billion_laughs_is_refused_quickly() {
    let mut doc = String::from("x-a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let p = i - 1;
        let refs = vec![format!("*a{p}"); 10].join(", ");
        doc.push_str(&format!("x-a{i}: &a{i} [{refs}]\n"));
    }
    doc.push_str("services:\n  web: {build: ., port: 80, command: *a11}\n");
    assert_fast_error(doc.as_bytes(), Kind::Syntax);
}

#[test]
fn deep_nesting_is_refused_quickly() {
    let flow = format!("services: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_fast_error(flow.as_bytes(), Kind::Syntax);
    let maps = format!("services: {}x{}", "{a: ".repeat(10_000), "}".repeat(10_000));
    assert_fast_error(maps.as_bytes(), Kind::Syntax);
    // Block style needs indentation, so 1,000 levels already fill most of the size limit.
    let block: String = (0..1_000)
        .map(|i| format!("{}- \n", " ".repeat(i)))
        .collect();
    assert_fast_error(block.as_bytes(), Kind::Syntax);
}

#[test]
fn oversized_and_non_utf8_files_are_refused() {
    let mut big = WEB.as_bytes().to_vec();
    big.extend(std::iter::repeat_n(b'#', 1 << 20));
    assert_fast_error(&big, Kind::Unreadable);
    assert_fast_error(
        b"services:\n  web: {build: ., port: 80, env: {A: \xff}}\n",
        Kind::Syntax,
    );
    assert_fast_error(b"services:\n  web: !!binary aGk=\n", Kind::Invalid);
    assert_fast_error(b"services:\n  web: !custom {}\n", Kind::Syntax);
}

#[test]
fn load_refuses_symlinked_and_oversized_config_files() {
    let wt = worktree();
    std::os::unix::fs::symlink("/etc/passwd", wt.path().join(".previewd.yml")).expect("symlink");
    let e = spec::load(wt.path()).expect_err("refused");
    assert_eq!(classify(&e).0, Kind::Unreadable, "{e}");

    let wt = worktree();
    let big = vec![b'#'; (1 << 20) + 1];
    std::fs::write(wt.path().join("compose.yaml"), big).expect("write");
    let e = spec::load(wt.path()).expect_err("refused");
    assert_eq!(classify(&e).0, Kind::Unreadable, "{e}");
}
