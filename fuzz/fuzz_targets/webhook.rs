//! Signature check, form decoding and payload parsing on arbitrary bytes: the first byte picks
//! the event, the next line is the signature header, the rest is the body. Never a panic, and a
//! header is accepted exactly when it carries the body's HMAC under the secret: the target
//! computes that HMAC itself, so a well-formed forgery (`sha256=` and 64 hex digits of anything
//! else) is checked like every other header, not exempted.
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use previewd::forge::github::payload::parse_event;
use previewd::webhook::{form, verify::signature_matches};
use secrecy::SecretString;
use sha2::Sha256;

const EVENTS: [&str; 5] = ["pull_request", "push", "issue_comment", "ping", "release"];
const SECRET: &str = "fuzz secret";

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (header, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let header = String::from_utf8_lossy(header);
    let secrets = [SecretString::from(SECRET)];
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    let real = mac.finalize().into_bytes();
    // Hex digits in either case are the same digest.
    let carries_it = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .is_some_and(|d| d[..] == real[..]);
    assert_eq!(signature_matches(&secrets, &header, body), carries_it, "{header}");
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
