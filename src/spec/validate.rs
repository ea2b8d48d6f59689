//! The checks both formats share, run on a format-neutral draft of each service: names, limits,
//! ports, routes and their defaults, health checks, environment, commands, images, the
//! dependency graph and the `dev:` section. The result is a `Spec` the rest of previewd can
//! trust. Nothing here reads YAML or knows which format a draft came from, except for the key
//! names it puts in messages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use super::hostile;
use super::paths::resolve_build;
use super::raw::{Build, Health, Vars};
use super::route::{check_path, longest_match};
use super::tree::{TreeError, TreeErrorKind};
use super::yaml::{clip, join};
use super::{DevService, HealthCheck, ImageSource, Route, Service, Spec, SpecError};
use crate::ids::ServiceName;

/// Most services in one preview: each is a container on the host.
pub const MAX_SERVICES: usize = 50;
/// Most environment variables (or build args) per service.
pub const MAX_ENV_VARS: usize = 200;
/// Largest environment variable (or build arg) value, in bytes.
pub const MAX_ENV_VALUE: usize = 64 * 1024;
/// Largest command, all arguments together, in bytes.
pub const MAX_COMMAND: usize = 64 * 1024;

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

fn invalid(file: &str, key: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        file: file.to_owned(),
        key: key.into(),
        reason: reason.into(),
    }
}

/// Checks every draft and assembles the `Spec`.
pub fn finish(
    file: &str,
    keys: &Keys,
    drafts: Vec<Draft>,
    devs: Vec<DevDraft>,
    worktree: &Path,
) -> Result<Spec, SpecError> {
    if drafts.is_empty() {
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
        let (service, health) = check_service(file, keys, draft, worktree)?;
        healths.insert(service.name.clone(), health);
        services.insert(service.name.clone(), service);
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
        },
        depends_on,
        internal: d.internal,
    };
    Ok((service, d.health))
}

fn check_port(file: &str, key: &str, port: u64) -> Result<u16, SpecError> {
    match u16::try_from(port) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(invalid(
            file,
            key,
            format!("{port} is not a port: use 1 to 65535"),
        )),
    }
}

/// A missing route becomes `/` when exactly one routed service has none; otherwise it would
/// be a guess, so it is an error.
fn default_routes(
    file: &str,
    keys: &Keys,
    services: &mut BTreeMap<ServiceName, Service>,
) -> Result<(), SpecError> {
    let unrouted: Vec<ServiceName> = services
        .values()
        .filter(|s| !s.internal && s.route.is_none())
        .map(|s| s.name.clone())
        .collect();
    match unrouted.as_slice() {
        [] => Ok(()),
        [only] => {
            if let Some(s) = services.get_mut(only) {
                s.route = Some(Route::root());
            }
            Ok(())
        }
        [first, ..] => Err(invalid(
            file,
            join(&join("services", first.as_str()), keys.route),
            format!(
                "is required: {} routed services have no route, and only one can default to `/`",
                unrouted.len()
            ),
        )),
    }
}

fn check_unique_routes(
    file: &str,
    keys: &Keys,
    services: &BTreeMap<ServiceName, Service>,
) -> Result<(), SpecError> {
    let mut seen: BTreeMap<&Route, &ServiceName> = BTreeMap::new();
    for s in services.values() {
        let Some(route) = &s.route else { continue };
        if let Some(other) = seen.insert(route, &s.name) {
            return Err(invalid(
                file,
                join(&join("services", s.name.as_str()), keys.route),
                format!("`{}` is already the route of `{other}`", route.as_str()),
            ));
        }
    }
    Ok(())
}

/// Fills in each health check. The path is requested through the gateway, so it must reach
/// the service itself: the longest route covering it must be the service's own.
fn apply_health(
    file: &str,
    keys: &Keys,
    services: &mut BTreeMap<ServiceName, Service>,
    mut healths: BTreeMap<ServiceName, Option<Health>>,
) -> Result<(), SpecError> {
    let routes: Vec<(ServiceName, Route)> = services
        .values()
        .filter_map(|s| s.route.clone().map(|r| (s.name.clone(), r)))
        .collect();
    for s in services.values_mut() {
        let prefix = join(&join("services", s.name.as_str()), keys.health);
        let raw = healths.remove(&s.name).flatten().unwrap_or_default();
        let path = match (raw.path, &s.route) {
            (Some(p), _) => p,
            (None, Some(route)) => route.as_str().to_owned(),
            (None, None) => "/".to_owned(),
        };
        let path_key = join(&prefix, "path");
        check_path(&path)
            .map_err(|r| invalid(file, &path_key, format!("`{}` {r}", clip(&path))))?;
        if s.route.is_some() {
            let owner = longest_match(routes.iter().map(|(n, r)| (n, r)), &path);
            if owner != Some(&s.name) {
                return Err(invalid(
                    file,
                    path_key,
                    format!(
                        "`{path}` would reach {} through the gateway, not this service: use a \
                         path under its route",
                        owner.map_or("no service".to_owned(), |o| format!("`{o}`"))
                    ),
                ));
            }
        }
        let status = raw.status.unwrap_or(200);
        let status = u16::try_from(status)
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| {
                invalid(
                    file,
                    join(&prefix, "status"),
                    format!("{status} is not an HTTP status"),
                )
            })?;
        let timeout = raw
            .timeout
            .map(|t| parse_timeout(file, &join(&prefix, "timeout"), &t))
            .transpose()?;
        s.healthcheck = HealthCheck {
            path,
            status,
            timeout,
        };
    }
    Ok(())
}

fn parse_timeout(file: &str, key: &str, text: &str) -> Result<Duration, SpecError> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(invalid(file, key, "must be longer than zero")),
        Err(e) => Err(invalid(
            file,
            key,
            format!("`{}` is not a duration like `60s` or `2m`: {e}", clip(text)),
        )),
    }
}

fn check_dependencies(
    file: &str,
    keys: &Keys,
    services: &BTreeMap<ServiceName, Service>,
) -> Result<(), SpecError> {
    for s in services.values() {
        for dep in &s.depends_on {
            if !services.contains_key(dep) {
                return Err(invalid(
                    file,
                    join(&join("services", s.name.as_str()), keys.depends_on),
                    format!("names `{dep}`, which is not a service of this file"),
                ));
            }
        }
    }
    // Depth-first search; at most MAX_SERVICES deep.
    let mut done = BTreeSet::new();
    for start in services.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = find_cycle(services, start, &mut stack, &mut done) {
            let names: Vec<&str> = cycle.iter().map(ServiceName::as_str).collect();
            return Err(invalid(
                file,
                join(&join("services", cycle[0].as_str()), keys.depends_on),
                format!("forms a cycle: {}", names.join(" -> ")),
            ));
        }
    }
    Ok(())
}

fn find_cycle(
    services: &BTreeMap<ServiceName, Service>,
    at: &ServiceName,
    stack: &mut Vec<ServiceName>,
    done: &mut BTreeSet<ServiceName>,
) -> Option<Vec<ServiceName>> {
    if done.contains(at) {
        return None;
    }
    if let Some(pos) = stack.iter().position(|s| s == at) {
        let mut cycle = stack[pos..].to_vec();
        cycle.push(at.clone());
        return Some(cycle);
    }
    stack.push(at.clone());
    for dep in services
        .get(at)
        .map(|s| s.depends_on.as_slice())
        .unwrap_or(&[])
    {
        if let Some(cycle) = find_cycle(services, dep, stack, done) {
            return Some(cycle);
        }
    }
    stack.pop();
    done.insert(at.clone());
    None
}

/// Checks environment variables or build args: names, count, sizes, and no value-less entries
/// (compose would fill those from the environment of the process, i.e. previewd's secrets).
pub fn check_vars(
    file: &str,
    key: &str,
    vars: Vars,
) -> Result<BTreeMap<String, String>, SpecError> {
    if vars.0.len() > MAX_ENV_VARS {
        return Err(invalid(
            file,
            key,
            format!(
                "sets {} variables; the limit is {MAX_ENV_VARS}",
                vars.0.len()
            ),
        ));
    }
    let mut out = BTreeMap::new();
    for (name, value) in vars.0 {
        let var_key = join(key, &clip(&name));
        if !valid_var_name(&name) {
            return Err(invalid(
                file,
                var_key,
                "is not a valid variable name: use letters, digits and `_`, not starting with a digit",
            ));
        }
        let Some(value) = value else {
            return Err(SpecError::Refused {
                file: file.to_owned(),
                key: var_key,
                reason: "has no value, which would copy it from previewd's own environment \
                         (where its secrets live): write the value"
                    .to_owned(),
            });
        };
        if value.len() > MAX_ENV_VALUE {
            return Err(invalid(
                file,
                var_key,
                format!("is {} bytes; the limit is {MAX_ENV_VALUE}", value.len()),
            ));
        }
        if value.contains('\0') {
            return Err(invalid(file, var_key, "contains a NUL byte"));
        }
        if out.insert(name, value).is_some() {
            return Err(invalid(file, var_key, "is set twice"));
        }
    }
    Ok(out)
}

fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_command(file: &str, key: &str, args: Vec<String>) -> Result<Vec<String>, SpecError> {
    if args.is_empty() || args.iter().all(|a| a.trim().is_empty()) {
        return Err(invalid(
            file,
            key,
            "is empty: remove it to keep the image's own command",
        ));
    }
    if args.iter().map(String::len).sum::<usize>() > MAX_COMMAND {
        return Err(invalid(
            file,
            key,
            format!("is longer than {MAX_COMMAND} bytes"),
        ));
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(invalid(file, key, "contains a NUL byte"));
    }
    Ok(args)
}

/// An image reference as Docker reads it (`redis:7`, `ghcr.io/o/app@sha256:...`).
fn check_image(file: &str, key: &str, image: &str) -> Result<(), SpecError> {
    let ok_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':' | '@' | '-');
    let first_ok = image
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if image.len() > 255 || !first_ok || !image.chars().all(ok_char) {
        return Err(invalid(
            file,
            key,
            format!("`{}` is not an image reference like `redis:7`", clip(image)),
        ));
    }
    Ok(())
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

/// The container path the worktree is mounted at in dev mode: absolute, plain, not `/`.
fn check_workdir(file: &str, key: &str, workdir: &str) -> Result<(), SpecError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/');
    let fine = workdir.starts_with('/')
        && workdir.len() <= 256
        && !workdir.trim_end_matches('/').is_empty()
        && workdir.chars().all(plain)
        && !workdir.split('/').any(|s| s == ".." || s == ".");
    if fine {
        Ok(())
    } else {
        Err(invalid(
            file,
            key,
            format!(
                "`{}` must be an absolute container path other than `/`, of letters, digits, \
                 `-`, `.`, `_` and `/`, without `..` (e.g. `/app`)",
                clip(workdir)
            ),
        ))
    }
}
