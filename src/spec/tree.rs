//! A parsed YAML tree seen as a serde `Deserializer` that knows where it is, so that every
//! error from the raw structs names its key path (`services.web.port`) and an unknown key is
//! reported as such (`deny_unknown_fields`) rather than as a sentence to parse. It only reads
//! the tree; nothing here decides what is allowed.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use yaml_serde::Value;

use super::yaml::join;

/// Why a tree did not fit a raw struct, with the path of the node where it happened.
#[derive(Debug)]
pub struct TreeError {
    /// Path of the innermost node that failed (`services.web.port`); empty for the root.
    pub path: String,
    pub kind: TreeErrorKind,
    located: bool,
}

#[derive(Debug)]
pub enum TreeErrorKind {
    /// A key that the struct at `path` does not have (`deny_unknown_fields`).
    UnknownField(String),
    /// A required key missing from the struct at `path`.
    MissingField(String),
    /// Anything else (wrong type, bad value), already worded by serde.
    Message(String),
}

impl TreeError {
    /// The full key path the error is about.
    pub fn key(&self) -> String {
        match &self.kind {
            TreeErrorKind::UnknownField(f) | TreeErrorKind::MissingField(f) => join(&self.path, f),
            TreeErrorKind::Message(_) => {
                if self.path.is_empty() {
                    "(top level)".to_owned()
                } else {
                    self.path.clone()
                }
            }
        }
    }

    /// Attaches the path of the node being deserialized, unless an inner node already did.
    fn at(mut self, path: &str) -> Self {
        if !self.located {
            self.path = path.to_owned();
            self.located = true;
        }
        self
    }

    fn new(kind: TreeErrorKind) -> Self {
        TreeError {
            path: String::new(),
            kind,
            located: false,
        }
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TreeErrorKind::UnknownField(_) => write!(f, "`{}`: unknown key", self.key()),
            TreeErrorKind::MissingField(_) => write!(f, "`{}`: missing", self.key()),
            TreeErrorKind::Message(m) => write!(f, "`{}`: {m}", self.key()),
        }
    }
}

impl std::error::Error for TreeError {}

impl de::Error for TreeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TreeError::new(TreeErrorKind::Message(msg.to_string()))
    }
    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        TreeError::new(TreeErrorKind::UnknownField(field.to_owned()))
    }
    fn missing_field(field: &'static str) -> Self {
        TreeError::new(TreeErrorKind::MissingField(field.to_owned()))
    }
}

/// Deserializes `T` from the node `value` found at `path`, so that errors carry key paths.
pub fn from_tree<T: DeserializeOwned>(value: &Value, path: &str) -> Result<T, TreeError> {
    T::deserialize(Node {
        value,
        path: path.to_owned(),
    })
}

/// A tree node seen as a serde `Deserializer` that knows its own path.
struct Node<'a> {
    value: &'a Value,
    path: String,
}

impl<'de> de::Deserializer<'de> for Node<'_> {
    type Error = TreeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        let path = self.path;
        let result = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Sequence(items) => visitor.visit_seq(Items {
                items: items.iter().enumerate(),
                path: &path,
            }),
            Value::Mapping(mapping) => visitor.visit_map(Entries {
                entries: mapping.iter(),
                path: &path,
                pending: None,
            }),
            Value::Tagged(_) => Err(de::Error::custom("YAML tags are not supported")),
        };
        result.map_err(|e| e.at(&path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct Items<'a, I> {
    items: I,
    path: &'a str,
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Value)>> SeqAccess<'de> for Items<'a, I> {
    type Error = TreeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TreeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, value)) => seed
                .deserialize(Node {
                    value,
                    path: format!("{}[{i}]", self.path),
                })
                .map(Some),
        }
    }
}

struct Entries<'a, I> {
    entries: I,
    path: &'a str,
    pending: Option<(String, &'a Value)>,
}

impl<'de, 'a, I: Iterator<Item = (&'a Value, &'a Value)>> MapAccess<'de> for Entries<'a, I> {
    type Error = TreeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TreeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        // The tree builder turned every key into a string.
        let key = match key {
            Value::String(s) => s.clone(),
            other => yaml_serde::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        let result = seed.deserialize(key.as_str().into_deserializer());
        self.pending = Some((key, value));
        result.map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, TreeError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("value without a key"));
        };
        seed.deserialize(Node {
            value,
            path: join(self.path, &key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse_tree;

    #[test]
    fn errors_carry_paths() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct Inner {
            #[allow(dead_code)]
            port: u16,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct Outer {
            #[allow(dead_code)]
            list: Vec<Inner>,
        }
        let tree = parse_tree("x", b"list: [{port: 1}, {port: 70000}]").expect("parses");
        let err = from_tree::<Outer>(&tree, "").expect_err("refused");
        assert_eq!(err.key(), "list[1].port");
        let tree = parse_tree("x", b"list: [{port: 1, volumes: []}]").expect("parses");
        let err = from_tree::<Outer>(&tree, "").expect_err("refused");
        assert_eq!(err.key(), "list[0].volumes");
        assert!(matches!(err.kind, TreeErrorKind::UnknownField(_)));
        let tree = parse_tree("x", b"list: [{}]").expect("parses");
        let err = from_tree::<Outer>(&tree, "").expect_err("refused");
        assert_eq!(err.key(), "list[0].port");
    }
}
