//! A service's metadata beyond `labels`: `label_file` (files of the repository with
//! `label=value` lines, read before `labels`, which wins for a label both set; never
//! `dev.previewd.*`) and `annotations` (accepted, not applied, and `check` says why). Nothing
//! here reads a file outside the repository.

use std::path::Path;

use super::env::read_lines;
use super::project::labels;
use super::shape::RawService;
use crate::spec::SpecError;
use crate::spec::raw::Vars;
use crate::spec::runtime::Runtime;
use crate::spec::yaml::{clip, join};

/// Reads `label_file` into `run.labels` (the file's `labels` already there win) and notes
/// `annotations`.
pub(super) fn meta(
    file: &str,
    prefix: &str,
    raw: &mut RawService,
    worktree: &Path,
    run: &mut Runtime,
    problems: &mut Vec<SpecError>,
) {
    let key = join(prefix, "label_file");
    let paths = super::dns::one_or_many(file, &key, raw.label_file.take(), problems);
    for (i, path) in paths.into_iter().enumerate() {
        let k = format!("{key}[{i}]");
        let Some(lines) = read_lines(file, k.clone(), worktree, &path, true, problems) else {
            continue;
        };
        let vars = Vars(
            lines
                .into_iter()
                .map(|(k, v)| (k, Some(v.unwrap_or_default())))
                .collect(),
        );
        for (name, value) in labels(file, &k, Some(vars), problems) {
            run.labels.entry(name).or_insert(value);
        }
    }
    if let Some(a) = raw.annotations.take().filter(|a| !a.0.is_empty()) {
        let names: Vec<String> = a.0.iter().map(|(k, _)| clip(k)).collect();
        run.changes.push(format!(
            "annotations ({}): not applied; the Docker Engine API previewd speaks (1.41) has \
             no annotations, and they are settings for the host's container runtime, not the \
             application",
            names.join(", ")
        ));
    }
}
