//! Caddy's JSON config for the gateway, and the constants the container is built around
//! (where the shared directory is mounted, the ports inside). The config is a pure function of
//! the gateway's settings (domain, TLS): a preview's routes never go in here, they are the table
//! of files in [`routes`], or every preview's change would reload Caddy. Nothing here talks to
//! Docker, the admin API or the disk.

use serde_json::{Value, json};

use super::caddy_access::{ask_routes, forward_auth_routes, robots, signin_routes};
use super::routes;
use crate::config::{Config, GatewayTimeouts, Tls};
use crate::preview::http_client::PROBE_AGENT;

/// Where the admin directory is mounted inside the gateway container.
pub(super) const MOUNT: &str = "/run/previewd";
/// The port Caddy listens on inside the container (unprivileged: Caddy runs as our user).
pub(super) const LISTEN_PORT: u16 = 8080;
/// The HTTPS port inside the container, when TLS is on.
pub(super) const TLS_PORT: u16 = 8443;
/// On-demand TLS asks here before each certificate: a listener inside the gateway container
/// only, answering from the same labels as the routes, so TLS never depends on previewd being
/// up at handshake time and no preview can reach it.
const ASK_LISTEN: &str = "127.0.0.1:2020";
/// Where a wildcard certificate is copied for the gateway to load.
pub(super) const CERT_DIR: &str = "certs";

/// Where the route table puts the chosen upstream and the preview id for the handlers after it.
pub(super) const UPSTREAM: &str = "{previewd.upstream}";
const PREVIEW: &str = "{previewd.preview}";
/// [`routes::ASLEEP`] when the matched entry is a sleeping preview's, else empty.
const ASLEEP: &str = "{previewd.asleep}";
/// [`routes::PROTECTED`] when the matched entry is a protected preview's, else empty.
pub(super) const PROTECTED: &str = "{previewd.protected}";
/// The sockets previewd serves in the shared directory for the gateway: the edge service
/// (waking previews) and the visits log (Caddy's access log of preview requests).
pub const EDGE_SOCKET: &str = "edge.sock";
pub const VISITS_SOCKET: &str = "visits.sock";
/// The access logger whose lines go to [`VISITS_SOCKET`].
const VISITS_LOGGER: &str = "previewd_visits";

/// The gateway's whole Caddy config. It depends on the gateway's settings only, never on the
/// previews: routes live in [`routes_dir`](super::routes_dir), which Caddy's `file` matcher
/// reads per request, so a preview coming or going never reloads Caddy (see [`routes`] for why
/// that matters). The matched file's name carries the upstream and the preview id; one `map`
/// splits it, and one `reverse_proxy` dials the upstream. Caddy counts in-flight requests per
/// resolved address, which is what [`Gateway::drain`](super::Gateway::drain) reads.
pub fn caddy_config(config: &Config) -> Value {
    let domain = &config.gateway.domain;
    let table = format!("{MOUNT}/routes");
    // The id is the host label just left of the domain.
    let id_label = domain.split('.').count();
    let not_found = |vars: Value, body: String| {
        json!({
            "match": [{"vars": vars}],
            "handle": [{"handler": "static_response", "status_code": 404, "body": body}],
        })
    };
    let mut routes = json!([
        // A dot segment would let a path reach a service other than the one its prefix names
        // (Caddy's path matchers clean paths; the table's lookup cleans the joined path too).
        // Browsers resolve dot segments before sending, so only hand-made requests have them.
        {
            "match": [{"vars_regexp": {"{http.request.uri.path}": {"pattern": r"(^|/)\.\.?(/|$)"}}}],
            "handle": [{"handler": "static_response", "status_code": 400,
                        "body": "previewd: a path with a . or .. segment is not routed\n"}],
        },
        // Evaluated lazily, when the routes below read its outputs: by then the `file` matcher
        // has run. No file matched: both outputs empty.
        {
            "handle": [{
                "handler": "map",
                "source": "{http.matchers.file.relative}",
                "destinations": [UPSTREAM, PREVIEW, ASLEEP, PROTECTED],
                "mappings": [{
                    "input_regexp": format!(
                        "/=([^=/]*)=([^=/{a}{p}]*)({a}?)({p}?)$",
                        a = routes::ASLEEP,
                        p = routes::PROTECTED
                    ),
                    "outputs": ["${1}", "${2}", "${3}", "${4}"],
                }],
                "defaults": ["", "", "", ""],
            }, robots()],
        },
        {
            "match": [{"file": {"root": table, "try_files": routes::candidates()}}],
            "handle": [{"handler": "vars"}],
        },
        // (One key per `vars` matcher: a matcher with several keys matches when any does.)
        // Every table entry names its preview, so no preview means no entry matched.
        not_found(
            json!({PREVIEW: [""]}),
            format!(
                "previewd: no preview has the id \"{{http.request.host.labels.{id_label}}}\" \
                 (preview host names are lower case)\n"
            ),
        ),
        not_found(
            json!({UPSTREAM: [""]}),
            format!("previewd: preview {PREVIEW} has no service at this path\n"),
        ),
        wake_route(),
        {
            "handle": [{
                "handler": "reverse_proxy",
                "upstreams": [{"dial": UPSTREAM}],
                // Dev servers' live-reload sockets survive a config load (which only a new
                // previewd version still makes: new settings recreate the gateway).
                "stream_close_delay": "5m",
            }],
        },
    ]);
    // Access to previews: the sign-in host before the route table, the check after the 404s
    // and before the wake route and the proxy (`caddy_access`), so that a visitor who may not
    // see a preview never wakes it either.
    if let Value::Array(all) = &mut routes {
        all.splice(1..1, signin_routes(config));
        let wake = all.len() - 2;
        all.splice(wake..wake, forward_auth_routes(config, PREVIEW, PROTECTED));
    }
    let mut servers = serde_json::Map::new();
    servers.insert(
        "previewd".into(),
        json!({
            "listen": [format!(":{LISTEN_PORT}")],
            "automatic_https": {"disable": true},
            "routes": routes,
        }),
    );
    let mut apps = serde_json::Map::new();
    match &config.gateway.tls {
        Tls::Off => {}
        Tls::OnDemand { issuer, email } => {
            servers.insert(
                "previewd_tls".into(),
                json!({
                    "listen": [format!(":{TLS_PORT}")],
                    "automatic_https": {"disable_redirects": true},
                    "tls_connection_policies": [{}],
                    "routes": routes,
                }),
            );
            // Only a live preview's host has the mark; the asked name is cleaned and kept
            // inside the table like any request path.
            let mark = format!("/{{http.request.uri.query.domain}}/{}", routes::TLS_MARK);
            servers.insert(
                "previewd_ask".into(),
                json!({
                    "listen": [ASK_LISTEN],
                    "automatic_https": {"disable": true},
                    "routes": ask_routes(config).into_iter().chain([
                        json!({
                            "match": [{"path": ["/tls/ask"], "file": {"root": table, "try_files": [mark]}}],
                            "handle": [{"handler": "static_response", "status_code": 200}],
                        }),
                        json!({"handle": [{"handler": "static_response", "status_code": 403}]}),
                    ]).collect::<Vec<_>>(),
                }),
            );
            let issuer = match (issuer.as_str(), email) {
                ("internal", _) => json!({"module": "internal"}),
                (_, Some(e)) => json!({"module": "acme", "email": e}),
                (_, None) => json!({"module": "acme"}),
            };
            apps.insert(
                "tls".into(),
                json!({"automation": {
                    "policies": [{"on_demand": true, "issuers": [issuer]}],
                    "on_demand": {"permission": {
                        "module": "http",
                        "endpoint": format!("http://{ASK_LISTEN}/tls/ask"),
                    }},
                }}),
            );
        }
        Tls::Wildcard { .. } => {
            servers.insert(
                "previewd_tls".into(),
                json!({
                    "listen": [format!(":{TLS_PORT}")],
                    "automatic_https": {"disable": true},
                    "tls_connection_policies": [{"certificate_selection": {"any_tag": ["previewd"]}}],
                    "routes": routes,
                }),
            );
            apps.insert(
                "tls".into(),
                json!({"certificates": {"load_files": [{
                    "certificate": format!("{MOUNT}/{CERT_DIR}/cert.pem"),
                    "key": format!("{MOUNT}/{CERT_DIR}/key.pem"),
                    "tags": ["previewd"],
                }]}}),
            );
        }
    }
    // Every server a visitor reaches bounds what a slow client may hold (not the ask
    // listener: only Caddy itself, on its own loopback, talks to it), and keeps reading a
    // request's body while the preview already answers. Go's HTTP/1 server otherwise stops
    // reading it once the answer starts (it discards up to 256 KiB, then closes the body),
    // and the proxy, its body copy failing, breaks the answer off mid-way: an app that
    // answers before it has read an upload (a CGI script, a streaming endpoint) got a
    // truncated answer for any body over 256 KiB (tests/access_e2e.rs sends 1 and 8 MiB).
    // HTTP/2 and HTTP/3 are full duplex anyway.
    let visits = config.limits.idle_sleep.is_some();
    for (name, server) in servers.iter_mut() {
        if name != "previewd_ask"
            && let Value::Object(server) = server
        {
            server.extend(timeouts(&config.gateway.timeouts));
            server.insert("enable_full_duplex".into(), Value::Bool(true));
            if visits {
                server.insert("logs".into(), json!({"default_logger_name": VISITS_LOGGER}));
            }
        }
    }
    apps.insert("http".into(), json!({"servers": servers}));
    let mut cfg = json!({
        // Every loaded config carries its admin block, or Caddy falls back to localhost:2019.
        "admin": {
            "listen": format!("unix/{MOUNT}/admin.sock|0600"),
            "config": {"persist": false},
        },
        "apps": apps,
    });
    if visits {
        cfg["logging"] = visits_logging();
    }
    cfg
}

/// The route that sends a request for a sleeping preview to previewd first, the way Caddy's
/// `forward_auth` asks an auth service: a body-less `GET /wake` on the edge socket, with the
/// preview's id (set here, never the client's). A 2xx answer (the preview is awake) lets the
/// original request, body and all, go on to the preview's own upstream; any other answer (the
/// waking page, a crawler's 503, a failed wake's 502) is the visitor's. An access check placed
/// before it runs first. previewd's own probes pass straight on: a wake checks the services it
/// started through the gateway (`previewd wake` without `serve` too).
fn wake_route() -> Value {
    json!({
        "match": [{
            "vars": {ASLEEP: [routes::ASLEEP]},
            "not": [{"header": {"User-Agent": [PROBE_AGENT]}}],
        }],
        "handle": [{
            "handler": "reverse_proxy",
            "upstreams": [{"dial": format!("unix/{MOUNT}/{EDGE_SOCKET}")}],
            "rewrite": {"method": "GET", "uri": "/wake"},
            "headers": {"request": {"set": {"X-Previewd-Preview": [PREVIEW]}}},
            // At least one route, even a no-op, or the proxy skips this handler: the request
            // then goes on down the chain instead of the edge's answer being sent.
            "handle_response": [{
                "match": {"status_code": [2]},
                "routes": [{"handle": [{"handler": "vars"}]}],
            }],
        }],
    })
}

/// Caddy's access log of the preview servers, written to [`VISITS_SOCKET`] where `serve`
/// reads which previews were visited (sleeping needs nothing else). `soft_start`: the gateway
/// starts and serves without previewd listening; the lines then go to its stderr.
fn visits_logging() -> Value {
    let logger = format!("http.log.access.{VISITS_LOGGER}");
    json!({"logs": {
        "default": {"exclude": [logger]},
        VISITS_LOGGER: {
            "writer": {
                "output": "net",
                "address": format!("unix/{MOUNT}/{VISITS_SOCKET}"),
                "soft_start": true,
            },
            "encoder": {"format": "json"},
            "include": [logger],
        },
    }})
}

/// Caddy's server timeouts that are set (an unset one keeps Caddy's default), as Go durations.
fn timeouts(t: &GatewayTimeouts) -> serde_json::Map<String, Value> {
    [
        ("read_header_timeout", t.read_header),
        ("read_timeout", t.read),
        ("write_timeout", t.write),
        ("idle_timeout", t.idle),
    ]
    .into_iter()
    .filter_map(|(key, d)| Some((key.to_owned(), json!(format!("{}ms", d?.as_millis())))))
    .collect()
}
