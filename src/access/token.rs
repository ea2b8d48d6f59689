//! Signed, expiring tokens: session cookies, the OAuth `state`, the one-use ticket that carries
//! a sign-in from the sign-in host to the preview's host, and values derived from the key
//! (preview passwords, per-repository bypass tokens). A token is
//! `base64url(json).base64url(HMAC-SHA256(key, purpose "\0" json))`: the purpose is signed in,
//! so a token made for one use is refused for another. Nothing here encrypts (a token's
//! content is not secret, only unforgeable), logs a token, or reads the clock: callers pass
//! "now".
//!
//! Hand-written on the `hmac` and `sha2` crates previewd already uses for webhook signatures:
//! a JWT crate would bring algorithm choice in the token itself, which is exactly what must not
//! be negotiable here, and a cookie crate's signed jar would still need the purposes and the
//! expiry written here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

/// What a token is for; part of what is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Session,
    State,
    Ticket,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Session => "session",
            Purpose::State => "state",
            Purpose::Ticket => "ticket",
        }
    }
}

/// Signs and checks tokens with one key.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

/// Tokens longer than this are refused unread (a cookie is at most 4 KiB anyway).
const MAX_TOKEN: usize = 4096;

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        Signer { key: key.to_vec() }
    }

    fn mac(&self, purpose: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac
    }

    /// `claims` as a token for `purpose`.
    pub fn sign<T: Serialize>(&self, purpose: Purpose, claims: &T) -> String {
        // Our own structs of strings and numbers always serialize.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let mut mac = self.mac(purpose.as_str());
        mac.update(&json);
        let tag = mac.finalize().into_bytes();
        format!("{}.{}", B64.encode(&json), B64.encode(tag))
    }

    /// The claims of `token` when it was signed with this key for `purpose`; `None` for
    /// anything else (malformed, another key, another purpose). The tag is compared in
    /// constant time.
    pub fn verify<T: DeserializeOwned>(&self, purpose: Purpose, token: &str) -> Option<T> {
        if token.len() > MAX_TOKEN {
            return None;
        }
        let (body, tag) = token.split_once('.')?;
        let json = B64.decode(body).ok()?;
        let tag = B64.decode(tag).ok()?;
        let mut mac = self.mac(purpose.as_str());
        mac.update(&json);
        mac.verify_slice(&tag).ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// A value derived from the key for `label` (a preview's password, a repository's bypass
    /// token): the same on every restart, different per label, unguessable without the key.
    pub fn derive(&self, label: &str) -> String {
        let mut mac = self.mac("derive");
        mac.update(label.as_bytes());
        let tag = mac.finalize().into_bytes();
        B64.encode(&tag[..18])
    }

    /// Whether `given` equals `expected`, in time that does not depend on where they differ
    /// (both are MACed with this key and the tags compared with `verify_slice`).
    pub fn same(&self, given: &str, expected: &str) -> bool {
        let mut a = self.mac("compare");
        a.update(expected.as_bytes());
        let want = a.finalize().into_bytes();
        let mut b = self.mac("compare");
        b.update(given.as_bytes());
        b.verify_slice(&want).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct C {
        u: String,
        exp: u64,
    }

    #[test]
    fn a_token_opens_only_with_its_key_and_purpose() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let c = C {
            u: "octocat".into(),
            exp: 5,
        };
        let t = s.sign(Purpose::Session, &c);
        assert_eq!(s.verify::<C>(Purpose::Session, &t), Some(c));
        assert_eq!(s.verify::<C>(Purpose::Ticket, &t), None, "another purpose");
        let other = Signer::new(b"another key, just as long as the first");
        assert_eq!(other.verify::<C>(Purpose::Session, &t), None, "another key");
        // The body changed, the tag kept: refused.
        let (_, tag) = t.split_once('.').unwrap();
        let forged = format!("{}.{tag}", B64.encode(br#"{"u":"admin","exp":5}"#));
        assert_eq!(s.verify::<C>(Purpose::Session, &forged), None);
        for junk in ["", ".", "a.b", "..", &"x".repeat(5000)] {
            assert_eq!(s.verify::<C>(Purpose::Session, junk), None);
        }
    }

    #[test]
    fn derived_values_are_stable_and_distinct() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        assert_eq!(s.derive("password\0a"), s.derive("password\0a"));
        assert_ne!(s.derive("password\0a"), s.derive("password\0b"));
        assert_eq!(s.derive("x").len(), 24);
        assert!(s.same("abc", "abc") && !s.same("abd", "abc") && !s.same("", "abc"));
    }
}
