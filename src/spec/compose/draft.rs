//! One compose service to the format-neutral draft `validate` checks: its container ports
//! (a host side is noted and never published), whether it is routed, its command in exec
//! form, its environment (`env_file` then `environment`), dependencies with their conditions,
//! networks and the names other services reach it by, and through `storage` and `options` its
//! mounts and container options. Every problem is collected, not only the first. Nothing here
//! checks limits or names, which are `validate`'s, and nothing here may publish a host port.

use std::path::Path;

use super::Declared;
use super::deploy;
use super::env::environment;
use super::options;
use super::ports::{container_port, port, routed_port};
use super::project::{invalid, refused, valid_object_name};
use super::shape::{RawService, ServiceNetworks};
use super::storage::{self, Ctx};
use super::words::split_words;
use crate::ids::ServiceName;
use crate::spec::SpecError;
use crate::spec::raw::Command;
use crate::spec::runtime::{Condition, DEFAULT_NETWORK, Runtime};
use crate::spec::validate::Draft;
use crate::spec::yaml::{clip, join};

/// A draft and the aliases its `links` give other services (`(service, alias)`).
pub(super) type Drafted = (Draft, Vec<(String, String)>);

pub(super) fn draft(
    file: &str,
    name: String,
    mut s: RawService,
    declared: &Declared,
    worktree: &Path,
    problems: &mut Vec<SpecError>,
) -> Option<Drafted> {
    let before = problems.len();
    let prefix = join("services", &clip(&name));
    let mut run = Runtime::default();
    let mut ports = Vec::new();
    for (i, p) in s.ports.take().into_iter().flatten().enumerate() {
        let key = format!("{}[{i}]", join(&prefix, "ports"));
        match port(file, &key, p, &mut run.changes) {
            Ok(Some(port)) => ports.push(port),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
    let mut exposed = Vec::new();
    for (i, e) in s.expose.take().into_iter().flatten().enumerate() {
        let key = format!("{}[{i}]", join(&prefix, "expose"));
        match container_port(file, &key, &e.0) {
            Ok(p) => exposed.push(p),
            Err(e) => problems.push(e),
        }
    }
    let x = s.x_previewd.take().unwrap_or_default();
    if x.access.is_some() {
        problems.push(invalid(
            file,
            join(&join(&prefix, "x-previewd"), "access"),
            "who may see the preview is set once for the whole project: write it at the top \
             level of the file, `x-previewd: {access: password}`",
        ));
    }
    let internal = x
        .internal
        .unwrap_or(ports.is_empty() && x.route.is_none() && x.port.is_none());
    let port = routed_port(
        file,
        &prefix,
        x.port,
        ports,
        exposed,
        internal,
        &mut run.changes,
    )
    .unwrap_or_else(|e| {
        problems.push(e);
        None
    });
    let command = match s.command.take() {
        None => None,
        Some(Command::Exec(args)) => Some(args),
        Some(Command::Line(line)) => match split_words(&line) {
            Ok(words) => Some(words),
            Err(reason) => {
                problems.push(invalid(file, join(&prefix, "command"), reason));
                None
            }
        },
    };
    let env = environment(file, &prefix, &mut s, worktree, problems);
    let cx = Ctx {
        file,
        prefix: &prefix,
        declared,
        worktree,
    };
    let mut notes = Vec::new();
    if let Some(v) = s.volumes.take() {
        storage::volumes(&cx, v, &mut run.mounts, &mut notes, problems);
    }
    for (section, refs) in [("secrets", s.secrets.take()), ("configs", s.configs.take())] {
        if let Some(refs) = refs {
            super::files::file_refs(&cx, section, refs, &mut run.mounts, &mut notes, problems);
        }
    }
    if let Some(t) = s.tmpfs.take() {
        storage::tmpfs(&cx, t, &mut run.mounts, problems);
    }
    if let Some(n) = s.networks.take() {
        networks(file, &prefix, n, declared, &mut run, problems);
    }
    for (key, alias) in [
        ("hostname", s.hostname.take()),
        ("container_name", s.container_name.take()),
    ] {
        let Some(alias) = alias else { continue };
        if alias_ok(&alias) {
            run.changes.push(format!(
                "{key} `{alias}`: an alias other services reach it by; previewd names the \
                 container itself"
            ));
            run.aliases.push(alias);
        } else {
            problems.push(invalid(
                file,
                join(&prefix, key),
                format!("`{}` is not a host name", clip(&alias)),
            ));
        }
    }
    let mut depends_on = Vec::new();
    for (dep, cond) in s.depends_on.take().map(|d| d.0).unwrap_or_default() {
        let condition = match cond.as_ref().and_then(|c| c.condition.as_deref()) {
            None | Some("service_started") => Condition::Started,
            Some("service_healthy") => Condition::Healthy,
            Some("service_completed_successfully") => Condition::CompletedSuccessfully,
            Some(other) => {
                problems.push(invalid(
                    file,
                    join(&join(&prefix, "depends_on"), &clip(&dep)),
                    format!(
                        "condition `{}`: use service_started, service_healthy or \
                         service_completed_successfully",
                        clip(other)
                    ),
                ));
                Condition::Started
            }
        };
        if cond.as_ref().is_some_and(|c| c.restart == Some(true)) {
            notes.push(format!(
                "{}: restart is not applied (Docker restarts each container on its own)",
                join(&join(&prefix, "depends_on"), &clip(&dep))
            ));
        }
        let required = cond.as_ref().and_then(|c| c.required).unwrap_or(true);
        if let Ok(n) = ServiceName::parse(&dep) {
            run.conditions.insert(n, condition);
        }
        depends_on.push((dep, required));
    }
    let mut links = Vec::new();
    for l in s.links.take().unwrap_or_default() {
        let (service, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
        if !depends_on.iter().any(|(d, _)| d == service) {
            depends_on.push((service.to_owned(), true));
        }
        if alias != service {
            links.push((service.to_owned(), alias.to_owned()));
        }
    }
    // `deploy` after the service-level keys: its resources and restart policy win.
    options::runtime(file, &prefix, &mut s, &mut run, problems);
    super::meta::meta(file, &prefix, &mut s, worktree, &mut run, problems);
    super::hooks::hooks(file, &prefix, &mut s, &mut run, problems);
    deploy::deploy(file, &prefix, &mut s, &mut run, problems);
    run.changes.extend(notes);
    // With `build`, compose uses `image` as the tag of the result; previewd tags its own.
    let image = if s.build.is_some() { None } else { s.image };
    if problems.len() > before {
        return None;
    }
    let draft = Draft {
        name,
        image,
        build: s.build,
        port,
        route: x.route,
        env,
        command,
        health: x.healthcheck,
        // Optional dependencies are kept here; `mod.rs` drops those that are not defined.
        depends_on: depends_on
            .into_iter()
            .map(|(d, required)| if required { d } else { format!("?{d}") })
            .collect(),
        internal,
        sleep: x.sleep.unwrap_or(true),
        host: Default::default(),
        run,
    };
    Some((draft, links))
}

fn alias_ok(s: &str) -> bool {
    s.len() <= 63 && valid_object_name(s)
}

fn networks(
    file: &str,
    prefix: &str,
    n: ServiceNetworks,
    declared: &Declared,
    run: &mut Runtime,
    problems: &mut Vec<SpecError>,
) {
    for (name, attach) in n.0 {
        let key = join(&join(prefix, "networks"), &clip(&name));
        if name != DEFAULT_NETWORK && !declared.networks.contains_key(&name) {
            problems.push(invalid(
                file,
                key,
                "names a network the top-level `networks:` does not declare",
            ));
            continue;
        }
        let attach = attach.unwrap_or_default();
        let fixed = [
            ("ipv4_address", attach.ipv4_address.is_some()),
            ("ipv6_address", attach.ipv6_address.is_some()),
            ("link_local_ips", attach.link_local_ips.is_some()),
            ("mac_address", attach.mac_address.is_some()),
            ("driver_opts", attach.driver_opts.is_some()),
            ("interface_name", attach.interface_name.is_some()),
        ];
        for (k, set) in fixed {
            if set {
                problems.push(refused(
                    file,
                    join(&key, k),
                    "previewd addresses every preview network itself, so previews never overlap",
                ));
            }
        }
        let mut aliases = Vec::new();
        for a in attach.aliases.unwrap_or_default() {
            if alias_ok(&a) {
                aliases.push(a);
            } else {
                problems.push(invalid(
                    file,
                    join(&key, "aliases"),
                    format!("`{}` is not a host name", clip(&a)),
                ));
            }
        }
        run.networks.insert(name, aliases);
    }
}
