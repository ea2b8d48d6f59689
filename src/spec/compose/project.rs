//! The top-level declarations of a compose file that services refer to: named volumes, the
//! project's networks, secrets and configs. Each becomes something of this preview alone
//! (previewd names it), so `external` ones and other drivers are refused and fixed subnets are
//! not used (`check` says so); a secret or config is a file of the repository, or a config's
//! inline `content`. Nothing here reads a service.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use yaml_serde::Value;

use super::Declared;

/// The largest inline `content` of a config (what previewd copies into a container).
const MAX_CONTENT: usize = 1 << 20;
use super::shape::{TopFile, TopNetwork, TopVolume};
use crate::spec::raw::Vars;
use crate::spec::runtime::{Copied, DEFAULT_NETWORK, NetworkSpec, VolumeSpec};
use crate::spec::yaml::{clip, join};
use crate::spec::{SpecError, resolve_inside, tree, validate};

pub(super) fn refused(file: &str, key: String, reason: impl Into<String>) -> SpecError {
    SpecError::Refused {
        file: file.to_owned(),
        key,
        reason: reason.into(),
    }
}

pub(super) fn invalid(file: &str, key: String, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        file: file.to_owned(),
        key,
        reason: reason.into(),
    }
}

/// The entries of the top-level `section`, each read as `T` (a null entry as `T::default()`
/// where the caller allows it), with their key paths.
fn entries<T: DeserializeOwned>(
    file: &str,
    tree: &Value,
    section: &str,
    problems: &mut Vec<SpecError>,
) -> Vec<(String, String, T)> {
    let mut out = Vec::new();
    let Some(node) = tree.get(section) else {
        return out;
    };
    let Some(map) = node.as_mapping() else {
        if !node.is_null() {
            problems.push(invalid(
                file,
                section.to_owned(),
                "must be a mapping of names",
            ));
        }
        return out;
    };
    for (name, entry) in map {
        let name = name.as_str().unwrap_or_default().to_owned();
        let key = join(section, &clip(&name));
        if !valid_object_name(&name) {
            problems.push(invalid(
                file,
                key.clone(),
                "is not a valid name: use letters, digits, `_`, `.` and `-`, starting with a \
                 letter or digit",
            ));
            continue;
        }
        match tree::from_tree::<T>(entry, &key) {
            Ok(v) => out.push((name, key, v)),
            Err(e) => problems.push(validate::tree_error(file, e)),
        }
    }
    out
}

/// A volume, network, secret or config name as compose allows it (and Docker after a prefix).
pub(super) fn valid_object_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// previewd's label namespace (the Docker side names it too; spec may not depend on it).
const PREVIEWD_LABELS: &str = "dev.previewd.";

fn is_external(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(_) => true,
    }
}

/// Labels as written, refusing previewd's own: they are its state.
pub(super) fn labels(
    file: &str,
    key: &str,
    vars: Option<Vars>,
    problems: &mut Vec<SpecError>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in vars.map(|v| v.0).unwrap_or_default() {
        if k.starts_with(PREVIEWD_LABELS) {
            problems.push(refused(
                file,
                join(key, &clip(&k)),
                "`dev.previewd.*` labels are previewd's own record of its previews",
            ));
            continue;
        }
        out.insert(k, v.unwrap_or_default());
    }
    out
}

/// Reads the top-level volumes, networks, secrets and configs.
pub(super) fn declared(
    file: &str,
    tree: &Value,
    worktree: &Path,
    problems: &mut Vec<SpecError>,
) -> Declared {
    let mut volumes = BTreeMap::new();
    let mut changes = Vec::new();
    for (name, key, v) in entries::<Option<TopVolume>>(file, tree, "volumes", problems) {
        let v = v.unwrap_or_default();
        if is_external(&v.external) {
            problems.push(refused(
                file,
                join(&key, "external"),
                "a volume made outside the preview may hold another preview's or the host's \
                 data; previews get volumes of their own",
            ));
        }
        if let Some(d) = v.driver.as_deref().filter(|d| *d != "local") {
            problems.push(refused(
                file,
                join(&key, "driver"),
                format!(
                    "volume driver `{}`: previews get Docker's local volumes only",
                    clip(d)
                ),
            ));
        }
        let labels = labels(file, &join(&key, "labels"), v.labels, problems);
        if let Some(n) = v.name {
            changes.push(format!(
                "{key}: Docker name `{}` not used; previewd names the volume after the preview",
                clip(&n)
            ));
        }
        volumes.insert(name, VolumeSpec { labels });
    }
    let mut networks = BTreeMap::new();
    for (name, key, n) in entries::<Option<TopNetwork>>(file, tree, "networks", problems) {
        let n = n.unwrap_or_default();
        if is_external(&n.external) {
            problems.push(refused(
                file,
                join(&key, "external"),
                "a network made outside the preview would join it to the host's or another \
                 preview's containers; previews run on networks of their own",
            ));
        }
        if let Some(d) = n.driver.as_deref().filter(|d| *d != "bridge") {
            problems.push(refused(
                file,
                join(&key, "driver"),
                format!(
                    "network driver `{}`: previews run on bridge networks of their own only",
                    clip(d)
                ),
            ));
        }
        if n.enable_ipv6 == Some(true) || n.enable_ipv4 == Some(false) {
            problems.push(refused(
                file,
                join(
                    &key,
                    if n.enable_ipv6 == Some(true) {
                        "enable_ipv6"
                    } else {
                        "enable_ipv4"
                    },
                ),
                "previewd gives every preview network an IPv4 subnet of its own pool",
            ));
        }
        if let Some(ipam) = &n.ipam {
            ipam_note(file, &key, ipam, &mut changes, problems);
        }
        let labels = labels(file, &join(&key, "labels"), n.labels, problems);
        if let Some(n) = n.name {
            changes.push(format!(
                "{key}: Docker name `{}` not used; previewd names the network after the preview",
                clip(&n)
            ));
        }
        if name != DEFAULT_NETWORK {
            networks.insert(
                name,
                NetworkSpec {
                    internal: n.internal.unwrap_or(false),
                    labels,
                },
            );
        }
    }
    let secrets = files(file, tree, "secrets", worktree, &mut changes, problems);
    let configs = files(file, tree, "configs", worktree, &mut changes, problems);
    Declared {
        volumes,
        networks,
        secrets,
        configs,
        changes,
    }
}

/// A network's `ipam`: its subnets are not used, since two previews of one project would
/// collide on a fixed subnet (a service pinning an address in it is refused by `draft`); an
/// address manager other than Docker's is refused.
fn ipam_note(
    file: &str,
    key: &str,
    ipam: &Value,
    changes: &mut Vec<String>,
    problems: &mut Vec<SpecError>,
) {
    let key = join(key, "ipam");
    let Some(m) = ipam.as_mapping() else {
        if !ipam.is_null() {
            problems.push(invalid(file, key, "must be a mapping"));
        }
        return;
    };
    for (k, v) in m {
        match (k.as_str().unwrap_or_default(), v) {
            ("driver", Value::String(d)) if d == "default" => {}
            ("driver", v) => problems.push(refused(
                file,
                join(&key, "driver"),
                format!(
                    "address manager `{}`: previews' networks use Docker's own",
                    clip(v.as_str().unwrap_or("?"))
                ),
            )),
            ("config" | "options", _) => {}
            (other, _) if other.starts_with("x-") => {}
            (other, _) => problems.push(invalid(
                file,
                join(&key, &clip(other)),
                "is not a key of compose's `ipam`: use driver, config or options",
            )),
        }
    }
    let subnets: Vec<String> = m
        .get("config")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("subnet")?.as_str().map(clip))
        .collect();
    let what = if subnets.is_empty() {
        "its settings".to_owned()
    } else {
        format!("subnet {}", subnets.join(", "))
    };
    changes.push(format!(
        "{key}: {what} not used; previewd gives every preview network a subnet of its own \
         pool, so that two previews of this project never collide"
    ));
}

/// Secrets or configs: each a file of the repository, or a config's inline `content`.
fn files(
    file: &str,
    tree: &Value,
    section: &str,
    worktree: &Path,
    changes: &mut Vec<String>,
    problems: &mut Vec<SpecError>,
) -> BTreeMap<String, Copied> {
    let mut out = BTreeMap::new();
    for (name, key, f) in entries::<TopFile>(file, tree, section, problems) {
        if is_external(&f.external) {
            problems.push(refused(
                file,
                join(&key, "external"),
                "an external secret or config lives outside the repository; previews read \
                 only the repository's files: use `file:`",
            ));
            continue;
        }
        if let Some(n) = &f.name {
            changes.push(format!("{key}: name `{}` not used", clip(n)));
        }
        if let Some(content) = f.content {
            if section == "secrets" {
                problems.push(refused(
                    file,
                    join(&key, "content"),
                    "compose's secrets have no `content` (configs do): put it in a file of \
                     the repository and use `file:`",
                ));
            } else if content.len() > MAX_CONTENT {
                problems.push(invalid(
                    file,
                    join(&key, "content"),
                    format!("is {} bytes; the limit is 1 MiB", content.len()),
                ));
            } else if f.file.is_some() {
                problems.push(invalid(
                    file,
                    key,
                    "has both `file` and `content`: keep one",
                ));
            } else {
                out.insert(name, Copied::Inline(content));
            }
            continue;
        }
        let Some(path) = f.file else {
            problems.push(invalid(
                file,
                join(&key, "file"),
                "is required: the repository file to mount",
            ));
            continue;
        };
        match resolve_inside(worktree, &path) {
            Ok(rel) if worktree.join(&rel).is_file() => {
                out.insert(name, Copied::Repo(rel));
            }
            Ok(_) => problems.push(invalid(
                file,
                join(&key, "file"),
                format!("`{}` is not a file of the repository", clip(&path)),
            )),
            Err((true, reason)) => problems.push(refused(file, join(&key, "file"), reason)),
            Err((false, reason)) => problems.push(invalid(file, join(&key, "file"), reason)),
        }
    }
    out
}
