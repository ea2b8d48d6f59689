//! Raw serde shapes shared by `.previewd.yml` and compose files: values that may be
//! written in more than one form (a build as a string or a mapping, env as a mapping or a list
//! of `K=V`, a command as a list or a string). They only mirror the input; every check lives
//! in `validate`. Nothing here decides what is allowed.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer};

/// A scalar where text is wanted: YAML reads `3000` or `true` as a number or a boolean, and
/// compose accepts them as text (`PORT: 3000`), so they are kept as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Environment variables or build args, in order. The value is `None` for a bare `KEY` (list
/// form) or `KEY:` with no value (mapping form): compose would copy it from the environment of
/// the process running it, which for previewd holds its secrets, so `validate` refuses it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vars(pub Vec<(String, Option<String>)>);

impl<'de> Deserialize<'de> for Vars {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vars;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of NAME: value, or a list of NAME=value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vars, A::Error> {
                let mut vars = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<Option<Text>>()?;
                    vars.push((key, value.map(|t| t.0)));
                }
                Ok(Vars(vars))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vars, A::Error> {
                let mut vars = Vec::new();
                while let Some(entry) = seq.next_element::<String>()? {
                    match entry.split_once('=') {
                        Some((k, v)) => vars.push((k.to_owned(), Some(v.to_owned()))),
                        None => vars.push((entry, None)),
                    }
                }
                Ok(Vars(vars))
            }
        }
        d.deserialize_any(V)
    }
}

/// A command: a list is run as it is (exec form); what a string means depends on the format
/// (`sh -c` in `.previewd.yml`, split into words in compose, as compose does).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Exec(Vec<String>),
    Line(String),
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings, or a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Command, E> {
                Ok(Command::Line(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut args = Vec::new();
                while let Some(arg) = seq.next_element::<Text>()? {
                    args.push(arg.0);
                }
                Ok(Command::Exec(args))
            }
        }
        d.deserialize_any(V)
    }
}

/// `build:` as a context path (`build: api`) or as a mapping.
#[derive(Debug, Clone, PartialEq)]
pub enum Build {
    Short(String),
    Full(BuildMap),
}

/// The mapping form of `build:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildMap {
    /// Context directory, relative to the repository root; `.` when absent.
    pub context: Option<String>,
    /// Dockerfile path, relative to the context; `Dockerfile` when absent.
    pub dockerfile: Option<String>,
    /// Build args (`ARG` values), as a mapping or a list of `NAME=value`.
    pub args: Option<Vars>,
    /// The stage of a multi-stage Dockerfile to build; the last stage when absent.
    pub target: Option<String>,
}

impl<'de> Deserialize<'de> for Build {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Build;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a context path, or a mapping {context, dockerfile, args, target}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Build, E> {
                Ok(Build::Short(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Build, A::Error> {
                BuildMap::deserialize(MapAccessDeserializer::new(map)).map(Build::Full)
            }
        }
        d.deserialize_any(V)
    }
}

/// `healthcheck:` in `.previewd.yml`, and `x-previewd.healthcheck` in compose.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Path requested through the gateway; defaults to the service's route.
    pub path: Option<String>,
    /// Expected HTTP status; defaults to 200.
    pub status: Option<u64>,
    /// How long to wait for health, e.g. `60s` or `2m`; capped by the operator's limit.
    pub timeout: Option<String>,
}
