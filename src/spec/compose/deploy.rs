//! A compose service's `deploy`: what a preview's single host can honour of it (resource limits
//! and reservations, which the manager clamps to the operator's limits, the restart policy,
//! one replica); Swarm's rollout and placement settings are noted as having no meaning here.
//! Host devices are refused.

use super::options::cpus;
use super::project::{invalid, refused};
use super::shape::RawService;
use super::storage::size;
use crate::spec::SpecError;
use crate::spec::runtime::{Restart as DeployRestart, Runtime};
use crate::spec::yaml::{clip, join};

/// `deploy`: what a single host can honour of it (resources, restart policy, one replica);
/// Swarm's rollout and placement settings are noted as having no meaning here.
pub(super) fn deploy(
    file: &str,
    prefix: &str,
    s: &mut RawService,
    run: &mut Runtime,
    problems: &mut Vec<SpecError>,
) {
    let Some(d) = s.deploy.take() else { return };
    let key = |k: &str| join(&join(prefix, "deploy"), k);
    if let Some(n) = d.replicas.filter(|n| *n != 1) {
        problems.push(invalid(
            file,
            key("replicas"),
            format!("{n}: a preview runs one container per service; use 1"),
        ));
    }
    if let Some(m) = d
        .mode
        .as_deref()
        .filter(|m| !matches!(*m, "replicated" | "global"))
    {
        problems.push(invalid(
            file,
            key("mode"),
            format!("`{}`: use replicated", clip(m)),
        ));
    }
    for (k, set) in [
        ("labels", d.labels.is_some()),
        ("update_config", d.update_config.is_some()),
        ("rollback_config", d.rollback_config.is_some()),
        ("placement", d.placement.is_some()),
        ("endpoint_mode", d.endpoint_mode.is_some()),
    ] {
        if set {
            run.changes.push(format!(
                "{}: Swarm settings; no meaning on a preview's single host",
                key(k)
            ));
        }
    }
    if let Some(r) = d.resources {
        if let Some(l) = r.limits {
            if let Some(m) = l.memory {
                match size(file, &key("resources.limits.memory"), &m.0) {
                    Ok(b) => run.resources.memory = Some(b),
                    Err(e) => problems.push(e),
                }
            }
            if let Some(c) = l.cpus {
                run.resources.cpus = cpus(file, &key("resources.limits.cpus"), &c.0, problems);
            }
            run.resources.pids = l.pids.or(run.resources.pids);
        }
        if let Some(res) = r.reservations {
            if res.devices.is_some() || res.generic_resources.is_some() {
                problems.push(refused(
                    file,
                    key("resources.reservations.devices"),
                    "previews get no host devices",
                ));
            }
            if let Some(m) = res.memory {
                match size(file, &key("resources.reservations.memory"), &m.0) {
                    Ok(b) => run.resources.memory_reservation = Some(b),
                    Err(e) => problems.push(e),
                }
            }
            if res.cpus.is_some() {
                run.changes.push(format!(
                    "{}: a reservation, not a limit; the operator's CPU limit applies",
                    key("resources.reservations.cpus")
                ));
            }
        }
    }
    if let Some(p) = d.restart_policy {
        run.restart = Some(match p.condition.as_deref() {
            Some("none") => DeployRestart::No,
            Some("on-failure") => DeployRestart::OnFailure(p.max_attempts),
            _ => DeployRestart::Always,
        });
        if p.delay.is_some() || p.window.is_some() {
            run.changes.push(format!(
                "{}: delay and window are not applied; Docker restarts with its own back-off",
                key("restart_policy")
            ));
        }
    }
}
