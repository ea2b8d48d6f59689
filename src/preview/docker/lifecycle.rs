//! Waiting on a container's own life: until Docker's health check says healthy, until a job
//! exited (successfully or not), and stopping one with its grace period. These are what
//! compose's `depends_on` conditions and a stop-first replacement wait for. Nothing here
//! creates or removes a container, and every wait has a deadline.

use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerStateStatusEnum, EndpointSettings, HealthStatusEnum, NetworkConnectRequest,
};
use bollard::query_parameters::{InspectContainerOptions, StopContainerOptions};
use tokio::time::Instant;

use super::DockerError;

/// What a container reached, or why it will not.
pub enum Reached {
    Yes,
    No(String),
}

async fn state(
    docker: &Docker,
    name: &str,
) -> Result<bollard::models::ContainerState, DockerError> {
    let info = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await?;
    Ok(info.state.unwrap_or_default())
}

/// Waits until `name`'s Docker health check says healthy.
pub async fn wait_healthy(docker: &Docker, name: &str, deadline: Duration) -> Reached {
    let until = Instant::now() + deadline;
    loop {
        let s = match state(docker, name).await {
            Ok(s) => s,
            Err(e) => return Reached::No(e.to_string()),
        };
        match s.health.as_ref().and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => return Reached::Yes,
            None | Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY) => {
                return Reached::No("has no health check, which service_healthy needs".to_owned());
            }
            _ => {}
        }
        if matches!(
            s.status,
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
        ) {
            return Reached::No(format!("exited with status {}", s.exit_code.unwrap_or(-1)));
        }
        if Instant::now() >= until {
            return Reached::No(format!("not healthy after {}s", deadline.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `name` exited with status 0.
pub async fn wait_completed(docker: &Docker, name: &str, deadline: Duration) -> Reached {
    let until = Instant::now() + deadline;
    loop {
        let s = match state(docker, name).await {
            Ok(s) => s,
            Err(e) => return Reached::No(e.to_string()),
        };
        if matches!(
            s.status,
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
        ) {
            return match s.exit_code {
                Some(0) => Reached::Yes,
                code => Reached::No(format!("exited with status {}", code.unwrap_or(-1))),
            };
        }
        if Instant::now() >= until {
            return Reached::No(format!("still running after {}s", deadline.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops a container, waiting up to `grace` before Docker kills it; one already stopped or
/// gone is fine.
pub async fn stop(docker: &Docker, name: &str, grace: Option<Duration>) -> Result<(), DockerError> {
    let opts = StopContainerOptions {
        t: grace.map(|g| i32::try_from(g.as_secs()).unwrap_or(i32::MAX)),
        ..Default::default()
    };
    match docker.stop_container(name, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if super::is_not_found(&e) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Joins a created container to one more network under `aliases` (Docker before API 1.44
/// takes one network at create).
pub async fn connect(
    docker: &Docker,
    network: &str,
    container: &str,
    aliases: Vec<String>,
) -> Result<(), DockerError> {
    let req = NetworkConnectRequest {
        container: container.to_owned(),
        endpoint_config: Some(EndpointSettings {
            aliases: Some(aliases),
            ..Default::default()
        }),
    };
    docker.connect_network(network, req).await?;
    Ok(())
}
