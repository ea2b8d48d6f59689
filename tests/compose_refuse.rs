//! What a compose file may not do to the host or to other previews, refused by key with why;
//! anything outside the compose specification refused too, never dropped; and `check` lists
//! every problem of a file at once.

use std::path::Path;
use std::process::Command;

use previewd::spec::{self, SpecError};

fn worktree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\n").expect("write");
    std::fs::create_dir_all(dir.path().join("conf")).expect("mkdir");
    std::fs::write(dir.path().join("conf/app.conf"), "x\n").expect("write");
    std::fs::write(
        dir.path().join("conf/previewd.labels"),
        "dev.previewd.preview=abcdefghij\n",
    )
    .expect("write");
    dir
}

fn parse(doc: &str, wt: &Path) -> Result<spec::Spec, SpecError> {
    spec::parse_compose("compose.yaml", doc.as_bytes(), wt)
}

/// `web` with one more line.
fn web(line: &str) -> String {
    format!("services:\n  web:\n    build: .\n    ports: ['8080:80']\n    {line}\n")
}

/// The refusals' keys, in order.
fn refused_keys(e: &SpecError) -> Vec<String> {
    e.problems()
        .iter()
        .filter_map(|p| match p {
            SpecError::Refused { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn what_endangers_the_host_or_other_previews_is_refused_by_key() {
    #[rustfmt::skip]
    let cases: Vec<(String, &str)> = vec![
        (web("privileged: true"), "services.web.privileged"),
        (web("cap_add: [SYS_ADMIN]"), "services.web.cap_add"),
        (web("devices: ['/dev/sda:/dev/sda']"), "services.web.devices"),
        (web("network_mode: host"), "services.web.network_mode"),
        (web("pid: host"), "services.web.pid"),
        (web("ipc: host"), "services.web.ipc"),
        (web("uts: host"), "services.web.uts"),
        (web("userns_mode: host"), "services.web.userns_mode"),
        (web("cgroup: host"), "services.web.cgroup"),
        (web("security_opt: ['seccomp:unconfined']"), "services.web.security_opt"),
        (web("sysctls: {kernel.domainname: x}"), "services.web.sysctls.kernel.domainname"),
        (web("extra_hosts: ['host.docker.internal:host-gateway']"), "services.web.extra_hosts.host.docker.internal"),
        (web("extra_hosts: {local: 127.0.0.1}"), "services.web.extra_hosts.local"),
        (web("volumes: ['/:/host']"), "services.web.volumes[0]"),
        (web("volumes: ['/var/run/docker.sock:/var/run/docker.sock']"), "services.web.volumes[0]"),
        (web("volumes: ['../other:/x']"), "services.web.volumes[0]"),
        (web("volumes: ['~/.ssh:/root/.ssh']"), "services.web.volumes[0]"),
        (web("volumes: [{type: bind, source: /etc, target: /x}]"), "services.web.volumes[0].source"),
        (web("volumes: [{type: bind, source: ./conf, target: /x, bind: {propagation: rshared}}]"), "services.web.volumes[0].bind.propagation"),
        (web("volumes: ['./conf:/x:rshared']"), "services.web.volumes[0]"),
        (web("volumes: [{type: npipe, source: x, target: /x}]"), "services.web.volumes[0].type"),
        (web("use_api_socket: true"), "services.web.use_api_socket"),
        (web("volumes_from: [other]"), "services.web.volumes_from"),
        (web("external_links: [db]"), "services.web.external_links"),
        (web("logging: {driver: syslog}"), "services.web.logging"),
        (web("runtime: nvidia"), "services.web.runtime"),
        (web("post_start: [{command: id, privileged: true}]"), "services.web.post_start[0].privileged"),
        (web("pre_stop: [{command: id, environment: [GITHUB_TOKEN]}]"), "services.web.pre_stop[0].environment.GITHUB_TOKEN"),
        (web("label_file: ../labels"), "services.web.label_file[0]"),
        (web("label_file: conf/previewd.labels"), "services.web.label_file[0].dev.previewd.preview"),
        (web("cpuset: '0'"), "services.web.cpuset"),
        (web("oom_score_adj: -900"), "services.web.oom_score_adj"),
        (web("ulimits: {rtprio: 99}"), "services.web.ulimits.rtprio"),
        (web("deploy: {resources: {reservations: {devices: [{capabilities: [gpu]}]}}}"), "services.web.deploy.resources.reservations.devices"),
        (web("env_file: /etc/environment"), "services.web.env_file[0]"),
        (web("environment: [GITHUB_TOKEN]"), "services.web.environment.GITHUB_TOKEN"),
        (web("labels: {dev.previewd.preview: abcdefghij}"), "services.web.labels.dev.previewd.preview"),
        (web("networks: {default: {ipv4_address: 10.0.0.5}}"), "services.web.networks.default.ipv4_address"),
        (web("not_a_compose_key: 1"), "services.web.not_a_compose_key"),
        ("services:\n  web: {build: {context: ., ssh: [default]}, ports: ['80']}\n".into(), "services.web.build.ssh"),
        ("services:\n  web: {build: {context: ., privileged: true}, ports: ['80']}\n".into(), "services.web.build.privileged"),
        ("services:\n  web: {build: {context: ., network: host}, ports: ['80']}\n".into(), "services.web.build.network"),
        ("services:\n  web: {build: {context: ., secrets: [npmrc]}, ports: ['80']}\n".into(), "services.web.build.secrets"),
        ("services:\n  web: {build: ., ports: ['80'], networks: [outside]}\nnetworks: {outside: {external: true}}\n".into(), "networks.outside.external"),
        ("services:\n  web: {build: ., ports: ['80']}\nnetworks: {n: {driver: host}}\n".into(), "networks.n.driver"),
        ("services:\n  web: {build: ., ports: ['80']}\nnetworks: {n: {ipam: {driver: weave}}}\n".into(), "networks.n.ipam.driver"),
        ("services:\n  web: {build: ., ports: ['80'], networks: {n: {ipv4_address: 10.5.0.5}}}\nnetworks: {n: {ipam: {config: [{subnet: 10.5.0.0/16}]}}}\n".into(), "services.web.networks.n.ipv4_address"),
        ("services:\n  web: {build: ., ports: ['80']}\nsecrets: {s: {content: pw}}\n".into(), "secrets.s.content"),
        ("services:\n  web: {build: ., ports: ['80'], volumes: ['data:/d']}\nvolumes: {data: {external: true}}\n".into(), "volumes.data.external"),
        ("services:\n  web: {build: ., ports: ['80']}\nvolumes: {data: {driver_opts: {type: none, o: bind, device: /etc}}}\n".into(), "volumes.data.driver_opts"),
        ("services:\n  web: {build: ., ports: ['80']}\nsecrets: {s: {external: true}}\n".into(), "secrets.s.external"),
        ("services:\n  web: {build: ., ports: ['80']}\nsecrets: {s: {environment: GITHUB_TOKEN}}\n".into(), "secrets.s.environment"),
        ("services:\n  web: {build: ., ports: ['80']}\nconfigs: {c: {file: /etc/passwd}}\n".into(), "configs.c.file"),
        ("include: ['../other.yaml']\nservices:\n  web: {build: ., ports: ['80']}\n".into(), "include[0]"),
        ("include: [/etc/compose.yaml]\nservices:\n  web: {build: ., ports: ['80']}\n".into(), "include[0]"),
        ("include: [{path: x.yaml, env_file: ../.env}]\nservices:\n  web: {build: ., ports: ['80']}\n".into(), "include[0].env_file"),
        (web("extends: {file: ../base.yaml, service: web}"), "services.web.extends.file"),
        (web("extends: {file: /etc/compose.yaml, service: web}"), "services.web.extends.file"),
        (web("dns: [host-gateway]"), "services.web.dns[0]"),
        (web("dns: 172.17.0.1"), "services.web.dns[0]"),
        (web("mac_address: 02:42:ac:11:00:02"), "services.web.mac_address"),
        ("services:\n  web: {build: {context: ., cache_from: ['type=local,src=/var/cache']}, ports: ['80']}\n".into(), "services.web.build.cache_from[0]"),
    ];
    let wt = worktree();
    for (doc, key) in cases {
        let e = parse(&doc, wt.path()).expect_err(&doc);
        assert_eq!(refused_keys(&e), [key], "for:\n{doc}\nerror: {e}");
        assert!(e.to_string().contains(key), "{e}");
    }
    // The Docker socket is named as such.
    let e = parse(
        &web("volumes: ['/var/run/docker.sock:/var/run/docker.sock']"),
        wt.path(),
    )
    .expect_err("refused");
    assert!(e.to_string().contains("Docker socket"), "{e}");
}

#[test]
fn a_bind_mount_that_leaves_the_repository_through_a_symlink_is_refused() {
    let wt = worktree();
    let outside = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(outside.path(), wt.path().join("escape")).expect("symlink");
    std::fs::create_dir_all(wt.path().join("deep")).expect("mkdir");
    std::os::unix::fs::symlink("../../..", wt.path().join("deep/up")).expect("symlink");
    for source in ["./escape", "./escape/sub/file", "./deep/up/etc"] {
        let doc = web(&format!("volumes: ['{source}:/x']"));
        let e = parse(&doc, wt.path()).expect_err(source);
        assert_eq!(refused_keys(&e), ["services.web.volumes[0]"], "{e}");
        assert!(e.to_string().contains("outside the repository"), "{e}");
    }
    // A link that stays inside is followed.
    std::os::unix::fs::symlink("conf", wt.path().join("inside")).expect("symlink");
    let spec = parse(&web("volumes: ['./inside:/x']"), wt.path()).expect("inside");
    let web = spec.services.values().next().expect("web");
    assert!(
        matches!(&web.run.mounts[0], spec::Mount::Bind { source, .. } if source == Path::new("conf"))
    );
}

const MANY: &str = "services:
  web:
    build: .
    ports: ['8080:80']
    privileged: true
    volumes: ['/etc:/etc']
    made_up: 1
  db:
    image: busybox
    cap_add: [NET_ADMIN]
    depends_on: [nowhere]
networks:
  n: {external: true}
";

#[test]
fn every_problem_is_listed_at_once() {
    let wt = worktree();
    let e = parse(MANY, wt.path()).expect_err("refused");
    let keys = refused_keys(&e);
    for key in [
        "services.web.privileged",
        "services.web.made_up",
        "services.web.volumes[0]",
        "services.db.cap_add",
        "networks.n.external",
    ] {
        assert!(
            keys.contains(&key.to_owned()),
            "{key} missing from {keys:?}"
        );
    }
    // `check` prints them all, each with its key, why and what to do, and fails.
    std::fs::write(wt.path().join("compose.yaml"), MANY).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_previewd"))
        .arg("check")
        .arg(wt.path())
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("5 problems"), "{err}");
    for key in [
        "`services.web.privileged` is not allowed: it would give the container full control",
        "`services.web.made_up` is not allowed: is not a key of the compose specification",
        "`services.web.volumes[0]` is not allowed",
        "`services.db.cap_add` is not allowed",
        "`networks.n.external` is not allowed",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
}
