//! The one switch between where `cluster.engine` runs a preview's services: containers on the
//! one Docker host, or services on the Docker Swarm previewd's endpoint manages. Reading
//! members back, whether they run, and removing one go through here, so the manager, gateway
//! and reconciler never ask which. Never creates anything (creating differs too much to hide:
//! the manager's `containers.rs` says how for each).

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::labels::{self, Member};
use super::{DockerError, swarm, swarm_tasks};
use crate::config::{Config, Engine};

/// Every service member of the instance, from container labels or Swarm service labels.
pub async fn members(docker: &Docker, config: &Config) -> Result<Vec<Member>, DockerError> {
    match config.cluster.engine {
        Engine::Docker => super::members(docker, &config.instance).await,
        Engine::Swarm => swarm_tasks::members(docker, &config.instance).await,
    }
}

/// Removes one member: its container (its `pre_stop` hooks run first while it runs), or its
/// service (and so its tasks on every node).
pub async fn remove(docker: &Docker, config: &Config, m: &Member) -> Result<(), DockerError> {
    match config.cluster.engine {
        Engine::Docker => {
            super::hooks::pre_stop(docker, m).await;
            super::remove_container(docker, &m.container_id).await
        }
        Engine::Swarm => swarm::remove(docker, &m.container_id).await,
    }
}

/// Makes a member of the live generation live where a crash left it half-switched: its
/// container takes the canonical name, or its service gets the live mark.
pub async fn make_live(docker: &Docker, config: &Config, m: &Member) -> Result<(), DockerError> {
    match config.cluster.engine {
        Engine::Docker => {
            let canonical = labels::container_name(&config.instance, &m.preview, &m.service);
            super::rename_container(docker, &m.container_id, &canonical).await
        }
        Engine::Swarm => match config.cluster.registry.as_ref() {
            Some(registry) => swarm::mark_live(docker, &m.container_id, registry).await,
            None => Err(DockerError::Api("a swarm without a registry".to_owned())),
        },
    }
}

/// `Ok` while every named member (containers, or services on a swarm) runs; else the first
/// that does not, its service name first.
pub async fn all_running(docker: &Docker, config: &Config, names: &[String]) -> Result<(), String> {
    match config.cluster.engine {
        Engine::Docker => super::all_running(docker, names).await,
        Engine::Swarm => swarm_tasks::all_running(docker, names).await,
    }
}

/// A member's log stream: its container's, or on a swarm its service's (the lines of its
/// tasks on whichever node they ran, gathered by the manager).
pub fn logs(
    docker: &Docker,
    config: &Config,
    id_or_name: &str,
    opts: LogsOptions,
) -> BoxStream<'static, Result<LogOutput, bollard::errors::Error>> {
    match config.cluster.engine {
        Engine::Docker => docker.logs(id_or_name, Some(opts)).boxed(),
        Engine::Swarm => docker.service_logs(id_or_name, Some(opts)).boxed(),
    }
}

/// The last `n` lines a member wrote (stdout and stderr), for failure reports: by container
/// name on one host, by service name on a swarm.
pub async fn log_tail(docker: &Docker, config: &Config, name: &str, n: usize) -> Vec<String> {
    let opts = LogsOptions {
        stdout: true,
        stderr: true,
        tail: n.to_string(),
        ..Default::default()
    };
    super::read_tail(logs(docker, config, name, opts), n).await
}
