//! What a spec says about the order and the wiring of a generation, before any Docker call:
//! which services start in which level (after what they wait for), which are one-shot jobs,
//! which networks each service joins and which of them the gateway must reach. Pure
//! functions of the spec; nothing here calls Docker or decides a container's options.

use std::collections::HashSet;

use super::Mode;
use crate::ids::{Instance, PreviewId};
use crate::preview::docker::labels;
use crate::spec::runtime::{Condition, DEFAULT_NETWORK};
use crate::spec::{self, Spec};

/// The compose networks a service joins, the default one when it names none; never empty.
pub(super) fn service_networks(svc: &spec::Service) -> Vec<String> {
    if svc.run.networks.is_empty() {
        vec![DEFAULT_NETWORK.to_owned()]
    } else {
        svc.run.networks.keys().cloned().collect()
    }
}

/// `svc`'s dev-mode settings, in a dev deployment that has them.
pub(super) fn dev_of<'a>(
    mode: &Mode,
    spec: &'a Spec,
    svc: &spec::Service,
) -> Option<&'a spec::DevService> {
    match mode {
        Mode::Dev { .. } => spec.dev.get(&svc.name),
        Mode::Preview => None,
    }
}

/// Generation `generation` of preview `id`'s networks that the gateway must reach: those of
/// each service that gets a route (the rule of its `route` label in [`Manager::container`]),
/// never a network only unrouted services are on.
pub(super) fn routed_networks(
    inst: &Instance,
    mode: &Mode,
    id: &PreviewId,
    generation: u64,
    spec: &Spec,
) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for svc in spec.services.values() {
        let port = dev_of(mode, spec, svc).and_then(|d| d.port).or(svc.port);
        if svc.route.is_some() && port.is_some() && !svc.internal {
            out.extend(service_networks(svc));
        }
    }
    out.into_iter()
        .map(|n| labels::project_network_name(inst, id, generation, &n))
        .collect()
}

/// Every network some service of the generation joins.
pub(super) fn used_networks(spec: &Spec) -> std::collections::BTreeSet<String> {
    spec.services.values().flat_map(service_networks).collect()
}

/// Services that others wait to complete (`service_completed_successfully`): jobs whose exit
/// is their success, not a failure.
pub(super) fn oneshots(spec: &Spec) -> HashSet<String> {
    spec.services
        .values()
        .flat_map(|s| &s.run.conditions)
        .filter(|(_, c)| **c == Condition::CompletedSuccessfully)
        .map(|(d, _)| d.as_str().to_owned())
        .collect()
}

/// The services in start levels: each level's services depend only on those of the levels
/// before it (the spec has no cycles; should one slip through validation, the rest start last).
pub(super) fn start_levels(spec: &Spec) -> Vec<Vec<&spec::Service>> {
    in_levels(
        spec.services.values().collect(),
        |s| s.name.as_str(),
        |s| s.depends_on.iter().map(|d| d.as_str().to_owned()).collect(),
    )
}

/// `items` in start levels: each after what it depends on among them (`deps`), the rest side
/// by side; a cycle starts last. A deployment (services) and a wake (containers) share it.
pub(super) fn in_levels<'a, T>(
    items: Vec<&'a T>,
    name: impl Fn(&T) -> &str,
    deps: impl Fn(&T) -> Vec<String>,
) -> Vec<Vec<&'a T>> {
    let names: HashSet<&str> = items.iter().map(|t| name(*t)).collect();
    let mut done: HashSet<&str> = HashSet::new();
    let mut levels = Vec::new();
    while done.len() < items.len() {
        let ready = |t: &&&'a T| {
            !done.contains(name(**t))
                && deps(**t)
                    .iter()
                    .all(|d| done.contains(d.as_str()) || !names.contains(d.as_str()))
        };
        let mut level: Vec<&'a T> = items.iter().filter(ready).copied().collect();
        if level.is_empty() {
            level = items
                .iter()
                .filter(|t| !done.contains(name(**t)))
                .copied()
                .collect();
        }
        done.extend(level.iter().map(|t| name(*t)));
        levels.push(level);
    }
    levels
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Mode, routed_networks, start_levels};
    use crate::ids::{Instance, PreviewId};
    use crate::spec::{parse_compose, parse_previewd_yml};

    #[test]
    fn the_gateway_joins_ahead_only_the_networks_of_routed_services() {
        let compose = "services:
  web:
    image: busybox
    x-previewd: {route: /, port: 80}
    networks: [front]
  api:
    image: busybox
    x-previewd: {route: /api, port: 3000}
    networks: [front, back]
  db:
    image: busybox
    networks: [back, store]
networks: {front: {}, back: {}, store: {}}
";
        let spec = parse_compose(
            "compose.yaml",
            compose.as_bytes(),
            Path::new("/nonexistent"),
        )
        .expect("valid compose");
        let inst = Instance::parse("t").expect("instance");
        let id = PreviewId::parse("abcdefghij").expect("id");
        let name = |n: &str| crate::preview::docker::labels::project_network_name(&inst, &id, 3, n);
        assert_eq!(
            routed_networks(&inst, &Mode::Preview, &id, 3, &spec),
            vec![name("back"), name("front")],
            "the routed services' networks, never `store` (only the database is on it)"
        );
    }

    fn levels(yml: &str) -> Vec<Vec<String>> {
        let spec = parse_previewd_yml(".previewd.yml", yml.as_bytes(), Path::new("/nonexistent"))
            .expect("valid spec");
        start_levels(&spec)
            .into_iter()
            .map(|l| {
                let mut names: Vec<String> = l.iter().map(|s| s.name.as_str().to_owned()).collect();
                names.sort();
                names
            })
            .collect()
    }

    #[test]
    fn services_start_after_what_they_depend_on_and_the_rest_side_by_side() {
        let yml = "services:
  web: {image: busybox, port: 80, route: /, depends_on: [api]}
  api: {image: busybox, port: 80, route: /api, depends_on: [db, cache]}
  db: {image: busybox, internal: true}
  cache: {image: busybox, internal: true}
  docs: {image: busybox, port: 80, route: /docs}
";
        assert_eq!(
            levels(yml),
            vec![vec!["cache", "db", "docs"], vec!["api"], vec!["web"]]
        );
        assert_eq!(
            levels("services:\n  a: {image: busybox, port: 80, route: /}\n"),
            vec![vec!["a"]]
        );
    }
}
