//! The CI smoke of the fuzz targets (`fuzz/`): property tests that the signature check, the
//! form decoding, the payload parser, the trigger policy and the two config parsers never
//! panic on arbitrary input, and that a wrong signature is never accepted. A few hundred
//! cases each, so the whole file runs in seconds; the long runs are libFuzzer's
//! (`docs/SECURITY.md`).

mod support;

use std::path::Path;

use previewd::config::Triggers;
use previewd::forge::github::payload::parse_event;
use previewd::intent::Policy;
use previewd::spec;
use previewd::webhook::{form, verify::signature_matches};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};
use support::{SECRET, payload_json, sign};

fn policy() -> Policy {
    let t = Triggers {
        labels: vec!["preview".into()],
        branches: vec!["*/phase-*".into(), "**".into()],
        command: "/preview".into(),
        allow_forks: false,
    };
    Policy::new(&t, previewd::forge::ForgeKind::GitHub, "https://github.com").expect("policy")
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const EVENTS: [&str; 5] = ["pull_request", "push", "issue_comment", "ping", "release"];

/// A JSON value of bounded depth whose leaves are short strings, numbers, bools and null.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::from),
        "[0-9a-f]{40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("action".to_owned()),
                    Just("number".to_owned()),
                    Just("ref".to_owned()),
                    Just("sha".to_owned()),
                    Just("full_name".to_owned()),
                    Just("login".to_owned()),
                    Just("name".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A real payload with one field (found by walking it) replaced by an arbitrary value.
fn mutated_fixture() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    let fixtures = [
        ("pull_request", "pull_request.labeled.json"),
        ("pull_request", "pull_request.closed.merged.json"),
        ("push", "push.branch.json"),
        ("issue_comment", "issue_comment.created.json"),
    ];
    (
        0..fixtures.len(),
        any::<prop::sample::Index>(),
        json_value(),
    )
        .prop_map(move |(f, at, new)| {
            let (event, name) = fixtures[f];
            let mut v = payload_json(name);
            let mut slots = Vec::new();
            collect(&mut v, &mut slots);
            let slot = at.index(slots.len());
            // Replace the chosen slot (by position in a fresh walk).
            let mut i = 0;
            replace(&mut v, slot, &mut i, &new);
            (event, serde_json::to_vec(&v).unwrap())
        })
}

fn collect(v: &mut Value, out: &mut Vec<()>) {
    match v {
        Value::Object(m) => m.values_mut().for_each(|x| {
            out.push(());
            collect(x, out)
        }),
        Value::Array(a) => a.iter_mut().for_each(|x| {
            out.push(());
            collect(x, out)
        }),
        _ => {}
    }
}

fn replace(v: &mut Value, target: usize, i: &mut usize, new: &Value) -> bool {
    let children: Vec<&mut Value> = match v {
        Value::Object(m) => m.values_mut().collect(),
        Value::Array(a) => a.iter_mut().collect(),
        _ => return false,
    };
    for x in children {
        if *i == target {
            *x = new.clone();
            return true;
        }
        *i += 1;
        if replace(x, target, i, new) {
            return true;
        }
    }
    false
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes and signature headers: never a panic, and never accepted unless the
    /// header is the body's true HMAC (which a random header is not).
    #[test]
    fn signature_check_never_panics_or_accepts_a_forgery(
        body in prop::collection::vec(any::<u8>(), 0..512),
        header in prop_oneof![
            ".{0,80}",
            "sha256=[0-9a-fA-F]{0,70}",
            Just("sha256=".to_owned()),
        ],
    ) {
        let secrets = vec![SecretString::from(SECRET), SecretString::from("")];
        prop_assert!(!signature_matches(&secrets, &header, &body));
        let good = sign(SECRET, &body);
        prop_assert!(signature_matches(&secrets, &good, &body));
        prop_assert!(signature_matches(&secrets, &good.to_uppercase().replace("SHA256=", "sha256="), &body));
    }

    /// Form bodies of arbitrary bytes decode or are refused, never a panic.
    #[test]
    fn form_decoding_never_panics(raw in prop::collection::vec(any::<u8>(), 0..256),
                                  ct in ".{0,40}") {
        let _ = form::is_form(Some(&ct));
        let _ = form::payload(&raw);
    }

    /// Arbitrary bytes as any event's body: parsed or refused, then decided, never a panic.
    #[test]
    fn payload_parsing_and_policy_never_panic_on_bytes(
        event in prop::sample::select(EVENTS.to_vec()),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Ok(e) = parse_event(event, &body) {
            let _ = policy().decide(&e);
        }
    }

    /// Arbitrary JSON shapes as any event: parsed or refused, then decided, never a panic.
    #[test]
    fn payload_parsing_and_policy_never_panic_on_json(
        event in prop::sample::select(EVENTS.to_vec()),
        v in json_value(),
    ) {
        let body = serde_json::to_vec(&v).unwrap();
        if let Ok(e) = parse_event(event, &body) {
            let _ = policy().decide(&e);
        }
    }

    /// Real payloads with one field replaced by anything: never a panic.
    #[test]
    fn mutated_real_payloads_never_panic((event, body) in mutated_fixture()) {
        if let Ok(e) = parse_event(event, &body) {
            let _ = policy().decide(&e);
        }
    }

    /// YAML-ish text and raw bytes through both config parsers: a spec or an error.
    #[test]
    fn config_parsers_never_panic(
        doc in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            yamlish().prop_map(String::into_bytes),
        ],
    ) {
        let wt = Path::new("/nonexistent/previewd-proptest");
        let _ = spec::parse_previewd_yml(".previewd.yml", &doc, wt);
        let _ = spec::parse_compose("compose.yaml", &doc, wt);
    }
}

/// Text built from YAML's tokens and the config's keys, so most cases get past the lexer.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("services:\n".to_owned()),
        Just("  web:\n".to_owned()),
        Just("    build: .\n".to_owned()),
        Just("    port: 8080\n".to_owned()),
        Just("    route: /\n".to_owned()),
        Just("    image: busybox\n".to_owned()),
        Just("    internal: true\n".to_owned()),
        Just("    environment: {A: b}\n".to_owned()),
        Just("    healthcheck: {path: /, status: 200, timeout: 60s}\n".to_owned()),
        Just("    ports: [\"8080\"]\n".to_owned()),
        Just("    depends_on: [web]\n".to_owned()),
        Just("    x-previewd: {route: /api}\n".to_owned()),
        Just("dev:\n".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("<<: *a\n".to_owned()),
        Just("- ".to_owned()),
        Just("[".to_owned()),
        Just("{".to_owned()),
        Just("!!binary ".to_owned()),
        Just("? ".to_owned()),
        Just("|\n".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("\t".to_owned()),
        Just("${X}".to_owned()),
        Just("../".to_owned()),
        "[a-z0-9 :/.\\-\n]{0,10}",
    ];
    prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
}
