//! What a compose file may say, accepted with its meaning in a preview: each key of the safe
//! part of the compose specification as the spec previewd runs, and the routing of a project
//! without `x-previewd`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use previewd::ids::ServiceName;
use previewd::spec::runtime::{Condition, Copied, PullPolicy, Restart};
use previewd::spec::{self, Host, ImageSource, Mount, Spec, SpecError};

fn worktree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in [
        ("Dockerfile", "FROM busybox AS base\nFROM base AS dev\n"),
        ("nginx.conf", "server {}\n"),
        ("web.env", "A=from file\nB=from file\n"),
        ("secrets/db.txt", "pw\n"),
    ] {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

fn parse(doc: &str, wt: &Path) -> Result<Spec, SpecError> {
    spec::parse_compose("compose.yaml", doc.as_bytes(), wt)
}

fn svc<'a>(spec: &'a Spec, name: &str) -> &'a spec::Service {
    spec.services
        .get(&ServiceName::parse(name).expect("name"))
        .expect("service")
}

const FULL: &str = r#"
version: "3.9"
name: sample
x-defaults: &defaults
  restart: unless-stopped
services:
  web:
    <<: *defaults
    build:
      context: .
      target: dev
      args: [MODE=preview]
      labels: {org.example.team: web}
    ports: ["8080:80", {target: 80, published: 8081, host_ip: 127.0.0.1}]
    volumes:
      - ./nginx.conf:/etc/nginx/conf.d/default.conf:ro
      - /code/node_modules
      - type: tmpfs
        target: /cache
        tmpfs: {size: 16m}
    env_file: web.env
    environment: {B: from environment}
    networks:
      front:
        aliases: [www]
    hostname: webhost
    container_name: my-web
    links: ["db:database"]
    depends_on:
      db: {condition: service_healthy}
      seed: {condition: service_completed_successfully}
      optional: {condition: service_started, required: false}
    init: true
    tty: true
    stdin_open: true
    working_dir: /srv
    user: "1000:1000"
    entrypoint: /bin/sh -c
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    shm_size: 64m
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 100}
    deploy:
      resources: {limits: {cpus: "0.5", memory: 256M}}
      restart_policy: {condition: on-failure, max_attempts: 3}
    platform: linux/amd64
    read_only: true
    cap_drop: [ALL]
    sysctls: {net.ipv4.tcp_syncookies: 1}
    extra_hosts: ["api.example:10.1.2.3"]
    labels: {org.example.role: frontend}
    x-notes: ignored
  db:
    image: busybox
    volumes: ["db-data:/var/lib/db"]
    networks: [back]
    healthcheck:
      test: ["CMD-SHELL", "test -f /ready"]
      interval: 2s
      retries: 5
    secrets: [db_password, {source: db_password, target: custom}]
    configs: [nginx]
    pull_policy: never
  seed:
    image: busybox
    command: echo "seeded ok"
    networks: [back]
    restart: "no"
  debug:
    image: busybox
    profiles: [debug]
volumes:
  db-data: {labels: {org.example.keep: "yes"}}
networks:
  front: {}
  back: {internal: true}
secrets:
  db_password: {file: ./secrets/db.txt}
configs:
  nginx: {file: nginx.conf}
x-previewd-notes: top-level extensions are ignored
"#;

#[test]
fn each_accepted_key_has_its_meaning() {
    let wt = worktree();
    let spec = parse(FULL, wt.path()).expect("valid");
    assert!(
        !spec
            .services
            .contains_key(&ServiceName::parse("debug").expect("n")),
        "profiles: only the default profile runs"
    );
    let web = svc(&spec, "web");
    let ImageSource::Build(b) = &web.image else {
        panic!("build")
    };
    assert_eq!(b.target.as_deref(), Some("dev"));
    assert_eq!(b.args.get("MODE").map(String::as_str), Some("preview"));
    assert_eq!(web.port, Some(80), "the container side is routed");
    assert_eq!(web.host, Host::Preview);
    assert!(
        web.run
            .changes
            .iter()
            .any(|c| c.contains("`8080` is not published")),
        "{:?}",
        web.run.changes
    );
    assert_eq!(
        web.run.mounts,
        [
            Mount::Bind {
                source: PathBuf::from("nginx.conf"),
                target: "/etc/nginx/conf.d/default.conf".into(),
                read_only: true
            },
            Mount::Anonymous {
                target: "/code/node_modules".into(),
                nocopy: false
            },
            Mount::Tmpfs {
                target: "/cache".into(),
                size: Some(16 << 20),
                mode: None
            },
        ]
    );
    assert_eq!(web.env.get("A").map(String::as_str), Some("from file"));
    assert_eq!(
        web.env.get("B").map(String::as_str),
        Some("from environment"),
        "environment wins over env_file"
    );
    assert_eq!(
        web.run.networks.get("front").map(Vec::as_slice),
        Some(&["www".to_owned()][..])
    );
    assert_eq!(web.run.aliases, ["webhost", "my-web"]);
    assert_eq!(
        svc(&spec, "db").run.aliases,
        ["database"],
        "a link's alias names the linked service"
    );
    let conditions: Vec<(String, Condition)> = web
        .run
        .conditions
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(
        conditions,
        [
            ("db".to_owned(), Condition::Healthy),
            ("optional".to_owned(), Condition::Started),
            ("seed".to_owned(), Condition::CompletedSuccessfully)
        ]
    );
    let deps: Vec<&str> = web.depends_on.iter().map(ServiceName::as_str).collect();
    assert_eq!(
        deps,
        ["db", "seed"],
        "a dependency that is not required and not defined is dropped"
    );
    let r = &web.run;
    assert_eq!(r.init, Some(true));
    assert!(r.tty && r.stdin_open && r.read_only);
    assert_eq!(r.working_dir.as_deref(), Some("/srv"));
    assert_eq!(r.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        r.entrypoint.as_deref(),
        Some(&["/bin/sh".to_owned(), "-c".to_owned()][..])
    );
    assert_eq!(r.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(r.stop_grace_period, Some(Duration::from_secs(90)));
    assert_eq!(r.resources.shm_size, Some(64 << 20));
    assert_eq!(r.resources.memory, Some(256 << 20));
    assert_eq!(r.resources.cpus, Some(0.5));
    assert_eq!(r.ulimits.len(), 2);
    assert_eq!(
        r.restart,
        Some(Restart::OnFailure(Some(3))),
        "deploy's policy after the merge key's"
    );
    assert_eq!(r.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(r.cap_drop, ["ALL"]);
    assert_eq!(
        r.sysctls.get("net.ipv4.tcp_syncookies").map(String::as_str),
        Some("1")
    );
    assert_eq!(r.extra_hosts, ["api.example:10.1.2.3"]);
    assert_eq!(
        r.labels.get("org.example.role").map(String::as_str),
        Some("frontend")
    );

    let db = svc(&spec, "db");
    assert!(db.internal, "no ports: internal");
    assert_eq!(db.run.pull, PullPolicy::Never);
    let health = db.run.docker_health.as_ref().expect("docker health");
    assert_eq!(health.test, ["CMD-SHELL", "test -f /ready"]);
    assert_eq!(health.interval, Some(Duration::from_secs(2)));
    assert_eq!(health.retries, Some(5));
    let targets: Vec<&str> = db.run.mounts.iter().map(Mount::target).collect();
    assert_eq!(
        targets,
        [
            "/var/lib/db",
            "/run/secrets/db_password",
            "/run/secrets/custom",
            "/nginx"
        ]
    );
    assert!(db.run.mounts[1..].iter().all(|m| matches!(
        m,
        Mount::Bind {
            read_only: true,
            ..
        }
    )));
    let seed = svc(&spec, "seed");
    assert_eq!(
        seed.command.as_deref(),
        Some(&["echo".to_owned(), "seeded ok".to_owned()][..])
    );
    assert_eq!(seed.run.restart, Some(Restart::No));
    assert_eq!(spec.volumes.len(), 1);
    assert!(spec.networks.get("back").is_some_and(|n| n.internal));
}

#[test]
fn the_preview_host_goes_to_the_one_publisher_or_the_preferred_name() {
    let wt = worktree();
    let hosts = |doc: &str| -> Vec<(String, Host, Option<String>)> {
        let spec = parse(doc, wt.path()).expect(doc);
        spec.services
            .values()
            .filter(|s| !s.internal)
            .map(|s| {
                (
                    s.name.to_string(),
                    s.host,
                    s.route.as_ref().map(|r| r.as_str().to_owned()),
                )
            })
            .collect()
    };
    let one = "services:\n  api: {build: ., ports: ['3000:3000']}\n  db: {image: busybox}\n";
    assert_eq!(
        hosts(one),
        [("api".into(), Host::Preview, Some("/".into()))]
    );
    let several = "services:
  adminer: {image: busybox, ports: ['8081:8080']}
  db: {image: busybox, ports: ['5432:5432']}
  frontend: {build: ., ports: ['3000']}
  app: {build: ., ports: ['4000']}
";
    assert_eq!(
        hosts(several),
        [
            ("adminer".into(), Host::Service, Some("/".into())),
            ("app".into(), Host::Service, Some("/".into())),
            ("db".into(), Host::Service, Some("/".into())),
            ("frontend".into(), Host::Preview, Some("/".into())),
        ],
        "frontend comes before app in the preferred order"
    );
    let spec = parse(several, wt.path()).expect("valid");
    assert!(svc(&spec, "frontend").healthcheck.required);
    assert!(
        !svc(&spec, "db").healthcheck.required,
        "a service on its own host may not speak HTTP: not probed unless asked"
    );
    let named = "services:
  api: {build: ., ports: ['3000'], x-previewd: {route: /api}}
  ui: {build: ., ports: ['80'], x-previewd: {route: /}}
  db: {image: busybox, ports: ['5432']}
";
    assert_eq!(
        hosts(named),
        [
            ("api".into(), Host::Preview, Some("/api".into())),
            ("db".into(), Host::Service, Some("/".into())),
            ("ui".into(), Host::Preview, Some("/".into())),
        ]
    );
    // None of the usual names: the first in the file (not in the alphabet) gets the host,
    // and the plan says so and how to choose another.
    let unnamed = "services:\n  zeta: {build: ., ports: ['3000']}\n  alpha: {image: busybox, ports: ['5432']}\n";
    assert_eq!(
        hosts(unnamed),
        [
            ("alpha".into(), Host::Service, Some("/".into())),
            ("zeta".into(), Host::Preview, Some("/".into())),
        ]
    );
    let spec = parse(unnamed, wt.path()).expect("valid");
    let note = svc(&spec, "zeta").run.changes.join("\n");
    assert!(
        note.contains("the first in the file of zeta, alpha")
            && note.contains("x-previewd: {route: /}"),
        "{note}"
    );
}

#[test]
fn the_first_of_several_published_ports_is_routed_and_the_plan_says_so() {
    let wt = tempfile::tempdir().unwrap();
    for (ports, want) in [
        ("['9300', '9200:9200']", 9300),
        ("['9200', '9300', '9200']", 9200),
    ] {
        let doc = format!("services:\n  search: {{image: busybox, ports: {ports}}}\n");
        let spec = parse(&doc, wt.path()).expect(&doc);
        let s = svc(&spec, "search");
        assert_eq!(s.port, Some(want), "{doc}");
        let note = s.run.changes.join("\n");
        assert!(
            note.contains(&format!("routed to port {want}, the first of"))
                && note.contains("x-previewd.port"),
            "{note}"
        );
    }
    // Chosen, nothing to say.
    let chosen = "services:\n  search: {image: busybox, ports: ['9200', '9300'], x-previewd: {port: 9300}}\n";
    let spec = parse(chosen, wt.path()).expect("valid");
    assert_eq!(svc(&spec, "search").port, Some(9300));
    assert!(
        !svc(&spec, "search")
            .run
            .changes
            .iter()
            .any(|c| c.contains("the first of")),
        "{:?}",
        svc(&spec, "search").run.changes
    );
}

/// `previewd check DIR`'s plan; the check must pass.
fn check_plan(dir: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_previewd"))
        .arg("check")
        .arg(dir)
        .output()
        .expect("run check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn real_world_fixture_checks_with_its_plan() {
    let text = check_plan(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/compose-shop"));
    for line in [
        "compose.yaml: valid",
        "build proxy (Dockerfile, target runtime); route / → port 8080, health GET / = 200; URL http://<id>.<domain>/",
        "image busybox; route / → port 5432; URL http://<id>-db.<domain>/",
        "mounts: volume db-data → /data, ./db → /srv (ro), anonymous volume → /tmp/scratch",
        "networks: backend, frontend (aliases api)",
        "host side `127.0.0.1:5432` is not published",
        "hostname `database`: an alias",
        "volumes: db-data",
        "services.debug: has profiles, so it does not start",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[test]
fn dotted_variable_names_are_passed_on_and_names_that_split_an_entry_are_refused() {
    let wt = tempfile::tempdir().unwrap();
    let doc = "services:\n  search:\n    image: busybox\n    ports: ['9200']\n    environment:\n      - discovery.type=single-node\n      - bootstrap.memory-lock=true\n";
    let spec = parse(doc, wt.path()).expect("valid");
    let env = &svc(&spec, "search").env;
    assert_eq!(
        env.get("discovery.type").map(String::as_str),
        Some("single-node")
    );
    assert_eq!(
        env.get("bootstrap.memory-lock").map(String::as_str),
        Some("true")
    );
    for name in ["'A=B'", "'A B'", "'.hidden'", "'x\\ty'"] {
        let doc = format!(
            "services:\n  search:\n    image: busybox\n    ports: ['9200']\n    environment: {{{name}: v}}\n"
        );
        let e = parse(&doc, wt.path()).expect_err(&doc);
        assert!(
            e.to_string().contains("not a valid variable name"),
            "{doc}: {e}"
        );
    }
}

#[test]
fn decimal_sizes_are_accepted_where_compose_takes_sizes_and_garbage_names_its_key() {
    let wt = tempfile::tempdir().unwrap();
    let doc = "services:\n  web:\n    image: busybox\n    ports: ['80']\n    mem_limit: 1.5G\n    shm_size: 512.5m\n    tmpfs: ['/scratch:size=0.5gb']\n    volumes:\n      - type: tmpfs\n        target: /cache\n        tmpfs: {size: 2.25 MiB}\n  db:\n    image: busybox\n    deploy: {resources: {limits: {memory: 1.5gb}}}\n";
    let spec = parse(doc, wt.path()).expect("valid");
    let web = &svc(&spec, "web").run;
    assert_eq!(web.resources.memory, Some(3 << 29));
    assert_eq!(web.resources.shm_size, Some((1025 << 20) / 2));
    let mut tmpfs: Vec<_> = web
        .mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Tmpfs { size, .. } => *size,
            _ => None,
        })
        .collect();
    tmpfs.sort_unstable();
    assert_eq!(tmpfs, [9 << 18, 1 << 29]);
    assert_eq!(svc(&spec, "db").run.resources.memory, Some(3 << 29));
    for (key, value) in [("mem_limit", "1.5.2g"), ("shm_size", "lots")] {
        let doc = format!(
            "services:\n  web:\n    image: busybox\n    ports: ['80']\n    {key}: {value}\n"
        );
        let e = parse(&doc, wt.path()).expect_err(&doc).to_string();
        assert!(
            e.contains(&format!("services.web.{key}")) && e.contains("is not a size"),
            "{doc}: {e}"
        );
    }
}

#[test]
fn refreshing_pull_policies_keep_their_age_and_a_bad_one_names_its_key() {
    let wt = tempfile::tempdir().unwrap();
    let doc = |policy: &str| {
        format!(
            "services:\n  web:\n    image: busybox\n    ports: ['80']\n    pull_policy: {policy}\n"
        )
    };
    for (policy, hours) in [("daily", 24), ("weekly", 168), ("every_12h", 12)] {
        let spec = parse(&doc(policy), wt.path()).expect(policy);
        assert_eq!(
            svc(&spec, "web").run.pull,
            PullPolicy::Refresh(Duration::from_secs(hours * 3600)),
            "{policy}"
        );
    }
    for policy in ["every_soon", "every_", "every_0s"] {
        let e = parse(&doc(policy), wt.path())
            .expect_err(policy)
            .to_string();
        assert!(e.contains("services.web.pull_policy"), "{policy}: {e}");
    }
}

const HOOKED: &str = r#"
services:
  web:
    image: busybox
    ports: ["80"]
    runtime: runc
    label_file: [web.labels]
    labels: {org.example.tier: edge}
    annotations: {com.example.note: x}
    configs:
      - source: motd
        target: /etc/motd
        mode: 0440
      - banner
    networks: [back]
    post_start:
      - command: chown -R 1000 /data
        user: root
        working_dir: /data
        environment: {WHO: hook}
    pre_stop:
      - command: ["sh", "-c", "echo bye"]
configs:
  motd: {content: "hello\nworld\n"}
  banner:
    content: hi
networks:
  back:
    ipam:
      driver: default
      config: [{subnet: 172.28.0.0/16, gateway: 172.28.0.1}]
"#;

#[test]
fn hooks_label_files_inline_configs_subnets_and_annotations_have_their_meaning() {
    use previewd::spec::runtime::Hook;
    let wt = worktree();
    std::fs::write(
        wt.path().join("web.labels"),
        "# the team\norg.example.team=web\norg.example.tier=front\n",
    )
    .expect("write");
    let spec = parse(HOOKED, wt.path()).expect("valid");
    let web = svc(&spec, "web");
    assert_eq!(
        web.run.post_start,
        [Hook {
            command: vec!["chown".into(), "-R".into(), "1000".into(), "/data".into()],
            user: Some("root".into()),
            working_dir: Some("/data".into()),
            env: vec!["WHO=hook".into()],
        }]
    );
    assert_eq!(
        web.run.pre_stop,
        [Hook {
            command: vec!["sh".into(), "-c".into(), "echo bye".into()],
            user: None,
            working_dir: None,
            env: Vec::new(),
        }]
    );
    // The label file's labels, `labels` winning for one both set.
    assert_eq!(
        web.run.labels.get("org.example.team").map(String::as_str),
        Some("web")
    );
    assert_eq!(
        web.run.labels.get("org.example.tier").map(String::as_str),
        Some("edge")
    );
    // Inline configs, copied in with their mode (compose's default 0444 without one).
    for (data, target, mode) in [
        ("hello\nworld\n", "/etc/motd", 0o440),
        ("hi", "/banner", 0o444),
    ] {
        let want = Mount::File {
            source: Copied::Inline(data.into()),
            target: target.into(),
            uid: 0,
            gid: 0,
            mode,
        };
        assert!(
            web.run.mounts.contains(&want),
            "{want:?} not in {:?}",
            web.run.mounts
        );
    }
    let notes = web.run.changes.join("\n");
    assert!(
        notes.contains("annotations (com.example.note): not applied"),
        "{notes}"
    );
    let project = spec.changes.join("\n");
    assert!(
        project.contains("networks.back.ipam: subnet 172.28.0.0/16 not used"),
        "{project}"
    );

    // `check` says all of it.
    std::fs::write(wt.path().join("compose.yaml"), HOOKED).expect("write");
    let text = check_plan(wt.path());
    for line in [
        "runs post_start: chown -R 1000 /data (as root)",
        "runs pre_stop: sh -c echo bye",
        "inline content (12 bytes) copied to /etc/motd (owner 0:0, mode 440)",
        "changed: annotations (com.example.note): not applied",
        "changed: networks.back.ipam: subnet 172.28.0.0/16 not used",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}
