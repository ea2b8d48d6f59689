//! Untrusted bytes to a YAML tree. This is the only place that touches the YAML parser: it
//! bounds the size, the nesting depth and the expansion of aliases (billion laughs) before
//! anything else sees the input, so that no config can exhaust the stack, the memory or the
//! CPU of previewd. Nothing here knows what a service is.
//!
//! This file holds the limits and the checks made before parsing; `bounded` builds the tree
//! within them.

use std::cell::RefCell;

use serde::de::DeserializeSeed;
use yaml_serde::Value;

use super::SpecError;

mod bounded;
#[cfg(test)]
mod tests;

use bounded::{Budget, NodeSeed};

/// Largest config file read (checked before parsing): real configs are a few KiB.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Deepest nesting accepted. A config needs about 6 levels; the bound keeps recursion (ours and
/// the parser's) far from the end of the stack whatever the input.
pub const MAX_DEPTH: usize = 32;
/// Most nodes the tree may hold once aliases are expanded. yaml_serde limits alias jumps, not
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
    let parsed = seed.deserialize(yaml_serde::Deserializer::from_str(text));
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
