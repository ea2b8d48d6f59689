//! Signature check, form decoding and payload parsing on arbitrary bytes: the first byte picks
//! the event, the next line is the signature header, the rest is the body. Never a panic,
//! and a header that is not the body's HMAC is never accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use previewd::forge::github::payload::parse_event;
use previewd::webhook::{form, verify::signature_matches};
use secrecy::SecretString;

const EVENTS: [&str; 5] = ["pull_request", "push", "issue_comment", "ping", "release"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (header, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let header = String::from_utf8_lossy(header);
    let secrets = [SecretString::from("fuzz secret")];
    assert!(!signature_matches(&secrets, &header, body) || header.len() == 71);
    let body = if pick & 0x80 != 0 {
        match form::payload(body) {
            Ok(b) => b.to_vec(),
            Err(_) => return,
        }
    } else {
        body.to_vec()
    };
    let _ = parse_event(EVENTS[pick as usize % EVENTS.len()], &body);
});
