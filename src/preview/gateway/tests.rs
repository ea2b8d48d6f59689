//! The gateway's unit tests: what a request resolves to through the route table and Caddy's
//! config together (the tests' model of the gateway, [`super::routes::lookup`]), and the
//! config's own shape. No Docker and no Caddy: the integration tests run those.

use std::path::Path;

use serde_json::json;

use super::caddy::UPSTREAM;
use super::container::port_in_use;
use super::{caddy_config, routed_networks, routes};
use crate::config::Config;
use crate::ids::PreviewId;
use crate::preview::docker::labels::{Member, Observed, group};

fn config(domain: &str) -> Config {
    let env = vec![
        ("PREVIEWD_INSTANCE".to_owned(), "pv".to_owned()),
        ("PREVIEWD_GATEWAY_DOMAIN".to_owned(), domain.to_owned()),
        // The gateway's config holds the health pass, derived from the key: a set secret
        // keeps these tests from making a key file in the data directory.
        (
            "PREVIEWD_ACCESS_SESSION_SECRET".to_owned(),
            "gateway-unit-test-secret-0123".to_owned(),
        ),
    ];
    Config::from_parts(None, Path::new("t"), &env).unwrap()
}

#[test]
fn a_taken_port_is_named_by_its_address() {
    let c = config("localhost");
    let taken = format!(
        "driver failed programming external connectivity on endpoint pv-gateway (0f11c59a): \
         Bind for 127.0.0.1:{} failed: port is already allocated",
        c.gateway.port
    );
    let e = port_in_use(&c, &taken).expect("recognised");
    assert!(
        e.to_string()
            .contains(&format!("cannot listen on 127.0.0.1:{}", c.gateway.port)),
        "{e}"
    );
    let in_use =
        "Error starting userland proxy: listen tcp4 127.0.0.1:80: bind: address already in use";
    assert!(port_in_use(&c, in_use).is_some());
    assert!(port_in_use(&c, "no such image").is_none());
}

fn member(
    id: &str,
    service: &str,
    generation: u64,
    route: Option<&str>,
    canonical: bool,
) -> Member {
    Member {
        container_id: format!("{id}{service}{generation}"),
        name: String::new(),
        preview: PreviewId::parse(id).unwrap(),
        service: service.to_owned(),
        generation,
        repo: "r".into(),
        branch: "b".into(),
        sha: None,
        pr: None,
        mode: "preview".into(),
        route: route.map(str::to_owned),
        port: route.map(|_| 80),
        created: String::new(),
        forge: "cli".into(),
        health: None,
        state: "running".into(),
        image: String::new(),
        canonical,
        networks: vec!["default".into()],
        volumes: Vec::new(),
        own_host: false,
        oneshot: false,
        depends: None,
        egress: None,
        access: None,
        hooks: None,
    }
}

/// What the gateway answers for `host` and `path`: the upstream it dials, or `404 <id>` (a
/// known preview without that path), or `404` (no such preview).
fn resolve(config: &Config, previews: &[Observed], host: &str, path: &str) -> String {
    match routes::lookup(&routes::table(config, previews), host, path) {
        Some((upstream, id)) if upstream.is_empty() => format!("404 {id}"),
        Some((upstream, _)) => upstream,
        None => "404".to_owned(),
    }
}

#[test]
fn longest_prefix_first_and_root_last() {
    let previews = group(vec![
        member("aaaaaaaaaa", "web", 1, Some("/"), true),
        member("aaaaaaaaaa", "api", 1, Some("/api"), true),
        member("aaaaaaaaaa", "v2", 1, Some("/api/v2"), true),
        member("aaaaaaaaaa", "db", 1, None, true),
    ]);
    let c = config("localhost");
    let h = "aaaaaaaaaa.localhost";
    for (host, path, want) in [
        (h, "/api/v2/x", "aaaaaaaaaa-v2-1:80"),
        (h, "/api/v2", "aaaaaaaaaa-v2-1:80"),
        (h, "/api/v22", "aaaaaaaaaa-api-1:80"),
        (h, "/api", "aaaaaaaaaa-api-1:80"),
        (h, "/api/", "aaaaaaaaaa-api-1:80"),
        // Case-sensitive, like most proxies' path prefixes.
        (h, "/API/", "aaaaaaaaaa-web-1:80"),
        (h, "/apix", "aaaaaaaaaa-web-1:80"),
        (h, "/", "aaaaaaaaaa-web-1:80"),
        (h, "/a\nb", "aaaaaaaaaa-web-1:80"),
        ("aaaaaaaaaaxlocalhost", "/", "404"),
        ("xaaaaaaaaaa.localhost", "/", "404"),
    ] {
        assert_eq!(resolve(&c, &previews, host, path), want, "{host}{path}");
    }
    let cfg = caddy_config(&c);
    assert_eq!(cfg["admin"]["listen"], "unix//run/previewd/admin.sock|0600");
    let all = &cfg["apps"]["http"]["servers"]["previewd"]["routes"];
    assert_eq!(all[1]["handle"][0]["handler"], "map");
    let file = &all[2]["match"][0]["file"];
    assert_eq!(file["root"], "/run/previewd/routes");
    assert_eq!(file["try_files"], json!(routes::candidates()));
    // The check (only for entries marked protected, in the default mode) and the stripping
    // of previewd's headers come before the wake route and the proxy.
    assert_eq!(all[5]["handle"][0]["rewrite"]["uri"], "/_previewd/check");
    assert_eq!(all[8]["handle"][0]["upstreams"][0]["dial"], UPSTREAM);
}

#[test]
fn the_config_does_not_depend_on_the_previews() {
    let c = config("localhost");
    let before = caddy_config(&c);
    let previews = group(vec![member("aaaaaaaaaa", "web", 1, Some("/"), true)]);
    assert!(!routes::table(&c, &previews).is_empty());
    assert_eq!(caddy_config(&c), before);
}

#[test]
fn the_map_splits_a_table_entry_into_upstream_and_preview() {
    let cfg = caddy_config(&config("localhost"));
    let map = &cfg["apps"]["http"]["servers"]["previewd"]["routes"][1]["handle"][0];
    let re = regex::Regex::new(map["mappings"][0]["input_regexp"].as_str().unwrap()).unwrap();
    let m = re.captures("/h.localhost/api/=h-api-2:3000=h").unwrap();
    assert_eq!((&m[1], &m[2]), ("h-api-2:3000", "h"));
    let m = re.captures("/h.localhost/==h").unwrap();
    assert_eq!((&m[1], &m[2]), ("", "h"));
    assert!(!re.is_match("/h.localhost/@tls"));
    // A sleeping preview's entry: the same upstream and id, and the mark apart.
    assert_eq!(&m[3], "");
    let m = re.captures("/h.localhost/api/=h-api-2:3000=h~").unwrap();
    assert_eq!((&m[1], &m[2], &m[3]), ("h-api-2:3000", "h", "~"));
    // A protected preview's entry, asleep or awake: the protected mark apart too.
    assert_eq!(&m[4], "");
    let m = re.captures("/h.localhost/api/=h-api-2:3000=h~!").unwrap();
    assert_eq!(
        (&m[1], &m[2], &m[3], &m[4]),
        ("h-api-2:3000", "h", "~", "!")
    );
    let m = re.captures("/h.localhost/=h-web-2:80=h!").unwrap();
    assert_eq!((&m[1], &m[2], &m[3], &m[4]), ("h-web-2:80", "h", "", "!"));
}

/// Entries of a preview labelled `password` or `forge` (a repository tightened the
/// operator's `public`) carry the protected mark, after the asleep mark; others do not.
#[test]
fn a_protected_preview_is_marked_in_the_table() {
    use crate::config::AccessMode;
    let mut a = member("aaaaaaaaaa", "web", 1, Some("/"), true);
    a.access = Some(AccessMode::Password);
    let mut b = member("bbbbbbbbbb", "web", 1, Some("/"), true);
    b.access = Some(AccessMode::Public);
    let mut d = member("dddddddddd", "web", 1, Some("/"), true);
    d.access = Some(AccessMode::Forge);
    let mut previews = group(vec![
        a,
        b,
        d,
        member("cccccccccc", "web", 1, Some("/"), true),
    ]);
    for p in previews
        .iter_mut()
        .filter(|p| p.id.as_str() == "dddddddddd")
    {
        p.asleep = Some("2026-12-07T13:00:00Z".into());
    }
    let c = config("localhost");
    let table = routes::mark_asleep(routes::table(&c, &previews), &previews);
    let table = routes::mark_protected(table, &previews);
    for file in [
        "aaaaaaaaaa.localhost/=aaaaaaaaaa-web-1:80=aaaaaaaaaa!",
        "bbbbbbbbbb.localhost/=bbbbbbbbbb-web-1:80=bbbbbbbbbb",
        "cccccccccc.localhost/=cccccccccc-web-1:80=cccccccccc",
        "dddddddddd.localhost/=dddddddddd-web-1:80=dddddddddd~!",
        "aaaaaaaaaa.localhost/@tls",
    ] {
        assert!(table.contains(Path::new(file)), "{file}: {table:?}");
    }
    assert_eq!(
        routes::lookup(&table, "aaaaaaaaaa.localhost", "/x"),
        Some(("aaaaaaaaaa-web-1:80".to_owned(), "aaaaaaaaaa".to_owned()))
    );
}

/// A sleeping preview's live entries (and only those) send its visitors through the wake
/// route; previewd's own probes and other previews pass straight on.
#[test]
fn a_sleeping_preview_is_routed_through_the_wake_route() {
    let mut previews = group(vec![
        member("aaaaaaaaaa", "web", 1, Some("/"), true),
        member("aaaaaaaaaa", "api", 1, Some("/api"), true),
        member("aaaaaaaaaa", "web", 2, Some("/"), false),
        member("bbbbbbbbbb", "web", 1, Some("/"), true),
    ]);
    previews[0].asleep = Some("2026-12-07T13:00:00Z".into());
    let c = config("localhost");
    let table = routes::mark_asleep(routes::table(&c, &previews), &previews);
    for (file, present) in [
        (
            "aaaaaaaaaa.localhost/=aaaaaaaaaa-web-1:80=aaaaaaaaaa~",
            true,
        ),
        (
            "aaaaaaaaaa.localhost/api/=aaaaaaaaaa-api-1:80=aaaaaaaaaa~",
            true,
        ),
        (
            "aaaaaaaaaa.localhost/=aaaaaaaaaa-web-1:80=aaaaaaaaaa",
            false,
        ),
        // The generation a push is deploying beside the sleeping one is awake.
        (
            "aaaaaaaaaa-2.localhost/=aaaaaaaaaa-web-2:80=aaaaaaaaaa",
            true,
        ),
        ("bbbbbbbbbb.localhost/=bbbbbbbbbb-web-1:80=bbbbbbbbbb", true),
        ("aaaaaaaaaa.localhost/@tls", true),
    ] {
        assert_eq!(table.contains(Path::new(file)), present, "{file}");
    }
    assert_eq!(
        resolve(&c, &previews, "aaaaaaaaaa.localhost", "/api/x"),
        "aaaaaaaaaa-api-1:80"
    );
    let cfg = caddy_config(&c);
    let all = &cfg["apps"]["http"]["servers"]["previewd"]["routes"];
    let wake = &all[7];
    assert_eq!(wake["match"][0]["vars"]["{previewd.asleep}"], json!(["~"]));
    assert_eq!(
        wake["match"][0]["not"][0]["header"]["User-Agent"],
        json!([crate::preview::http_client::PROBE_AGENT])
    );
    let ask = &wake["handle"][0];
    assert_eq!(ask["upstreams"][0]["dial"], "unix//run/previewd/edge.sock");
    assert_eq!(ask["rewrite"]["method"], "GET");
    assert_eq!(
        ask["handle_response"][0]["match"]["status_code"],
        json!([2])
    );
    // The visit log goes to previewd's socket, and only when sleeping is on.
    let log = &cfg["logging"]["logs"]["previewd_visits"]["writer"];
    assert_eq!(log["address"], "unix//run/previewd/visits.sock");
    let mut off = c.clone();
    off.limits.idle_sleep = None;
    assert!(caddy_config(&off).get("logging").is_none());
}

#[test]
fn staging_generation_gets_its_own_host_and_retired_none() {
    let previews = group(vec![
        member("aaaaaaaaaa", "web", 1, Some("/"), false),
        member("aaaaaaaaaa", "web", 2, Some("/"), true),
        member("aaaaaaaaaa", "web", 3, Some("/"), false),
    ]);
    let c = config("localhost");
    for (host, want) in [
        ("aaaaaaaaaa.localhost", "aaaaaaaaaa-web-2:80"),
        ("aaaaaaaaaa-3.localhost", "aaaaaaaaaa-web-3:80"),
        ("aaaaaaaaaa-1.localhost", "404"), // generation 1 is retired
    ] {
        assert_eq!(resolve(&c, &previews, host, "/"), want, "{host}");
    }
    // Only the live host may get a certificate on demand.
    let table = routes::table(&c, &previews);
    assert!(table.contains(Path::new("aaaaaaaaaa.localhost/@tls")));
    assert!(!table.contains(Path::new("aaaaaaaaaa-3.localhost/@tls")));
    let nets = routed_networks(&c, &previews);
    assert!(nets.contains("pv-pv-aaaaaaaaaa-2") && nets.contains("pv-pv-aaaaaaaaaa-3"));
    assert!(!nets.contains("pv-pv-aaaaaaaaaa-1"));
}

#[test]
fn unknown_hosts_and_paths_get_a_404_that_names_the_id() {
    let previews = group(vec![member("aaaaaaaaaa", "api", 1, Some("/api"), true)]);
    let c = config("preview.example.com");
    let cfg = caddy_config(&c);
    let all = cfg["apps"]["http"]["servers"]["previewd"]["routes"]
        .as_array()
        .unwrap();
    let unknown = &all[3]["handle"][0];
    assert_eq!(unknown["status_code"], 404);
    // preview.example.com has 3 labels, so the id is label 3 counted from the right.
    assert!(
        unknown["body"]
            .as_str()
            .unwrap()
            .contains("{http.request.host.labels.3}")
    );
    assert_eq!(
        resolve(&c, &previews, "aaaaaaaaaa.preview.example.com", "/"),
        "404 aaaaaaaaaa"
    );
    assert_eq!(
        resolve(&c, &previews, "bbbbbbbbbb.preview.example.com", "/api"),
        "404"
    );
    assert!(routes::table(&c, &[]).is_empty());
}

#[test]
fn dot_segments_are_refused_before_routing() {
    let cfg = caddy_config(&config("localhost"));
    let first = &cfg["apps"]["http"]["servers"]["previewd"]["routes"][0];
    let pattern = first["match"][0]["vars_regexp"]["{http.request.uri.path}"]["pattern"]
        .as_str()
        .unwrap();
    let re = regex::Regex::new(pattern).unwrap();
    for bad in ["/api/../x", "/..", "/./api", "/a/.", "/api/.."] {
        assert!(re.is_match(bad), "{bad}");
    }
    for good in ["/", "/api/.well-known/x", "/a..b", "/..a/", "/a/b."] {
        assert!(!re.is_match(good), "{good}");
    }
    assert_eq!(first["handle"][0]["status_code"], 400);
}

#[test]
fn a_service_on_a_host_of_its_own_answers_there_and_only_there() {
    let config = config("localhost");
    let id = "abcdefghij";
    let web = member(id, "web", 1, Some("/"), true);
    let mut admin = member(id, "admin", 1, Some("/"), true);
    admin.own_host = true;
    let mut next = member(id, "admin", 2, Some("/"), false);
    next.own_host = true;
    let previews = group(vec![web, admin, next]);
    let d = &config.gateway.domain;
    assert_eq!(
        resolve(&config, &previews, &format!("{id}.{d}"), "/x"),
        format!("{id}-web-1:80")
    );
    assert_eq!(
        resolve(&config, &previews, &format!("{id}-admin.{d}"), "/x"),
        format!("{id}-admin-1:80")
    );
    assert_eq!(
        resolve(&config, &previews, &format!("{id}-2-admin.{d}"), "/"),
        format!("{id}-admin-2:80"),
        "the next generation is checked at its own staging host"
    );
}

/// Slow clients: every server a visitor reaches carries the timeouts (the defaults keep
/// writes unbounded so downloads and event streams last), a configured value replaces a
/// default, `0s` leaves Caddy's own, and the ask listener (Caddy's loopback) has none.
#[test]
fn visitor_servers_carry_the_slow_client_timeouts() {
    let server = |c: &Config, name: &str| caddy_config(c)["apps"]["http"]["servers"][name].clone();
    let defaults = server(&config("localhost"), "previewd");
    assert_eq!(defaults["read_header_timeout"], json!("10000ms"));
    assert_eq!(defaults["read_timeout"], json!("60000ms"));
    assert_eq!(defaults["idle_timeout"], json!("120000ms"));
    assert!(defaults.get("write_timeout").is_none(), "{defaults}");
    // An upload goes on while the preview answers (else cut after 256 KiB).
    assert_eq!(defaults["enable_full_duplex"], json!(true));

    let env: Vec<(String, String)> = [
        ("PREVIEWD_GATEWAY_TLS", "on_demand"),
        ("PREVIEWD_GATEWAY_READ_HEADER_TIMEOUT", "2s"),
        ("PREVIEWD_GATEWAY_READ_TIMEOUT", "0s"),
        ("PREVIEWD_GATEWAY_WRITE_TIMEOUT", "1m"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let c = Config::from_parts(None, Path::new("t"), &env).unwrap();
    for name in ["previewd", "previewd_tls"] {
        let s = server(&c, name);
        assert_eq!(s["read_header_timeout"], json!("2000ms"), "{name}");
        assert!(s.get("read_timeout").is_none(), "{name}: {s}");
        assert_eq!(s["write_timeout"], json!("60000ms"), "{name}");
        assert_eq!(s["enable_full_duplex"], json!(true), "{name}");
    }
    assert!(
        server(&c, "previewd_ask")
            .get("read_header_timeout")
            .is_none()
    );
}
