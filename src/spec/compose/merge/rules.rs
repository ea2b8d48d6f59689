//! Compose's merge of a service over the one it `extends`: mappings (`environment`, `labels`,
//! `build`, `depends_on`, ...) key by key, lists like `ports`, `expose`, `dns`, `env_file` and
//! `secrets` concatenated without repeats, `volumes` by target, everything else (`command`,
//! `entrypoint`, scalars) replaced. Lists that compose also writes as mappings are made
//! mappings first. Nothing here checks a value.

use yaml_serde::{Mapping, Value};

/// Compose's merge of one key of a service over the same key of the service it extends.
pub(super) fn merge_key(key: &str, base: Value, over: Value) -> Value {
    match key {
        "command" | "entrypoint" => over,
        "environment" | "labels" | "sysctls" | "extra_hosts" | "annotations" => {
            merge_maps(as_map(base, vars), as_map(over, vars))
        }
        "depends_on" | "networks" => merge_maps(as_map(base, names), as_map(over, names)),
        "ports" | "expose" | "dns" | "dns_search" | "dns_opt" | "tmpfs" | "env_file"
        | "cap_drop" | "secrets" | "configs" | "links" | "group_add" | "profiles" => {
            concat(base, over)
        }
        "volumes" => by_target(base, over),
        "build" => {
            let to_map = |v: Value| match v {
                Value::String(c) => {
                    let mut m = Mapping::new();
                    m.insert("context".into(), Value::String(c));
                    Value::Mapping(m)
                }
                other => other,
            };
            let (mut b, mut o) = (to_map(base), to_map(over));
            for m in [&mut b, &mut o] {
                if let Some(args) = m.get_mut("args") {
                    *args = as_map(std::mem::take(args), vars);
                }
            }
            deep(b, o)
        }
        _ => deep(base, over),
    }
}

/// Mappings merged key by key (recursively); anything else replaced.
fn deep(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Mapping(mut b), Value::Mapping(o)) => {
            for (k, v) in o {
                let merged = match b.remove(&k) {
                    Some(old) => deep(old, v),
                    None => v,
                };
                b.insert(k, merged);
            }
            Value::Mapping(b)
        }
        (_, over) => over,
    }
}

fn merge_maps(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Mapping(mut b), Value::Mapping(o)) => {
            for (k, v) in o {
                b.insert(k, v);
            }
            Value::Mapping(b)
        }
        (_, over) => over,
    }
}

/// A list of `KEY=value` (or `KEY`) as a mapping.
fn vars(item: &str) -> (Value, Value) {
    match item.split_once('=') {
        Some((k, v)) => (k.into(), v.into()),
        None => (item.into(), Value::Null),
    }
}

/// A list of names as a mapping of each to nothing.
fn names(item: &str) -> (Value, Value) {
    (item.into(), Value::Null)
}

fn as_map(v: Value, entry: fn(&str) -> (Value, Value)) -> Value {
    match v {
        Value::Sequence(items) => {
            Value::Mapping(items.iter().filter_map(Value::as_str).map(entry).collect())
        }
        other => other,
    }
}

fn concat(base: Value, over: Value) -> Value {
    let list = |v: Value| match v {
        Value::Sequence(s) => s,
        Value::Null => Vec::new(),
        one => vec![one],
    };
    let mut out = list(base);
    for v in list(over) {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Value::Sequence(out)
}

/// `volumes` merged by target: an entry of the extending service replaces the one with the
/// same target.
fn by_target(base: Value, over: Value) -> Value {
    fn target(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => {
                // `TARGET`, `TARGET:MODE`, `SOURCE:TARGET[:MODE]`: the target is the first
                // absolute path after a source, else the first part.
                let parts: Vec<&str> = s.split(':').collect();
                let t = match parts.get(1) {
                    Some(second) if second.starts_with('/') => second,
                    _ => &parts[0],
                };
                Some((*t).to_owned())
            }
            Value::Mapping(m) => m.get("target").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        }
    }
    let (Value::Sequence(mut b), Value::Sequence(o)) = (base, over.clone()) else {
        return over;
    };
    for v in o {
        let t = target(&v);
        b.retain(|old| t.is_none() || target(old) != t);
        b.push(v);
    }
    Value::Sequence(b)
}
