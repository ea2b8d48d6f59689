//! The checks across services, once each service has passed its own: a missing route
//! defaulted to `/` (only when it is not a guess), routes unique, each health check filled in
//! and reaching its own service through the gateway, and `depends_on` naming services of the
//! file without a cycle. Nothing here checks a single value (that is `values`) or reads YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Keys, invalid};
use crate::ids::ServiceName;
use crate::spec::raw::Health;
use crate::spec::route::{check_path, longest_match};
use crate::spec::yaml::{clip, join};
use crate::spec::{HealthCheck, Host, Route, Service, SpecError};

/// A missing route becomes `/` when exactly one routed service has none; otherwise it would
/// be a guess, so it is an error.
pub(super) fn default_routes(
    file: &str,
    keys: &Keys,
    services: &mut BTreeMap<ServiceName, Service>,
) -> Result<(), SpecError> {
    let unrouted: Vec<ServiceName> = services
        .values()
        .filter(|s| !s.internal && s.route.is_none() && s.host == Host::Preview)
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

pub(super) fn check_unique_routes(
    file: &str,
    keys: &Keys,
    services: &BTreeMap<ServiceName, Service>,
) -> Result<(), SpecError> {
    let mut seen: BTreeMap<&Route, &ServiceName> = BTreeMap::new();
    // A service on a host of its own shares its routes with no one.
    for s in services.values().filter(|s| s.host == Host::Preview) {
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
pub(super) fn apply_health(
    file: &str,
    keys: &Keys,
    services: &mut BTreeMap<ServiceName, Service>,
    mut healths: BTreeMap<ServiceName, Option<Health>>,
) -> Result<(), SpecError> {
    let routes: Vec<(ServiceName, Route)> = services
        .values()
        .filter(|s| s.host == Host::Preview)
        .filter_map(|s| s.route.clone().map(|r| (s.name.clone(), r)))
        .collect();
    for s in services.values_mut() {
        let prefix = join(&join("services", s.name.as_str()), keys.health);
        let given = healths.remove(&s.name).flatten();
        let required = s.route.is_some() && (s.host == Host::Preview || given.is_some());
        let raw = given.unwrap_or_default();
        let path = match (raw.path, &s.route) {
            (Some(p), _) => p,
            (None, Some(route)) => route.as_str().to_owned(),
            (None, None) => "/".to_owned(),
        };
        let path_key = join(&prefix, "path");
        check_path(&path)
            .map_err(|r| invalid(file, &path_key, format!("`{}` {r}", clip(&path))))?;
        if s.route.is_some() && s.host == Host::Preview {
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
            required,
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

pub(super) fn check_dependencies(
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
