//! The operator's config: `previewd.toml`, overridden key by key from the environment as
//! `PREVIEWD_<SECTION>_<KEY>` (or `PREVIEWD_<KEY>` for top-level keys). With no file and no
//! variables the defaults serve a local trial. This is the one place secrets are read; they are
//! `SecretString`s from here on and never printed.

mod access;
pub mod builds;
mod cluster;
pub mod egress;
mod explain;
mod keys;
mod settle;
mod units;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::ids::Instance;
pub use access::{AccessConfig, AccessMode, OAuthClient};
pub use cluster::{ClusterConfig, Engine, Registry};
pub use explain::{Explained, Origin, Setting};
#[cfg(feature = "fault-injection")]
pub use keys::FAULT_PAUSE_AT;
pub use keys::{KEYS, Key, Kind, PROCESS_SETTINGS};
use settle::RawConfig;
pub use units::parse_bytes;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

/// The whole operator config, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub instance: Instance,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// What one client may hold of `listen` and `admin_listen`.
    pub server: ServerLimits,
    pub data_dir: PathBuf,
    pub gateway: GatewayConfig,
    pub limits: Limits,
    pub triggers: Triggers,
    pub github: GithubConfig,
    /// `[gitea]` (Gitea and Forgejo), when its `url` is set.
    pub gitea: Option<ForgeConfig>,
    /// `[gitlab]`, when its `url` is set.
    pub gitlab: Option<ForgeConfig>,
    pub network: NetworkConfig,
    /// `[access]`: who may see a preview.
    pub access: AccessConfig,
    /// `[cluster]`: one Docker host (the default) or a Docker Swarm.
    pub cluster: ClusterConfig,
    /// `[build_secrets]`: what each repository's `RUN --mount=type=secret` steps get.
    pub build_secrets: builds::BuildSecrets,
}

/// A forge section other than GitHub's (`[gitea]`, `[gitlab]`): present once its `url` is
/// set; on (its route answers) when a webhook secret is set too.
#[derive(Debug, Clone)]
pub struct ForgeConfig {
    /// The forge's web address, without a trailing `/`; its API lives under it.
    pub url: String,
    pub token: Option<SecretString>,
    /// Several secrets may be active at once, so a secret can be rotated without downtime.
    pub webhook_secrets: Vec<SecretString>,
    /// Where repositories are cloned from (`url` unless set).
    pub git_url: String,
    pub status_context: String,
    /// Where visitors sign in: OAuth's authorize and token endpoints (`url` unless set).
    pub web_url: String,
    /// The OAuth application visitors sign in with (`access.mode = "forge"`).
    pub oauth: Option<OAuthClient>,
}

/// Bounds on what one client of previewd's own listeners may hold, so slow or abusive clients
/// cannot keep a real delivery from being answered (docs/SECURITY.md, "Slow clients").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// From a request's headers to its answer: the body and the handler.
    pub body_timeout: Duration,
    /// A connection with no byte of a request: just connected, or answered and kept alive.
    pub idle_timeout: Duration,
    /// Open connections per listener; at the cap the oldest connection with nothing in
    /// progress (then the oldest request) is closed for the new one.
    pub max_connections: usize,
}

/// How preview networks get their addresses.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Address range previewd carves preview networks from itself; `None` leaves it to
    /// Docker's default pools, which hold only ~31 bridge networks.
    pub subnet_pool: Option<SubnetPool>,
}

/// An IPv4 range and the prefix length of each network taken from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetPool {
    pub base: std::net::Ipv4Addr,
    pub prefix: u8,
    pub size: u8,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub image: String,
    /// Host port the gateway publishes (on `bind`).
    pub port: u16,
    /// Host address the published port binds to.
    pub bind: String,
    pub domain: String,
    /// e.g. `https://{id}.preview.example.com`; overrides the URL shown in reports.
    pub public_url: Option<String>,
    /// Keep the gateway running when the last preview goes.
    pub keep_running: bool,
    /// How the gateway serves HTTPS, if at all.
    pub tls: Tls,
    /// Host port for HTTPS (when `tls` is not off).
    pub tls_port: u16,
    /// What a visitor's connection may hold of the gateway.
    pub timeouts: GatewayTimeouts,
}

/// Caddy's server timeouts; `None` leaves Caddy's own default (no limit for reads and writes,
/// 1 minute for headers, 5 minutes idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayTimeouts {
    pub read_header: Option<Duration>,
    /// The whole request, body included (uploads longer than this are cut).
    pub read: Option<Duration>,
    /// The whole response: off by default, or downloads and event streams would be cut.
    pub write: Option<Duration>,
    pub idle: Option<Duration>,
}

/// The three ways to give previews HTTPS (docs/tls.md).
#[derive(Debug, Clone, PartialEq)]
pub enum Tls {
    /// Plain HTTP; TLS, if any, is terminated in front of the gateway (a CDN, a load balancer).
    Off,
    /// Caddy gets a certificate for each preview host at its first handshake, and only for
    /// hosts of live previews. `issuer` is `acme` (Let's Encrypt) or `internal` (Caddy's own CA).
    OnDemand {
        issuer: String,
        email: Option<String>,
    },
    /// One operator-supplied wildcard certificate for `*.<domain>`.
    Wildcard {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

/// The default of `limits.max_queued`, also the queue's when it is built without a config
/// (a test holds it to the key table's default).
pub const DEFAULT_MAX_QUEUED: usize = 1000;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Memory limit per container, in bytes.
    pub memory: i64,
    pub cpus: f64,
    pub pids: i64,
    pub max_previews: usize,
    pub ttl: Duration,
    pub keep_label: String,
    pub build_timeout: Duration,
    pub health_timeout: Duration,
    /// Previews (repository, branch) the queue works on at once; at least 1.
    pub parallel: usize,
    /// Intents queued or running beyond which a webhook is answered 503; at least 1.
    pub max_queued: usize,
    /// What previews and their builds may reach on the network.
    pub egress: egress::Egress,
    /// The BuildKit cache kept, and the processes and memory of builds.
    pub builds: builds::BuildLimits,
    /// No request through the gateway for this long puts a preview to sleep; `None`: never.
    pub idle_sleep: Option<Duration>,
    /// Lower-case User-Agent words that, beside the built-in list, never wake a preview.
    pub crawler_agents: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Triggers {
    pub labels: Vec<String>,
    pub branches: Vec<String>,
    pub command: String,
    pub allow_forks: bool,
}

#[derive(Debug, Clone)]
pub struct GithubConfig {
    /// Several secrets may be active at once, so a secret can be rotated without downtime.
    pub webhook_secrets: Vec<SecretString>,
    pub token: Option<SecretString>,
    pub app_id: Option<u64>,
    pub private_key_path: Option<PathBuf>,
    pub api_url: String,
    pub git_url: String,
    pub status_context: String,
    /// `{web_url}/login/oauth/...`: where visitors sign in.
    pub web_url: String,
    pub oauth: Option<OAuthClient>,
}

impl Config {
    /// Finds the config file, then layers it and the process environment over the defaults.
    /// An explicit `path` (`--config`, `PREVIEWD_CONFIG`) must exist; otherwise the first of
    /// [`search_path`] that exists is read, and none at all means the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_located(path).map(|(config, _)| config)
    }

    /// [`Config::load`], also saying which file it read (`None`: defaults and the
    /// environment only), for the commands that tell the operator.
    pub fn load_located(path: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let found = locate(path);
        let text = found.as_deref().map(read).transpose()?;
        match &found {
            Some(p) => tracing::debug!(file = %p.display(), "config file loaded"),
            None => tracing::debug!("no config file: defaults and the environment"),
        }
        let shown = found
            .clone()
            .unwrap_or_else(|| PathBuf::from("previewd.toml"));
        let config = Config::from_layers(text.as_deref(), &shown, std::env::vars_os())?;
        Ok((config, found))
    }

    /// Builds the config from a file's text and an environment, without touching the process
    /// environment (so tests can run in parallel).
    pub fn from_parts(
        text: Option<&str>,
        path: &Path,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.into(), v.into()));
        Config::from_layers(text, path, env)
    }

    /// Defaults, then the file, then the environment: one TOML table, read into the config's
    /// shape once, then checked.
    fn from_layers(
        text: Option<&str>,
        path: &Path,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut table = keys::defaults();
        if let Some(text) = text {
            // The file alone first, so a wrong key or type is reported with its line.
            toml::from_str::<RawConfig>(text).map_err(parse_error)?;
            let file: toml::Table = toml::from_str(text).map_err(parse_error)?;
            merge(&mut table, file);
        }
        let applied = keys::apply_env(&mut table, env)?;
        let raw = RawConfig::deserialize(table).map_err(|e| {
            // A value the file did not have came from a variable: name it.
            let var = applied.iter().find(|(_, key, value)| {
                let mut alone = keys::defaults();
                keys::set(&mut alone, key.name, value.clone());
                RawConfig::deserialize(alone).is_err()
            });
            match var {
                Some((var, _, _)) => ConfigError::Env {
                    var: var.clone(),
                    reason: e.to_string(),
                },
                None => parse_error(e),
            }
        })?;
        raw.settle()
    }

    /// The section of `forge`, when it is set (GitHub's always is: it has defaults).
    pub fn forge_section(&self, forge: crate::ids::ForgeKind) -> Option<ForgeSection<'_>> {
        use crate::ids::ForgeKind;
        match forge {
            ForgeKind::GitHub => Some(ForgeSection {
                git_url: &self.github.git_url,
                webhook_secrets: &self.github.webhook_secrets,
                token_set: self.github.token.is_some() || self.github.app_id.is_some(),
            }),
            ForgeKind::Gitea => self.gitea.as_ref().map(ForgeSection::of),
            ForgeKind::GitLab => self.gitlab.as_ref().map(ForgeSection::of),
        }
    }

    /// The forges whose webhook route is on: a webhook secret is set (and, but for GitHub,
    /// a url).
    pub fn enabled_forges(&self) -> Vec<crate::ids::ForgeKind> {
        crate::ids::ForgeKind::ALL
            .into_iter()
            .filter(|k| {
                self.forge_section(*k)
                    .is_some_and(|s| !s.webhook_secrets.is_empty())
            })
            .collect()
    }

    /// The URL people are given for a preview.
    pub fn preview_url(&self, id: &crate::ids::PreviewId) -> String {
        self.gateway_url(id.as_str())
    }

    /// The URL of the gateway's host `<label>.<domain>`, shaped like a preview's (the sign-in
    /// host `auth` is one).
    pub fn gateway_url(&self, label: &str) -> String {
        let g = &self.gateway;
        match &g.public_url {
            Some(template) => template.replace("{id}", label),
            None if g.tls != Tls::Off && g.tls_port == 443 => {
                format!("https://{label}.{}", g.domain)
            }
            None if g.tls != Tls::Off => format!("https://{label}.{}:{}", g.domain, g.tls_port),
            None if self.gateway.port == 80 => format!("http://{label}.{}", self.gateway.domain),
            None => format!(
                "http://{label}.{}:{}",
                self.gateway.domain, self.gateway.port
            ),
        }
    }

    /// Where a repository's clone, worktrees and the gateway's admin socket live.
    pub fn instance_dir(&self) -> PathBuf {
        self.data_dir.join(self.instance.as_str())
    }
}

/// What every forge's section says in common, for `serve`'s checks and the webhook routes.
#[derive(Debug, Clone, Copy)]
pub struct ForgeSection<'a> {
    pub git_url: &'a str,
    pub webhook_secrets: &'a [SecretString],
    /// A token (or a GitHub App) is set.
    pub token_set: bool,
}

impl<'a> ForgeSection<'a> {
    fn of(c: &'a ForgeConfig) -> ForgeSection<'a> {
        ForgeSection {
            git_url: &c.git_url,
            webhook_secrets: &c.webhook_secrets,
            token_set: c.token.is_some(),
        }
    }
}

/// Where a config file is looked for when none is named, in order.
pub fn search_path() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("previewd.toml")];
    if let Some(dir) = dirs::config_dir() {
        paths.push(dir.join("previewd/previewd.toml"));
    }
    paths.push(PathBuf::from("/etc/previewd/previewd.toml"));
    paths
}

/// The config file to read: the one named, else the first of [`search_path`] that exists.
fn locate(path: Option<&Path>) -> Option<PathBuf> {
    match path {
        Some(p) => Some(p.to_path_buf()),
        None => search_path().into_iter().find(|p| p.is_file()),
    }
}

/// Lays `over`'s keys over `base`'s, section by section.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn read(p: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
        path: p.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;
