//! What a service mounts: named volumes of the project (and anonymous ones, `nocopy` kept),
//! bind mounts of the repository's own files and folders, memory-backed folders (with their
//! size and mode), and its secrets and configs (read only, where compose mounts them; copied in
//! with their owner and mode when the file sets those). A source outside the repository (`..`, an absolute host
//! path, `~`, a symbolic link pointing out, the Docker socket) is refused. Nothing here decides
//! a Docker name: the manager names volumes after the preview.

use std::path::Path;

use super::Declared;
use super::files::file_mode;
use super::project::{invalid, refused};
use super::shape::{LongVolume, ServiceVolume};
use crate::config::parse_bytes;
use crate::spec::raw::Text;
use crate::spec::runtime::Mount;
use crate::spec::yaml::{clip, join};
use crate::spec::{SpecError, resolve_inside};

/// Mount flags compose's short syntax may carry after the target.
const MODES: [&str; 8] = [
    "ro",
    "rw",
    "z",
    "Z",
    "cached",
    "delegated",
    "consistent",
    "private",
];

pub(super) struct Ctx<'a> {
    pub file: &'a str,
    pub prefix: &'a str,
    pub declared: &'a Declared,
    pub worktree: &'a Path,
}

impl Ctx<'_> {
    pub(super) fn key(&self, rest: &str) -> String {
        join(self.prefix, rest)
    }
}

/// A service's `volumes`.
pub(super) fn volumes(
    cx: &Ctx,
    list: Vec<ServiceVolume>,
    mounts: &mut Vec<Mount>,
    notes: &mut Vec<String>,
    problems: &mut Vec<SpecError>,
) {
    for (i, v) in list.into_iter().enumerate() {
        let key = cx.key(&format!("volumes[{i}]"));
        let mount = match v {
            ServiceVolume::Short(s) => short_volume(cx, &key, &s),
            ServiceVolume::Long(l) => long_volume(cx, &key, *l, notes),
        };
        match mount {
            Ok(m) => mounts.push(m),
            Err(e) => problems.push(e),
        }
    }
}

fn short_volume(cx: &Ctx, key: &str, text: &str) -> Result<Mount, SpecError> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => (None, *target, None),
        [target, mode] if target.starts_with('/') && is_mode(mode) => (None, *target, Some(*mode)),
        [source, target] => (Some(*source), *target, None),
        [source, target, mode] => (Some(*source), *target, Some(*mode)),
        _ => {
            return Err(invalid(
                cx.file,
                key.to_owned(),
                format!("`{}` is not SOURCE:TARGET[:MODE] or TARGET", clip(text)),
            ));
        }
    };
    let mut read_only = false;
    for flag in mode
        .unwrap_or_default()
        .split(',')
        .filter(|f| !f.is_empty())
    {
        match flag {
            "ro" => read_only = true,
            f if MODES.contains(&f) || f == "nocopy" || f == "rprivate" => {}
            "shared" | "rshared" | "slave" | "rslave" => {
                return Err(refused(
                    cx.file,
                    key.to_owned(),
                    format!(
                        "mount propagation `{flag}` would tie the preview's mounts to the host's"
                    ),
                ));
            }
            other => {
                return Err(invalid(
                    cx.file,
                    key.to_owned(),
                    format!("`{}` is not a mount mode (ro, rw, z, Z)", clip(other)),
                ));
            }
        }
    }
    check_target(cx.file, key, target)?;
    let nocopy = mode.is_some_and(|m| m.split(',').any(|f| f == "nocopy"));
    match source {
        None => Ok(Mount::Anonymous {
            target: target.to_owned(),
            nocopy,
        }),
        Some(s) if is_path(s) => bind(cx, key, s, target, read_only),
        Some(name) => named(cx, key, name, target, read_only, nocopy),
    }
}

fn long_volume(
    cx: &Ctx,
    key: &str,
    l: LongVolume,
    notes: &mut Vec<String>,
) -> Result<Mount, SpecError> {
    check_target(cx.file, &join(key, "target"), &l.target)?;
    let read_only = l.read_only.unwrap_or(false);
    if let Some(b) = &l.bind {
        if let Some(p) = b.propagation.as_deref().filter(|p| !p.ends_with("private")) {
            return Err(refused(
                cx.file,
                join(key, "bind.propagation"),
                format!(
                    "mount propagation `{}` would tie the preview's mounts to the host's",
                    clip(p)
                ),
            ));
        }
        if b.selinux.is_some() || b.recursive.is_some() {
            notes.push(format!(
                "{key}: bind options other than read_only are not applied"
            ));
        }
    }
    if l.volume.as_ref().is_some_and(|v| v.subpath.is_some()) {
        return Err(refused(
            cx.file,
            join(key, "volume.subpath"),
            "previewd does not mount volume subpaths; mount the volume",
        ));
    }
    let nocopy = l.volume.as_ref().and_then(|v| v.nocopy).unwrap_or(false);
    match l.kind.as_str() {
        "volume" => match l.source.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(Mount::Anonymous {
                target: l.target,
                nocopy,
            }),
            Some(name) => named(cx, &join(key, "source"), name, &l.target, read_only, nocopy),
        },
        "bind" => {
            let Some(source) = l.source else {
                return Err(invalid(
                    cx.file,
                    join(key, "source"),
                    "is required for a bind mount",
                ));
            };
            let m = bind(cx, &join(key, "source"), &source, &l.target, read_only)?;
            let must_exist = l.bind.as_ref().and_then(|b| b.create_host_path) == Some(false);
            if let (true, Mount::Bind { source, .. }) = (must_exist, &m)
                && !cx.worktree.join(source).exists()
            {
                return Err(invalid(
                    cx.file,
                    join(key, "source"),
                    "does not exist in the repository (and create_host_path is false)",
                ));
            }
            Ok(m)
        }
        "tmpfs" => {
            let (sz, mode) = l.tmpfs.map(|t| (t.size, t.mode)).unwrap_or_default();
            Ok(Mount::Tmpfs {
                target: l.target,
                size: match sz {
                    Some(Text(s)) => Some(size(cx.file, &join(key, "tmpfs.size"), &s)?),
                    None => None,
                },
                mode: match mode {
                    Some(Text(m)) => Some(file_mode(cx.file, &join(key, "tmpfs.mode"), &m)?),
                    None => None,
                },
            })
        }
        other => Err(refused(
            cx.file,
            join(key, "type"),
            format!(
                "mount type `{}`: previews mount volumes, repository paths and tmpfs only",
                clip(other)
            ),
        )),
    }
}

fn is_mode(s: &str) -> bool {
    s.split(',').all(|f| MODES.contains(&f) || f == "nocopy")
}

/// Compose reads a source as a path when it starts like one; otherwise it names a volume.
fn is_path(s: &str) -> bool {
    s.starts_with('.') || s.starts_with('/') || s.starts_with('~') || s.starts_with('$')
}

fn bind(
    cx: &Ctx,
    key: &str,
    source: &str,
    target: &str,
    read_only: bool,
) -> Result<Mount, SpecError> {
    match resolve_inside(cx.worktree, source) {
        Ok(rel) => Ok(Mount::Bind {
            source: rel,
            target: target.to_owned(),
            read_only,
        }),
        Err((true, reason)) => Err(refused(
            cx.file,
            key.to_owned(),
            format!(
                "{reason}; previews mount only the repository's own paths (e.g. `./conf:/etc/app`)"
            ),
        )),
        Err((false, reason)) => Err(invalid(cx.file, key.to_owned(), reason)),
    }
}

fn named(
    cx: &Ctx,
    key: &str,
    name: &str,
    target: &str,
    read_only: bool,
    nocopy: bool,
) -> Result<Mount, SpecError> {
    if !cx.declared.volumes.contains_key(name) {
        return Err(invalid(
            cx.file,
            key.to_owned(),
            format!(
                "names the volume `{}`, which the top-level `volumes:` does not declare",
                clip(name)
            ),
        ));
    }
    Ok(Mount::Volume {
        name: name.to_owned(),
        target: target.to_owned(),
        read_only,
        nocopy,
    })
}

pub(super) fn check_target(file: &str, key: &str, target: &str) -> Result<(), SpecError> {
    if !target.starts_with('/') || target.trim_end_matches('/').is_empty() {
        return Err(invalid(
            file,
            key.to_owned(),
            format!(
                "`{}` must be an absolute container path other than `/`",
                clip(target)
            ),
        ));
    }
    if target.len() > 4096 || target.contains('\0') || target.contains(':') || target.contains(',')
    {
        return Err(invalid(
            file,
            key.to_owned(),
            format!("`{}` is not a plain container path", clip(target)),
        ));
    }
    Ok(())
}

pub(super) fn size(file: &str, key: &str, text: &str) -> Result<i64, SpecError> {
    parse_bytes(text).filter(|b| *b > 0).ok_or_else(|| {
        invalid(
            file,
            key.to_owned(),
            format!("`{}` is not a size like `64m`, `1g` or `1.5gb`", clip(text)),
        )
    })
}

/// A service's `tmpfs`: a path or a list of `path[:options]`.
pub(super) fn tmpfs(
    cx: &Ctx,
    value: yaml_serde::Value,
    mounts: &mut Vec<Mount>,
    problems: &mut Vec<SpecError>,
) {
    let key = cx.key("tmpfs");
    let items: Vec<String> = match value {
        yaml_serde::Value::String(s) => vec![s],
        yaml_serde::Value::Sequence(items) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => {
            problems.push(invalid(cx.file, key, "must be a path or a list of paths"));
            return;
        }
    };
    for item in items {
        let (target, opts) = item.split_once(':').unwrap_or((item.as_str(), ""));
        if let Err(e) = check_target(cx.file, &key, target) {
            problems.push(e);
            continue;
        }
        let mut size_bytes = None;
        let mut mode_bits = None;
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            if let Some(s) = opt.strip_prefix("size=") {
                match size(cx.file, &key, s) {
                    Ok(b) => size_bytes = Some(b),
                    Err(e) => problems.push(e),
                }
            } else if let Some(m) = opt.strip_prefix("mode=") {
                match file_mode(cx.file, &key, m) {
                    Ok(b) => mode_bits = Some(b),
                    Err(e) => problems.push(e),
                }
            }
        }
        mounts.push(Mount::Tmpfs {
            target: target.to_owned(),
            size: size_bytes,
            mode: mode_bits,
        });
    }
}
