//! A compose service's environment: its `env_file`s (files of the repository, read as compose
//! reads them), then `environment`, which wins for a name both set. Nothing here copies a
//! value from previewd's own environment: a name without a value is left for `validate` to
//! refuse.

use std::path::Path;

use yaml_serde::Value;

use super::project::{invalid, refused};
use super::shape::RawService;
use crate::spec::raw::Vars;
use crate::spec::yaml::{clip, join};
use crate::spec::{SpecError, resolve_inside};

/// `env_file` entries, then `environment`, which wins for a name both set.
pub(super) fn environment(
    file: &str,
    prefix: &str,
    s: &mut RawService,
    worktree: &Path,
    problems: &mut Vec<SpecError>,
) -> Vars {
    let mut merged: Vec<(String, Option<String>)> = Vec::new();
    let files: Vec<(String, bool)> = match s.env_file.take() {
        None => Vec::new(),
        Some(Value::String(p)) => vec![(p, true)],
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(p) => Some((p.clone(), true)),
                Value::Mapping(m) => Some((
                    m.get("path")?.as_str()?.to_owned(),
                    m.get("required").and_then(Value::as_bool).unwrap_or(true),
                )),
                _ => None,
            })
            .collect(),
        Some(_) => {
            problems.push(invalid(
                file,
                join(prefix, "env_file"),
                "must be a path or a list",
            ));
            Vec::new()
        }
    };
    for (i, (path, required)) in files.into_iter().enumerate() {
        let key = format!("{}[{i}]", join(prefix, "env_file"));
        if let Some(lines) = read_lines(file, key, worktree, &path, required, problems) {
            merged.extend(lines);
        }
    }
    for (k, v) in s.environment.take().map(|v| v.0).unwrap_or_default() {
        merged.retain(|(old, _)| *old != k);
        merged.push((k, v));
    }
    Vars(merged)
}

/// The `NAME=value` lines of the repository file `path` (an `env_file` or a `label_file`,
/// named `key` in messages), at most 1 MiB; `None` with a problem when it is outside the
/// repository or cannot be read, and without one when it is missing and not `required`.
pub(super) fn read_lines(
    file: &str,
    key: String,
    worktree: &Path,
    path: &str,
    required: bool,
    problems: &mut Vec<SpecError>,
) -> Option<Vec<(String, Option<String>)>> {
    let rel = match resolve_inside(worktree, path) {
        Ok(rel) => rel,
        Err((true, reason)) => {
            problems.push(refused(file, key, reason));
            return None;
        }
        Err((false, reason)) => {
            problems.push(invalid(file, key, reason));
            return None;
        }
    };
    let full = worktree.join(&rel);
    let meta = std::fs::metadata(&full);
    if !meta.as_ref().is_ok_and(|m| m.is_file()) {
        if required {
            problems.push(invalid(
                file,
                key,
                format!("`{}` is not a file of the repository", clip(path)),
            ));
        }
        return None;
    }
    if meta.is_ok_and(|m| m.len() > crate::spec::MAX_FILE_BYTES as u64) {
        problems.push(invalid(file, key, "is larger than 1 MiB"));
        return None;
    }
    match std::fs::read_to_string(&full) {
        Ok(text) => Some(dotenv_lines(&text)),
        Err(e) => {
            problems.push(invalid(file, key, format!("cannot be read: {e}")));
            None
        }
    }
}

/// `NAME=value` lines as compose reads an env file: `#` comments, an optional `export `,
/// values optionally quoted. Hand-written: the crates for it load into the process's own
/// environment, which must never hold a repository's values.
fn dotenv_lines(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        match line.split_once('=') {
            None => out.push((line.to_owned(), None)),
            Some((k, v)) => {
                let v = v.trim();
                let v = if v.len() >= 2
                    && ((v.starts_with('"') && v.ends_with('"'))
                        || (v.starts_with('\'') && v.ends_with('\'')))
                {
                    v[1..v.len() - 1].to_owned()
                } else {
                    v.split(" #").next().unwrap_or(v).trim_end().to_owned()
                };
                out.push((k.trim().to_owned(), Some(v)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_read_like_compose() {
        let got = dotenv_lines("# c\nA=1\nexport B=\"two words\"\nC='x'\nD=v # note\nE\n");
        let want: Vec<(String, Option<String>)> = vec![
            ("A".into(), Some("1".into())),
            ("B".into(), Some("two words".into())),
            ("C".into(), Some("x".into())),
            ("D".into(), Some("v".into())),
            ("E".into(), None),
        ];
        assert_eq!(got, want);
    }
}
