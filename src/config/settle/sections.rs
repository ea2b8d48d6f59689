//! Each section of the operator config settled on its own: its values checked and turned into
//! the config's types, one `settle` per `Raw*` section. Rules that relate two sections (swarm
//! against egress and sleeping) stay in the parent's `RawConfig::settle`. Nothing here reads
//! files or the environment, and no default is written here: they come from `keys::KEYS`.

use secrecy::SecretString;

use super::{
    RawGateway, RawGithub, RawLimits, RawNetwork, RawServer, RawTriggers, duration, expand_home,
    invalid,
};
use crate::config::access::oauth_client;
use crate::config::builds::BuildLimits;
use crate::config::egress::Egress;
use crate::config::units::parse_bytes;
use crate::config::{
    ConfigError, GatewayConfig, GatewayTimeouts, GithubConfig, Limits, NetworkConfig, ServerLimits,
    SubnetPool, Tls, Triggers,
};

impl RawGateway {
    /// The gateway's ports, host names, TLS mode and Caddy's slow-client timeouts.
    pub(super) fn settle(self) -> Result<GatewayConfig, ConfigError> {
        let g = self;
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
        Ok(gateway)
    }
}

impl RawLimits {
    /// What one preview may use, how long it lives and how many run at once.
    pub(super) fn settle(self) -> Result<Limits, ConfigError> {
        let l = self;
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
        Ok(limits)
    }
}

impl RawTriggers {
    /// What starts a preview: labels, branches and the chat-ops command (one word).
    pub(super) fn settle(self) -> Result<Triggers, ConfigError> {
        let t = self;
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
        Ok(triggers)
    }
}

impl RawGithub {
    /// GitHub's secrets (several during a rotation), token or App, and URLs without a trailing `/`.
    pub(super) fn settle(self) -> Result<GithubConfig, ConfigError> {
        let gh = self;
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
        Ok(github)
    }
}

impl RawNetwork {
    /// The address pool preview networks are cut from, if the operator chose one.
    pub(super) fn settle(self) -> Result<NetworkConfig, ConfigError> {
        let n = self;
        let size = n.subnet_size;
        let subnet_pool = match n.subnet_pool.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(parse_pool(text, size)?),
        };
        let network = NetworkConfig { subnet_pool };
        Ok(network)
    }
}

impl RawServer {
    pub(super) fn settle(self) -> Result<ServerLimits, ConfigError> {
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
