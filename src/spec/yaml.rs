//! Untrusted bytes to a YAML tree. This is the only place that touches the YAML parser: it
//! bounds the size, the nesting depth and the expansion of aliases (billion laughs) before
//! anything else sees the input, so that no config can exhaust the stack, the memory or the
//! CPU of previewd. Nothing here knows what a service is.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_yaml::{Mapping, Value};

use super::SpecError;

/// Largest config file read (checked before parsing): real configs are a few KiB.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Deepest nesting accepted. A config needs about 6 levels; the bound keeps recursion (ours and
/// the parser's) far from the end of the stack whatever the input.
pub const MAX_DEPTH: usize = 32;
/// Most nodes the tree may hold once aliases are expanded. serde_yaml limits alias jumps, not
/// the size of what each jump copies, so a large anchor referenced many times would still
/// expand quadratically without this.
pub const MAX_NODES: usize = 100_000;
/// Most bytes of strings (keys and scalars) the tree may hold once aliases are expanded.
pub const MAX_TREE_BYTES: usize = 4 * MAX_FILE_BYTES;

/// Bound on (number of `[` and `{`) x (file length). libyaml checks every open flow
/// collection for each token it reads, so its time grows with flow depth times length: 40,000
/// nested `[` take seconds, a megabyte of them an hour. The count of brackets is a sound upper
/// bound on the depth whatever the quoting, so this caps the parser's work at about this many
/// steps. A 10 KiB file may hold 5,000 brackets, a 1 MiB one 47.
pub const MAX_FLOW_COST: usize = 50_000_000;

/// Parses `bytes` into a YAML tree with merge keys (`<<`) applied, refusing oversized,
/// non-UTF-8, too deep or too expanded input, YAML tags and duplicate keys.
pub fn parse_tree(file: &str, bytes: &[u8]) -> Result<Value, SpecError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(SpecError::Unreadable {
            file: file.to_owned(),
            reason: format!(
                "it is {} bytes, over the limit of {} bytes (1 MiB)",
                bytes.len(),
                MAX_FILE_BYTES
            ),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| SpecError::Syntax {
        file: file.to_owned(),
        reason: format!("not valid UTF-8 (at byte {})", e.valid_up_to()),
    })?;
    let brackets = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    if brackets.saturating_mul(text.len()) > MAX_FLOW_COST {
        return Err(SpecError::Syntax {
            file: file.to_owned(),
            reason: format!(
                "has {brackets} `[`/`{{` in {} bytes: flow collections that deep or that many are \
                 refused; write lists and mappings in block style",
                text.len()
            ),
        });
    }
    let budget = RefCell::new(Budget::default());
    let seed = NodeSeed {
        budget: &budget,
        path: String::new(),
        depth: 0,
    };
    let parsed = seed.deserialize(serde_yaml::Deserializer::from_str(text));
    let failure = budget.borrow_mut().failure.take();
    let mut tree = match (parsed, failure) {
        (Ok(tree), _) => tree,
        (Err(_), Some(failure)) => return Err(failure.into_spec_error(file)),
        (Err(e), None) => {
            return Err(SpecError::Syntax {
                file: file.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    tree.apply_merge().map_err(|e| SpecError::Syntax {
        file: file.to_owned(),
        reason: format!("merge key `<<`: {e}"),
    })?;
    Ok(tree)
}

/// Joins a key path the way messages show it: `services.web.env`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Cuts a value taken from the input before echoing it in a message: it may be huge.
pub fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}...")
    }
}

/// What went wrong while building the tree, kept beside the parser's own error (which can only
/// carry a string) so that the message names the key.
enum TreeFailure {
    Duplicate(String),
    TooDeep(String),
    TooLarge,
    Tag(String),
    BadKey(String),
}

impl TreeFailure {
    fn into_spec_error(self, file: &str) -> SpecError {
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
struct Budget {
    nodes: usize,
    bytes: usize,
    failure: Option<TreeFailure>,
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
struct NodeSeed<'b> {
    budget: &'b RefCell<Budget>,
    path: String,
    depth: usize,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn syntax_reason(r: Result<Value, SpecError>) -> String {
        match r {
            Err(SpecError::Syntax { reason, .. }) => reason,
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn billion_laughs_is_refused_quickly() {
        let mut doc = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let start = Instant::now();
        let err = parse_tree("x.yml", doc.as_bytes());
        assert!(err.is_err(), "alias bomb accepted");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn large_anchor_repeated_is_refused() {
        // Few alias jumps (serde_yaml's own limit does not fire) but each copies a big anchor.
        let mut doc = String::from("big: &big [");
        doc.push_str(&"x, ".repeat(20_000));
        doc.push_str("x]\nmany: [");
        doc.push_str(&"*big, ".repeat(2_000));
        doc.push_str("*big]\n");
        let start = Instant::now();
        let reason = syntax_reason(parse_tree("x.yml", doc.as_bytes()));
        assert!(reason.contains("expands"), "{reason}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        for doc in [
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            format!("{}x{}", "{a: ".repeat(10_000), "}".repeat(10_000)),
            (0..1_000)
                .map(|i| format!("{}- \n", " ".repeat(i)))
                .collect(),
        ] {
            let start = Instant::now();
            let reason = syntax_reason(parse_tree("x.yml", doc.as_bytes()));
            assert!(
                reason.contains("nested") || reason.contains("flow"),
                "{reason}"
            );
            assert!(start.elapsed() < Duration::from_secs(5));
        }
    }

    #[test]
    fn flow_collections_cannot_make_the_parser_quadratic() {
        // Under the bracket budget but as deep as it allows: still refused by depth, quickly.
        let doc = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
        let start = Instant::now();
        assert!(parse_tree("x.yml", doc.as_bytes()).is_err());
        assert!(start.elapsed() < Duration::from_secs(2));
        // A megabyte of brackets is refused before the parser sees it.
        let doc = "[".repeat(MAX_FILE_BYTES);
        let start = Instant::now();
        let reason = syntax_reason(parse_tree("x.yml", doc.as_bytes()));
        assert!(reason.contains("flow"), "{reason}");
        assert!(start.elapsed() < Duration::from_secs(1));
        // Ordinary flow style is fine.
        let doc = "services: {web: {ports: [\"80\"], command: [a, b]}}\n";
        assert!(parse_tree("x.yml", doc.as_bytes()).is_ok());
    }

    #[test]
    fn size_and_encoding_are_checked_first() {
        let big = vec![b'#'; MAX_FILE_BYTES + 1];
        assert!(matches!(
            parse_tree("x.yml", &big),
            Err(SpecError::Unreadable { .. })
        ));
        let reason = syntax_reason(parse_tree("x.yml", b"services: \xff\xfe"));
        assert!(reason.contains("UTF-8"), "{reason}");
    }

    #[test]
    fn duplicate_keys_name_the_key() {
        let doc = "services:\n  web: {image: a}\n  web: {image: b}\n";
        match parse_tree("x.yml", doc.as_bytes()) {
            Err(SpecError::Invalid { key, .. }) => assert_eq!(key, "services.web"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tags_and_complex_keys_are_refused() {
        assert!(syntax_reason(parse_tree("x.yml", b"a: !secret b\n")).contains("tags"));
        assert!(syntax_reason(parse_tree("x.yml", b"? [a]\n: b\n")).contains("keys"));
    }

    #[test]
    fn merge_keys_are_applied() {
        let doc = "base: &b {image: x, port: 1}\nweb:\n  <<: *b\n  port: 2\n";
        let tree = parse_tree("x.yml", doc.as_bytes()).expect("parses");
        assert_eq!(tree["web"]["image"], Value::from("x"));
        assert_eq!(tree["web"]["port"], Value::from(2));
    }
}
