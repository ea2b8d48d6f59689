//! The subset of the Compose file format previewd reads when a repository has no
//! `.previewd.yml`. Every key outside the subset is refused with its path, never dropped:
//!
//! - top level: `services`; `version` and `name` are accepted and ignored; `x-*` extensions
//!   are ignored.
//! - `services.<name>`: `build` (a context path, or `{context, dockerfile, args}`), `image`
//!   (the tag when `build` is given, so then ignored), `environment` (mapping or `K=V` list),
//!   `command` (list, or a string split into words as compose does), `ports` (container ports
//!   only: `8080`, `"8080"`, `"8080/tcp"`, `{target: 8080}`), `expose`, `depends_on` (list, or
//!   mapping whose `condition`/`restart`/`required` are ignored), `healthcheck` (accepted and
//!   ignored: previewd checks health over HTTP through the gateway), `restart` (ignored), `x-*`
//!   (ignored), and `x-previewd: {route, port, internal, healthcheck: {path, status, timeout}}`.
//! - A service is routed when it has `ports`, `x-previewd.route` or `x-previewd.port`, or
//!   `x-previewd.internal: false`; otherwise it is internal, as a compose service without
//!   `ports` is unreachable from outside.
//!
//! Nothing here decides limits or defaults shared with `.previewd.yml`: that is `validate`.
//!
//! This file holds the file's shape (the serde types, each key documented) and the parse;
//! `draft` maps one service to `validate`'s draft, `words` splits a string command.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor, value::MapAccessDeserializer};
use serde_yaml::Value;

use super::raw::{Build, Command, Health, Text, Vars};
use super::validate::{self, Keys};
use super::{Spec, SpecError, hostile, tree, yaml};

mod draft;
mod words;

use draft::draft;

/// The whole compose file (after top-level `x-*` keys are removed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Obsolete in compose itself; accepted and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<IgnoredAny>,
    /// The compose project name; previewd names its objects itself, so ignored.
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<IgnoredAny>,
    /// The services, by name (each name a DNS label).
    #[serde(default)]
    services: BTreeMap<String, RawService>,
}

/// One service (after its `x-*` keys other than `x-previewd` are removed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    /// A context folder or `{context, dockerfile, args}`.
    build: Option<Build>,
    /// An image on the Docker host; with `build`, compose's tag for the result, ignored.
    image: Option<String>,
    /// Environment variables, as a mapping or a list of `NAME=value`.
    environment: Option<Vars>,
    /// Replaces the image's CMD: a list as is, a string split into words like compose.
    command: Option<Command>,
    /// Container ports; any host side (`8080:80`, `published`, `host_ip`) is refused.
    ports: Option<Vec<Port>>,
    /// Container ports reachable by other services; a fallback for the routed port.
    expose: Option<Vec<Text>>,
    /// Services started before this one.
    depends_on: Option<DependsOn>,
    /// Compose's own probe; accepted and ignored (previewd checks health through the gateway).
    #[allow(dead_code)]
    healthcheck: Option<ComposeHealth>,
    /// Compose's restart policy; accepted and ignored (previewd manages the containers).
    #[allow(dead_code)]
    restart: Option<IgnoredAny>,
    /// previewd's extension: routing and health.
    #[serde(rename = "x-previewd")]
    x_previewd: Option<XPreviewd>,
}

/// `x-previewd` in a service.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct XPreviewd {
    /// Path prefix on the preview host.
    route: Option<String>,
    /// The container port to route to when `ports`/`expose` list several.
    port: Option<u64>,
    /// Force the service internal (`true`) or routed (`false`).
    internal: Option<bool>,
    /// previewd's health check through the gateway.
    healthcheck: Option<Health>,
}

/// Compose's `healthcheck`, whose keys are known but not used.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ComposeHealth {
    /// The probe command (ignored).
    test: Option<IgnoredAny>,
    /// Probe interval (ignored).
    interval: Option<IgnoredAny>,
    /// Probe timeout (ignored; see `x-previewd.healthcheck.timeout`).
    timeout: Option<IgnoredAny>,
    /// Failures before unhealthy (ignored).
    retries: Option<IgnoredAny>,
    /// Grace period (ignored).
    start_period: Option<IgnoredAny>,
    /// Probe interval during the grace period (ignored).
    start_interval: Option<IgnoredAny>,
    /// Disables the image's probe (ignored).
    disable: Option<IgnoredAny>,
}

/// `depends_on` as a list, or as a mapping of conditions.
#[derive(Debug)]
struct DependsOn(Vec<String>);

/// The long form of one `depends_on` entry; its keys are known but not used.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct DependsOnCondition {
    /// `service_started`, `service_healthy`, ... (ignored: previewd starts in dependency order).
    condition: Option<IgnoredAny>,
    /// Restart when the dependency restarts (ignored).
    restart: Option<IgnoredAny>,
    /// Whether the dependency must exist (ignored: it must).
    required: Option<IgnoredAny>,
}

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DependsOn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of service names, or a mapping of them to conditions")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<DependsOn, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(DependsOn(names))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DependsOn, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    map.next_value::<Option<DependsOnCondition>>()?;
                    names.push(name);
                }
                Ok(DependsOn(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// One `ports` entry.
#[derive(Debug)]
enum Port {
    Short(String),
    Long(LongPort),
}

/// The long form of a `ports` entry, without any host side.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LongPort {
    /// The container port.
    target: u64,
    /// `tcp` only: the gateway speaks HTTP.
    protocol: Option<String>,
    /// A hint for tools (ignored).
    #[allow(dead_code)]
    app_protocol: Option<IgnoredAny>,
    /// A human-readable name (ignored).
    #[allow(dead_code)]
    name: Option<IgnoredAny>,
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a container port (8080, \"8080/tcp\") or {target: 8080}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                Ok(Port::Short(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                Ok(Port::Short(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Ok(Port::Short(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Port, A::Error> {
                LongPort::deserialize(MapAccessDeserializer::new(map)).map(Port::Long)
            }
        }
        d.deserialize_any(V)
    }
}

const KEYS: Keys = Keys {
    env: "environment",
    port: "ports",
    route: "x-previewd.route",
    health: "x-previewd.healthcheck",
    command: "command",
    depends_on: "depends_on",
};

/// Parses and validates a compose file.
pub fn parse(file: &str, bytes: &[u8], worktree: &Path) -> Result<Spec, SpecError> {
    let mut tree = yaml::parse_tree(file, bytes)?;
    strip_extensions(&mut tree);
    hostile::refuse_hostile(file, &tree, &["services"])?;
    let raw: File = tree::from_tree(&tree, "").map_err(|e| validate::tree_error(file, e))?;
    let mut drafts = Vec::new();
    for (name, s) in raw.services {
        drafts.push(draft(file, name, s)?);
    }
    validate::finish(file, &KEYS, drafts, Vec::new(), worktree)
}

/// Removes `x-*` keys at the top level and in services (except `x-previewd`): compose defines
/// them as extensions that tools which do not know them ignore.
fn strip_extensions(tree: &mut Value) {
    let is_ext = |k: &Value| k.as_str().is_some_and(|k| k.starts_with("x-"));
    if let Some(top) = tree.as_mapping_mut() {
        top.retain(|k, _| !is_ext(k));
        if let Some(services) = top.get_mut("services").and_then(Value::as_mapping_mut) {
            for (_, service) in services.iter_mut() {
                if let Some(service) = service.as_mapping_mut() {
                    service.retain(|k, _| k.as_str() == Some("x-previewd") || !is_ext(k));
                }
            }
        }
    }
}
