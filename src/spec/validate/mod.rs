//! The checks both formats share, run on a format-neutral draft of each service: names, limits,
//! ports, routes and their defaults, health checks, environment, commands, images, the
//! dependency graph and the `dev:` section. The result is a `Spec` the rest of previewd can
//! trust. Nothing here reads YAML or knows which format a draft came from, except for the key
//! names it puts in messages.
//!
//! This file runs the checks in order and checks each service and `dev:` entry as a whole;
//! `values` checks single values (ports, variables, commands, images, the workdir) and
//! `wiring` what lies between services (default and unique routes, health paths, the
//! dependency graph).

use std::collections::BTreeMap;
use std::path::Path;

use super::hostile;
use super::paths::resolve_build;
use super::raw::{Build, Health, Vars};
use super::tree::{TreeError, TreeErrorKind};
use super::yaml::{clip, join};
use super::{
    DevService, HealthCheck, Host, ImageSource, NetworkSpec, Route, Runtime, Service, Spec,
    SpecError, VolumeSpec,
};
use crate::ids::ServiceName;

mod values;
mod wiring;

pub(super) use values::check_image as check_image_ref;
pub(crate) use values::check_vars;
pub use values::{MAX_ENV_VALUE, MAX_ENV_VARS};
use values::{check_command, check_image, check_port, check_stage, check_workdir};
use wiring::{apply_health, check_dependencies, check_unique_routes, default_routes};

/// Most services in one preview: each is a container on the host.
pub const MAX_SERVICES: usize = 50;

/// How each format spells the keys a message may name.
pub struct Keys {
    pub env: &'static str,
    pub port: &'static str,
    pub route: &'static str,
    pub health: &'static str,
    pub command: &'static str,
    pub depends_on: &'static str,
}

/// One service as a format read it, before any check.
pub struct Draft {
    /// The name as written (the mapping key).
    pub name: String,
    pub image: Option<String>,
    pub build: Option<Build>,
    pub port: Option<u64>,
    pub route: Option<String>,
    pub env: Vars,
    /// Already in exec form: each format decides what a string command means.
    pub command: Option<Vec<String>>,
    pub health: Option<Health>,
    pub depends_on: Vec<String>,
    pub internal: bool,
    /// `false`: the preview never sleeps (`sleep: false`).
    pub sleep: bool,
    /// Where a routed service answers; the preview's host unless the format says otherwise.
    pub host: Host,
    /// What only compose can say, already checked by the compose reader.
    pub run: Runtime,
}

/// The project-wide objects a compose file declares; none for `.previewd.yml`.
#[derive(Default)]
pub struct Project {
    pub volumes: BTreeMap<String, VolumeSpec>,
    pub networks: BTreeMap<String, NetworkSpec>,
    /// What previewd does differently from the file's literal meaning, beyond services.
    pub changes: Vec<String>,
    /// Problems the format's reader found already: reported with the rest.
    pub problems: Vec<SpecError>,
}

/// One `dev:` entry as read.
pub struct DevDraft {
    pub name: String,
    pub image: String,
    pub workdir: String,
    pub command: Option<Vec<String>>,
    pub env: Vars,
    pub port: Option<u64>,
}

/// Maps a raw-struct error to the error shown on the PR: an unknown key is refused (with the
/// hostile reason when it has one), anything else is invalid at its key.
pub fn tree_error(file: &str, e: TreeError) -> SpecError {
    let key = e.key();
    let file = file.to_owned();
    match e.kind {
        TreeErrorKind::UnknownField(field) => SpecError::Refused {
            file,
            key,
            reason: hostile::reason(&field)
                .unwrap_or(hostile::UNSUPPORTED)
                .to_owned(),
        },
        TreeErrorKind::MissingField(_) => SpecError::Invalid {
            file,
            key,
            reason: "is required".to_owned(),
        },
        TreeErrorKind::Message(m) => SpecError::Invalid {
            file,
            key,
            reason: m,
        },
    }
}

/// The access mode a repository asks for under `key` (`.previewd.yml`'s `access`, compose's
/// `x-previewd.access`): one of the operator's modes, or refused naming the key.
pub(super) fn access(
    file: &str,
    key: &str,
    asked: Option<&str>,
) -> Result<Option<crate::config::AccessMode>, SpecError> {
    asked
        .map(|m| {
            crate::config::AccessMode::parse(m).ok_or_else(|| {
                invalid(
                    file,
                    key,
                    format!(
                        "{:?} is not an access mode: use public, password or forge",
                        super::yaml::clip(m)
                    ),
                )
            })
        })
        .transpose()
}

pub(super) fn invalid(file: &str, key: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        file: file.to_owned(),
        key: key.into(),
        reason: reason.into(),
    }
}

/// Checks every draft and assembles the `Spec`. Every service is checked even after one
/// fails, so that all their problems are reported at once; what lies between services is
/// checked once each service passed its own checks.
pub fn finish(
    file: &str,
    keys: &Keys,
    drafts: Vec<Draft>,
    devs: Vec<DevDraft>,
    project: Project,
    worktree: &Path,
) -> Result<Spec, SpecError> {
    let mut problems = project.problems;
    if drafts.is_empty() && problems.is_empty() {
        return Err(invalid(
            file,
            "services",
            "defines no service: add at least one",
        ));
    }
    if drafts.len() > MAX_SERVICES {
        return Err(invalid(
            file,
            "services",
            format!(
                "defines {} services; the limit is {MAX_SERVICES}",
                drafts.len()
            ),
        ));
    }
    let mut services = BTreeMap::new();
    let mut healths = BTreeMap::new();
    for draft in drafts {
        match check_service(file, keys, draft, worktree) {
            Ok((service, health)) => {
                healths.insert(service.name.clone(), health);
                services.insert(service.name.clone(), service);
            }
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(SpecError::from_all(problems));
    }
    default_routes(file, keys, &mut services)?;
    check_unique_routes(file, keys, &services)?;
    apply_health(file, keys, &mut services, healths)?;
    check_dependencies(file, keys, &services)?;
    let mut dev = BTreeMap::new();
    for draft in devs {
        let d = check_dev(file, draft, &services)?;
        dev.insert(d.name.clone(), d);
    }
    Ok(Spec {
        source: file.to_owned(),
        services,
        dev,
        volumes: project.volumes,
        networks: project.networks,
        changes: project.changes,
        egress: None,
        access: None,
    })
}

fn service_name(file: &str, section: &str, raw: &str) -> Result<ServiceName, SpecError> {
    ServiceName::parse(raw).map_err(|e| {
        invalid(
            file,
            join(section, &clip(raw)),
            format!(
                "is not a valid service name: {} (it becomes a host name on the preview network)",
                e.reason
            ),
        )
    })
}

fn check_service(
    file: &str,
    keys: &Keys,
    d: Draft,
    worktree: &Path,
) -> Result<(Service, Option<Health>), SpecError> {
    let name = service_name(file, "services", &d.name)?;
    let prefix = join("services", name.as_str());
    let image = match (d.image, d.build) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                file,
                join(&prefix, "image"),
                "give either `build` or `image`, not both",
            ));
        }
        (None, None) => {
            return Err(invalid(
                file,
                prefix,
                "needs `build` (a folder with a Dockerfile) or `image`",
            ));
        }
        (Some(image), None) => {
            check_image(file, &join(&prefix, "image"), &image)?;
            ImageSource::Image(image)
        }
        (None, Some(build)) => {
            let (mut spec, args) = resolve_build(file, &prefix, worktree, &build)?;
            spec.args = check_vars(file, &join(&prefix, "build.args"), args)?;
            if let Some(target) = &spec.target {
                check_stage(file, &join(&prefix, "build.target"), target)?;
            }
            ImageSource::Build(spec)
        }
    };
    let port = d
        .port
        .map(|p| check_port(file, &join(&prefix, keys.port), p))
        .transpose()?;
    if !d.internal && port.is_none() {
        return Err(invalid(
            file,
            join(&prefix, keys.port),
            "is required: the container port the gateway routes to (or mark the service internal)",
        ));
    }
    let route = match d.route {
        Some(_) if d.internal => {
            return Err(invalid(
                file,
                join(&prefix, keys.route),
                "an internal service is not routed: remove the route or the internal flag",
            ));
        }
        Some(r) => Some(Route::parse(&r).map_err(|reason| {
            invalid(
                file,
                join(&prefix, keys.route),
                format!("`{}` {reason}", clip(&r)),
            )
        })?),
        None => None,
    };
    let env = check_vars(file, &join(&prefix, keys.env), d.env)?;
    let command = d
        .command
        .map(|c| check_command(file, &join(&prefix, keys.command), c))
        .transpose()?;
    let mut depends_on = Vec::new();
    for dep in &d.depends_on {
        let dep = ServiceName::parse(dep).map_err(|_| {
            invalid(
                file,
                join(&prefix, keys.depends_on),
                format!("names `{}`, which is not a service of this file", clip(dep)),
            )
        })?;
        if !depends_on.contains(&dep) {
            depends_on.push(dep);
        }
    }
    let service = Service {
        name,
        image,
        port,
        route,
        env,
        command,
        healthcheck: HealthCheck {
            path: "/".to_owned(),
            status: 200,
            timeout: None,
            required: false,
        },
        depends_on,
        internal: d.internal,
        sleeps: d.sleep,
        host: d.host,
        run: d.run,
    };
    Ok((service, d.health))
}

fn check_dev(
    file: &str,
    d: DevDraft,
    services: &BTreeMap<ServiceName, Service>,
) -> Result<DevService, SpecError> {
    let name = service_name(file, "dev", &d.name)?;
    let prefix = join("dev", name.as_str());
    let Some(service) = services.get(&name) else {
        return Err(invalid(
            file,
            prefix,
            "names no service of `services:`; a dev entry replaces the service of the same name",
        ));
    };
    check_image(file, &join(&prefix, "image"), &d.image)?;
    check_workdir(file, &join(&prefix, "workdir"), &d.workdir)?;
    let port = match d.port {
        Some(p) => Some(check_port(file, &join(&prefix, "port"), p)?),
        None => service.port,
    };
    Ok(DevService {
        image: d.image,
        workdir: d.workdir,
        command: d
            .command
            .map(|c| check_command(file, &join(&prefix, "command"), c))
            .transpose()?,
        env: check_vars(file, &join(&prefix, "env"), d.env)?,
        port,
        name,
    })
}
