//! Every key of `previewd.toml`, written once: its name, how a value of it is read from the
//! environment, and its default. From this one table come the environment variable names, the
//! refusal of a `PREVIEWD_*` variable that names no key (with the nearest key's name), and the
//! defaults layer under the file and the environment. Nothing here checks what a value means
//! (that is `settle`), reads a file or touches the process environment.
//!
//! A table rather than a layered-config library (figment, config-rs): their environment
//! providers split variable names on `_`, which cannot tell `github.webhook_secret` from
//! `github.webhook.secret`, and they ignore unknown variables silently, so the key list would
//! still have to be written here; what is left for them to do is merging two TOML tables.

use toml::{Table, Value};

use super::ConfigError;

/// How an environment variable's text becomes a TOML value of the key's type. The file needs no
/// such step: TOML says its types itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Number,
    Switch,
    /// Comma-separated in the environment (`preview, needs-preview`).
    List,
    /// A TOML inline table in the environment (`{ "github:a/b" = { token = "..." } }`).
    Table,
}

/// One key of the operator config.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// `section.key`, or `key` at the top level.
    pub name: &'static str,
    pub kind: Kind,
    /// As an operator would write it in the environment; `None` when the key has no fixed
    /// default (secrets, paths, optional features).
    pub default: Option<&'static str>,
}

const fn key(name: &'static str, kind: Kind, default: Option<&'static str>) -> Key {
    Key {
        name,
        kind,
        default,
    }
}

use Kind::{Integer, List, Number, Switch, Table as TableKind, Text};

/// The operator config's keys. A key added to `settle`'s `Raw*` structs must be added here
/// (the tests check both ways), and to `deploy/previewd.toml.example`.
pub const KEYS: &[Key] = &[
    key("instance", Text, Some("previewd")),
    key("listen", Text, Some("127.0.0.1:8080")),
    key("admin_listen", Text, Some("127.0.0.1:9090")),
    key("server.header_timeout", Text, Some("5s")),
    key("server.body_timeout", Text, Some("8s")),
    key("server.idle_timeout", Text, Some("30s")),
    key("server.max_connections", Integer, Some("1024")),
    // Default: the platform's data folder (~/.local/share/previewd), found at run time.
    key("data_dir", Text, None),
    key("gateway.image", Text, Some("caddy:2")),
    key("gateway.port", Integer, Some("8000")),
    key("gateway.bind", Text, Some("127.0.0.1")),
    key("gateway.domain", Text, Some("localhost")),
    key("gateway.public_url", Text, None),
    key("gateway.keep_running", Switch, Some("false")),
    key("gateway.tls", Text, Some("off")),
    key("gateway.tls_port", Integer, Some("8443")),
    key("gateway.tls_issuer", Text, Some("acme")),
    key("gateway.acme_email", Text, None),
    key("gateway.cert_file", Text, None),
    key("gateway.key_file", Text, None),
    key("gateway.read_header_timeout", Text, Some("10s")),
    key("gateway.read_timeout", Text, Some("60s")),
    key("gateway.write_timeout", Text, Some("0s")),
    key("gateway.idle_timeout", Text, Some("2m")),
    key("limits.memory", Text, Some("512m")),
    key("limits.cpus", Number, Some("1.0")),
    key("limits.pids", Integer, Some("512")),
    key("limits.max_previews", Integer, Some("20")),
    key("limits.ttl", Text, Some("72h")),
    key("limits.keep_label", Text, Some("preview:keep")),
    key("limits.build_timeout", Text, Some("15m")),
    key("limits.health_timeout", Text, Some("120s")),
    key("limits.parallel", Integer, Some("2")),
    key("limits.max_queued", Integer, Some("1000")),
    key("limits.egress", Text, Some("public")),
    key("limits.egress_allow", List, None),
    // Default: the same as `limits.egress`.
    key("limits.build_egress", Text, None),
    // BuildKit's cache kept after each reconcile pass (the daemon's whole cache); 0: never pruned.
    key("limits.build_cache", Text, Some("5g")),
    // Processes and memory of all BuildKit steps of the daemon together; 0: not capped.
    key("limits.build_pids", Integer, Some("0")),
    key("limits.build_memory", Text, Some("0")),
    // Where the daemon runs BuildKit's steps: <its cgroup-parent>/buildkit.
    key("limits.build_cgroup", Text, Some("docker/buildkit")),
    // No visit for this long: the preview's containers stop until the next visit; 0: never.
    key("limits.idle_sleep", Text, Some("30m")),
    // User-Agent words (beside the built-in crawlers and uptime checkers) that never wake one.
    key("limits.crawler_agents", List, Some("")),
    key("triggers.labels", List, Some("preview")),
    key("triggers.branches", List, Some("*/phase-*")),
    key("triggers.command", Text, Some("/preview")),
    key("triggers.allow_forks", Switch, Some("false")),
    key("github.webhook_secret", Text, None),
    key("github.webhook_secrets", List, None),
    key("github.token", Text, None),
    key("github.app_id", Integer, None),
    key("github.private_key_path", Text, None),
    key("github.api_url", Text, Some("https://api.github.com")),
    key("github.git_url", Text, Some("https://github.com")),
    key("github.status_context", Text, Some("previewd")),
    key("github.web_url", Text, Some("https://github.com")),
    key("github.oauth_client_id", Text, None),
    key("github.oauth_client_secret", Text, None),
    key("gitea.url", Text, None),
    key("gitea.token", Text, None),
    // A list in the file (several secrets during a rotation); one secret in the environment.
    key("gitea.webhook_secret", Text, None),
    key("gitea.git_url", Text, None),
    key("gitea.status_context", Text, Some("previewd")),
    key("gitea.web_url", Text, None),
    key("gitea.oauth_client_id", Text, None),
    key("gitea.oauth_client_secret", Text, None),
    key("gitlab.url", Text, None),
    key("gitlab.token", Text, None),
    key("gitlab.webhook_secret", Text, None),
    key("gitlab.git_url", Text, None),
    key("gitlab.status_context", Text, Some("previewd")),
    key("gitlab.web_url", Text, None),
    key("gitlab.oauth_client_id", Text, None),
    key("gitlab.oauth_client_secret", Text, None),
    // Who may see a preview (docs/access.md). Unset mode: forge for private repositories when
    // the preview's forge has an OAuth client, else public.
    key("access.mode", Text, None),
    key("access.session_secret", Text, None),
    key("access.bypass_token", Text, None),
    key("access.recheck", Text, Some("10m")),
    key("network.subnet_pool", Text, None),
    key("network.subnet_size", Integer, Some("24")),
    // Where services run: one Docker host, or the Swarm the endpoint manages (docs/cluster.md).
    key("cluster.engine", Text, Some("docker")),
    key("cluster.registry", Text, None),
    key("cluster.registry_username", Text, None),
    key("cluster.registry_password", Text, None),
    // Swarm placement constraints for every preview service, e.g. `node.role == worker`.
    key("cluster.constraints", List, Some("")),
    // `"<forge>:<owner>/<name>" = { ID = "value" }`; a TOML inline table in the environment.
    key("build_secrets", TableKind, None),
];

/// `PREVIEWD_*` variables that are settings of the process, not config keys: the config file's
/// path and the log's filter and format. Anything else under the prefix must name a key.
pub const PROCESS_SETTINGS: &[&str] = &[
    "PREVIEWD_CONFIG",
    "PREVIEWD_LOG",
    "PREVIEWD_LOG_FORMAT",
    #[cfg(feature = "fault-injection")]
    FAULT_PAUSE_AT,
];

pub const PREFIX: &str = "PREVIEWD_";

/// Test builds' fault hook (`preview::fault`): the phase a deployment pauses at.
#[cfg(feature = "fault-injection")]
pub const FAULT_PAUSE_AT: &str = "PREVIEWD_FAULT_PAUSE_AT";

impl Key {
    /// `PREVIEWD_LIMITS_TTL` for `limits.ttl`.
    pub fn env_name(&self) -> String {
        format!(
            "{PREFIX}{}",
            self.name.replace('.', "_").to_ascii_uppercase()
        )
    }

    /// The key's default as a TOML value, when it has one.
    pub fn default_value(&self) -> Option<Value> {
        // The defaults are ours and parse; a typo in the table fails every config test.
        self.default.and_then(|text| self.kind.parse(text).ok())
    }
}

impl Kind {
    /// `text` (from the environment or the table) as a value of this kind, or why not.
    pub fn parse(self, text: &str) -> Result<Value, String> {
        match self {
            Kind::Text => Ok(Value::String(text.to_owned())),
            Kind::Integer => text
                .trim()
                .parse::<i64>()
                .map(Value::Integer)
                .map_err(|_| format!("not a whole number: {text:?}")),
            Kind::Number => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(Value::Float)
                .ok_or_else(|| format!("not a number: {text:?}")),
            Kind::Switch => match text.trim() {
                "1" | "true" | "yes" => Ok(Value::Boolean(true)),
                "0" | "false" | "no" => Ok(Value::Boolean(false)),
                _ => Err(format!("expected true or false, got {text:?}")),
            },
            Kind::Table => toml::from_str::<Table>(&format!("v = {text}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .filter(Value::is_table)
                // Never the parser's words: they may quote the value, a secret.
                .ok_or_else(|| {
                    "not a TOML inline table such as { \"github:a/b\" = { id = \"...\" } }"
                        .to_owned()
                }),
            Kind::List => Ok(Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(|x| Value::String(x.to_owned()))
                    .collect(),
            )),
        }
    }
}

/// Sets `name` (`section.key`) in `table`, creating the section.
pub fn set(table: &mut Table, name: &str, value: Value) {
    match name.split_once('.') {
        Some((section, key)) => {
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            // A file that made the section something else is refused when the layers are
            // read into the config's shape; the variable wins here.
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            if let Value::Table(t) = entry {
                t.insert(key.to_owned(), value);
            }
        }
        None => {
            table.insert(name.to_owned(), value);
        }
    }
}

/// The defaults of every key that has one, as a TOML table.
pub fn defaults() -> Table {
    let mut table = Table::new();
    for k in KEYS {
        if let Some(v) = k.default_value() {
            set(&mut table, k.name, v);
        }
    }
    table
}

/// The key a `PREVIEWD_*` variable names; `Ok(None)` for a process setting and for variables
/// outside the prefix; an error naming the nearest key for any other `PREVIEWD_*` name.
pub fn key_of_variable(var: &str) -> Result<Option<&'static Key>, ConfigError> {
    if !var.starts_with(PREFIX) || PROCESS_SETTINGS.contains(&var) {
        return Ok(None);
    }
    if let Some(k) = KEYS.iter().find(|k| k.env_name() == var) {
        return Ok(Some(k));
    }
    let nearest = KEYS
        .iter()
        .map(Key::env_name)
        .chain(PROCESS_SETTINGS.iter().map(|s| s.to_string()))
        .min_by_key(|name| strsim::levenshtein(name, var))
        .unwrap_or_default();
    Err(ConfigError::Env {
        var: var.to_owned(),
        reason: format!("names no setting of previewd; did you mean {nearest}?"),
    })
}

/// A variable that set a key: its name, the key and the value it gave.
pub type Applied = (String, &'static Key, Value);

/// Layers the environment's `PREVIEWD_*` variables over `table`, and says which it applied.
/// Variables whose name is not Unicode cannot be ours and are skipped (`std::env::vars` would
/// panic on them); one of ours whose value is not Unicode is an error.
pub fn apply_env(
    table: &mut Table,
    env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<Applied>, ConfigError> {
    let mut applied = Vec::new();
    for (var, value) in env {
        let Some(var) = var.to_str() else { continue };
        let Some(key) = key_of_variable(var)? else {
            continue;
        };
        let bad = |reason: String| ConfigError::Env {
            var: var.to_owned(),
            reason,
        };
        let text = value
            .to_str()
            .ok_or_else(|| bad("the value is not valid Unicode".to_owned()))?;
        let value = key.kind.parse(text).map_err(bad)?;
        set(table, key.name, value.clone());
        applied.push((var.to_owned(), key, value));
    }
    Ok(applied)
}
