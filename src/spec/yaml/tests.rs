//! The parser's bounds, tried with hostile input: alias bombs, deep nesting, flow
//! collections, oversized or non-UTF-8 files, duplicate keys, tags, merge keys. Each must be
//! refused quickly and by name; none may overflow the stack or take seconds.

use super::*;
use std::time::{Duration, Instant};

fn syntax_reason(r: Result<Value, SpecError>) -> String {
    match r {
        Err(SpecError::Syntax { reason, .. }) => reason,
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn billion_laughs_is_refused_quickly() {
    let mut doc = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        doc.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let start = Instant::now();
    let err = parse_tree("x.yml", doc.as_bytes());
    assert!(err.is_err(), "alias bomb accepted");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn large_anchor_repeated_is_refused() {
    // Few alias jumps (yaml_serde's own limit does not fire) but each copies a big anchor.
    let mut doc = String::from("big: &big [");
    doc.push_str(&"x, ".repeat(20_000));
    doc.push_str("x]\nmany: [");
    doc.push_str(&"*big, ".repeat(2_000));
    doc.push_str("*big]\n");
    let start = Instant::now();
    let reason = syntax_reason(parse_tree("x.yml", doc.as_bytes()));
    assert!(reason.contains("expands"), "{reason}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn deep_nesting_is_refused_without_overflow() {
    for doc in [
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        format!("{}x{}", "{a: ".repeat(10_000), "}".repeat(10_000)),
        (0..1_000)
            .map(|i| format!("{}- \n", " ".repeat(i)))
            .collect(),
    ] {
        let start = Instant::now();
        let reason = syntax_reason(parse_tree("x.yml", doc.as_bytes()));
        assert!(
            reason.contains("nested") || reason.contains("flow"),
            "{reason}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn flow_collections_cannot_make_the_parser_quadratic() {
    // Under the bracket budget but as deep as it allows: still refused by depth, quickly.
    let doc = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let start = Instant::now();
    assert!(parse_tree("x.yml", doc.as_bytes()).is_err());
    assert!(start.elapsed() < Duration::from_secs(2));
    // A megabyte of brackets is refused before the parser sees it.
    let doc = "[".repeat(MAX_FILE_BYTES);
    let start = Instant::now();
    let reason = syntax_reason(parse_tree("x.yml", doc.as_bytes()));
    assert!(reason.contains("flow"), "{reason}");
    assert!(start.elapsed() < Duration::from_secs(1));
    // Ordinary flow style is fine.
    let doc = "services: {web: {ports: [\"80\"], command: [a, b]}}\n";
    assert!(parse_tree("x.yml", doc.as_bytes()).is_ok());
}

#[test]
fn size_and_encoding_are_checked_first() {
    let big = vec![b'#'; MAX_FILE_BYTES + 1];
    assert!(matches!(
        parse_tree("x.yml", &big),
        Err(SpecError::Unreadable { .. })
    ));
    let reason = syntax_reason(parse_tree("x.yml", b"services: \xff\xfe"));
    assert!(reason.contains("UTF-8"), "{reason}");
}

#[test]
fn duplicate_keys_name_the_key() {
    let doc = "services:\n  web: {image: a}\n  web: {image: b}\n";
    match parse_tree("x.yml", doc.as_bytes()) {
        Err(SpecError::Invalid { key, .. }) => assert_eq!(key, "services.web"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tags_and_complex_keys_are_refused() {
    assert!(syntax_reason(parse_tree("x.yml", b"a: !secret b\n")).contains("tags"));
    assert!(syntax_reason(parse_tree("x.yml", b"? [a]\n: b\n")).contains("keys"));
}

#[test]
fn merge_keys_are_applied() {
    let doc = "base: &b {image: x, port: 1}\nweb:\n  <<: *b\n  port: 2\n";
    let tree = parse_tree("x.yml", doc.as_bytes()).expect("parses");
    assert_eq!(tree["web"]["image"], Value::from("x"));
    assert_eq!(tree["web"]["port"], Value::from(2));
}
