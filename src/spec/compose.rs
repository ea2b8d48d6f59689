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

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor, value::MapAccessDeserializer};
use serde_yaml::Value;

use super::raw::{Build, Command, Health, Text, Vars};
use super::validate::{self, Draft, Keys};
use super::yaml::{clip, join};
use super::{Spec, SpecError, hostile, tree, yaml};

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

fn draft(file: &str, name: String, s: RawService) -> Result<Draft, SpecError> {
    let prefix = join("services", &clip(&name));
    let mut ports = Vec::new();
    for (i, p) in s.ports.iter().flatten().enumerate() {
        let key = format!("{}[{i}]", join(&prefix, "ports"));
        let port = match p {
            Port::Short(text) => container_port(file, &key, text)?,
            Port::Long(long) => {
                if let Some(proto) = &long.protocol {
                    check_protocol(file, &join(&key, "protocol"), proto)?;
                }
                long.target
            }
        };
        ports.push(port);
    }
    let mut exposed = Vec::new();
    for (i, e) in s.expose.iter().flatten().enumerate() {
        let key = format!("{}[{i}]", join(&prefix, "expose"));
        exposed.push(container_port(file, &key, &e.0)?);
    }
    let x = s.x_previewd.unwrap_or_default();
    let internal = x
        .internal
        .unwrap_or(ports.is_empty() && x.route.is_none() && x.port.is_none());
    let port = match x.port {
        Some(p) if p == 0 || p > u64::from(u16::MAX) => {
            return Err(SpecError::Invalid {
                file: file.to_owned(),
                key: join(&prefix, "x-previewd.port"),
                reason: format!("{p} is not a port: use 1 to 65535"),
            });
        }
        Some(p) => Some(p),
        None => {
            let mut candidates = if ports.is_empty() { exposed } else { ports };
            candidates.sort_unstable();
            candidates.dedup();
            match candidates.as_slice() {
                [] => None,
                [one] => Some(*one),
                _ if internal => None,
                several => {
                    let list: Vec<String> = several.iter().map(u64::to_string).collect();
                    return Err(SpecError::Invalid {
                        file: file.to_owned(),
                        key: join(&prefix, "ports"),
                        reason: format!(
                            "lists several ports ({}): say which one the gateway routes to \
                             with `x-previewd.port`",
                            list.join(", ")
                        ),
                    });
                }
            }
        }
    };
    let command = match s.command {
        None => None,
        Some(Command::Exec(args)) => Some(args),
        Some(Command::Line(line)) => {
            Some(split_words(&line).map_err(|reason| SpecError::Invalid {
                file: file.to_owned(),
                key: join(&prefix, "command"),
                reason,
            })?)
        }
    };
    // With `build`, compose uses `image` as the tag of the result; previewd tags its own.
    let image = if s.build.is_some() { None } else { s.image };
    Ok(Draft {
        name,
        image,
        build: s.build,
        port,
        route: x.route,
        env: s.environment.unwrap_or_default(),
        command,
        health: x.healthcheck,
        depends_on: s.depends_on.map(|d| d.0).unwrap_or_default(),
        internal,
    })
}

/// A short-syntax port: the container side only. Anything with a host side is refused.
fn container_port(file: &str, key: &str, text: &str) -> Result<u64, SpecError> {
    let (spec, proto) = match text.split_once('/') {
        Some((spec, proto)) => (spec, Some(proto)),
        None => (text, None),
    };
    if let Some(proto) = proto {
        check_protocol(file, key, proto)?;
    }
    if spec.contains(':') {
        return Err(SpecError::Refused {
            file: file.to_owned(),
            key: key.to_owned(),
            reason: format!(
                "`{}` publishes a host port; previews publish no host ports: write the container \
                 port only (e.g. \"80\"), and the gateway routes to it",
                clip(text)
            ),
        });
    }
    let invalid = |reason: String| SpecError::Invalid {
        file: file.to_owned(),
        key: key.to_owned(),
        reason,
    };
    if spec.contains('-') {
        return Err(invalid(format!(
            "`{}`: port ranges are not supported",
            clip(text)
        )));
    }
    spec.trim()
        .parse::<u64>()
        .map_err(|_| invalid(format!("`{}` is not a port number", clip(text))))
}

fn check_protocol(file: &str, key: &str, proto: &str) -> Result<(), SpecError> {
    if proto.eq_ignore_ascii_case("tcp") {
        Ok(())
    } else {
        Err(SpecError::Invalid {
            file: file.to_owned(),
            key: key.to_owned(),
            reason: format!("protocol `{}`: only TCP ports can be routed", clip(proto)),
        })
    }
}

/// Splits a command line into words as compose does (POSIX shell quoting, no expansion).
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("has an unclosed single quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("has an unclosed double quote".to_owned()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("has an unclosed double quote".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err("ends with a lone `\\`".to_owned()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        let ok = |s: &str| split_words(s).expect("splits");
        assert_eq!(ok("npm run dev"), ["npm", "run", "dev"]);
        assert_eq!(
            ok("  sh -c 'echo $HOME; ls'  "),
            ["sh", "-c", "echo $HOME; ls"]
        );
        assert_eq!(
            ok(r#"echo "a \"b\" c" d\ e ''"#),
            ["echo", r#"a "b" c"#, "d e", ""]
        );
        assert!(split_words("echo 'oops").is_err());
        assert!(split_words("echo \"oops").is_err());
    }

    #[test]
    fn container_ports_parse_and_host_ports_are_refused() {
        assert_eq!(container_port("f", "k", "8080").ok(), Some(8080));
        assert_eq!(container_port("f", "k", "8080/tcp").ok(), Some(8080));
        for refused in ["8080:80", "127.0.0.1:8080:80", "0.0.0.0::80"] {
            assert!(matches!(
                container_port("f", "k", refused),
                Err(SpecError::Refused { .. })
            ));
        }
        for bad in ["8080-8081", "80/udp", "http", ""] {
            assert!(matches!(
                container_port("f", "k", bad),
                Err(SpecError::Invalid { .. })
            ));
        }
    }
}
