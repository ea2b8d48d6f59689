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
use super::cluster::RawCluster;
use super::{Config, ConfigError, ForgeConfig};
use crate::ids::Instance;

mod sections;

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
    /// `"<forge>:<owner>/<name>" = { ID = "value" }`: each repository's build secrets.
    build_secrets:
        Option<std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>>,
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

/// `access.mode = "forge"` where no forge has an OAuth client: nobody could sign in, so every
/// preview would be closed to everyone. The error names the keys that would fix it: the client
/// of each forge this instance serves (GitHub's always, its section has no off switch).
fn forge_mode_without_client(gitea: bool, gitlab: bool) -> ConfigError {
    let keys: Vec<&str> = [
        (true, "github.oauth_client_id"),
        (gitea, "gitea.oauth_client_id"),
        (gitlab, "gitlab.oauth_client_id"),
    ]
    .into_iter()
    .filter_map(|(on, k)| on.then_some(k))
    .collect();
    invalid(
        "access.mode",
        format!(
            "\"forge\" asks visitors to sign in with a forge, but no forge has an OAuth client, \
             so nobody could open any preview: set {} (with its oauth_client_secret, \
             docs/access.md), or use mode = \"password\"",
            keys.join(" or ")
        ),
    )
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
        let gateway = self.gateway.settle()?;

        let limits = self.limits.settle()?;

        let triggers = self.triggers.settle()?;

        let github = self.github.settle()?;

        let network = self.network.settle()?;

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
        let access = self.access.settle()?;
        if access.mode == Some(super::AccessMode::Forge)
            && github.oauth.is_none()
            && [&gitea, &gitlab]
                .iter()
                .all(|f| f.as_ref().is_none_or(|f| f.oauth.is_none()))
        {
            return Err(forge_mode_without_client(gitea.is_some(), gitlab.is_some()));
        }

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
            access,
            cluster,
            build_secrets: super::builds::BuildSecrets::from_raw(self.build_secrets)?,
        })
    }
}
