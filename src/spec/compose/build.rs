//! Compose's `build` options beyond `.previewd.yml`'s (`context`, `dockerfile`, `args`,
//! `target`), read out of the tree before `build` is read as the shared shape. What the
//! Engine API's build applies becomes [`BuildOptions`]: `labels`, `cache_from` (image
//! references only), `no_cache`, `pull`, `shm_size`, and the service's `platform`. What a
//! preview cannot apply is said by `check`: `tags` (previewd names its builds itself: other
//! names on the host would shadow images other previews run) and `platforms` (one image is
//! built, for the platform the service runs on). Nothing here builds or talks to Docker.

use std::collections::BTreeMap;

use yaml_serde::Value;

use super::project::{invalid, labels, refused};
use super::storage::size;
use crate::spec::raw::{Text, Vars};
use crate::spec::yaml::{clip, join};
use crate::spec::{BuildOptions, SpecError, tree};

/// Per service, its build options and what `check` says previewd does differently.
#[derive(Default)]
pub(super) struct Extras {
    pub options: BuildOptions,
    pub notes: Vec<String>,
    /// `build.platforms` as written, for the service's `platform` to be checked against.
    pub platforms: Option<Vec<String>>,
}

const KEYS: [&str; 7] = [
    "labels",
    "cache_from",
    "no_cache",
    "pull",
    "tags",
    "platforms",
    "shm_size",
];

/// Takes compose's extra `build` keys out of every service of `tree` (so `build` reads as
/// `.previewd.yml`'s) and reads them.
pub(super) fn take_extras(
    file: &str,
    tree: &mut Value,
    problems: &mut Vec<SpecError>,
) -> BTreeMap<String, Extras> {
    let mut out: BTreeMap<String, Extras> = BTreeMap::new();
    let Some(services) = tree.get_mut("services").and_then(Value::as_mapping_mut) else {
        return out;
    };
    for (name, service) in services.iter_mut() {
        let name = name.as_str().unwrap_or_default().to_owned();
        let Some(build) = service.get_mut("build").and_then(Value::as_mapping_mut) else {
            continue;
        };
        let prefix = join(&join("services", &clip(&name)), "build");
        let x = out.entry(name).or_default();
        for extra in KEYS {
            if let Some(v) = build.remove(extra) {
                read(file, &join(&prefix, extra), extra, v, x, problems);
            }
        }
    }
    out
}

fn read(
    file: &str,
    key: &str,
    extra: &str,
    v: Value,
    x: &mut Extras,
    problems: &mut Vec<SpecError>,
) {
    match extra {
        "labels" => {
            let vars: Option<Vars> = match tree::from_tree(&v, key) {
                Ok(vars) => vars,
                Err(e) => {
                    problems.push(crate::spec::validate::tree_error(file, e));
                    None
                }
            };
            x.options.labels = labels(file, key, vars, problems);
        }
        "no_cache" | "pull" => match v.as_bool() {
            Some(b) if extra == "no_cache" => x.options.no_cache = b,
            Some(b) => x.options.pull = b,
            None => problems.push(invalid(file, key.to_owned(), "must be true or false")),
        },
        "shm_size" => match tree::from_tree::<Text>(&v, key) {
            Ok(Text(t)) => match size(file, key, &t) {
                Ok(b) => {
                    x.options.shm_size = Some(b);
                    x.notes.push(format!(
                        "{key}: passed to the build; Docker 20.10's BuildKit does not apply it \
                         (its steps get 64 MiB), the classic builder does"
                    ));
                }
                Err(e) => problems.push(e),
            },
            Err(e) => problems.push(crate::spec::validate::tree_error(file, e)),
        },
        "cache_from" => {
            for (i, item) in strings(file, key, &v, problems).into_iter().enumerate() {
                let k = format!("{key}[{i}]");
                if item.contains('=') || item.contains(',') {
                    // `type=local,src=...` reads the daemon host's files; `type=registry,...`
                    // is an image reference written the long way.
                    problems.push(refused(
                        file,
                        k,
                        format!(
                            "`{}`: previews take build cache from image references only \
                             (e.g. `myorg/app:cache`); other cache sources can read the \
                             host's files",
                            clip(&item)
                        ),
                    ));
                } else if let Err(e) = crate::spec::validate::check_image_ref(file, &k, &item) {
                    problems.push(e);
                } else {
                    x.options.cache_from.push(item);
                }
            }
        }
        "tags" => {
            let tags = strings(file, key, &v, problems);
            if !tags.is_empty() {
                x.notes.push(format!(
                    "{key}: not applied: previewd names each build itself (other names on \
                     the host could shadow images other previews run)"
                ));
            }
        }
        "platforms" => {
            let p = strings(file, key, &v, problems);
            x.notes.push(format!(
                "{key}: one image is built, for the platform the service runs on (its \
                 `platform`, else the host's)"
            ));
            x.platforms = Some(p);
        }
        _ => {}
    }
}

fn strings(file: &str, key: &str, v: &Value, problems: &mut Vec<SpecError>) -> Vec<String> {
    match tree::from_tree::<Vec<String>>(v, key) {
        Ok(list) => list,
        Err(e) => {
            problems.push(crate::spec::validate::tree_error(file, e));
            Vec::new()
        }
    }
}
