//! `include`: compose files of the repository whose services, volumes, networks, secrets and
//! configs join the project, their relative paths rewritten from their own folder (or their
//! `project_directory`). A resource defined twice, differently, is a problem, as in compose.
//! Nothing here reads a file but through `paths::load`.

use std::path::{Path, PathBuf};

use yaml_serde::{Mapping, Value};

use super::MAX_DEPTH;
use super::paths::{load, normalize, rebase_top};
use crate::spec::SpecError;
use crate::spec::compose::project::{invalid, refused};
use crate::spec::yaml::{clip, join};

/// Expands the `include` of `top` (a file in the folder `dir`, relative to the root).
pub(super) fn include(
    file: &str,
    top: &mut Mapping,
    dir: &Path,
    worktree: &Path,
    stack: &mut Vec<PathBuf>,
    budget: &mut usize,
    problems: &mut Vec<SpecError>,
) {
    let Some(list) = top.remove("include") else {
        return;
    };
    let Value::Sequence(items) = list else {
        problems.push(invalid(
            file,
            "include".to_owned(),
            "must be a list of files",
        ));
        return;
    };
    for (i, item) in items.into_iter().enumerate() {
        let key = format!("include[{i}]");
        let (paths, project_dir) = match item {
            Value::String(p) => (vec![p], None),
            Value::Mapping(m) => {
                if let Some(k) = m
                    .keys()
                    .filter_map(Value::as_str)
                    .find(|k| !matches!(*k, "path" | "project_directory"))
                {
                    problems.push(refused(
                        file,
                        join(&key, &clip(k)),
                        "previewd reads no variables from other files; use `path` (and \
                         `project_directory`)",
                    ));
                    continue;
                }
                let paths = match m.get("path") {
                    Some(Value::String(p)) => vec![p.clone()],
                    Some(Value::Sequence(ps)) => ps
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                    _ => {
                        problems.push(invalid(file, join(&key, "path"), "is required"));
                        continue;
                    }
                };
                let pd = m.get("project_directory").and_then(Value::as_str);
                (paths, pd.map(str::to_owned))
            }
            _ => {
                problems.push(invalid(
                    file,
                    key,
                    "must be a path or {path, project_directory}",
                ));
                continue;
            }
        };
        if stack.len() > MAX_DEPTH {
            problems.push(invalid(file, key, "includes more than 8 files deep"));
            continue;
        }
        for p in paths {
            let (rel, mut tree) = match load(file, &key, dir, &p, worktree, budget) {
                Ok(loaded) => loaded,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            if stack.contains(&rel) {
                problems.push(invalid(
                    file,
                    key.clone(),
                    format!("`{}` includes itself", clip(&p)),
                ));
                continue;
            }
            let file_dir = rel
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let base = match &project_dir {
                Some(pd) => normalize(&dir.join(pd)),
                None => file_dir.clone(),
            };
            let Some(inc) = tree.as_mapping_mut() else {
                problems.push(invalid(
                    file,
                    key.clone(),
                    "the included file is not a mapping",
                ));
                continue;
            };
            stack.push(rel.clone());
            include(file, inc, &file_dir, worktree, stack, budget, problems);
            stack.pop();
            rebase_top(inc, &base);
            for section in ["services", "volumes", "networks", "secrets", "configs"] {
                let Some(Value::Mapping(entries)) = inc.remove(section) else {
                    continue;
                };
                let into = top
                    .entry(Value::String(section.to_owned()))
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                let Some(into) = into.as_mapping_mut() else {
                    continue;
                };
                for (name, entry) in entries {
                    match into.get(&name) {
                        Some(existing) if *existing == entry => {}
                        Some(_) => problems.push(invalid(
                            file,
                            key.clone(),
                            format!(
                                "`{}` defines `{section}.{}` again; compose refuses a \
                                 resource defined twice",
                                clip(&p),
                                clip(name.as_str().unwrap_or_default())
                            ),
                        )),
                        None => {
                            into.insert(name, entry);
                        }
                    }
                }
            }
        }
    }
}
