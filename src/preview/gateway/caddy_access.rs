//! The gateway's part of access to previews, as pieces of Caddy's config that `caddy` places:
//! the `X-Robots-Tag` every answer carries, the sign-in host proxied to previewd, the
//! `forward_auth` that asks previewd about each request to a preview before it is proxied,
//! and the stripping of what only previewd may see (the bypass token, the session cookie)
//! from the request a preview gets. previewd is asked over `edge.sock` in the directory shared
//! only with the gateway, never a port a preview can reach; when it cannot be asked, the
//! answer is an error, never the preview (fail closed). Pure: a function of the settings.

use serde_json::{Value, json};

use super::caddy::{EDGE_SOCKET as SOCKET, MOUNT};
use crate::access::target::{CALLBACK_PATH, Gateway, LOGIN_PATH};
use crate::access::{PASS_HEADER, TOKEN_HEADER};
use crate::config::Config;

/// Where the gateway's `forward_auth` asks the edge (the original path is in
/// `X-Forwarded-Uri`).
pub const CHECK_PATH: &str = "/_previewd/check";
/// The header the gateway names the matched preview in, for the access check and the wake
/// route (set by the gateway, never by a visitor: the gateway overwrites it).
pub const PREVIEW_HEADER: &str = "x-previewd-preview";
/// The session cookie's name; `__Host-` on https, so no other host can set it.
pub const COOKIE: &str = "previewd_session";

fn edge_dial() -> String {
    format!("unix/{MOUNT}/{SOCKET}")
}

/// Every answer for a preview host or the sign-in host, in every mode, asks search engines to
/// keep away (crawlers find preview hosts in certificate logs): a handler that runs before
/// anything answers, so the gateway's own answers (404s, the check's) carry it too.
pub(super) fn robots() -> Value {
    json!({"handler": "headers",
        "response": {"set": {"X-Robots-Tag": ["noindex, nofollow"]}}})
}

/// The sign-in host's routes, before the route table (which would call `auth` an unknown
/// preview); none when no preview can be protected.
pub(super) fn signin_routes(config: &Config) -> Vec<Value> {
    let Some(host) = signin_host(config) else {
        return Vec::new();
    };
    vec![
        json!({
            "match": [{"host": [host], "path": [LOGIN_PATH, CALLBACK_PATH]}],
            "handle": [robots(), {"handler": "reverse_proxy", "upstreams": [{"dial": edge_dial()}]}],
            "terminal": true,
        }),
        json!({
            "match": [{"host": [host]}],
            "handle": [robots(), {"handler": "static_response", "status_code": 404,
                        "body": "previewd: the sign-in host has nothing here\n"}],
            "terminal": true,
        }),
    ]
}

/// On-demand TLS may certify the sign-in host (it is in no preview's route table).
pub(super) fn ask_routes(config: &Config) -> Vec<Value> {
    match signin_host(config) {
        Some(host) => vec![json!({
            "match": [{"path": ["/tls/ask"], "query": {"domain": [host]}}],
            "handle": [{"handler": "static_response", "status_code": 200}],
        })],
        None => Vec::new(),
    }
}

/// The sign-in host's name, when some preview may be in `forge` mode: the operator's settings
/// protect previews, or a forge has an OAuth client a repository may ask for.
fn signin_host(config: &Config) -> Option<String> {
    if !crate::access::signs_in(config) {
        return None;
    }
    let base = Gateway::new(config).auth_base().to_owned();
    url::Url::parse(&base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
}

/// Asks previewd about the request (`preview` is the placeholder naming the matched preview);
/// a 2xx answer lets it on to the next route, any other answer goes back to the visitor as it
/// is (a redirect to sign in, a password prompt, the 403 page). Must come before anything
/// that proxies to or wakes a preview. When the operator's settings protect previews, every
/// request is asked about; else only those to an entry that `protected` (the placeholder of
/// the route table's [`PROTECTED`](super::routes::PROTECTED) mark) says is protected, as a
/// repository may tighten the operator's `public`.
pub(super) fn forward_auth_routes(config: &Config, preview: &str, protected: &str) -> Vec<Value> {
    let mut matcher = serde_json::Map::new();
    // previewd's own health checks carry the pass: they need no edge and no session.
    if let Some(pass) = crate::access::gateway_pass(config) {
        matcher.insert("not".into(), json!([{"header": {PASS_HEADER: [pass]}}]));
    }
    if !crate::access::gateway_checks(config) {
        matcher.insert(
            "vars".into(),
            json!({protected: [super::routes::PROTECTED]}),
        );
    }
    let matcher = if matcher.is_empty() {
        json!([])
    } else {
        json!([matcher])
    };
    vec![
        json!({
            "match": matcher,
            "handle": [{
                "handler": "reverse_proxy",
                "upstreams": [{"dial": edge_dial()}],
                "rewrite": {"method": "GET", "uri": CHECK_PATH},
                "headers": {"request": {"set": {
                    "X-Forwarded-Method": ["{http.request.method}"],
                    "X-Forwarded-Uri": ["{http.request.uri}"],
                    PREVIEW_HEADER: [preview],
                }}},
                "handle_response": [{
                    "match": {"status_code": [2]},
                    "routes": [{"handle": [{"handler": "vars"}]}],
                }],
            }],
        }),
        strip_route(),
    ]
}

/// Takes the bypass token, the health pass and previewd's session cookie off the request
/// before a preview sees it: a preview's code must not collect its visitors' tokens or sessions.
fn strip_route() -> Value {
    json!({"handle": [{"handler": "headers", "request": {
        "delete": [TOKEN_HEADER, PASS_HEADER],
        "replace": {"Cookie": [{
            "search_regexp": format!("(^|;\\s*)(__Host-)?{COOKIE}=[^;]*"),
            "replace": "",
        }]},
    }}]})
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;
    use crate::preview::gateway::caddy_config;

    fn config(env: &[(&str, &str)]) -> Config {
        // `forge` needs a client to sign in with (refused at load otherwise).
        let client = [
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_ID", "client"),
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_SECRET", "client-secret"),
        ];
        let forge = env.contains(&("PREVIEWD_ACCESS_MODE", "forge"));
        let env: Vec<(String, String)> = env
            .iter()
            .chain(client.iter().filter(|_| forge))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_parts(None, Path::new("t"), &env).unwrap()
    }

    /// Each route's last handler's name and, for a proxy, where it dials.
    fn handlers(cfg: &serde_json::Value) -> Vec<(String, String)> {
        cfg["apps"]["http"]["servers"]["previewd"]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let h = r["handle"].as_array().and_then(|h| h.last()).unwrap();
                (
                    h["handler"].as_str().unwrap_or_default().to_owned(),
                    h["upstreams"][0]["dial"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn every_request_to_a_preview_is_checked_before_it_is_proxied() {
        let cfg = caddy_config(&config(&[
            ("PREVIEWD_ACCESS_MODE", "forge"),
            (
                "PREVIEWD_ACCESS_SESSION_SECRET",
                "unit-test-secret-0123456789",
            ),
        ]));
        let h = handlers(&cfg);
        let check = h
            .iter()
            .position(|(n, d)| {
                n == "reverse_proxy" && d.ends_with("/edge.sock") && d.starts_with("unix/")
            })
            .expect("no signin route");
        let upstream = h
            .iter()
            .position(|(n, d)| {
                n == "reverse_proxy" && d == crate::preview::gateway::caddy::UPSTREAM
            })
            .expect("no upstream route");
        let fwd = cfg["apps"]["http"]["servers"]["previewd"]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .position(|r| r["handle"][0]["rewrite"]["uri"] == "/_previewd/check")
            .expect("no forward_auth");
        assert!(check < fwd && fwd < upstream, "{h:?}");
        // After the check come only headers and the wake route (a sleeping preview's visitor
        // asks the edge, and only its 2xx goes on): nothing that answers from a preview.
        for (n, d) in &h[fwd + 1..upstream] {
            assert!(
                n == "headers" || (n == "reverse_proxy" && d.ends_with("/edge.sock")),
                "{n} {d} between the check and the upstream: {h:?}"
            );
        }
        // Every request that gets past the dot-segment check meets the map, and with it the
        // header, before anything answers.
        let routes = cfg["apps"]["http"]["servers"]["previewd"]["routes"].clone();
        let map = routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["handle"][0]["handler"] == "map")
            .unwrap();
        assert_eq!(
            map["handle"][1]["response"]["set"]["X-Robots-Tag"][0],
            "noindex, nofollow"
        );
    }

    /// The `forward_auth` route of the config for access mode `mode`.
    fn check_route(mode: &str) -> serde_json::Value {
        let cfg = caddy_config(&config(&[
            ("PREVIEWD_ACCESS_MODE", mode),
            (
                "PREVIEWD_ACCESS_SESSION_SECRET",
                "unit-test-secret-0123456789",
            ),
        ]));
        assert!(cfg.to_string().contains("noindex, nofollow"));
        cfg["apps"]["http"]["servers"]["previewd"]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["handle"][0]["rewrite"]["uri"] == "/_previewd/check")
            .expect("no forward_auth")
            .clone()
    }

    #[test]
    fn public_mode_asks_previewd_only_about_previews_labelled_protected() {
        // The check is there, but only for an entry the route table marks protected (a
        // repository tightened `public` in its `.previewd.yml`).
        let fwd = check_route("public");
        assert_eq!(
            fwd["match"][0]["vars"]["{previewd.protected}"][0],
            crate::preview::gateway::routes::PROTECTED,
            "{fwd}"
        );
        // In `forge` mode every request is asked about.
        let fwd = check_route("forge");
        assert!(fwd["match"][0].get("vars").is_none(), "{fwd}");
    }
}
