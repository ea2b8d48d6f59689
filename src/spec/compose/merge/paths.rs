//! The other files `include` and `extends` name: read only when they are regular files of the
//! repository (the key named when one is not), and their relative paths rewritten from their
//! own folder to the repository's root (`./`-prefixed, as compose reads a path). A path that
//! climbs out is left climbing, to be refused where it is read. Nothing here merges.

use std::path::{Component, Path, PathBuf};

use yaml_serde::{Mapping, Value};

use super::MAX_FILES;
use crate::spec::compose::project::{invalid, refused};
use crate::spec::yaml::{self, clip};
use crate::spec::{SpecError, resolve_inside};

/// Reads the compose file `path` (relative to `dir`, itself relative to the root): it must be
/// a regular file of the repository. Returns its path relative to the root and its tree.
pub(super) fn load(
    file: &str,
    key: &str,
    dir: &Path,
    path: &str,
    worktree: &Path,
    budget: &mut usize,
) -> Result<(PathBuf, Value), SpecError> {
    *budget = budget.checked_sub(1).ok_or_else(|| {
        invalid(
            file,
            key.to_owned(),
            format!("brings in more than {MAX_FILES} files with include and extends"),
        )
    })?;
    let joined = rooted(dir, path).ok_or_else(|| {
        refused(
            file,
            key.to_owned(),
            format!(
                "`{}` leaves the repository; previewd reads only the repository's own files",
                clip(path)
            ),
        )
    })?;
    let rel = resolve_inside(worktree, &joined).map_err(|(out, why)| {
        let why = format!("{why}; previewd reads only the repository's own files");
        if out {
            refused(file, key.to_owned(), why)
        } else {
            invalid(file, key.to_owned(), why)
        }
    })?;
    let name = rel.to_string_lossy().into_owned();
    let bytes = crate::spec::read_config(worktree, &name)
        .map_err(|e| invalid(file, key.to_owned(), e.to_string()))?
        .ok_or_else(|| {
            invalid(
                file,
                key.to_owned(),
                format!("`{}` does not exist", clip(path)),
            )
        })?;
    let mut tree = yaml::parse_tree(&name, &bytes)?;
    // Only the main file says who may see the preview: a tightening elsewhere would be
    // dropped with the file's other extensions, so it is refused rather than lost.
    if tree.get("x-previewd").is_some() {
        return Err(invalid(
            file,
            key.to_owned(),
            format!(
                "`{}` has a top-level `x-previewd`, which previewd reads only in the main \
                 compose file: move it there",
                clip(&name)
            ),
        ));
    }
    crate::spec::compose::keys::strip_extensions(&mut tree);
    Ok((rel, tree))
}

/// `path` written in a file of the folder `dir`, relative to the root (`./`-prefixed, so that
/// compose still reads it as a path); `None` when it climbs above the root. Absolute paths and
/// `~` are kept as written, to be refused where they are read.
fn rooted(dir: &Path, path: &str) -> Option<String> {
    if path.starts_with('/') || path.starts_with('~') || path.starts_with('$') {
        return Some(path.to_owned());
    }
    let n = normalize(&dir.join(path));
    if n.components().next() == Some(Component::ParentDir) {
        return None;
    }
    Some(format!("./{}", n.display()))
}

/// `p` with `.` and `..` taken out lexically (a leading `..` kept).
pub(super) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Rewrites the relative paths of an included file's services, secrets and configs.
pub(super) fn rebase_top(top: &mut Mapping, dir: &Path) {
    if let Some(Value::Mapping(services)) = top.get_mut("services") {
        for (_, svc) in services.iter_mut() {
            if let Value::Mapping(svc) = svc {
                rebase_service(svc, dir);
            }
        }
    }
    for section in ["secrets", "configs"] {
        if let Some(Value::Mapping(entries)) = top.get_mut(section) {
            for (_, e) in entries.iter_mut() {
                if let Some(Value::String(f)) = e.get_mut("file") {
                    rebase(f, dir);
                }
            }
        }
    }
}

/// Rewrites the relative paths of one service written in the folder `dir`: its build
/// context, env files, bind-mount sources and the file it extends.
pub(super) fn rebase_service(svc: &mut Mapping, dir: &Path) {
    if dir == Path::new(".") || dir.as_os_str().is_empty() {
        return;
    }
    match svc.get_mut("build") {
        Some(Value::String(c)) => rebase(c, dir),
        Some(Value::Mapping(b)) => match b.get_mut("context") {
            Some(Value::String(c)) => rebase(c, dir),
            _ => {
                b.insert(
                    "context".into(),
                    Value::String(format!("./{}", dir.display())),
                );
            }
        },
        _ => {}
    }
    if let Some(Value::Mapping(e)) = svc.get_mut("extends")
        && let Some(Value::String(f)) = e.get_mut("file")
    {
        rebase(f, dir);
    }
    match svc.get_mut("env_file") {
        Some(Value::String(f)) => rebase(f, dir),
        Some(Value::Sequence(items)) => {
            for item in items {
                match item {
                    Value::String(f) => rebase(f, dir),
                    Value::Mapping(m) => {
                        if let Some(Value::String(f)) = m.get_mut("path") {
                            rebase(f, dir);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Sequence(vols)) = svc.get_mut("volumes") {
        for v in vols {
            match v {
                Value::String(s) => {
                    if let Some((source, rest)) = s.split_once(':')
                        && source.starts_with('.')
                    {
                        let mut src = source.to_owned();
                        rebase(&mut src, dir);
                        *s = format!("{src}:{rest}");
                    }
                }
                Value::Mapping(m) => {
                    let bind = m.get("type").and_then(Value::as_str) == Some("bind");
                    if bind && let Some(Value::String(src)) = m.get_mut("source") {
                        rebase(src, dir);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A relative path rewritten from `dir` to the root; one that climbs above the root is left
/// climbing (`../...`), to be refused where it is read.
fn rebase(path: &mut String, dir: &Path) {
    *path = rooted(dir, path).unwrap_or_else(|| normalize(&dir.join(&*path)).display().to_string());
}
