//! `include`, `extends`, resolver settings, compose's own build options and the owner and
//! mode of secrets and mounts, as the spec previewd runs: other files' paths relative to their
//! own folder, compose's merge rules, and files outside the repository refused by key.

use std::path::{Path, PathBuf};

use previewd::ids::ServiceName;
use previewd::spec::runtime::Copied;
use previewd::spec::{self, ImageSource, Mount, Spec, SpecError};

fn worktree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in [("Dockerfile", "FROM busybox\n")].iter().chain(files) {
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

#[test]
fn an_included_file_brings_its_services_with_paths_relative_to_its_folder() {
    let wt = worktree(&[
        (
            "db/compose.yaml",
            "services:\n  db:\n    image: busybox\n    env_file: db.env\n    \
             volumes: ['./init:/init:ro', 'data:/data']\n    secrets: [pw]\n\
             volumes:\n  data: {}\nsecrets:\n  pw: {file: ./pw.txt}\n",
        ),
        ("db/db.env", "ROLE=db\n"),
        ("db/init/1.sql", "select 1;\n"),
        ("db/pw.txt", "pw\n"),
    ]);
    let doc = "include: [db/compose.yaml]\nservices:\n  web:\n    build: .\n    \
               ports: ['80']\n    depends_on: [db]\n";
    let spec = parse(doc, wt.path()).expect("accepted");
    let db = svc(&spec, "db");
    assert_eq!(db.env.get("ROLE").map(String::as_str), Some("db"));
    assert_eq!(
        db.run.mounts,
        [
            Mount::Bind {
                source: PathBuf::from("db/init"),
                target: "/init".into(),
                read_only: true
            },
            Mount::Volume {
                name: "data".into(),
                target: "/data".into(),
                read_only: false,
                nocopy: false
            },
            Mount::Bind {
                source: PathBuf::from("db/pw.txt"),
                target: "/run/secrets/pw".into(),
                read_only: true
            },
        ]
    );
    assert!(spec.volumes.contains_key("data"));
}

#[test]
fn a_service_extends_another_with_composes_merge_rules() {
    let wt = worktree(&[
        (
            "common/base.yaml",
            "services:\n  base:\n    build: {context: ., args: [A=1, B=1]}\n    \
             environment: [X=base, Y=base]\n    ports: ['8080']\n    \
             volumes: ['./conf:/etc/app:ro', '/cache']\n    command: [base]\n",
        ),
        ("common/Dockerfile", "FROM busybox\n"),
        ("common/conf/app.conf", "x\n"),
    ]);
    let doc = "services:
  web:
    extends: {file: common/base.yaml, service: base}
    build: {args: {B: '2'}}
    environment: {Y: web}
    ports: ['9090']
    volumes: ['/cache:nocopy']
    command: [web]
    x-previewd: {port: 8080}
  worker:
    extends: web
    command: [worker]
    x-previewd: {internal: true}
";
    let spec = parse(doc, wt.path()).expect("accepted");
    let web = svc(&spec, "web");
    let ImageSource::Build(b) = &web.image else {
        panic!("built")
    };
    // The base's context is its own folder; args merged, the extending value wins.
    assert_eq!(b.context, PathBuf::from("common"));
    assert_eq!(b.args.get("A").map(String::as_str), Some("1"));
    assert_eq!(b.args.get("B").map(String::as_str), Some("2"));
    assert_eq!(web.env.get("X").map(String::as_str), Some("base"));
    assert_eq!(web.env.get("Y").map(String::as_str), Some("web"));
    assert_eq!(web.command, Some(vec!["web".to_owned()]));
    assert_eq!(web.port, Some(8080));
    // Volumes merged by target: the bind mount kept, /cache replaced.
    assert_eq!(
        web.run.mounts,
        [
            Mount::Bind {
                source: PathBuf::from("common/conf"),
                target: "/etc/app".into(),
                read_only: true
            },
            Mount::Anonymous {
                target: "/cache".into(),
                nocopy: true
            },
        ]
    );
    // A service of the same file, extended in turn.
    let worker = svc(&spec, "worker");
    assert_eq!(worker.command, Some(vec!["worker".to_owned()]));
    assert_eq!(worker.env.get("Y").map(String::as_str), Some("web"));
}

#[test]
fn include_and_extends_refuse_what_leaves_the_repository_and_name_the_key() {
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        outside.path().join("compose.yaml"),
        "services:\n  evil: {image: busybox}\n",
    )
    .expect("write");
    let wt = worktree(&[("sub/a.yaml", "include: [../../x.yaml]\nservices: {}\n")]);
    std::os::unix::fs::symlink(outside.path(), wt.path().join("linked")).expect("symlink");
    let web = "  web: {build: ., ports: ['80']";
    for (doc, key) in [
        (
            format!("include: [linked/compose.yaml]\nservices:\n{web}}}\n"),
            "include[0]",
        ),
        (
            format!("services:\n{web}, extends: {{file: linked/compose.yaml, service: evil}}}}\n"),
            "services.web.extends.file",
        ),
        // Nested: the included file climbs out from its own folder.
        (
            format!("include: [sub/a.yaml]\nservices:\n{web}}}\n"),
            "include[0]",
        ),
    ] {
        let e = parse(&doc, wt.path()).expect_err(&doc);
        let keys: Vec<String> = e
            .problems()
            .iter()
            .filter_map(|p| match p {
                SpecError::Refused { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(keys, [key], "{doc}: {e}");
        assert!(!e.to_string().contains("evil"), "{e}");
    }
    // Cycles are found, not followed.
    let e = parse(
        "services:\n  a: {image: busybox, extends: b}\n  b: {image: busybox, extends: a}\n",
        wt.path(),
    )
    .expect_err("cycle");
    assert!(e.to_string().contains("cycle"), "{e}");
}

#[test]
fn build_options_dns_and_file_modes_are_read_with_their_meaning() {
    let wt = worktree(&[("pw.txt", "pw\n")]);
    let doc = "services:
  web:
    build:
      context: .
      labels: [org.example.team=web]
      cache_from: [example/app:cache]
      no_cache: true
      pull: true
      shm_size: 128m
      tags: [example/app:preview]
      platforms: [linux/amd64, linux/arm64]
    platform: linux/amd64
    ports: ['80']
    dns: 9.9.9.9
    dns_search: [example.com]
    dns_opt: ['ndots:2', rotate]
    tmpfs: ['/run/x:size=1m,mode=1770']
    secrets: [{source: pw, uid: '1000', gid: '100', mode: 0440}]
secrets:
  pw: {file: pw.txt}
";
    let spec = parse(doc, wt.path()).expect("accepted");
    let web = svc(&spec, "web");
    let ImageSource::Build(b) = &web.image else {
        panic!("built")
    };
    let o = &b.options;
    assert_eq!(
        o.labels.get("org.example.team").map(String::as_str),
        Some("web")
    );
    assert_eq!(o.cache_from, ["example/app:cache"]);
    assert!(o.no_cache && o.pull);
    assert_eq!(o.shm_size, Some(128 << 20));
    assert_eq!(o.platform.as_deref(), Some("linux/amd64"));
    // What a preview cannot apply is said, not dropped in silence.
    let changes = web.run.changes.join("\n");
    assert!(changes.contains("build.tags: not applied"), "{changes}");
    assert!(
        changes.contains("build.platforms: one image is built"),
        "{changes}"
    );
    assert_eq!(web.run.dns, ["9.9.9.9"]);
    assert_eq!(web.run.dns_search, ["example.com"]);
    assert_eq!(web.run.dns_opt, ["ndots:2", "rotate"]);
    assert!(web.run.mounts.contains(&Mount::Tmpfs {
        target: "/run/x".into(),
        size: Some(1 << 20),
        mode: Some(0o1770)
    }));
    assert!(web.run.mounts.contains(&Mount::File {
        source: Copied::Repo(PathBuf::from("pw.txt")),
        target: "/run/secrets/pw".into(),
        uid: 1000,
        gid: 100,
        mode: 0o440
    }));
    // A platform the build does not list is a mistake compose refuses too.
    let e = parse(
        &doc.replace("platform: linux/amd64", "platform: linux/s390x"),
        wt.path(),
    )
    .expect_err("not listed");
    assert!(e.to_string().contains("services.web.platform"), "{e}");
}
