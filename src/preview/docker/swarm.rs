//! Docker Swarm through the Engine API (`cluster.engine = "swarm"`): a preview's services as
//! Swarm services carrying the same labels a container carries on one host, read back into the
//! same [`Member`]s; an image pushed to the cluster's registry so that every node can pull it.
//! Never decides a deployment's order (that is the manager's), never talks to a node other
//! than the manager previewd is connected to, and never shells out to the docker CLI.

use std::collections::HashMap;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, EndpointSpec, EndpointSpecModeEnum, Limit, NetworkAttachmentConfig,
    ResourceObject, RestartPolicyNameEnum, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    Task, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecPrivileges, TaskSpecLogDriver,
    TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    InspectServiceOptions, ListServicesOptions, ListTasksOptions, PushImageOptions,
    TagImageOptions, UpdateServiceOptions,
};
use futures_util::StreamExt;
use secrecy::ExposeSecret;

use super::labels::{self, Member};
use super::{DockerError, instance_filter, is_not_found};
use crate::config::Registry;
use crate::ids::Instance;

/// The credentials previewd pushes with and every node pulls with (`None`: an open registry).
pub fn credentials(registry: &Registry) -> Option<DockerCredentials> {
    let (user, password) = (registry.username.as_ref()?, registry.password.as_ref()?);
    Some(DockerCredentials {
        username: Some(user.clone()),
        password: Some(password.expose_secret().to_owned()),
        serveraddress: Some(registry.address.clone()),
        ..Default::default()
    })
}

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

/// A service's state in the words a container's has (`running`, `created`, `exited`).
fn state(replicas: i64, tasks: &[&Task]) -> &'static str {
    let now = |t: &&Task| t.status.as_ref().and_then(|s| s.state);
    if tasks.iter().any(|t| now(t) == Some(TaskState::RUNNING)) {
        return "running";
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
        if tasks
            .iter()
            .any(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        {
            continue;
        }
        let why = tasks
            .iter()
            .filter_map(|t| t.status.as_ref())
            .filter_map(|s| s.err.clone().or_else(|| s.message.clone()))
            .next_back()
            .unwrap_or_else(|| "no task running".to_owned());
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

/// What one container create request says, as a Swarm service that runs no task yet (its
/// start is [`scale`] to one): the same labels on the service and its containers, the
/// operator's limits as the task's limits, the preview's overlay networks with the same
/// aliases, and DNS round robin instead of a virtual IP (service VIPs need IPVS, which some
/// kernels lack; the gateway dials names either way). What a node other than this one cannot
/// honour (bind mounts of the worktree, named volumes) is refused, never dropped.
pub fn service_spec(
    name: &str,
    body: ContainerCreateBody,
    extra_networks: Vec<(String, Vec<String>)>,
    image: &str,
    constraints: &[String],
) -> Result<ServiceSpec, String> {
    let host = body.host_config.unwrap_or_default();
    if host.binds.as_ref().is_some_and(|b| !b.is_empty())
        || host.mounts.as_ref().is_some_and(|m| !m.is_empty())
    {
        return Err(
            "volumes and bind mounts are not placed on a swarm yet (cluster.engine = \"swarm\"); \
             dev mode needs the worktree on the node, so it runs on one host only"
                .to_owned(),
        );
    }
    let first = host.network_mode.clone().unwrap_or_default();
    let first_aliases = body
        .networking_config
        .and_then(|n| n.endpoints_config)
        .and_then(|mut e| e.remove(&first))
        .and_then(|e| e.aliases)
        .unwrap_or_default();
    let networks = std::iter::once((first, first_aliases))
        .chain(extra_networks)
        .map(|(target, aliases)| NetworkAttachmentConfig {
            target: Some(target),
            aliases: Some(aliases),
            ..Default::default()
        })
        .collect();
    let restart = match host.restart_policy.and_then(|r| r.name) {
        Some(RestartPolicyNameEnum::NO) => TaskSpecRestartPolicyConditionEnum::NONE,
        Some(RestartPolicyNameEnum::ON_FAILURE) => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
        _ => TaskSpecRestartPolicyConditionEnum::ANY,
    };
    let container = TaskSpecContainerSpec {
        image: Some(image.to_owned()),
        labels: body.labels.clone(),
        command: body.entrypoint,
        args: body.cmd,
        env: body.env,
        dir: body.working_dir,
        user: body.user,
        groups: host.group_add,
        privileges: Some(TaskSpecContainerSpecPrivileges {
            no_new_privileges: Some(true),
            ..Default::default()
        }),
        tty: body.tty,
        open_stdin: body.open_stdin,
        read_only: host.readonly_rootfs,
        stop_signal: body.stop_signal,
        stop_grace_period: body.stop_timeout.map(|s| s.saturating_mul(1_000_000_000)),
        health_check: body.healthcheck,
        hosts: host.extra_hosts,
        init: host.init,
        sysctls: host.sysctls,
        capability_drop: host.cap_drop,
        ulimits: host.ulimits,
        ..Default::default()
    };
    let log_driver = host.log_config.map(|l| TaskSpecLogDriver {
        name: l.typ,
        options: l.config,
    });
    Ok(ServiceSpec {
        name: Some(name.to_owned()),
        labels: body.labels,
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: host.nano_cpus,
                    memory_bytes: host.memory,
                    pids: host.pids_limit,
                }),
                reservations: host.memory_reservation.map(|m| ResourceObject {
                    memory_bytes: Some(m),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(restart),
                ..Default::default()
            }),
            networks: Some(networks),
            placement: (!constraints.is_empty()).then(|| TaskSpecPlacement {
                constraints: Some(constraints.to_vec()),
                ..Default::default()
            }),
            log_driver,
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Creates a service (with its registry credentials, so every node may pull its image).
pub async fn create(
    docker: &Docker,
    spec: ServiceSpec,
    registry: &Registry,
) -> Result<(), DockerError> {
    docker.create_service(spec, credentials(registry)).await?;
    Ok(())
}

/// Changes a service's spec by `change`, at the version it was read at. Swarm itself updates a
/// new service's object (its endpoint, its tasks), so a read may be stale by the time the
/// update lands ("update out of sequence"): read again and retry, a few times.
async fn update(
    docker: &Docker,
    name: &str,
    registry: &Registry,
    change: impl Fn(&mut ServiceSpec),
) -> Result<(), DockerError> {
    let mut tries = 0;
    loop {
        let s = docker
            .inspect_service(name, None::<InspectServiceOptions>)
            .await?;
        let version = s
            .version
            .and_then(|v| v.index)
            .and_then(|i| i32::try_from(i).ok())
            .ok_or_else(|| DockerError::Api(format!("service {name} has no version")))?;
        let mut spec = s.spec.unwrap_or_default();
        change(&mut spec);
        let opts = UpdateServiceOptions {
            version,
            ..Default::default()
        };
        match docker
            .update_service(name, spec, opts, credentials(registry))
            .await
        {
            Ok(_) => return Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                if message.contains("out of sequence") && tries < UPDATE_TRIES =>
            {
                tries += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads and updates of one service before an "out of sequence" answer is given up on.
const UPDATE_TRIES: usize = 8;

/// Asks for `replicas` tasks of the service: 1 starts it, 0 stops it.
pub async fn scale(
    docker: &Docker,
    name: &str,
    registry: &Registry,
    replicas: i64,
) -> Result<(), DockerError> {
    update(docker, name, registry, |spec| {
        spec.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..Default::default()
        });
    })
    .await
}

/// Marks a service's generation live ([`labels::LIVE`]). Only the service's own labels change,
/// not its task's: Swarm restarts no task for it.
pub async fn mark_live(
    docker: &Docker,
    name: &str,
    registry: &Registry,
) -> Result<(), DockerError> {
    update(docker, name, registry, |spec| {
        spec.labels
            .get_or_insert_with(HashMap::new)
            .insert(labels::LIVE.to_owned(), "true".to_owned());
    })
    .await
}

/// Removes a service and, with it, its tasks' containers on every node; gone already is done.
pub async fn remove(docker: &Docker, name_or_id: &str) -> Result<(), DockerError> {
    match docker.delete_service(name_or_id).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Where `image` (a local tag or name) lives in the registry: `<registry>/<name>:<tag>`.
pub fn registry_ref(registry: &Registry, image: &str) -> (String, String) {
    let (name, tag) = match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (image, "latest"),
    };
    (format!("{}/{name}", registry.address), tag.to_owned())
}

/// Pushes `image` to the registry and returns the reference every node pulls: by digest, so a
/// task always runs exactly what was built. An image pushed before (its digest is known for
/// the registry's repository) is not pushed again.
pub async fn push(
    docker: &Docker,
    registry: &Registry,
    image: &str,
) -> Result<String, DockerError> {
    let (repo, tag) = registry_ref(registry, image);
    let pushed = |info: &bollard::models::ImageInspect| {
        info.repo_digests
            .iter()
            .flatten()
            .find(|d| d.starts_with(&format!("{repo}@")))
            .cloned()
    };
    if let Ok(info) = docker.inspect_image(image).await
        && let Some(digest) = pushed(&info)
    {
        return Ok(digest);
    }
    let opts = TagImageOptions {
        repo: Some(repo.clone()),
        tag: Some(tag.clone()),
    };
    docker.tag_image(image, Some(opts)).await?;
    let opts = PushImageOptions {
        tag: Some(tag.clone()),
        ..Default::default()
    };
    let mut stream = docker.push_image(&repo, Some(opts), credentials(registry));
    while let Some(step) = stream.next().await {
        let step = step?;
        if let Some(e) = step.error_detail.and_then(|d| d.message) {
            return Err(DockerError::Api(format!(
                "pushing {image} to {}: {e}",
                registry.address
            )));
        }
    }
    let info = docker.inspect_image(&format!("{repo}:{tag}")).await?;
    pushed(&info).ok_or_else(|| {
        DockerError::Api(format!(
            "{image} was pushed to {} but has no digest there",
            registry.address
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry {
            address: "10.0.0.1:5000".into(),
            username: None,
            password: None,
        }
    }

    #[test]
    fn a_local_tag_maps_into_the_registry() {
        let r = registry();
        assert_eq!(
            registry_ref(&r, "previewd-abc-web:0123"),
            ("10.0.0.1:5000/previewd-abc-web".into(), "0123".into())
        );
        assert_eq!(
            registry_ref(&r, "busybox"),
            ("10.0.0.1:5000/busybox".into(), "latest".into())
        );
        assert_eq!(
            registry_ref(&r, "localhost:5000/x"),
            ("10.0.0.1:5000/localhost:5000/x".into(), "latest".into())
        );
    }

    #[test]
    fn what_another_node_cannot_honour_is_refused() {
        let body = ContainerCreateBody {
            host_config: Some(bollard::models::HostConfig {
                binds: Some(vec!["/src:/app".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(service_spec("s", body, Vec::new(), "i", &[]).is_err());
    }
}
