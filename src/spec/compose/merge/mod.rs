//! `include` and `extends`, expanded before anything else is read, as compose expands them:
//! an included file's services, volumes, networks, secrets and configs join the project (a
//! name defined twice is a problem, as in compose), and a service that `extends` another (of
//! the same file or of another file of the repository) is the other one with its own keys
//! merged over it (compose's merge rules: mappings merged key by key, `ports`, `expose`,
//! `dns`, `env_file` and the like concatenated, `volumes` merged by target, the rest
//! replaced). Another file's relative paths are relative to its own folder, as in compose, and
//! are rewritten relative to the repository's root. Every file read must be a regular file of
//! the repository (`..`, absolute paths, `~` and symbolic links pointing out are refused
//! naming the key); chains are bounded. Nothing here accepts a value: the merged file is
//! checked as if it had been written whole.
//!
//! This file expands `extends`; `include` the includes, `paths` reads the other files and
//! rewrites their paths, `rules` merges one service over another.

use std::path::{Path, PathBuf};

use yaml_serde::{Mapping, Value};

use super::project::invalid;
use crate::spec::SpecError;
use crate::spec::yaml::{clip, join};

mod include;
mod paths;
mod rules;

use include::include;
use paths::{load, rebase_service};
use rules::merge_key;

/// The longest chain of `include`s or `extends`.
const MAX_DEPTH: usize = 8;
/// The most files one compose file may bring in (each up to the size limit).
const MAX_FILES: usize = 32;

/// Expands `include` and then `extends` in `tree` (the file `file`, at the repository root).
pub(super) fn expand(file: &str, tree: &mut Value, worktree: &Path, problems: &mut Vec<SpecError>) {
    let Some(top) = tree.as_mapping_mut() else {
        return;
    };
    let mut stack = vec![PathBuf::from(file)];
    let mut budget = MAX_FILES;
    include(
        file,
        top,
        Path::new("."),
        worktree,
        &mut stack,
        &mut budget,
        problems,
    );
    let Some(services) = top.get_mut("services").and_then(Value::as_mapping_mut) else {
        return;
    };
    let names: Vec<Value> = services.keys().cloned().collect();
    let here = Source {
        services: services.clone(),
        dir: PathBuf::from("."),
    };
    for name in names {
        let n = name.as_str().unwrap_or_default().to_owned();
        let key = join(&join("services", &clip(&n)), "extends");
        let Some(svc) = services.get_mut(&name).and_then(Value::as_mapping_mut) else {
            continue;
        };
        if !svc.contains_key("extends") {
            continue;
        }
        let mut seen = vec![(PathBuf::from(file), n.clone())];
        match extended(
            file,
            &key,
            svc.clone(),
            &here,
            worktree,
            &mut seen,
            &mut budget,
        ) {
            Ok(merged) => *svc = merged,
            Err(e) => {
                svc.remove("extends");
                problems.push(e);
            }
        }
    }
}

/// The services of one file, and its folder relative to the repository root.
struct Source {
    services: Mapping,
    dir: PathBuf,
}

/// `svc` with what its `extends` names merged under it (recursively).
fn extended(
    file: &str,
    key: &str,
    mut svc: Mapping,
    here: &Source,
    worktree: &Path,
    seen: &mut Vec<(PathBuf, String)>,
    budget: &mut usize,
) -> Result<Mapping, SpecError> {
    let Some(ext) = svc.remove("extends") else {
        return Ok(svc);
    };
    if seen.len() > MAX_DEPTH {
        return Err(invalid(
            file,
            key.to_owned(),
            "extends more than 8 services deep",
        ));
    }
    let (name, other) = match &ext {
        Value::String(s) => (s.clone(), None),
        Value::Mapping(m) => {
            for k in m.keys() {
                let k = k.as_str().unwrap_or_default();
                if k != "service" && k != "file" {
                    return Err(invalid(
                        file,
                        join(key, &clip(k)),
                        "use `service` and `file`",
                    ));
                }
            }
            let service = m.get("service").and_then(Value::as_str);
            let Some(service) = service else {
                return Err(invalid(file, join(key, "service"), "is required"));
            };
            let f = m.get("file").and_then(Value::as_str).map(str::to_owned);
            (service.to_owned(), f)
        }
        _ => {
            return Err(invalid(
                file,
                key.to_owned(),
                "must be a service name or {service, file}",
            ));
        }
    };
    let loaded: Source;
    let (source, origin) = match other {
        None => (here, seen.last().map(|s| s.0.clone()).unwrap_or_default()),
        Some(f) => {
            let (rel, tree) = load(file, &join(key, "file"), &here.dir, &f, worktree, budget)?;
            loaded = Source {
                services: tree
                    .get("services")
                    .and_then(Value::as_mapping)
                    .cloned()
                    .unwrap_or_default(),
                dir: rel
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            };
            (&loaded, rel)
        }
    };
    if seen.iter().any(|(f, s)| *f == origin && *s == name) {
        return Err(invalid(
            file,
            key.to_owned(),
            format!("`{}` extends itself through a cycle", clip(&name)),
        ));
    }
    let Some(base) = source
        .services
        .get(name.as_str())
        .and_then(Value::as_mapping)
    else {
        return Err(invalid(
            file,
            key.to_owned(),
            format!(
                "names the service `{}`, which is not defined there",
                clip(&name)
            ),
        ));
    };
    let mut base = base.clone();
    // Its own `extends.file` stays relative to its file: the next round reads it from there.
    let next = base.remove("extends");
    rebase_service(&mut base, &source.dir);
    if let Some(next) = next {
        base.insert("extends".into(), next);
    }
    seen.push((origin, name));
    let base = extended(file, key, base, source, worktree, seen, budget)?;
    for (k, v) in std::mem::take(&mut svc) {
        let merged = match base.get(&k) {
            Some(b) => merge_key(k.as_str().unwrap_or_default(), b.clone(), v),
            None => v,
        };
        svc.insert(k, merged);
    }
    let mut out = base;
    for (k, v) in svc {
        out.insert(k, v);
    }
    Ok(out)
}
