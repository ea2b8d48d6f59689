//! How a GitLab delivery proves it is GitLab's: the hook's secret token echoed in
//! `X-Gitlab-Token`, or, when the hook has a signing token, a Standard Webhooks signature
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`, several space-separated
//! during a key rotation) over `{id}.{timestamp}.{body}`, keyed with the base64 part of the
//! `whsec_` token and valid for five minutes either side of now. When the signature headers are
//! there, they alone decide: a stolen plain token cannot vouch for a replayed or altered body.
//!
//! Pure functions over headers, bytes, secrets and a time passed in; every secret is tried and
//! every comparison is constant-time (`Mac::verify_slice`). Nothing here reads a body off the
//! wire, parses JSON, or logs a secret, a token or a signature.

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use time::OffsetDateTime;

use super::verify::header_str;

/// How far a signed delivery's timestamp may be from now, either way (the Standard Webhooks
/// spec asks for a tolerance; five minutes is what its reference libraries use).
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// The prefix of a Standard Webhooks signing secret, as GitLab shows and accepts it.
const SIGNING_PREFIX: &str = "whsec_";

/// What a delivery offers as proof.
#[derive(Debug, PartialEq, Eq)]
pub enum Proof<'a> {
    /// `X-Gitlab-Token`: the hook's secret token, as typed into the hook's form.
    Token(&'a str),
    /// The Standard Webhooks headers.
    Signed {
        id: &'a str,
        timestamp: &'a str,
        signatures: &'a str,
    },
}

/// Why a delivery is refused; each is a 401, and `reason` is what `/deliveries` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthentic {
    Missing,
    Incomplete,
    WrongToken,
    BadTimestamp,
    Stale,
    WrongSignature,
}

impl Unauthentic {
    pub fn reason(self) -> &'static str {
        match self {
            Unauthentic::Missing => "X-Gitlab-Token header (or a webhook-signature) missing",
            Unauthentic::Incomplete => {
                "webhook-signature needs webhook-id and webhook-timestamp too"
            }
            Unauthentic::WrongToken => "X-Gitlab-Token does not match any configured secret",
            Unauthentic::BadTimestamp => "webhook-timestamp is not a Unix time in seconds",
            Unauthentic::Stale => "webhook-timestamp is more than 5 minutes away from now",
            Unauthentic::WrongSignature => {
                "webhook-signature does not match any configured signing token"
            }
        }
    }
}

/// The proof a delivery's headers offer: the signature when any of its headers is there.
pub fn proof(headers: &HeaderMap) -> Result<Proof<'_>, Unauthentic> {
    let id = header_str(headers, "webhook-id");
    let timestamp = header_str(headers, "webhook-timestamp");
    let signatures = header_str(headers, "webhook-signature");
    if id.is_some() || timestamp.is_some() || signatures.is_some() {
        let (Some(id), Some(timestamp), Some(signatures)) = (id, timestamp, signatures) else {
            return Err(Unauthentic::Incomplete);
        };
        return Ok(Proof::Signed {
            id,
            timestamp,
            signatures,
        });
    }
    header_str(headers, "x-gitlab-token")
        .map(Proof::Token)
        .ok_or(Unauthentic::Missing)
}

/// Whether `proof` vouches for `body` under one of `secrets` at `now`.
pub fn check(
    secrets: &[SecretString],
    proof: &Proof<'_>,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), Unauthentic> {
    match proof {
        Proof::Token(token) => token_matches(secrets, token)
            .then_some(())
            .ok_or(Unauthentic::WrongToken),
        Proof::Signed {
            id,
            timestamp,
            signatures,
        } => {
            let ts: i64 = timestamp.parse().map_err(|_| Unauthentic::BadTimestamp)?;
            if (now.unix_timestamp() - ts).abs() > TOLERANCE_SECS {
                return Err(Unauthentic::Stale);
            }
            signature_matches(secrets, id, timestamp, signatures, body)
                .then_some(())
                .ok_or(Unauthentic::WrongSignature)
        }
    }
}

/// Compares `token` with every secret in constant time. The two are not compared as text:
/// each is put through one HMAC with a fixed key, and the digests are compared with
/// `verify_slice`, so neither a length nor a first differing byte shows in the time taken.
fn token_matches(secrets: &[SecretString], token: &str) -> bool {
    let given = fingerprint(token.as_bytes());
    let mut ok = false;
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(FINGERPRINT_KEY) else {
            continue;
        };
        mac.update(secret.expose_secret().as_bytes());
        ok |= mac.verify_slice(&given).is_ok();
    }
    ok
}

const FINGERPRINT_KEY: &[u8] = b"previewd x-gitlab-token comparison";

fn fingerprint(value: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(FINGERPRINT_KEY) {
        Ok(mut mac) => {
            mac.update(value);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The HMAC key of a `whsec_` signing secret; `None` for a plain secret token or a secret
/// whose base64 is broken (it can then sign nothing).
fn signing_key(secret: &SecretString) -> Option<Vec<u8>> {
    let encoded = secret.expose_secret().strip_prefix(SIGNING_PREFIX)?;
    STANDARD.decode(encoded).ok().filter(|k| !k.is_empty())
}

/// Checks each `v1,<base64>` entry of `signatures` against each signing secret; entries of
/// another scheme (`v1a`, asymmetric) or with broken base64 are skipped.
fn signature_matches(
    secrets: &[SecretString],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
) -> bool {
    let digests: Vec<Vec<u8>> = signatures
        .split_ascii_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .filter(|d| d.len() == 32)
        .collect();
    let mut ok = false;
    for key in secrets.iter().filter_map(signing_key) {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
            continue;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        for digest in &digests {
            // Every pair is tried, so the time taken does not tell which one matched.
            ok |= mac.clone().verify_slice(digest).is_ok();
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn whsec(key: &[u8]) -> SecretString {
        secret(&format!("whsec_{}", STANDARD.encode(key)))
    }

    fn sign(key: &[u8], id: &str, ts: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header"));
        }
        h
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).expect("time")
    }

    #[test]
    fn a_plain_token_matches_any_configured_secret_and_nothing_else() {
        let secrets = [secret("old-token"), secret("new-token")];
        let now = at(1_700_000_000);
        for token in ["old-token", "new-token"] {
            let h = headers(&[("x-gitlab-token", token)]);
            let p = proof(&h).expect("proof");
            assert_eq!(check(&secrets, &p, b"{}", now), Ok(()), "{token}");
        }
        for token in ["new-toke", "new-token2", "NEW-TOKEN", "x"] {
            let h = headers(&[("x-gitlab-token", token)]);
            let p = proof(&h).expect("proof");
            assert_eq!(
                check(&secrets, &p, b"{}", now),
                Err(Unauthentic::WrongToken),
                "{token}"
            );
        }
        assert_eq!(proof(&HeaderMap::new()), Err(Unauthentic::Missing));
        let empty = headers(&[("x-gitlab-token", "  ")]);
        assert_eq!(proof(&empty), Err(Unauthentic::Missing));
    }

    #[test]
    fn a_standard_webhooks_signature_is_checked_over_id_timestamp_and_body() {
        let body = br#"{"object_kind":"push"}"#;
        let ts = "1700000000";
        let good = sign(KEY, "msg_1", ts, body);
        let secrets = [
            secret("plain"),
            whsec(b"another key, rotated out....."),
            whsec(KEY),
        ];
        let now = at(1_700_000_000);
        let ok = |sig: &str, id: &str, body: &[u8], now| {
            let h = headers(&[
                ("webhook-id", id),
                ("webhook-timestamp", ts),
                ("webhook-signature", sig),
            ]);
            check(&secrets, &proof(&h)?, body, now)
        };
        assert_eq!(ok(&good, "msg_1", body, now), Ok(()));
        // One of several space-separated signatures is enough (rotation on GitLab's side).
        let several = format!("v1,AAAA v1a,bm90IGhtYWM= {good}");
        assert_eq!(ok(&several, "msg_1", body, now), Ok(()));
        // Within the window either way; outside it, refused even when the MAC is right.
        assert_eq!(ok(&good, "msg_1", body, at(1_700_000_300)), Ok(()));
        assert_eq!(ok(&good, "msg_1", body, at(1_699_999_700)), Ok(()));
        assert_eq!(
            ok(&good, "msg_1", body, at(1_700_000_301)),
            Err(Unauthentic::Stale)
        );
        assert_eq!(
            ok(&good, "msg_1", body, at(1_699_999_699)),
            Err(Unauthentic::Stale)
        );
        // Another id, another body, a bare digest without `v1,`: refused.
        let wrong = Err(Unauthentic::WrongSignature);
        assert_eq!(ok(&good, "msg_2", body, now), wrong);
        assert_eq!(ok(&good, "msg_1", b"{}", now), wrong);
        assert_eq!(
            ok(good.trim_start_matches("v1,"), "msg_1", body, now),
            wrong
        );
        // Signed with the plain secret's bytes as key: a plain token signs nothing.
        assert_eq!(
            ok(&sign(b"plain", "msg_1", ts, body), "msg_1", body, now),
            wrong
        );
    }

    #[test]
    fn signature_headers_win_over_a_token_and_must_come_together() {
        let secrets = [secret("tok"), whsec(KEY)];
        let h = headers(&[
            ("x-gitlab-token", "tok"),
            ("webhook-id", "m"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", "v1,AAAA"),
        ]);
        let p = proof(&h).expect("proof");
        assert!(matches!(p, Proof::Signed { .. }));
        assert_eq!(
            check(&secrets, &p, b"{}", at(1_700_000_000)),
            Err(Unauthentic::WrongSignature)
        );
        let h = headers(&[("x-gitlab-token", "tok"), ("webhook-signature", "v1,AAAA")]);
        assert_eq!(proof(&h), Err(Unauthentic::Incomplete));
        let h = headers(&[
            ("webhook-id", "m"),
            ("webhook-timestamp", "soon"),
            ("webhook-signature", "v1,AAAA"),
        ]);
        let p = proof(&h).expect("proof");
        assert_eq!(
            check(&secrets, &p, b"{}", at(0)),
            Err(Unauthentic::BadTimestamp)
        );
    }
}
