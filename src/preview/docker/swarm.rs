//! Docker Swarm through the Engine API (`cluster.engine = "swarm"`): a preview's services made,
//! changed and removed as Swarm services carrying the same labels a container carries on one
//! host (`swarm_tasks.rs` reads them back); an image pushed to the cluster's registry so that
//! every node can pull it.
//! Never decides a deployment's order (that is the manager's), never talks to a node other
//! than the manager previewd is connected to, and never shells out to the docker CLI.

use std::collections::HashMap;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, EndpointSpec, EndpointSpecModeEnum, Limit, NetworkAttachmentConfig,
    ResourceObject, RestartPolicyNameEnum, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecPrivileges, TaskSpecLogDriver,
    TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{
    InspectServiceOptions, PushImageOptions, TagImageOptions, UpdateServiceOptions,
};
use futures_util::StreamExt;
use secrecy::ExposeSecret;

use super::labels;
use super::{DockerError, is_not_found};
use crate::config::Registry;

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

/// Whether [`push`] sent an image to the registry or found it there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Sent,
    Already,
}

/// Pushes `image` to the registry and returns the reference every node pulls: by digest, so a
/// task always runs exactly what was built. An image pushed before (its digest is known for
/// the registry's repository) is not pushed again.
pub async fn push(
    docker: &Docker,
    registry: &Registry,
    image: &str,
) -> Result<(String, Pushed), DockerError> {
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
        return Ok((digest, Pushed::Already));
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
    let digest = pushed(&info).ok_or_else(|| {
        DockerError::Api(format!(
            "{image} was pushed to {} but has no digest there",
            registry.address
        ))
    })?;
    Ok((digest, Pushed::Sent))
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
