//! The tree builder behind `parse_tree`: a serde seed that builds the YAML tree node by node,
//! counting nodes and bytes (aliases expanded) and depth as it goes, and refusing duplicate
//! keys, tags and non-scalar keys. The first failure is kept (`TreeFailure`) so the message
//! can name the key; the parser's own error carries only a string. Nothing here may recurse
//! past `MAX_DEPTH` or keep building past the budget.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use yaml_serde::{Mapping, Value};

use super::{MAX_DEPTH, MAX_NODES, MAX_TREE_BYTES, join};
use crate::spec::SpecError;

/// What went wrong while building the tree, kept beside the parser's own error (which can only
/// carry a string) so that the message names the key.
pub(super) enum TreeFailure {
    Duplicate(String),
    TooDeep(String),
    TooLarge,
    Tag(String),
    BadKey(String),
}

impl TreeFailure {
    pub(super) fn into_spec_error(self, file: &str) -> SpecError {
        let file = file.to_owned();
        match self {
            TreeFailure::Duplicate(key) => SpecError::Invalid {
                file,
                key,
                reason: "is defined twice; each key (and each service name) may appear once"
                    .to_owned(),
            },
            TreeFailure::TooDeep(key) => SpecError::Syntax {
                file,
                reason: format!("`{key}` is nested more than {MAX_DEPTH} levels deep"),
            },
            TreeFailure::TooLarge => SpecError::Syntax {
                file,
                reason: format!(
                    "expands to more than {MAX_NODES} nodes or {MAX_TREE_BYTES} bytes \
                     (aliases repeated too often?)"
                ),
            },
            TreeFailure::Tag(key) => SpecError::Syntax {
                file,
                reason: format!("`{key}`: YAML tags (`!name`) are not supported"),
            },
            TreeFailure::BadKey(key) => SpecError::Syntax {
                file,
                reason: format!("`{key}`: keys must be plain strings"),
            },
        }
    }
}

#[derive(Default)]
pub(super) struct Budget {
    nodes: usize,
    bytes: usize,
    pub(super) failure: Option<TreeFailure>,
}

impl Budget {
    /// Records the first failure and returns an error to abort the parse with.
    fn fail<E: de::Error>(&mut self, failure: TreeFailure) -> E {
        if self.failure.is_none() {
            self.failure = Some(failure);
        }
        E::custom("previewd: config refused")
    }

    fn spend<E: de::Error>(&mut self, nodes: usize, bytes: usize) -> Result<(), E> {
        self.nodes = self.nodes.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.nodes > MAX_NODES || self.bytes > MAX_TREE_BYTES {
            return Err(self.fail(TreeFailure::TooLarge));
        }
        Ok(())
    }
}

/// Builds one node of the tree, tracking its path, depth and cost.
pub(super) struct NodeSeed<'b> {
    pub(super) budget: &'b RefCell<Budget>,
    pub(super) path: String,
    pub(super) depth: usize,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.depth > MAX_DEPTH {
            let path = self.path.clone();
            return Err(self.budget.borrow_mut().fail(TreeFailure::TooDeep(path)));
        }
        self.budget.borrow_mut().spend(1, 0)?;
        d.deserialize_any(self)
    }
}

impl NodeSeed<'_> {
    fn child(&self, key: &str) -> NodeSeed<'_> {
        NodeSeed {
            budget: self.budget,
            path: join(&self.path, key),
            depth: self.depth + 1,
        }
    }

    fn item(&self, index: usize) -> NodeSeed<'_> {
        NodeSeed {
            budget: self.budget,
            path: format!("{}[{index}]", self.path),
            depth: self.depth + 1,
        }
    }

    fn scalar<E: de::Error>(&self, value: Value, bytes: usize) -> Result<Value, E> {
        self.budget.borrow_mut().spend(0, bytes)?;
        Ok(value)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.scalar(Value::String(v.to_owned()), v.len())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        let len = v.len();
        self.scalar(Value::String(v), len)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.item(items.len()))? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some(key) = map.next_key_seed(KeySeed {
            budget: self.budget,
            path: &self.path,
        })? {
            let key_value = Value::String(key.clone());
            if mapping.contains_key(&key_value) {
                let path = join(&self.path, &key);
                return Err(self.budget.borrow_mut().fail(TreeFailure::Duplicate(path)));
            }
            let value = map.next_value_seed(self.child(&key))?;
            mapping.insert(key_value, value);
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        let path = self.path.clone();
        Err(self.budget.borrow_mut().fail(TreeFailure::Tag(path)))
    }
}

/// A mapping key: any scalar, kept as its string form.
struct KeySeed<'b> {
    budget: &'b RefCell<Budget>,
    path: &'b str,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl KeySeed<'_> {
    fn key<E: de::Error>(&self, key: String) -> Result<String, E> {
        self.budget.borrow_mut().spend(1, key.len())?;
        Ok(key)
    }

    fn refuse<E: de::Error>(&self) -> E {
        let path = if self.path.is_empty() {
            "(top level)".to_owned()
        } else {
            self.path.to_owned()
        };
        self.budget.borrow_mut().fail(TreeFailure::BadKey(path))
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.key(v.to_owned())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(self.refuse())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<String, A::Error> {
        Err(self.refuse())
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<String, A::Error> {
        Err(self.refuse())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<String, A::Error> {
        Err(self.refuse())
    }
}
