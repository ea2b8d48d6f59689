//! Who may see a preview: the access mode a preview gets, the key that signs sessions and
//! derives passwords, the bypass token for automation, and the return addresses a sign-in may
//! send a browser to. The gateway asks `edge` about each request to a protected preview; this
//! module holds the rules `edge` applies. Nothing here serves HTTP or talks to Docker, and no
//! secret (key, password, token, cookie) is ever logged or put in an error.

pub mod page;
pub mod target;
pub mod token;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

pub use crate::config::AccessMode;
use crate::config::Config;
use crate::forge::{ForgeKind, Repo, oauth};
use crate::ids::PreviewId;
use token::Signer;

pub use crate::engine::{PASSWORD_USER, Password};
/// The header automation sends the bypass token in (never a query string: those are logged).
pub const TOKEN_HEADER: &str = "x-previewd-token";

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read or create the session key {path}: {source}")]
    Key {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The key and the operator's bypass token.
#[derive(Clone)]
pub struct Keys {
    signer: Signer,
    bypass: Option<SecretString>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// The header of previewd's own requests through the gateway (health checks): its value,
/// [`gateway_pass`], lets them past the check without previewd's edge, so `previewd up`
/// works without `serve`. The gateway takes it off before the preview sees the request.
pub const PASS_HEADER: &str = "x-previewd-pass";

/// The gateway pass: derived from the key, so the same in `serve`, the CLI and the gateway's
/// config; `None` when the key cannot be read (the checks then meet the sign-in like anyone,
/// and say so). Every preview may be protected (a repository may tighten the operator's mode),
/// so there is always one.
pub fn gateway_pass(config: &Config) -> Option<String> {
    match Keys::load(config) {
        Ok(k) => Some(k.signer.derive("gateway-pass")),
        Err(e) => {
            tracing::warn!(error = %e, "no gateway pass for health checks");
            None
        }
    }
}

/// The password of preview `id` when `mode` (its label) is `password`; `None` otherwise or
/// when the key cannot be read.
pub fn password_of(config: &Config, id: &PreviewId, mode: Option<AccessMode>) -> Option<Password> {
    if mode != Some(AccessMode::Password) {
        return None;
    }
    match Keys::load(config) {
        Ok(k) => Some(Password::new(k.password(id))),
        Err(e) => {
            tracing::warn!(error = %e, "cannot derive the preview's password");
            None
        }
    }
}

/// `status --json`'s `"access"` when the preview's label names a mode: `{"mode": ...}`, and
/// in `password` mode the user and the preview's password (what the sticky comment shows).
pub fn status_json(
    mode: Option<AccessMode>,
    password: Option<&Password>,
) -> Option<serde_json::Value> {
    let mut v = serde_json::json!({"mode": mode?.as_str()});
    if let Some(p) = password {
        v["user"] = PASSWORD_USER.into();
        v["password"] = p.expose().into();
    }
    Some(v)
}

/// Where the key lives when `access.session_secret` is not set: the instance's directory,
/// not the one shared with the gateway.
pub fn key_path(config: &Config) -> PathBuf {
    config.instance_dir().join("access.key")
}

impl Keys {
    /// `access.session_secret`, else the key kept in [`key_path`], made on first use: sessions
    /// and passwords stay valid across restarts, and `serve` and the CLI derive the same
    /// passwords.
    pub fn load(config: &Config) -> Result<Keys, AccessError> {
        let signer = match &config.access.session_secret {
            Some(s) => Signer::new(s.expose_secret().as_bytes()),
            None => {
                let path = key_path(config);
                let key = read_or_create(&path).map_err(|source| AccessError::Key {
                    path: path.clone(),
                    source,
                })?;
                Signer::new(key.as_bytes())
            }
        };
        Ok(Keys {
            signer,
            bypass: config.access.bypass_token.clone(),
        })
    }

    /// Keys from a known secret (tests, benchmarks).
    pub fn from_secret(secret: &str, bypass: Option<&str>) -> Keys {
        Keys {
            signer: Signer::new(secret.as_bytes()),
            bypass: bypass.map(|b| SecretString::from(b.to_owned())),
        }
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The basic-auth password of `password` preview `id`: derived, never stored.
    pub fn password(&self, id: &PreviewId) -> String {
        self.signer.derive(&format!("password\0{id}"))
    }

    /// The bypass token of one repository's previews: opens those and no other repository's.
    pub fn repo_token(&self, forge: ForgeKind, repo: &Repo) -> String {
        self.signer.derive(&format!("bypass\0{forge}\0{repo}"))
    }

    /// Whether `given` (an `X-Previewd-Token` value) opens previews of `repo`: the operator's
    /// token opens every preview, a repository's own token only its own.
    pub fn bypass_ok(&self, given: &str, repo: Option<(ForgeKind, &Repo)>) -> bool {
        let operator = self
            .bypass
            .as_ref()
            .is_some_and(|b| self.signer.same(given, b.expose_secret()));
        let own = repo.is_some_and(|(f, r)| self.signer.same(given, &self.repo_token(f, r)));
        operator | own
    }
}

/// 256 bits from nanoid's generator (rand's `ThreadRng`, a CSPRNG seeded by the OS), written
/// with mode 0600; a file another process made first wins.
fn read_or_create(path: &std::path::Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(k) if k.trim().len() >= 32 => return Ok(k.trim().to_owned()),
        Ok(_) => {
            return Err(std::io::Error::other(
                "the file is shorter than 32 characters",
            ));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = nanoid::nanoid!(43);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(key.as_bytes())?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path)?.trim().to_owned())
        }
        Err(e) => Err(e),
    }
}

/// Whether the gateway asks previewd about every request to every preview: the operator's
/// settings may protect any preview. When not, it asks only about previews whose label says
/// they are protected (a repository tightened `public`). A pure function of the operator's
/// settings, like the rest of the gateway's config.
pub fn gateway_checks(config: &Config) -> bool {
    match config.access.mode {
        Some(AccessMode::Public) => false,
        Some(_) => true,
        None => ForgeKind::ALL
            .into_iter()
            .any(|k| oauth::client_of(config, k).is_some()),
    }
}

/// Whether a visitor may sign in with a forge: some preview may be in `forge` mode, by the
/// operator's settings or a repository's asking, with a forge's OAuth client to sign in with.
pub fn signs_in(config: &Config) -> bool {
    gateway_checks(config)
        || ForgeKind::ALL
            .into_iter()
            .any(|k| oauth::client_of(config, k).is_some())
}

/// The mode a preview is deployed with and labelled (`dev.previewd.access`): the operator's
/// `access.mode` tightened by the repository's `asked`; `None` when neither says (the edge
/// then decides from the repository's visibility).
pub fn deployed_mode(config: &Config, asked: Option<AccessMode>) -> Option<AccessMode> {
    config.access.mode.max(asked)
}

/// Why a repository's asking for `forge` (`asked`, from its config file `file`, under
/// `key`) cannot be honoured for a preview of `forge`'s repository (`None`: `previewd up`):
/// the visitor would be sent to a sign-in that cannot happen, so nobody could open the
/// preview. The deployment is refused with this sentence rather than made unopenable, or
/// quietly opened with another mode than the one asked for. `None` when it can be honoured
/// (or was not asked for: the operator's own `forge` is the operator's to set up).
pub fn unservable(
    config: &Config,
    forge: Option<ForgeKind>,
    asked: Option<AccessMode>,
    file: &str,
    key: &str,
) -> Option<String> {
    if asked != Some(AccessMode::Forge) {
        return None;
    }
    match forge {
        Some(k) if oauth::client_of(config, k).is_some() => None,
        Some(k) => Some(format!(
            "{file}: `{key}: forge` asks visitors to sign in with {title}, but this previewd has \
             no {title} OAuth client (the operator's `{section}.oauth_client_id` and \
             `oauth_client_secret`, docs/access.md), so nobody could open the preview: use \
             `{key}: password`, or ask the operator to set one up",
            title = k.title(),
            section = k.as_str(),
        )),
        None => Some(format!(
            "{file}: `{key}: forge` asks visitors to sign in with the repository's forge, but a \
             preview made with `previewd up` belongs to no forge repository, so nobody could \
             open it: use `{key}: password`"
        )),
    }
}

/// The mode of a preview of `forge`'s repository (`None`: a preview no forge asked for).
/// `private`: whether the repository is private, when known. Unset mode: forge for private
/// repositories whose forge has an OAuth client, else public.
pub fn mode_for(config: &Config, forge: Option<ForgeKind>, private: bool) -> AccessMode {
    match config.access.mode {
        Some(m) => m,
        None if private && forge.is_some_and(|k| oauth::client_of(config, k).is_some()) => {
            AccessMode::Forge
        }
        None => AccessMode::Public,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_token_opens_its_own_repository_only() {
        let k = Keys::from_secret("0123456789abcdef-secret", Some("operator-token-123456"));
        let a = Repo::parse("octo/a").unwrap();
        let b = Repo::parse("octo/b").unwrap();
        let t = k.repo_token(ForgeKind::GitHub, &a);
        assert!(k.bypass_ok(&t, Some((ForgeKind::GitHub, &a))));
        assert!(!k.bypass_ok(&t, Some((ForgeKind::GitHub, &b))));
        assert!(!k.bypass_ok(&t, Some((ForgeKind::Gitea, &a))));
        assert!(k.bypass_ok("operator-token-123456", Some((ForgeKind::GitHub, &b))));
        assert!(k.bypass_ok("operator-token-123456", None));
        assert!(!k.bypass_ok("", None));
    }

    #[test]
    fn status_shows_the_password_that_basic_auth_wants() {
        let config = |mode: &str| {
            let env: Vec<(String, String)> = [
                ("PREVIEWD_ACCESS_MODE", mode),
                (
                    "PREVIEWD_ACCESS_SESSION_SECRET",
                    "status-test-secret-0123456789",
                ),
                // `forge` needs a client to sign in with (refused at load otherwise).
                ("PREVIEWD_GITHUB_OAUTH_CLIENT_ID", "client"),
                ("PREVIEWD_GITHUB_OAUTH_CLIENT_SECRET", "client-secret"),
            ]
            .iter()
            .filter(|(k, v)| !v.is_empty() && (mode == "forge" || !k.contains("OAUTH")))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            Config::from_parts(None, std::path::Path::new("t"), &env).unwrap()
        };
        let id = PreviewId::parse("abcde12345").unwrap();
        let c = config("password");
        let mode = deployed_mode(&c, None);
        let password = password_of(&c, &id, mode);
        let v = status_json(mode, password.as_ref()).unwrap();
        let want = Keys::load(&c).unwrap().password(&id);
        assert_eq!(
            v,
            serde_json::json!({"mode": "password", "user": "preview", "password": want})
        );
        assert_eq!(format!("{:?}", password.unwrap()), "Password(..)");
        let f = config("forge");
        let mode = deployed_mode(&f, None);
        assert_eq!(
            status_json(mode, password_of(&f, &id, mode).as_ref()).unwrap(),
            serde_json::json!({"mode": "forge"})
        );
        // A repository's `password` under the operator's default: the label, and a password.
        let d = config("");
        let mode = deployed_mode(&d, Some(AccessMode::Password));
        assert_eq!(mode, Some(AccessMode::Password));
        assert!(password_of(&d, &id, mode).is_some());
        assert!(status_json(deployed_mode(&d, None), None).is_none());
    }

    #[test]
    fn forge_asked_where_nobody_can_sign_in_is_refused_naming_the_key() {
        let config = |env: &[(&str, &str)]| {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Config::from_parts(None, std::path::Path::new("t"), &env).unwrap()
        };
        let none = config(&[]);
        let github = config(&[
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_ID", "client"),
            ("PREVIEWD_GITHUB_OAUTH_CLIENT_SECRET", "client-secret"),
        ]);
        let forge = Some(AccessMode::Forge);
        let why = unservable(
            &none,
            Some(ForgeKind::GitHub),
            forge,
            ".previewd.yml",
            "access",
        )
        .expect("refused");
        assert!(
            why.starts_with(".previewd.yml: `access: forge`")
                && why.contains("`github.oauth_client_id`")
                && why.contains("use `access: password`"),
            "{why}"
        );
        assert_eq!(
            unservable(&github, Some(ForgeKind::GitHub), forge, "f", "access"),
            None
        );
        // GitHub's client signs nobody in to a GitLab repository's preview.
        let why = unservable(&github, Some(ForgeKind::GitLab), forge, "f", "access").unwrap();
        assert!(why.contains("GitLab OAuth client"), "{why}");
        let why = unservable(&github, None, forge, "compose.yaml", "x-previewd.access").unwrap();
        assert!(
            why.contains("`previewd up`") && why.contains("`x-previewd.access: password`"),
            "{why}"
        );
        // Only an ask for `forge` is refused: the operator's own mode is the operator's.
        for asked in [None, Some(AccessMode::Public), Some(AccessMode::Password)] {
            assert_eq!(unservable(&none, None, asked, "f", "access"), None);
        }
    }

    #[test]
    fn the_key_file_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x/access.key");
        let a = read_or_create(&p).unwrap();
        let b = read_or_create(&p).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 43);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
