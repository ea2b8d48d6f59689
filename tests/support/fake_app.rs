//! The fake GitHub as a GitHub App's host, and the test's App key. The RSA key is generated in
//! the test process (never committed); its private half is written to a temporary file for
//! `github.private_key_path`. Once `FakeGitHub::enable_app` is called, the App endpoints
//! accept only a JWT whose RS256 signature checks out with the public key and whose claims
//! GitHub would take (`iss` the app id, `iat` backdated about 60 s, `exp` in the next 10
//! minutes), and every other endpoint accepts only an installation token the fake handed
//! out and that has not expired. Anything else is a violation, answered 401.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::fake_github::FakeGitHub;

pub const APP_ID: u64 = 1_234_567;
pub const INSTALLATION_ID: u64 = 4242;

/// A test RSA key pair.
pub struct TestKey {
    pub private_pem: String,
    pub public: RsaPublicKey,
}

fn generate() -> TestKey {
    let mut rng = rsa::rand_core::OsRng;
    let private = RsaPrivateKey::new(&mut rng, 2048).expect("generate an RSA key");
    let private_pem = private
        .to_pkcs1_pem(LineEnding::LF)
        .expect("PEM-encode the key")
        .to_string();
    TestKey {
        public: private.to_public_key(),
        private_pem,
    }
}

/// The App's key, made once per test binary.
pub fn app_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(generate)
}

/// Another key: a JWT it signs must be refused.
pub fn other_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(generate)
}

/// Writes `key`'s private half to a file in `dir`; returns its path.
pub fn write_key(dir: &std::path::Path, key: &TestKey) -> String {
    let path = dir.join("app.pem");
    std::fs::write(&path, &key.private_pem).expect("write the test key");
    path.to_string_lossy().into_owned()
}

/// A token the fake handed out.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub installation: u64,
    pub expires_at: SystemTime,
    pub revoked: bool,
}

/// The fake's App state.
pub struct AppAuth {
    pub app_id: u64,
    pub public: RsaPublicKey,
    /// How long the next tokens live.
    pub token_ttl: Duration,
    pub issued: Vec<Issued>,
    /// The claims of every JWT that was accepted.
    pub jwts: Vec<Value>,
}

impl FakeGitHub {
    /// From now on, the fake is an App's GitHub (see the module docs).
    pub fn enable_app(&self, public: &RsaPublicKey) {
        self.lock().app = Some(AppAuth {
            app_id: APP_ID,
            public: public.clone(),
            token_ttl: Duration::from_secs(3600),
            issued: Vec::new(),
            jwts: Vec::new(),
        });
    }

    pub fn set_token_ttl(&self, ttl: Duration) {
        if let Some(app) = self.lock().app.as_mut() {
            app.token_ttl = ttl;
        }
    }

    /// Revokes every token handed out so far (GitHub then answers 401).
    pub fn revoke_tokens(&self) {
        if let Some(app) = self.lock().app.as_mut() {
            app.issued.iter_mut().for_each(|t| t.revoked = true);
        }
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.lock()
            .app
            .as_ref()
            .map(|a| a.issued.clone())
            .unwrap_or_default()
    }

    pub fn jwts(&self) -> Vec<Value> {
        self.lock()
            .app
            .as_ref()
            .map(|a| a.jwts.clone())
            .unwrap_or_default()
    }
}

/// Why a request's credentials were refused; `violation` when previewd should never send it.
pub struct Refusal {
    pub message: String,
    pub violation: bool,
}

fn is_app_endpoint(op: &str) -> bool {
    matches!(
        op,
        "apps/get-repo-installation" | "apps/create-installation-access-token"
    )
}

/// Checks a request's `Authorization` when the fake is an App's GitHub.
pub fn check(app: &mut AppAuth, op: &str, authorization: Option<&str>) -> Result<(), Refusal> {
    let refuse = |message: String| Refusal {
        message,
        violation: true,
    };
    let Some(credential) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return Err(refuse(format!("{op}: no Bearer authorization")));
    };
    if is_app_endpoint(op) {
        let claims = verify_jwt(&app.public, credential, app.app_id).map_err(refuse)?;
        app.jwts.push(claims);
        return Ok(());
    }
    let Some(t) = app.issued.iter().find(|t| t.token == credential) else {
        return Err(refuse(format!("{op}: not an installation token")));
    };
    if t.revoked {
        return Err(Refusal {
            message: "Bad credentials".into(),
            violation: false,
        });
    }
    if t.expires_at <= SystemTime::now() {
        return Err(refuse(format!("{op}: an expired installation token")));
    }
    Ok(())
}

/// The answers of the two App endpoints.
pub fn answer(gh: &FakeGitHub, op: &str, installation: Option<u64>) -> Option<(u16, Value)> {
    let mut st = gh.lock();
    let app = st.app.as_mut()?;
    match op {
        "apps/get-repo-installation" => Some((200, json!({"id": INSTALLATION_ID}))),
        "apps/create-installation-access-token" => {
            if installation != Some(INSTALLATION_ID) {
                return Some((404, json!({"message": "Not Found"})));
            }
            let n = app.issued.len() + 1;
            let token = format!("ghs_test{n:04}");
            let expires_at = SystemTime::now() + app.token_ttl;
            app.issued.push(Issued {
                token: token.clone(),
                installation: INSTALLATION_ID,
                expires_at,
                revoked: false,
            });
            let secs = expires_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let at = time::OffsetDateTime::from_unix_timestamp(secs as i64)
                .expect("a time")
                .format(&time::format_description::well_known::Rfc3339)
                .expect("RFC 3339");
            Some((201, json!({"token": token, "expires_at": at})))
        }
        _ => None,
    }
}

/// Verifies an RS256 JWT with `public`, independently of the code under test (plain
/// PKCS#1 v1.5 over SHA-256), and the claims GitHub checks. Returns the claims.
pub fn verify_jwt(public: &RsaPublicKey, jwt: &str, app_id: u64) -> Result<Value, String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("a JWT has three parts".into());
    };
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| format!("base64: {e}"))
    };
    let header: Value =
        serde_json::from_slice(&decode(header)?).map_err(|e| format!("header: {e}"))?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {} is not RS256", header["alg"]));
    }
    // DER prefix of a SHA-256 DigestInfo (RFC 8017, section 9.2).
    const SHA256_PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let signed = &jwt[..jwt.rfind('.').expect("three parts")];
    let mut digest_info = SHA256_PREFIX.to_vec();
    digest_info.extend_from_slice(&Sha256::digest(signed.as_bytes()));
    public
        .verify(
            Pkcs1v15Sign::new_unprefixed(),
            &digest_info,
            &decode(signature)?,
        )
        .map_err(|_| "the JWT's signature does not match the App's public key".to_owned())?;
    let claims: Value =
        serde_json::from_slice(&decode(claims)?).map_err(|e| format!("claims: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err("iat and exp must be numbers".into());
    };
    let iss_ok = claims["iss"].as_u64() == Some(app_id)
        || claims["iss"].as_str() == Some(&app_id.to_string());
    if !iss_ok {
        return Err(format!("iss {} is not the app id", claims["iss"]));
    }
    // Backdated by about 60 s (a slow test machine may add a few seconds).
    if !(50..=90).contains(&(now - iat)) {
        return Err(format!("iat is {} s before now, not about 60", now - iat));
    }
    if exp <= now || exp - now > 600 {
        return Err(format!(
            "exp is {} s ahead, not within 10 minutes",
            exp - now
        ));
    }
    Ok(claims)
}
