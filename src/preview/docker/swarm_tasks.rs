//! Reading a preview's Swarm services back (`cluster.engine = "swarm"`): each service and its
//! tasks as the [`Member`] a container is on one host, its state in a container's words, and
//! whether a generation's services run. Only reads: never creates, changes or removes a
//! service (that is `swarm.rs`), and never talks to a node other than the manager.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{Task, TaskState};
use bollard::query_parameters::{InspectServiceOptions, ListServicesOptions, ListTasksOptions};

use super::labels::{self, Member};
use super::{DockerError, instance_filter};
use crate::ids::Instance;

/// Every service of the instance on the swarm, parsed from its labels like a container's. The
/// state is its task's: `running` once one runs, `created` while none is asked for or one is
/// on its way, `exited` otherwise.
pub async fn members(docker: &Docker, instance: &Instance) -> Result<Vec<Member>, DockerError> {
    let opts = ListServicesOptions {
        filters: Some(instance_filter(instance)),
        ..Default::default()
    };
    let services = docker.list_services(Some(opts)).await?;
    let ids: Vec<String> = services.iter().filter_map(|s| s.id.clone()).collect();
    let tasks = tasks_of(docker, ids).await?;
    Ok(services
        .into_iter()
        .filter_map(|s| {
            let id = s.id?;
            let spec = s.spec?;
            let l = spec.labels.unwrap_or_default();
            let name = spec.name.unwrap_or_default();
            let replicas = spec
                .mode
                .and_then(|m| m.replicated)
                .and_then(|r| r.replicas)
                .unwrap_or(1);
            let mine: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.service_id.as_deref() == Some(id.as_str()))
                .collect();
            let image = spec
                .task_template
                .and_then(|t| t.container_spec)
                .and_then(|c| c.image)
                .unwrap_or_default();
            let mut m =
                labels::parse_member(instance, &id, &[name], &l, state(replicas, &mine), &image)?;
            m.canonical = l.get(labels::LIVE).map(String::as_str) == Some("true");
            Some(m)
        })
        .collect())
}

async fn tasks_of(docker: &Docker, services: Vec<String>) -> Result<Vec<Task>, DockerError> {
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let opts = ListTasksOptions {
        filters: Some(HashMap::from([("service".to_owned(), services)])),
    };
    Ok(docker.list_tasks(Some(opts)).await?)
}

/// Whether a task runs and is meant to: a task on a node that went away keeps the state it
/// last reported (`running`) while Swarm has already asked for its shutdown and a replacement.
fn runs(t: &Task) -> bool {
    t.desired_state == Some(TaskState::RUNNING)
        && t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
}

/// A service's state in the words a container's has (`running`, `created`, `exited`), and
/// Swarm's own `pending` while its task waits for a node that can take it (a node went away
/// and no other satisfies the placement).
fn state(replicas: i64, tasks: &[&Task]) -> &'static str {
    let now = |t: &&Task| t.status.as_ref().and_then(|s| s.state);
    if tasks.iter().any(|t| runs(t)) {
        return "running";
    }
    let waiting = tasks.iter().any(|t| {
        t.desired_state == Some(TaskState::RUNNING)
            && now(t) == Some(TaskState::PENDING)
            && t.status.as_ref().and_then(|s| s.err.as_ref()).is_some()
    });
    if waiting {
        return "pending";
    }
    let on_its_way = tasks.iter().any(|t| {
        t.desired_state == Some(TaskState::RUNNING)
            && !matches!(
                now(t),
                Some(
                    TaskState::COMPLETE
                        | TaskState::FAILED
                        | TaskState::REJECTED
                        | TaskState::SHUTDOWN
                        | TaskState::ORPHANED
                        | TaskState::REMOVE
                )
            )
    });
    if replicas == 0 || on_its_way {
        "created"
    } else {
        "exited"
    }
}

/// `Ok` when each named service has a running task; else which one has not, and why (its
/// service name first, as `docker::all_running` says it).
pub async fn all_running(docker: &Docker, services: &[String]) -> Result<(), String> {
    for name in services {
        let Ok(s) = docker
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        else {
            continue;
        };
        let service = s
            .spec
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .and_then(|l| l.get(labels::SERVICE).cloned())
            .unwrap_or_else(|| name.clone());
        let tasks = tasks_of(docker, s.id.into_iter().collect())
            .await
            .map_err(|e| format!("{service}: {e}"))?;
        if tasks.iter().any(runs) {
            continue;
        }
        let why = tasks
            .iter()
            .filter_map(|t| t.status.as_ref())
            .filter_map(|s| s.err.clone().or_else(|| s.message.clone()))
            .next_back()
            .unwrap_or_else(|| "no task running".to_owned());
        // A task that failed with none running is a crash, even while Swarm restarts it (as a
        // restarting container is on one host): said at once, not after the health timeout.
        let crashed = tasks.iter().find_map(|t| {
            let s = t.status.as_ref()?;
            matches!(s.state, Some(TaskState::FAILED | TaskState::REJECTED)).then(|| {
                let code = s.container_status.as_ref().and_then(|c| c.exit_code);
                let said = s.err.clone().or_else(|| s.message.clone());
                (code.unwrap_or(-1), said.unwrap_or_default())
            })
        });
        if let Some((code, said)) = crashed {
            return Err(format!("{service} exited with code {code} ({said})"));
        }
        // A task still on its way is not a failure yet.
        let coming = tasks.iter().any(|t| {
            t.desired_state == Some(TaskState::RUNNING)
                && t.status.as_ref().and_then(|s| s.state).is_some_and(|s| {
                    matches!(
                        s,
                        TaskState::NEW
                            | TaskState::ALLOCATED
                            | TaskState::PENDING
                            | TaskState::ASSIGNED
                            | TaskState::ACCEPTED
                            | TaskState::PREPARING
                            | TaskState::READY
                            | TaskState::STARTING
                    )
                })
        });
        if !coming {
            return Err(format!("{service} has no running task on the swarm: {why}"));
        }
    }
    Ok(())
}
