//! `previewd config`: every key's effective value and where it came from (the defaults, the
//! file, or which environment variable), the answer to "why is it doing that?". The values
//! are the same layers `Config::load` reads; secrets are shown as set or not, never their
//! text, and nothing here changes the config or the environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::keys::{self, KEYS};
use super::{Config, ConfigError};

/// Where a key's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File,
    /// The variable that set it.
    Env(String),
    /// No default and not set: the feature it configures is off.
    Unset,
}

/// One key as `previewd config` shows it.
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: &'static str,
    /// The value (`"********"` for a secret that is set), `None` when unset.
    pub value: Option<Value>,
    pub origin: Origin,
}

/// The effective config: the file it was read from, and each key.
#[derive(Debug, Clone)]
pub struct Explained {
    pub file: Option<PathBuf>,
    pub settings: Vec<Setting>,
}

/// What a secret's value is shown as.
pub const MASK: &str = "********";

/// Keys whose values are credentials: a token, a webhook secret or a password. A private key's
/// path is not one (the key stays in its file).
fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    last.ends_with("token")
        || last.ends_with("secret")
        || last.ends_with("secrets")
        || last.ends_with("password")
}

fn lookup<'a>(table: &'a Table, name: &str) -> Option<&'a Value> {
    match name.split_once('.') {
        Some((section, key)) => table.get(section)?.as_table()?.get(key),
        None => table.get(name),
    }
}

impl Setting {
    /// The value as TOML text on one line, `None` when unset.
    pub fn text(&self) -> Option<String> {
        self.value.as_ref().map(show)
    }
}

/// TOML text of a value, on one line.
fn show(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(show).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

impl Explained {
    /// The config `Config::load(path)` would use, explained. Fails as `load` does, so a config
    /// that would not start previewd is not shown as if it would.
    pub fn load(path: Option<&Path>) -> Result<Explained, ConfigError> {
        let file = super::locate(path);
        let text = file.as_deref().map(super::read).transpose()?;
        let shown = file
            .clone()
            .unwrap_or_else(|| PathBuf::from("previewd.toml"));
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let config = Config::from_layers(text.as_deref(), &shown, env.clone())?;
        Explained::from_layers(file, text.as_deref(), env, &config)
    }

    fn from_layers(
        file: Option<PathBuf>,
        text: Option<&str>,
        env: Vec<(OsString, OsString)>,
        config: &Config,
    ) -> Result<Explained, ConfigError> {
        let from_file: Table = match text {
            // `from_layers` has parsed it already: this cannot fail, but must not panic.
            Some(t) => toml::from_str(t).map_err(|e| ConfigError::Parse {
                path: file.clone().unwrap_or_default(),
                reason: e.to_string(),
            })?,
            None => Table::new(),
        };
        let mut table = keys::defaults();
        super::merge(&mut table, from_file.clone());
        let applied = keys::apply_env(&mut table, env)?;
        let settings = KEYS
            .iter()
            .map(|k| {
                let by_var = applied.iter().rev().find(|(_, key, _)| key.name == k.name);
                let origin = match (by_var, lookup(&from_file, k.name), k.default) {
                    (Some((var, _, _)), _, _) => Origin::Env(var.clone()),
                    (None, Some(_), _) => Origin::File,
                    (None, None, Some(_)) => Origin::Default,
                    (None, None, None) => Origin::Unset,
                };
                let value = match lookup(&table, k.name) {
                    Some(_) if is_secret(k.name) => Some(Value::String(MASK.to_owned())),
                    Some(v) => Some(v.clone()),
                    // Found at run time rather than written in the key table.
                    None if k.name == "data_dir" => {
                        Some(Value::String(config.data_dir.display().to_string()))
                    }
                    None => None,
                };
                let origin = match (&origin, k.name) {
                    (Origin::Unset, "data_dir") => Origin::Default,
                    _ => origin,
                };
                Setting {
                    key: k.name,
                    value,
                    origin,
                }
            })
            .collect();
        Ok(Explained { file, settings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain(text: Option<&str>, env: &[(&str, &str)]) -> Explained {
        let env: Vec<(OsString, OsString)> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let path = PathBuf::from("previewd.toml");
        let config = Config::from_layers(text, &path, env.clone()).expect("valid config");
        Explained::from_layers(Some(path), text, env, &config).expect("explained")
    }

    fn setting<'a>(e: &'a Explained, key: &str) -> &'a Setting {
        e.settings
            .iter()
            .find(|s| s.key == key)
            .expect("every key is listed")
    }

    #[test]
    fn each_value_says_where_it_came_from() {
        let e = explain(
            Some("instance = \"from-file\"\n[gateway]\nport = 8100\n"),
            &[("PREVIEWD_GATEWAY_PORT", "8200")],
        );
        let instance = setting(&e, "instance");
        assert_eq!(instance.text().as_deref(), Some("\"from-file\""));
        assert_eq!(instance.origin, Origin::File);
        let port = setting(&e, "gateway.port");
        assert_eq!(port.text().as_deref(), Some("8200"));
        assert_eq!(port.origin, Origin::Env("PREVIEWD_GATEWAY_PORT".to_owned()));
        let domain = setting(&e, "gateway.domain");
        assert_eq!(domain.text().as_deref(), Some("\"localhost\""));
        assert_eq!(domain.origin, Origin::Default);
        assert_eq!(e.settings.len(), KEYS.len());
    }

    #[test]
    fn secrets_are_never_shown() {
        let e = explain(
            Some("[github]\nwebhook_secret = \"hunter2-file\"\n"),
            &[
                ("PREVIEWD_GITHUB_TOKEN", "ghp_hunter2env"),
                ("PREVIEWD_CLUSTER_REGISTRY", "10.0.0.1:5000"),
                ("PREVIEWD_CLUSTER_REGISTRY_USERNAME", "bot"),
                ("PREVIEWD_CLUSTER_REGISTRY_PASSWORD", "hunter2-registry"),
            ],
        );
        let all = format!("{:?}", e.settings);
        assert!(!all.contains("hunter2"), "{all}");
        let masked = Some(format!("{MASK:?}"));
        assert_eq!(setting(&e, "github.webhook_secret").text(), masked);
        assert_eq!(setting(&e, "github.token").text(), masked);
        assert_eq!(setting(&e, "cluster.registry_password").text(), masked);
    }

    #[test]
    fn a_key_without_default_or_value_is_unset() {
        let e = explain(None, &[]);
        let s = setting(&e, "github.token");
        assert_eq!((s.text(), &s.origin), (None, &Origin::Unset));
        let data = setting(&e, "data_dir");
        assert_eq!(data.origin, Origin::Default);
        assert!(data.value.is_some());
    }
}
