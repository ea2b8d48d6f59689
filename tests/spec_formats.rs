//! The happy paths of both config formats, the defaults, and which file `load` picks.

use std::path::PathBuf;
use std::time::Duration;

use previewd::ids::ServiceName;
use previewd::spec::{self, BuildSpec, ImageSource, Spec, SpecError};

fn worktree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(p.join("Dockerfile"), "FROM scratch\n").expect("write");
    std::fs::create_dir(p.join("api")).expect("mkdir");
    std::fs::write(p.join("api/Dockerfile"), "FROM scratch\n").expect("write");
    dir
}

fn name(s: &str) -> ServiceName {
    ServiceName::parse(s).expect("valid name")
}

fn service<'a>(spec: &'a Spec, n: &str) -> &'a spec::Service {
    spec.services.get(&name(n)).expect("service present")
}

fn build(context: &str, dockerfile: &str, args: &[(&str, &str)]) -> ImageSource {
    ImageSource::Build(BuildSpec {
        context: PathBuf::from(context),
        dockerfile: PathBuf::from(dockerfile),
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: None,
        options: Default::default(),
    })
}

/// The sample of docs/architecture.md, verbatim.
const DESIGN_SAMPLE: &str = r#"
services:
  web:
    build: .                  # or {context: web, dockerfile: Dockerfile, args: {K: V}}
    port: 8080                # container port to route to (required unless internal)
    route: /                  # path prefix on the preview host; default /
    env: {API_URL: http://api:3000}
    healthcheck: {path: /, status: 200, timeout: 60s}
    depends_on: [api]
  api:
    build: api
    port: 3000
    route: /api               # requests keep their path: /api/users reaches the api as /api/users
  cache:
    image: redis:7
    internal: true            # not routed; reachable by the other services only
dev:                          # used by --mode dev: mount the worktree, run a dev server
  web: {image: node:22, workdir: /app, command: [npm, run, dev]}
"#;

#[test]
fn design_sample_parses() {
    let wt = worktree();
    let spec = spec::parse_previewd_yml(".previewd.yml", DESIGN_SAMPLE.as_bytes(), wt.path())
        .expect("the design sample is valid");
    assert_eq!(spec.source, ".previewd.yml");
    assert_eq!(spec.services.len(), 3);

    let web = service(&spec, "web");
    assert_eq!(web.image, build(".", "Dockerfile", &[]));
    assert_eq!(web.port, Some(8080));
    assert_eq!(web.route.as_ref().map(|r| r.as_str()), Some("/"));
    assert_eq!(
        web.env.get("API_URL").map(String::as_str),
        Some("http://api:3000")
    );
    assert_eq!(web.healthcheck.path, "/");
    assert_eq!(web.healthcheck.status, 200);
    assert_eq!(web.healthcheck.timeout, Some(Duration::from_secs(60)));
    assert_eq!(web.depends_on, vec![name("api")]);
    assert!(!web.internal);
    assert_eq!(web.command, None);

    let api = service(&spec, "api");
    assert_eq!(api.image, build("api", "Dockerfile", &[]));
    assert_eq!(api.route.as_ref().map(|r| r.as_str()), Some("/api"));
    assert_eq!(api.healthcheck.path, "/api", "defaults to the route");
    assert_eq!(api.healthcheck.timeout, None);

    let cache = service(&spec, "cache");
    assert_eq!(cache.image, ImageSource::Image("redis:7".into()));
    assert!(cache.internal);
    assert_eq!(cache.route, None);
    assert_eq!(cache.port, None);

    let dev = spec.dev.get(&name("web")).expect("dev web");
    assert_eq!(dev.image, "node:22");
    assert_eq!(dev.workdir, "/app");
    assert_eq!(
        dev.command.as_deref(),
        Some(&["npm".to_owned(), "run".into(), "dev".into()][..])
    );
    assert_eq!(dev.port, Some(8080), "falls back to the service's port");
}

#[test]
fn previewd_yml_forms_and_defaults() {
    let wt = worktree();
    let doc = r#"
services:
  web:
    build: {context: ., dockerfile: Dockerfile, args: {VERSION: 1, DEBUG: true}}
    port: 80
    command: "exec nginx -g 'daemon off;'"
    env: {PORT: 80}
  api:
    image: ghcr.io/example/api@sha256:abc
    port: 3000
    route: /api/
    command: [node, server.js]
"#;
    let spec = spec::parse_previewd_yml(".previewd.yml", doc.as_bytes(), wt.path()).expect("valid");
    let web = service(&spec, "web");
    assert_eq!(
        web.image,
        build(".", "Dockerfile", &[("DEBUG", "true"), ("VERSION", "1")])
    );
    assert_eq!(
        web.route.as_ref().map(|r| r.as_str()),
        Some("/"),
        "the one unrouted service"
    );
    assert_eq!(
        web.command.as_deref(),
        Some(
            &[
                "/bin/sh".to_owned(),
                "-c".into(),
                "exec nginx -g 'daemon off;'".into()
            ][..]
        )
    );
    assert_eq!(web.env.get("PORT").map(String::as_str), Some("80"));
    let api = service(&spec, "api");
    assert_eq!(
        api.route.as_ref().map(|r| r.as_str()),
        Some("/api"),
        "trailing / dropped"
    );
    assert_eq!(
        api.command.as_deref(),
        Some(&["node".to_owned(), "server.js".into()][..])
    );
}

const COMPOSE: &str = r#"
version: "3.9"
name: shop
x-common: &common
  environment:
    LOG: debug
services:
  web:
    <<: *common
    build: .
    image: shop-web
    ports: ["8080"]
    depends_on:
      api: {condition: service_healthy}
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost"]
      interval: 10s
    restart: unless-stopped
    x-notes: anything
  api:
    build:
      context: api
      args: [VERSION=1]
    expose: ["3000"]
    command: node server.js --name "my api"
    x-previewd:
      route: /api
      healthcheck: {path: /api/health, timeout: 30s}
  db:
    image: postgres:16
    environment: [POSTGRES_PASSWORD=preview]
"#;

#[test]
fn compose_subset_parses() {
    let wt = worktree();
    let spec = spec::parse_compose("compose.yaml", COMPOSE.as_bytes(), wt.path()).expect("valid");
    assert_eq!(spec.source, "compose.yaml");
    assert!(spec.dev.is_empty());

    let web = service(&spec, "web");
    assert_eq!(
        web.image,
        build(".", "Dockerfile", &[]),
        "build wins over image"
    );
    assert_eq!(web.port, Some(8080));
    assert_eq!(web.route.as_ref().map(|r| r.as_str()), Some("/"));
    assert_eq!(
        web.env.get("LOG").map(String::as_str),
        Some("debug"),
        "merge key applied"
    );
    assert_eq!(web.depends_on, vec![name("api")]);

    let api = service(&spec, "api");
    assert!(!api.internal);
    assert_eq!(api.image, build("api", "Dockerfile", &[("VERSION", "1")]));
    assert_eq!(api.port, Some(3000), "from expose");
    assert_eq!(
        api.command.as_deref(),
        Some(
            &[
                "node".to_owned(),
                "server.js".into(),
                "--name".into(),
                "my api".into()
            ][..]
        )
    );
    assert_eq!(api.healthcheck.path, "/api/health");
    assert_eq!(api.healthcheck.timeout, Some(Duration::from_secs(30)));

    let db = service(&spec, "db");
    assert!(db.internal, "no ports: internal, as in compose");
    assert_eq!(db.port, None);
    assert_eq!(
        db.env.get("POSTGRES_PASSWORD").map(String::as_str),
        Some("preview")
    );
}

#[test]
fn compose_port_forms() {
    let wt = worktree();
    let ok = |doc: &str| {
        spec::parse_compose("compose.yaml", doc.as_bytes(), wt.path())
            .map(|s| service(&s, "web").port)
    };
    assert_eq!(
        ok("services:\n  web: {build: ., ports: [8080]}\n").ok(),
        Some(Some(8080))
    );
    assert_eq!(
        ok("services:\n  web: {build: ., ports: ['8080/tcp']}\n").ok(),
        Some(Some(8080))
    );
    assert_eq!(
        ok("services:\n  web: {build: ., ports: [{target: 8080}]}\n").ok(),
        Some(Some(8080))
    );
    // Several: the first listed (compose_accept checks the plan's note).
    let several = "services:\n  web: {build: ., ports: ['80', '443']}\n";
    assert_eq!(ok(several).ok(), Some(Some(80)));
    let chosen = "services:\n  web: {build: ., ports: ['80', '443'], x-previewd: {port: 443}}\n";
    assert_eq!(ok(chosen).ok(), Some(Some(443)));
}

#[test]
fn load_prefers_previewd_yml_then_compose_files() {
    let wt = worktree();
    assert!(matches!(spec::load(wt.path()), Err(SpecError::Missing)));

    let compose = "services:\n  web: {build: ., ports: ['80']}\n";
    std::fs::write(wt.path().join("docker-compose.yml"), compose).expect("write");
    assert_eq!(
        spec::load(wt.path()).expect("valid").source,
        "docker-compose.yml"
    );

    std::fs::write(wt.path().join("compose.yaml"), compose).expect("write");
    assert_eq!(spec::load(wt.path()).expect("valid").source, "compose.yaml");

    std::fs::write(wt.path().join(".previewd.yml"), DESIGN_SAMPLE).expect("write");
    let spec = spec::load(wt.path()).expect("valid");
    assert_eq!(spec.source, ".previewd.yml");
    assert_eq!(spec.services.len(), 3);
}

#[test]
fn messages_say_file_key_and_what_to_do() {
    let wt = worktree();
    let doc = "services:\n  web: {build: ., port: 80, privileged: true}\n";
    let e = spec::parse_previewd_yml(".previewd.yml", doc.as_bytes(), wt.path()).expect_err("no");
    assert_eq!(
        e.to_string(),
        ".previewd.yml: `services.web.privileged` is not allowed: it would give the container \
         full control of the host"
    );
    let doc = "services:\n  web: {build: ., ports: ['8080:80'], cap_add: [NET_ADMIN]}\n";
    let e = spec::parse_compose("compose.yaml", doc.as_bytes(), wt.path()).expect_err("no");
    assert!(
        e.to_string()
            .starts_with("compose.yaml: `services.web.cap_add` is not allowed"),
        "{e}"
    );
}

#[test]
fn build_paths_through_links_inside_the_worktree_resolve() {
    let wt = worktree();
    std::os::unix::fs::symlink("api", wt.path().join("backend")).expect("symlink");
    let doc = "services:\n  api: {build: backend, port: 3000}\n";
    let spec = spec::parse_previewd_yml(".previewd.yml", doc.as_bytes(), wt.path()).expect("ok");
    assert_eq!(service(&spec, "api").image, build("api", "Dockerfile", &[]));
}

#[test]
fn a_repository_may_ask_for_an_egress_mode_and_a_wrong_one_is_named() {
    use previewd::config::egress::Mode;
    let wt = worktree();
    let yml = "egress: none\nservices:\n  web: {image: busybox, port: 80}\n";
    let s = spec::parse_previewd_yml(".previewd.yml", yml.as_bytes(), wt.path()).expect("parses");
    assert_eq!(s.egress, Some(Mode::None));
    // The operator's mode bounds it: `all` asked under `public` stays `public`.
    assert_eq!(Mode::Public.narrowed(Some(Mode::All)), Mode::Public);
    let plain = "services:\n  web: {image: busybox, port: 80}\n";
    let s = spec::parse_previewd_yml(".previewd.yml", plain.as_bytes(), wt.path()).expect("parses");
    assert_eq!(s.egress, None);
    let bad = "egress: private\nservices:\n  web: {image: busybox, port: 80}\n";
    let e = spec::parse_previewd_yml(".previewd.yml", bad.as_bytes(), wt.path())
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("`egress`") && e.contains("none, public or all"),
        "{e}"
    );
}

#[test]
fn a_repository_may_ask_for_an_access_mode_and_a_hostile_one_is_named() {
    use previewd::config::AccessMode;
    let wt = worktree();
    let yml = "access: password\nservices:\n  web: {image: busybox, port: 80}\n";
    let s = spec::parse_previewd_yml(".previewd.yml", yml.as_bytes(), wt.path()).expect("parses");
    assert_eq!(s.access, Some(AccessMode::Password));
    let plain = "services:\n  web: {image: busybox, port: 80}\n";
    let s = spec::parse_previewd_yml(".previewd.yml", plain.as_bytes(), wt.path()).expect("parses");
    assert_eq!(s.access, None);
    // Tightens, never loosens: the operator's `forge` stays `forge` under a `public` ask.
    assert_eq!(
        AccessMode::Forge.tightened(Some(AccessMode::Public)),
        AccessMode::Forge
    );
    assert_eq!(
        AccessMode::Public.tightened(Some(AccessMode::Password)),
        AccessMode::Password
    );
    for bad in [
        "access: nobody",
        "access: {mode: public}",
        "access: [forge]",
        "access: \"public\\u0000\"",
        "access: \"public\\n\"",
    ] {
        let doc = format!("{bad}\nservices:\n  web: {{image: busybox, port: 80}}\n");
        let e = spec::parse_previewd_yml(".previewd.yml", doc.as_bytes(), wt.path())
            .expect_err(bad)
            .to_string();
        assert!(e.contains("access"), "{bad}: {e}");
    }
    let e = spec::parse_previewd_yml(
        ".previewd.yml",
        b"access: nobody\nservices:\n  web: {image: busybox, port: 80}\n",
        wt.path(),
    )
    .expect_err("refused")
    .to_string();
    assert!(
        e.contains("`access`") && e.contains("public, password or forge"),
        "{e}"
    );
}

#[test]
fn a_compose_project_asks_for_an_access_mode_at_its_top_level() {
    use previewd::config::AccessMode;
    let wt = worktree();
    let compose = |doc: &str| spec::parse_compose("compose.yaml", doc.as_bytes(), wt.path());
    let web = "services:\n  web: {image: busybox, ports: ['8080:80']}\n";
    let s = compose(&format!("x-previewd: {{access: password}}\n{web}")).expect("parses");
    assert_eq!(s.access, Some(AccessMode::Password));
    assert_eq!(s.access_key(), "x-previewd.access");
    // Other extensions stay ignored, as compose ignores them; no ask, no mode.
    let s = compose(&format!("x-common: {{access: forge}}\n{web}")).expect("parses");
    assert_eq!(s.access, None);
    let s = compose(&format!("x-previewd: {{access: forge}}\n{web}")).expect("parses");
    assert_eq!(s.access, Some(AccessMode::Forge));
    // The same tighten-never-loosen rule as `.previewd.yml`'s `access`: the deployed mode is
    // the tighter of the operator's and the project's.
    let cfg = |mode: &str| {
        let env = vec![("PREVIEWD_ACCESS_MODE".to_owned(), mode.to_owned())];
        previewd::config::Config::from_parts(None, std::path::Path::new("t"), &env).unwrap()
    };
    let public = compose(&format!("x-previewd: {{access: public}}\n{web}")).expect("parses");
    assert_eq!(
        previewd::access::deployed_mode(&cfg("password"), public.access),
        Some(AccessMode::Password)
    );
    let forge = compose(&format!("x-previewd: {{access: forge}}\n{web}")).expect("parses");
    assert_eq!(
        previewd::access::deployed_mode(&cfg("password"), forge.access),
        Some(AccessMode::Forge)
    );

    // What is not a mode, a misspelt key, a scalar, and the key in a service: each refused
    // naming the key, never dropped (a dropped tightening would leave the preview open).
    for (doc, key, why) in [
        (
            format!("x-previewd: {{access: nobody}}\n{web}"),
            "`x-previewd.access`",
            "public, password or forge",
        ),
        (
            format!("x-previewd: {{acess: password}}\n{web}"),
            "x-previewd.acess",
            "",
        ),
        (format!("x-previewd: password\n{web}"), "x-previewd", ""),
        (
            "services:\n  web:\n    image: busybox\n    ports: ['8080:80']\n    \
             x-previewd: {access: password}\n"
                .to_owned(),
            "`services.web.x-previewd.access`",
            "top level",
        ),
    ] {
        let e = compose(&doc).expect_err(&doc).to_string();
        assert!(e.contains(key) && e.contains(why), "{doc}: {e}");
    }
    // Only the main file says it: an included file's would otherwise vanish with its other
    // extensions.
    std::fs::write(
        wt.path().join("more.yaml"),
        "x-previewd: {access: password}\nservices:\n  api: {image: busybox}\n",
    )
    .expect("write");
    let e = compose(&format!("include: [more.yaml]\n{web}"))
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("more.yaml") && e.contains("main compose file"),
        "{e}"
    );
}
