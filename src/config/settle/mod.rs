//! The config's shape (`Raw*`: what the file may say, key by key, with serde's refusal of
//! unknown keys) and the step from the layered values to the typed, checked [`Config`]: every
//! rule that relates one key to another lives here. Nothing here reads files or the
//! environment, and no default is written here: they come from `keys::KEYS`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::access::{RawAccess, oauth_client};
use super::builds::BuildLimits;
use super::cluster::RawCluster;
use super::egress::Egress;
use super::{
    Config, ConfigError, ForgeConfig, GatewayConfig, GatewayTimeouts, GithubConfig, Limits,
    NetworkConfig, ServerLimits, SubnetPool, Tls, Triggers,
};
use crate::ids::Instance;

// Every field has a value once the defaults are layered under the file, so only keys without a
// default are `Option`. `default` on each struct lets the file alone be read into this shape
// (for errors with line numbers) before the layers are merged; its values are never used.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    instance: String,
    listen: String,
    admin_listen: String,
    server: RawServer,
    data_dir: Option<String>,
    gateway: RawGateway,
    limits: RawLimits,
    triggers: RawTriggers,
    github: RawGithub,
    gitea: RawForge,
    gitlab: RawForge,
    network: RawNetwork,
    access: RawAccess,
    cluster: RawCluster,
}

/// `[gitea]` and `[gitlab]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawForge {
    /// The forge's web address; the section is on once it and a webhook secret are set.
    url: Option<String>,
    token: Option<String>,
    /// One secret, or a list of them during a rotation.
    webhook_secret: Option<OneOrMany>,
    /// Where repositories are cloned from; `url` unless set.
    git_url: Option<String>,
    status_context: String,
    /// Where visitors sign in (OAuth); `url` unless set.
    web_url: Option<String>,
    oauth_client_id: Option<String>,
    oauth_client_secret: Option<String>,
}

/// A string, or a list of strings.
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

impl RawForge {
    /// The section, checked; `None` when its `url` is not set (the forge is off). `section`
    /// names it in errors.
    fn settle(self, section: &str) -> Result<Option<ForgeConfig>, ConfigError> {
        let key = |k: &str| format!("{section}.{k}");
        let Some(url) = self.url.map(|u| u.trim().trim_end_matches('/').to_owned()) else {
            if self.webhook_secret.is_some()
                || self.token.is_some()
                || self.oauth_client_id.is_some()
            {
                return Err(invalid(
                    &key("url"),
                    format!("{section}.token or webhook_secret is set, but not the forge's url"),
                ));
            }
            return Ok(None);
        };
        web_url(&key("url"), &url)?;
        let mut webhook_secrets = Vec::new();
        for s in self
            .webhook_secret
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
        {
            if s.is_empty() {
                return Err(invalid(&key("webhook_secret"), "must not be empty"));
            }
            webhook_secrets.push(SecretString::from(s));
        }
        let git_url = match self.git_url {
            Some(g) => g.trim().trim_end_matches('/').to_owned(),
            None => url.clone(),
        };
        let web = match self.web_url {
            Some(w) => w.trim().trim_end_matches('/').to_owned(),
            None => url.clone(),
        };
        web_url(&key("web_url"), &web)?;
        Ok(Some(ForgeConfig {
            oauth: oauth_client(section, self.oauth_client_id, self.oauth_client_secret)?,
            web_url: web,
            url,
            token: self.token.filter(|t| !t.is_empty()).map(SecretString::from),
            webhook_secrets,
            git_url,
            status_context: self.status_context,
        }))
    }
}

/// A forge's address must be http(s) with a host: the API calls and the token go there.
fn web_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(invalid(
            key,
            format!("{url:?} is not a web address like https://gitea.example.com"),
        )),
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNetwork {
    /// e.g. `10.213.0.0/16`.
    subnet_pool: Option<String>,
    /// Prefix length of each preview network, e.g. 24.
    subnet_size: u8,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    /// Durations, e.g. `5s`.
    header_timeout: String,
    body_timeout: String,
    idle_timeout: String,
    max_connections: usize,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawGateway {
    image: String,
    port: u16,
    bind: String,
    domain: String,
    public_url: Option<String>,
    keep_running: bool,
    /// `off`, `on_demand` or `wildcard`.
    tls: String,
    tls_port: u16,
    /// For on_demand: `acme` (default) or `internal`.
    tls_issuer: String,
    acme_email: Option<String>,
    /// For wildcard: PEM files on this host.
    cert_file: Option<String>,
    key_file: Option<String>,
    /// Durations; `0s` leaves Caddy's default.
    read_header_timeout: String,
    read_timeout: String,
    write_timeout: String,
    idle_timeout: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    memory: String,
    cpus: f64,
    pids: i64,
    max_previews: usize,
    ttl: String,
    keep_label: String,
    build_timeout: String,
    health_timeout: String,
    parallel: usize,
    max_queued: usize,
    /// `none`, `public` or `all`.
    egress: String,
    /// `host:port` or CIDR entries.
    egress_allow: Option<Vec<String>>,
    build_egress: Option<String>,
    build_cache: String,
    build_pids: i64,
    build_memory: String,
    build_cgroup: String,
    idle_sleep: String,
    crawler_agents: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTriggers {
    labels: Vec<String>,
    branches: Vec<String>,
    command: String,
    allow_forks: bool,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawGithub {
    webhook_secret: Option<String>,
    /// Extra secrets still accepted during a rotation.
    webhook_secrets: Option<Vec<String>>,
    token: Option<String>,
    app_id: Option<u64>,
    private_key_path: Option<String>,
    api_url: String,
    git_url: String,
    status_context: String,
    web_url: String,
    oauth_client_id: Option<String>,
    oauth_client_secret: Option<String>,
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s).map_err(|e| {
        invalid(
            key,
            format!("{s:?} is not a duration like 90s, 30m or 72h ({e})"),
        )
    })
}

fn addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
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
    /// The layered values, checked and turned into the config's types.
    pub(super) fn settle(self) -> Result<Config, ConfigError> {
        let instance =
            Instance::parse(&self.instance).map_err(|e| invalid("instance", e.to_string()))?;
        let data_dir = match self.data_dir {
            Some(d) => expand_home(&d),
            None => dirs::data_local_dir()
                .unwrap_or_else(|| PathBuf::from("/var/lib"))
                .join("previewd"),
        };
        let g = self.gateway;
        let domain = g.domain;
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
        let port = g.port;
        if port == 0 {
            return Err(invalid("gateway.port", "must be 1-65535"));
        }
        let tls = match g.tls.as_str() {
            "off" => Tls::Off,
            "on_demand" => {
                let issuer = g.tls_issuer;
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
        let tls_port = g.tls_port;
        if tls_port == 0 || (tls != Tls::Off && tls_port == port) {
            return Err(invalid(
                "gateway.tls_port",
                "must be 1-65535 and differ from gateway.port",
            ));
        }
        let caddy_timeout = |key: &str, s: &str| {
            duration(&format!("gateway.{key}"), s).map(|d| Some(d).filter(|d| !d.is_zero()))
        };
        let timeouts = GatewayTimeouts {
            read_header: caddy_timeout("read_header_timeout", &g.read_header_timeout)?,
            read: caddy_timeout("read_timeout", &g.read_timeout)?,
            write: caddy_timeout("write_timeout", &g.write_timeout)?,
            idle: caddy_timeout("idle_timeout", &g.idle_timeout)?,
        };
        let gateway = GatewayConfig {
            image: g.image,
            port,
            bind: g.bind,
            domain,
            public_url: g.public_url,
            keep_running: g.keep_running,
            tls,
            tls_port,
            timeouts,
        };

        let l = self.limits;
        let memory = parse_bytes(&l.memory)
            .filter(|m| *m >= 6 << 20)
            .ok_or_else(|| {
                invalid(
                    "limits.memory",
                    format!("{:?}: use e.g. 512m (at least 6m)", l.memory),
                )
            })?;
        let cpus = l.cpus;
        if !(cpus > 0.0 && cpus <= 1024.0) {
            return Err(invalid("limits.cpus", "must be a positive number"));
        }
        let pids = l.pids;
        if pids < 16 {
            return Err(invalid("limits.pids", "must be at least 16"));
        }
        let parallel = l.parallel;
        if parallel == 0 {
            return Err(invalid("limits.parallel", "must be at least 1"));
        }
        let max_queued = l.max_queued;
        if max_queued == 0 {
            return Err(invalid("limits.max_queued", "must be at least 1"));
        }
        let limits = Limits {
            memory,
            cpus,
            pids,
            max_previews: l.max_previews,
            ttl: duration("limits.ttl", &l.ttl)?,
            keep_label: l.keep_label,
            build_timeout: duration("limits.build_timeout", &l.build_timeout)?,
            health_timeout: duration("limits.health_timeout", &l.health_timeout)?,
            parallel,
            max_queued,
            egress: Egress::from_keys(&l.egress, l.egress_allow, l.build_egress.as_deref())?,
            builds: BuildLimits::from_keys(
                &l.build_cache,
                l.build_pids,
                &l.build_memory,
                &l.build_cgroup,
            )?,
            idle_sleep: Some(duration("limits.idle_sleep", &l.idle_sleep)?)
                .filter(|d| !d.is_zero()),
            crawler_agents: l
                .crawler_agents
                .into_iter()
                .map(|a| a.to_ascii_lowercase())
                .filter(|a| !a.is_empty())
                .collect(),
        };

        let t = self.triggers;
        let triggers = Triggers {
            labels: t.labels,
            branches: t.branches,
            command: t.command,
            allow_forks: t.allow_forks,
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
            api_url: gh.api_url.trim_end_matches('/').to_owned(),
            git_url: gh.git_url.trim_end_matches('/').to_owned(),
            status_context: gh.status_context,
            web_url: gh.web_url.trim_end_matches('/').to_owned(),
            oauth: oauth_client("github", gh.oauth_client_id, gh.oauth_client_secret)?,
        };
        if github.app_id.is_some() != github.private_key_path.is_some() {
            return Err(invalid(
                "github.app_id",
                "a GitHub App needs both app_id and private_key_path",
            ));
        }

        let n = self.network;
        let size = n.subnet_size;
        let subnet_pool = match n.subnet_pool.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(parse_pool(text, size)?),
        };
        let network = NetworkConfig { subnet_pool };

        let cluster = self.cluster.settle()?;
        // The egress filter is iptables rules on this host, around its bridge networks; a swarm
        // service runs on another node's overlay, which they never see. Refused, not ignored.
        if cluster.engine == super::Engine::Swarm
            && (limits.egress.mode != super::egress::Mode::All
                || limits.egress.build != super::egress::Mode::All)
        {
            return Err(invalid(
                "limits.egress",
                "the egress filter does not reach swarm nodes yet: with cluster.engine = \"swarm\" set limits.egress = \"all\" (and limits.build_egress, when set)",
            ));
        }
        if cluster.engine == super::Engine::Swarm && limits.idle_sleep.is_some() {
            return Err(invalid(
                "limits.idle_sleep",
                "sleeping previews are not on swarm yet: with cluster.engine = \"swarm\" set limits.idle_sleep = \"0\"",
            ));
        }
        let gitea = self.gitea.settle("gitea")?;
        let gitlab = self.gitlab.settle("gitlab")?;

        Ok(Config {
            instance,
            listen: addr("listen", &self.listen)?,
            admin_listen: addr("admin_listen", &self.admin_listen)?,
            server: self.server.settle()?,
            data_dir,
            gateway,
            limits,
            triggers,
            github,
            gitea,
            gitlab,
            network,
            access: self.access.settle()?,
            cluster,
        })
    }
}

impl RawServer {
    fn settle(self) -> Result<ServerLimits, ConfigError> {
        let positive = |key: &str, s: &str| {
            let key = format!("server.{key}");
            match duration(&key, s)? {
                d if d.is_zero() => Err(invalid(&key, "must be longer than 0s")),
                d => Ok(d),
            }
        };
        if self.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        Ok(ServerLimits {
            header_timeout: positive("header_timeout", &self.header_timeout)?,
            body_timeout: positive("body_timeout", &self.body_timeout)?,
            idle_timeout: positive("idle_timeout", &self.idle_timeout)?,
            max_connections: self.max_connections,
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
