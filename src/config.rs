//! The operator's config: `previewd.toml`, overridden key by key from the environment as
//! `PREVIEWD_<SECTION>_<KEY>` (or `PREVIEWD_<KEY>` for top-level keys). With no file and no
//! variables the defaults serve a local trial. This is the one place secrets are read; they are
//! `SecretString`s from here on and never printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::ids::Instance;

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
    pub data_dir: PathBuf,
    pub gateway: GatewayConfig,
    pub limits: Limits,
    pub triggers: Triggers,
    pub github: GithubConfig,
    pub network: NetworkConfig,
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
}

// ---- the file's shape: every field optional, so a partial file and the env can fill in ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    instance: Option<String>,
    listen: Option<String>,
    admin_listen: Option<String>,
    data_dir: Option<String>,
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    triggers: RawTriggers,
    #[serde(default)]
    github: RawGithub,
    #[serde(default)]
    network: RawNetwork,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    /// e.g. `10.213.0.0/16`.
    subnet_pool: Option<String>,
    /// Prefix length of each preview network, e.g. 24.
    subnet_size: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    image: Option<String>,
    port: Option<u16>,
    bind: Option<String>,
    domain: Option<String>,
    public_url: Option<String>,
    keep_running: Option<bool>,
    /// `off`, `on_demand` or `wildcard`.
    tls: Option<String>,
    tls_port: Option<u16>,
    /// For on_demand: `acme` (default) or `internal`.
    tls_issuer: Option<String>,
    acme_email: Option<String>,
    /// For wildcard: PEM files on this host.
    cert_file: Option<String>,
    key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<String>,
    cpus: Option<f64>,
    pids: Option<i64>,
    max_previews: Option<usize>,
    ttl: Option<String>,
    keep_label: Option<String>,
    build_timeout: Option<String>,
    health_timeout: Option<String>,
    parallel: Option<usize>,
    max_queued: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTriggers {
    labels: Option<Vec<String>>,
    branches: Option<Vec<String>>,
    command: Option<String>,
    allow_forks: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    webhook_secret: Option<String>,
    /// Extra secrets still accepted during a rotation.
    webhook_secrets: Option<Vec<String>>,
    token: Option<String>,
    app_id: Option<u64>,
    private_key_path: Option<String>,
    api_url: Option<String>,
    git_url: Option<String>,
    status_context: Option<String>,
}

impl Config {
    /// Loads `path` (if given) and then the environment. A missing explicit file is an error;
    /// with no path, `./previewd.toml` is read when it exists.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let (text, shown) = match path {
            Some(p) => (Some(read(p)?), p.to_path_buf()),
            None => {
                let p = PathBuf::from("previewd.toml");
                if p.is_file() {
                    (Some(read(&p)?), p)
                } else {
                    (None, p)
                }
            }
        };
        Config::from_parts(text.as_deref(), &shown, &env)
    }

    /// Builds the config from a file's text and an environment, without touching the process
    /// environment (so tests can run in parallel).
    pub fn from_parts(
        text: Option<&str>,
        path: &Path,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = match text {
            Some(t) => toml::from_str(t).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?,
            None => RawConfig::default(),
        };
        apply_env(&mut raw, env)?;
        raw.validate()
    }

    /// The URL people are given for a preview.
    pub fn preview_url(&self, id: &crate::ids::PreviewId) -> String {
        let g = &self.gateway;
        match &g.public_url {
            Some(template) => template.replace("{id}", id.as_str()),
            None if g.tls != Tls::Off && g.tls_port == 443 => format!("https://{id}.{}", g.domain),
            None if g.tls != Tls::Off => format!("https://{id}.{}:{}", g.domain, g.tls_port),
            None if self.gateway.port == 80 => format!("http://{id}.{}", self.gateway.domain),
            None => format!("http://{id}.{}:{}", self.gateway.domain, self.gateway.port),
        }
    }

    /// Where a repository's clone, worktrees and the gateway's admin socket live.
    pub fn instance_dir(&self) -> PathBuf {
        self.data_dir.join(self.instance.as_str())
    }
}

fn read(p: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
        path: p.to_path_buf(),
        source,
    })
}

fn apply_env(raw: &mut RawConfig, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (var, value) in env {
        let Some(key) = var.strip_prefix("PREVIEWD_") else {
            continue;
        };
        let v = value.clone();
        let bad = |reason: String| ConfigError::Env {
            var: var.clone(),
            reason,
        };
        let parse_bool = |s: &str| match s {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            _ => Err(bad(format!("expected true or false, got {s:?}"))),
        };
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match key {
            "INSTANCE" => raw.instance = Some(v),
            "LISTEN" => raw.listen = Some(v),
            "ADMIN_LISTEN" => raw.admin_listen = Some(v),
            "DATA_DIR" => raw.data_dir = Some(v),
            "GATEWAY_IMAGE" => raw.gateway.image = Some(v),
            "GATEWAY_PORT" => {
                raw.gateway.port = Some(v.parse().map_err(|_| bad(format!("not a port: {v:?}")))?)
            }
            "GATEWAY_BIND" => raw.gateway.bind = Some(v),
            "GATEWAY_DOMAIN" => raw.gateway.domain = Some(v),
            "GATEWAY_PUBLIC_URL" => raw.gateway.public_url = Some(v),
            "GATEWAY_KEEP_RUNNING" => raw.gateway.keep_running = Some(parse_bool(&v)?),
            "GATEWAY_TLS" => raw.gateway.tls = Some(v),
            "GATEWAY_TLS_PORT" => {
                raw.gateway.tls_port =
                    Some(v.parse().map_err(|_| bad(format!("not a port: {v:?}")))?)
            }
            "GATEWAY_TLS_ISSUER" => raw.gateway.tls_issuer = Some(v),
            "GATEWAY_ACME_EMAIL" => raw.gateway.acme_email = Some(v),
            "GATEWAY_CERT_FILE" => raw.gateway.cert_file = Some(v),
            "GATEWAY_KEY_FILE" => raw.gateway.key_file = Some(v),
            "LIMITS_MEMORY" => raw.limits.memory = Some(v),
            "LIMITS_CPUS" => {
                raw.limits.cpus = Some(v.parse().map_err(|_| bad(format!("not a number: {v:?}")))?)
            }
            "LIMITS_PIDS" => {
                raw.limits.pids = Some(v.parse().map_err(|_| bad(format!("not a number: {v:?}")))?)
            }
            "LIMITS_MAX_PREVIEWS" => {
                raw.limits.max_previews =
                    Some(v.parse().map_err(|_| bad(format!("not a number: {v:?}")))?)
            }
            "LIMITS_PARALLEL" => {
                raw.limits.parallel =
                    Some(v.parse().map_err(|_| bad(format!("not a number: {v:?}")))?)
            }
            "LIMITS_MAX_QUEUED" => {
                raw.limits.max_queued =
                    Some(v.parse().map_err(|_| bad(format!("not a number: {v:?}")))?)
            }
            "LIMITS_TTL" => raw.limits.ttl = Some(v),
            "LIMITS_KEEP_LABEL" => raw.limits.keep_label = Some(v),
            "LIMITS_BUILD_TIMEOUT" => raw.limits.build_timeout = Some(v),
            "LIMITS_HEALTH_TIMEOUT" => raw.limits.health_timeout = Some(v),
            "TRIGGERS_LABELS" => raw.triggers.labels = Some(list(&v)),
            "TRIGGERS_BRANCHES" => raw.triggers.branches = Some(list(&v)),
            "TRIGGERS_COMMAND" => raw.triggers.command = Some(v),
            "TRIGGERS_ALLOW_FORKS" => raw.triggers.allow_forks = Some(parse_bool(&v)?),
            "GITHUB_WEBHOOK_SECRET" => raw.github.webhook_secret = Some(v),
            "GITHUB_WEBHOOK_SECRETS" => raw.github.webhook_secrets = Some(list(&v)),
            "GITHUB_TOKEN" => raw.github.token = Some(v),
            "GITHUB_APP_ID" => {
                raw.github.app_id =
                    Some(v.parse().map_err(|_| bad(format!("not a number: {v:?}")))?)
            }
            "GITHUB_PRIVATE_KEY_PATH" => raw.github.private_key_path = Some(v),
            "GITHUB_API_URL" => raw.github.api_url = Some(v),
            "GITHUB_GIT_URL" => raw.github.git_url = Some(v),
            "GITHUB_STATUS_CONTEXT" => raw.github.status_context = Some(v),
            "NETWORK_SUBNET_POOL" => raw.network.subnet_pool = Some(v),
            "NETWORK_SUBNET_SIZE" => {
                raw.network.subnet_size =
                    Some(v.parse().map_err(|_| bad(format!("not a number: {v:?}")))?)
            }
            // Variables of ours that are not config keys (e.g. PREVIEWD_LOG) are left alone.
            _ => {}
        }
    }
    Ok(())
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn duration(key: &str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let s = value.unwrap_or_else(|| default.to_owned());
    humantime::parse_duration(&s).map_err(|e| {
        invalid(
            key,
            format!("{s:?} is not a duration like 90s, 30m or 72h ({e})"),
        )
    })
}

fn addr(key: &str, value: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
    let s = value.unwrap_or_else(|| default.to_owned());
    s.parse()
        .map_err(|_| invalid(key, format!("{s:?} is not an address like 127.0.0.1:8080")))
}

/// Parses Docker-style sizes: `512m`, `1g`, `1048576`, `256k`.
pub fn parse_bytes(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1i64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<i64>().ok()?.checked_mul(mult)
}

fn expand_home(s: &str) -> PathBuf {
    match s.strip_prefix("~/") {
        Some(rest) => dirs::home_dir()
            .unwrap_or_else(|| PathBuf::from("/"))
            .join(rest),
        None => PathBuf::from(s),
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let instance = Instance::parse(self.instance.as_deref().unwrap_or("previewd"))
            .map_err(|e| invalid("instance", e.to_string()))?;
        let data_dir = match self.data_dir {
            Some(d) => expand_home(&d),
            None => dirs::data_local_dir()
                .unwrap_or_else(|| PathBuf::from("/var/lib"))
                .join("previewd"),
        };
        let g = self.gateway;
        let domain = g.domain.unwrap_or_else(|| "localhost".to_owned());
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(invalid(
                "gateway.domain",
                format!("{domain:?} is not a host name"),
            ));
        }
        if let Some(u) = &g.public_url
            && !u.contains("{id}")
        {
            return Err(invalid("gateway.public_url", "must contain {id}"));
        }
        let port = g.port.unwrap_or(8000);
        if port == 0 {
            return Err(invalid("gateway.port", "must be 1-65535"));
        }
        let tls = match g.tls.as_deref().unwrap_or("off") {
            "off" => Tls::Off,
            "on_demand" => {
                let issuer = g.tls_issuer.unwrap_or_else(|| "acme".to_owned());
                if issuer != "acme" && issuer != "internal" {
                    return Err(invalid("gateway.tls_issuer", "must be acme or internal"));
                }
                Tls::OnDemand {
                    issuer,
                    email: g.acme_email,
                }
            }
            "wildcard" => match (g.cert_file, g.key_file) {
                (Some(c), Some(k)) => Tls::Wildcard {
                    cert_file: expand_home(&c),
                    key_file: expand_home(&k),
                },
                _ => {
                    return Err(invalid(
                        "gateway.cert_file",
                        "tls = \"wildcard\" needs cert_file and key_file",
                    ));
                }
            },
            other => {
                return Err(invalid(
                    "gateway.tls",
                    format!("{other:?}: use off, on_demand or wildcard"),
                ));
            }
        };
        let tls_port = g.tls_port.unwrap_or(8443);
        if tls_port == 0 || (tls != Tls::Off && tls_port == port) {
            return Err(invalid(
                "gateway.tls_port",
                "must be 1-65535 and differ from gateway.port",
            ));
        }
        let gateway = GatewayConfig {
            image: g.image.unwrap_or_else(|| "caddy:2".to_owned()),
            port,
            bind: g.bind.unwrap_or_else(|| "127.0.0.1".to_owned()),
            domain,
            public_url: g.public_url,
            keep_running: g.keep_running.unwrap_or(false),
            tls,
            tls_port,
        };

        let l = self.limits;
        let memory_s = l.memory.unwrap_or_else(|| "512m".to_owned());
        let memory = parse_bytes(&memory_s)
            .filter(|m| *m >= 6 << 20)
            .ok_or_else(|| {
                invalid(
                    "limits.memory",
                    format!("{memory_s:?}: use e.g. 512m (at least 6m)"),
                )
            })?;
        let cpus = l.cpus.unwrap_or(1.0);
        if !(cpus > 0.0 && cpus <= 1024.0) {
            return Err(invalid("limits.cpus", "must be a positive number"));
        }
        let pids = l.pids.unwrap_or(512);
        if pids < 16 {
            return Err(invalid("limits.pids", "must be at least 16"));
        }
        let parallel = l.parallel.unwrap_or(2);
        if parallel == 0 {
            return Err(invalid("limits.parallel", "must be at least 1"));
        }
        let max_queued = l.max_queued.unwrap_or(crate::queue::DEFAULT_MAX_QUEUED);
        if max_queued == 0 {
            return Err(invalid("limits.max_queued", "must be at least 1"));
        }
        let limits = Limits {
            memory,
            cpus,
            pids,
            max_previews: l.max_previews.unwrap_or(20),
            ttl: duration("limits.ttl", l.ttl, "72h")?,
            keep_label: l.keep_label.unwrap_or_else(|| "preview:keep".to_owned()),
            build_timeout: duration("limits.build_timeout", l.build_timeout, "15m")?,
            health_timeout: duration("limits.health_timeout", l.health_timeout, "120s")?,
            parallel,
            max_queued,
        };

        let t = self.triggers;
        let triggers = Triggers {
            labels: t.labels.unwrap_or_else(|| vec!["preview".to_owned()]),
            branches: t.branches.unwrap_or_else(|| vec!["*/phase-*".to_owned()]),
            command: t.command.unwrap_or_else(|| "/preview".to_owned()),
            allow_forks: t.allow_forks.unwrap_or(false),
        };
        if !triggers.command.starts_with('/') || triggers.command.contains(char::is_whitespace) {
            return Err(invalid(
                "triggers.command",
                "must be one word starting with /",
            ));
        }

        let gh = self.github;
        let mut secrets: Vec<SecretString> = Vec::new();
        for s in gh
            .webhook_secret
            .into_iter()
            .chain(gh.webhook_secrets.unwrap_or_default())
        {
            if s.is_empty() {
                return Err(invalid("github.webhook_secret", "must not be empty"));
            }
            secrets.push(SecretString::from(s));
        }
        let github = GithubConfig {
            webhook_secrets: secrets,
            token: gh.token.filter(|t| !t.is_empty()).map(SecretString::from),
            app_id: gh.app_id,
            private_key_path: gh.private_key_path.map(|p| expand_home(&p)),
            api_url: gh
                .api_url
                .unwrap_or_else(|| "https://api.github.com".to_owned())
                .trim_end_matches('/')
                .to_owned(),
            git_url: gh
                .git_url
                .unwrap_or_else(|| "https://github.com".to_owned())
                .trim_end_matches('/')
                .to_owned(),
            status_context: gh.status_context.unwrap_or_else(|| "previewd".to_owned()),
        };
        if github.app_id.is_some() != github.private_key_path.is_some() {
            return Err(invalid(
                "github.app_id",
                "a GitHub App needs both app_id and private_key_path",
            ));
        }

        let n = self.network;
        let size = n.subnet_size.unwrap_or(24);
        let subnet_pool = match n.subnet_pool.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(parse_pool(text, size)?),
        };
        let network = NetworkConfig { subnet_pool };

        Ok(Config {
            instance,
            listen: addr("listen", self.listen, "127.0.0.1:8080")?,
            admin_listen: addr("admin_listen", self.admin_listen, "127.0.0.1:9090")?,
            data_dir,
            gateway,
            limits,
            triggers,
            github,
            network,
        })
    }
}

/// `a.b.c.d/n` with room for at least one network of `size`; the address is aligned to `n`.
fn parse_pool(text: &str, size: u8) -> Result<SubnetPool, ConfigError> {
    let bad = |why: &str| invalid("network.subnet_pool", format!("{text:?}: {why}"));
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| bad("use CIDR notation, e.g. 10.213.0.0/16"))?;
    let base: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| bad("not an IPv4 address (IPv6 pools are not supported)"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (8..=28).contains(p))
        .ok_or_else(|| bad("the prefix length must be 8-28"))?;
    if !(prefix..=28).contains(&size) {
        return Err(invalid(
            "network.subnet_size",
            format!("{size} must be between the pool's prefix ({prefix}) and 28"),
        ));
    }
    let mask = u32::MAX << (32 - prefix);
    if u32::from(base) & !mask != 0 {
        return Err(bad(
            "host bits are set (e.g. 10.213.0.0/16, not 10.213.1.0/16)",
        ));
    }
    Ok(SubnetPool { base, prefix, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn load(text: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_parts(text, Path::new("previewd.toml"), &env)
    }

    #[test]
    fn defaults_serve_a_local_trial() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.instance.as_str(), "previewd");
        assert_eq!(c.gateway.port, 8000);
        assert_eq!(c.gateway.domain, "localhost");
        assert_eq!(c.limits.memory, 512 << 20);
        assert_eq!(c.limits.ttl, Duration::from_secs(72 * 3600));
        assert_eq!(c.limits.parallel, 2);
        assert_eq!(c.triggers.labels, vec!["preview"]);
        assert!(c.github.webhook_secrets.is_empty());
        let id = crate::ids::PreviewId::parse("abc1234567").unwrap();
        assert_eq!(c.preview_url(&id), "http://abc1234567.localhost:8000");
        assert_eq!(c.network.subnet_pool, None);
    }

    #[test]
    fn a_subnet_pool_is_cidr_with_a_network_size() {
        let c = load(None, &[("PREVIEWD_NETWORK_SUBNET_POOL", "10.213.0.0/16")]).unwrap();
        let pool = c.network.subnet_pool.unwrap();
        assert_eq!(
            (pool.base.octets(), pool.prefix, pool.size),
            ([10, 213, 0, 0], 16, 24)
        );
        let c = load(
            Some("[network]\nsubnet_pool = \"172.30.0.0/20\"\nsubnet_size = 26"),
            &[],
        )
        .unwrap();
        assert_eq!(c.network.subnet_pool.map(|p| p.size), Some(26));
    }

    #[test]
    fn env_overrides_file() {
        let c = load(
            Some("instance = \"one\"\n[gateway]\nport = 9000\n[github]\nwebhook_secret = \"a\"\n"),
            &[
                ("PREVIEWD_INSTANCE", "two"),
                ("PREVIEWD_GITHUB_WEBHOOK_SECRETS", "b, c"),
                ("PREVIEWD_LIMITS_MEMORY", "1g"),
                ("PREVIEWD_GATEWAY_PUBLIC_URL", "https://{id}.p.example.com"),
            ],
        )
        .unwrap();
        assert_eq!(c.instance.as_str(), "two");
        assert_eq!(c.gateway.port, 9000);
        assert_eq!(c.limits.memory, 1 << 30);
        let secrets: Vec<&str> = c
            .github
            .webhook_secrets
            .iter()
            .map(|s| s.expose_secret())
            .collect();
        assert_eq!(secrets, vec!["a", "b", "c"]);
        let id = crate::ids::PreviewId::parse("abc1234567").unwrap();
        assert_eq!(c.preview_url(&id), "https://abc1234567.p.example.com");
    }

    #[test]
    fn bad_values_name_their_key() {
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (Some("bogus = 1"), &[], "bogus"),
            (Some("[limits]\nmemory = \"lots\""), &[], "limits.memory"),
            (Some("[limits]\nttl = \"soon\""), &[], "limits.ttl"),
            (Some("instance = \"Bad_Name\""), &[], "instance"),
            (
                Some("[gateway]\npublic_url = \"https://x.example.com\""),
                &[],
                "gateway.public_url",
            ),
            (
                None,
                &[("PREVIEWD_GATEWAY_PORT", "http")],
                "PREVIEWD_GATEWAY_PORT",
            ),
            (None, &[("PREVIEWD_LISTEN", "nowhere")], "listen"),
            (None, &[("PREVIEWD_GITHUB_APP_ID", "12")], "github.app_id"),
            (Some("[limits]\nparallel = 0"), &[], "limits.parallel"),
            (
                None,
                &[("PREVIEWD_LIMITS_PARALLEL", "0")],
                "limits.parallel",
            ),
            (
                None,
                &[("PREVIEWD_LIMITS_PARALLEL", "many")],
                "PREVIEWD_LIMITS_PARALLEL",
            ),
            (
                Some("[network]\nsubnet_pool = \"10.213.0.0\""),
                &[],
                "network.subnet_pool",
            ),
            (
                None,
                &[("PREVIEWD_NETWORK_SUBNET_POOL", "10.213.1.0/16")],
                "network.subnet_pool",
            ),
            (
                None,
                &[("PREVIEWD_NETWORK_SUBNET_POOL", "fd00::/64")],
                "network.subnet_pool",
            ),
            (
                None,
                &[
                    ("PREVIEWD_NETWORK_SUBNET_POOL", "10.213.0.0/16"),
                    ("PREVIEWD_NETWORK_SUBNET_SIZE", "12"),
                ],
                "network.subnet_size",
            ),
        ];
        for (text, env, key) in cases {
            let err = load(*text, env).expect_err(key).to_string();
            assert!(err.contains(key), "{err:?} does not name {key}");
        }
        // humantime's own words ("expected number at 0") do not say what was wanted.
        let err = load(None, &[("PREVIEWD_LIMITS_TTL", "xyz")])
            .expect_err("ttl")
            .to_string();
        assert!(err.contains("is not a duration like 90s"), "{err}");
    }

    #[test]
    fn parallel_comes_from_file_then_env() {
        let file = Some("[limits]\nparallel = 3\n");
        assert_eq!(load(file, &[]).unwrap().limits.parallel, 3);
        let c = load(file, &[("PREVIEWD_LIMITS_PARALLEL", "5")]).unwrap();
        assert_eq!(c.limits.parallel, 5);
    }

    #[test]
    fn max_queued_defaults_and_refuses_zero() {
        assert_eq!(
            load(None, &[]).unwrap().limits.max_queued,
            crate::queue::DEFAULT_MAX_QUEUED
        );
        let file = Some("[limits]\nmax_queued = 50\n");
        assert_eq!(load(file, &[]).unwrap().limits.max_queued, 50);
        let c = load(file, &[("PREVIEWD_LIMITS_MAX_QUEUED", "7")]).unwrap();
        assert_eq!(c.limits.max_queued, 7);
        for (text, env) in [
            (Some("[limits]\nmax_queued = 0\n"), vec![]),
            (None, vec![("PREVIEWD_LIMITS_MAX_QUEUED", "lots")]),
        ] {
            let err = load(text, &env).expect_err("refused").to_string();
            assert!(
                err.contains("max_queued") || err.contains("MAX_QUEUED"),
                "{err}"
            );
        }
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let c = load(None, &[("PREVIEWD_GITHUB_TOKEN", "ghp_supersecret")]).unwrap();
        assert!(!format!("{c:?}").contains("supersecret"));
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("2048"), Some(2048));
        assert_eq!(parse_bytes("12kb"), Some(12 << 10));
        assert_eq!(parse_bytes("m"), None);
        assert_eq!(parse_bytes("99999999999999g"), None);
    }
}
