//! A compose file, read as compose means it, when a repository has no `.previewd.yml`: the
//! safe part of the compose specification is accepted with its meaning in a preview, and what
//! would endanger the host or other previews is refused naming the key. Nothing is dropped in
//! silence: a key either has its meaning, or is refused, or (when a preview gives it another
//! meaning, like a host port that is never published) `check` says what previewd changed.
//! `x-*` extensions are ignored, as compose ignores them; `x-previewd` in a service sets its
//! route, port and HTTP health check, and at the top level who may see the preview
//! (`access`, which may tighten the operator's mode, never loosen it).
//!
//! Routing: a service with `x-previewd.route` answers on the preview's host at that route;
//! without any, the preview's host goes to the one service that publishes a port, or among
//! several to the first of `web`, `frontend`, `app`, `proxy`, `nginx` that does, else to the
//! first in the file. Every other
//! service that publishes a port gets a host of its own, `<id>-<service>.<domain>`.
//!
//! This file runs the reading: `merge` expands `include` and `extends` first, `keys` sorts
//! every key (accepted or refused), `shape` holds the
//! serde types (`forms` reads the values written in two forms), `build` reads compose's own
//! build options, `draft` turns one service into
//! `validate`'s draft with `ports`, `env`, `storage` (mounts, secrets, configs), `options` and
//! `deploy` (container options), `project` reads the top-level volumes, networks, secrets and
//! configs, `routing` picks each service's host. Every problem is collected, so that `check`
//! shows them all at once. Limits and defaults shared with
//! `.previewd.yml` are `validate`'s.

use std::collections::BTreeMap;
use std::path::Path;

use yaml_serde::Value;

use super::runtime::Copied;
use super::validate::{self, Draft, Keys, Project};
use super::yaml::{clip, join};
use super::{ImageSource, Spec, SpecError, tree, yaml};

mod build;
mod deploy;
mod dns;
mod draft;
mod env;
mod files;
mod forms;
mod hooks;
mod keys;
mod merge;
mod meta;
mod options;
mod ports;
mod project;
mod routing;
mod shape;
mod storage;
mod words;

use shape::RawService;

const KEYS: Keys = Keys {
    env: "environment",
    port: "ports",
    route: "x-previewd.route",
    health: "x-previewd.healthcheck",
    command: "command",
    depends_on: "depends_on",
};

/// The access mode the top-level `x-previewd` asks for (taken out of `tree`, like every
/// other extension); a problem naming the key when it is not one.
fn project_access(
    file: &str,
    tree: &mut Value,
    problems: &mut Vec<SpecError>,
) -> Option<crate::config::AccessMode> {
    let x = tree.as_mapping_mut()?.remove("x-previewd")?;
    let x: shape::XProject = tree::from_tree(&x, "x-previewd")
        .map_err(|e| problems.push(validate::tree_error(file, e)))
        .ok()?;
    validate::access(file, "x-previewd.access", x.access.as_deref())
        .map_err(|e| problems.push(e))
        .ok()
        .flatten()
}

/// The compose file's declarations a service may refer to.
pub(super) struct Declared {
    pub volumes: BTreeMap<String, super::VolumeSpec>,
    pub networks: BTreeMap<String, super::NetworkSpec>,
    /// Secrets and configs by name: their file, relative to the worktree root, or (configs
    /// only) their inline content.
    pub secrets: BTreeMap<String, Copied>,
    pub configs: BTreeMap<String, Copied>,
    /// What previewd does differently from the declarations' literal meaning.
    pub changes: Vec<String>,
}

/// Parses and validates a compose file.
pub fn parse(file: &str, bytes: &[u8], worktree: &Path) -> Result<Spec, SpecError> {
    let mut tree = yaml::parse_tree(file, bytes)?;
    if !tree.is_mapping() {
        return Err(SpecError::Invalid {
            file: file.to_owned(),
            key: "(top level)".to_owned(),
            reason: "must be a mapping with `services:`".to_owned(),
        });
    }
    let mut problems = Vec::new();
    let access = project_access(file, &mut tree, &mut problems);
    keys::strip_extensions(&mut tree);
    merge::expand(file, &mut tree, worktree, &mut problems);
    problems.extend(keys::refuse_keys(file, &mut tree));
    let mut builds = build::take_extras(file, &mut tree, &mut problems);
    let declared = project::declared(file, &tree, worktree, &mut problems);
    let mut raws = Vec::new();
    if let Some(services) = tree.get("services").and_then(Value::as_mapping) {
        for (name, node) in services {
            let name = name.as_str().unwrap_or_default().to_owned();
            let path = join("services", &clip(&name));
            match tree::from_tree::<RawService>(node, &path) {
                Ok(raw) => raws.push((name, raw)),
                Err(e) => problems.push(validate::tree_error(file, e)),
            }
        }
    } else if tree.get("services").is_some_and(|s| !s.is_null()) {
        problems.push(SpecError::Invalid {
            file: file.to_owned(),
            key: "services".to_owned(),
            reason: "must be a mapping of service names to services".to_owned(),
        });
    }
    // A preview runs the default profile: services with profiles do not start.
    let (raws, skipped) = split_profiles(raws);
    let mut drafts: Vec<Draft> = Vec::new();
    let mut links = Vec::new();
    let defined: Vec<String> = raws.iter().map(|(n, _)| n.clone()).collect();
    for (name, raw) in raws {
        let extras = builds.get(&name);
        let notes = extras.map(|x| x.notes.clone()).unwrap_or_default();
        if let (Some(x), Some(p)) = (extras, &raw.platform)
            && let Some(list) = x.platforms.as_ref().filter(|l| !l.contains(p))
        {
            problems.push(SpecError::Invalid {
                file: file.to_owned(),
                key: join(&join("services", &clip(&name)), "platform"),
                reason: format!(
                    "`{}` is not one of `build.platforms` ({})",
                    clip(p),
                    list.join(", ")
                ),
            });
        }
        if let Some((mut d, l)) = draft::draft(file, name, raw, &declared, worktree, &mut problems)
        {
            d.run.changes.extend(notes);
            links.extend(l);
            drafts.push(d);
        }
    }
    // `required: false` dependencies that are not defined are dropped, as compose does.
    for d in &mut drafts {
        d.depends_on = std::mem::take(&mut d.depends_on)
            .into_iter()
            .filter_map(|dep| match dep.strip_prefix('?') {
                Some(optional) => defined
                    .contains(&optional.to_owned())
                    .then(|| optional.to_owned()),
                None => Some(dep),
            })
            .collect();
    }
    // A link's alias is a name of the linked service.
    for (service, alias) in links {
        if let Some(d) = drafts.iter_mut().find(|d| d.name == service) {
            d.run.aliases.push(alias.clone());
            d.run
                .changes
                .push(format!("links: also reachable as `{alias}`"));
        }
    }
    for d in &drafts {
        for dep in &d.depends_on {
            if skipped.contains(dep) {
                problems.push(SpecError::Invalid {
                    file: file.to_owned(),
                    key: join(&join("services", &clip(&d.name)), "depends_on"),
                    reason: format!(
                        "names `{}`, which has `profiles` and so does not start in a preview \
                         (previews run the default profile): remove its profiles or the \
                         dependency",
                        clip(dep)
                    ),
                });
            }
        }
    }
    routing::assign_hosts(file, &mut drafts, &mut problems);
    let mut changes = declared.changes;
    for name in &skipped {
        changes.push(format!(
            "services.{}: has profiles, so it does not start (previews run the default profile)",
            clip(name)
        ));
    }
    if let Some(n) = tree.get("name").and_then(Value::as_str) {
        changes.push(format!(
            "name `{}`: previewd names every object after the preview instead",
            clip(n)
        ));
    }
    let project = Project {
        volumes: declared.volumes,
        networks: declared.networks,
        changes,
        problems,
    };
    let mut spec = validate::finish(file, &KEYS, drafts, Vec::new(), project, worktree)?;
    spec.access = access;
    for svc in spec.services.values_mut() {
        if let ImageSource::Build(b) = &mut svc.image {
            if let Some(x) = builds.remove(svc.name.as_str()) {
                b.options = x.options;
            }
            b.options.platform = svc.run.platform.clone();
        }
    }
    Ok(spec)
}

type Named = Vec<(String, RawService)>;

/// The services of the default profile, and the names of those left out.
fn split_profiles(raws: Named) -> (Named, Vec<String>) {
    let mut skipped = Vec::new();
    let kept = raws
        .into_iter()
        .filter(|(name, raw)| {
            let has = raw.profiles.as_ref().is_some_and(|p| !p.is_empty());
            if has {
                skipped.push(name.clone());
            }
            !has
        })
        .collect();
    (kept, skipped)
}
