//! A service's secrets and configs: files of the repository, declared at the top level, mounted
//! read-only where compose puts them (`/run/secrets/<name>`, `/<name>`), or, when the file sets
//! their `uid`, `gid` or `mode`, copied into the container with that owner and mode (a bind
//! mount keeps the repository file's own). A config's inline `content` is always copied in.
//! Nothing here reads the files or talks to Docker.

use super::project::invalid;
use super::shape::FileRef;
use super::storage::{Ctx, check_target};
use crate::spec::SpecError;
use crate::spec::raw::Text;
use crate::spec::runtime::{Copied, Mount};
use crate::spec::yaml::{clip, join};

/// A service's `secrets` or `configs`: repository files, mounted read-only at compose's place.
pub(super) fn file_refs(
    cx: &Ctx,
    section: &str,
    refs: Vec<FileRef>,
    mounts: &mut Vec<Mount>,
    notes: &mut Vec<String>,
    problems: &mut Vec<SpecError>,
) {
    let secrets = section == "secrets";
    let known = if secrets {
        &cx.declared.secrets
    } else {
        &cx.declared.configs
    };
    for (i, r) in refs.into_iter().enumerate() {
        let key = cx.key(&format!("{section}[{i}]"));
        let (source, target, owner) = match r {
            FileRef::Short(s) => (s, None, None),
            FileRef::Long(l) => {
                let owner = if l.uid.is_some() || l.gid.is_some() || l.mode.is_some() {
                    match ownership(cx.file, &key, l.uid, l.gid, l.mode) {
                        Ok(o) => Some(o),
                        Err(e) => {
                            problems.push(e);
                            continue;
                        }
                    }
                } else {
                    None
                };
                (l.source, l.target, owner)
            }
        };
        let Some(from) = known.get(&source) else {
            problems.push(invalid(
                cx.file,
                key,
                format!(
                    "names `{}`, which the top-level `{section}:` does not declare",
                    clip(&source)
                ),
            ));
            continue;
        };
        let target = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) if secrets => format!("/run/secrets/{t}"),
            Some(t) => format!("/{t}"),
            None if secrets => format!("/run/secrets/{source}"),
            None => format!("/{source}"),
        };
        if let Err(e) = check_target(cx.file, &key, &target) {
            problems.push(e);
            continue;
        }
        // A repository file keeps its own owner and mode when mounted; another owner or mode,
        // or inline content, is copied in.
        match (from, owner) {
            (Copied::Repo(path), None) => mounts.push(Mount::Bind {
                source: path.clone(),
                target,
                read_only: true,
            }),
            (from, owner) => {
                let (uid, gid, mode) = owner.unwrap_or((0, 0, 0o444));
                notes.push(match from {
                    Copied::Repo(_) => format!(
                        "{key}: copied into the container (owner {uid}:{gid}, mode {mode:o}) \
                         rather than mounted, so that it has the owner and mode the file asks for"
                    ),
                    Copied::Inline(_) => format!(
                        "{key}: inline content, taken literally, copied into the container at \
                         {target} (owner {uid}:{gid}, mode {mode:o})"
                    ),
                });
                mounts.push(Mount::File {
                    source: from.clone(),
                    target,
                    uid,
                    gid,
                    mode,
                });
            }
        }
    }
}

/// A secret's or config's `uid`, `gid` and `mode`: compose's defaults are 0, 0 and 0444.
fn ownership(
    file: &str,
    key: &str,
    uid: Option<Text>,
    gid: Option<Text>,
    mode: Option<Text>,
) -> Result<(u32, u32, u32), SpecError> {
    let id = |k: &str, v: Option<Text>| -> Result<u32, SpecError> {
        let Some(Text(v)) = v else { return Ok(0) };
        v.trim().parse::<u32>().map_err(|_| {
            invalid(
                file,
                join(key, k),
                format!("`{}` is not a numeric id like `1000`", clip(&v)),
            )
        })
    };
    let mode = match mode {
        Some(Text(m)) => file_mode(file, &join(key, "mode"), &m)?,
        None => 0o444,
    };
    Ok((id("uid", uid)?, id("gid", gid)?, mode))
}

/// Permission bits as compose users write them: octal (`0440`, `440` or `0o440`; YAML may
/// have read `0440` as the number 440, so the digits are read as octal either way). No
/// set-user-id, set-group-id or sticky bit on a file: those are for folders (tmpfs `1777`).
pub(super) fn file_mode(file: &str, key: &str, text: &str) -> Result<u32, SpecError> {
    let digits = text.trim().trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o1777 && !digits.is_empty())
        .ok_or_else(|| {
            invalid(
                file,
                key.to_owned(),
                format!(
                    "`{}` is not a mode like `0440` (octal permission bits)",
                    clip(text)
                ),
            )
        })
}
