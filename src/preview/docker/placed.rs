//! The one switch between where `cluster.engine` runs a preview's services: containers on the
//! one Docker host, or services on the Docker Swarm previewd's endpoint manages. Reading
//! members back, whether they run, and removing one go through here, so the manager, gateway
//! and reconciler never ask which. Never creates anything (creating differs too much to hide:
//! the manager's `containers.rs` says how for each).

use bollard::Docker;

use super::labels::Member;
use super::{DockerError, swarm};
use crate::config::{Config, Engine};

/// Every service member of the instance, from container labels or Swarm service labels.
pub async fn members(docker: &Docker, config: &Config) -> Result<Vec<Member>, DockerError> {
    match config.cluster.engine {
        Engine::Docker => super::members(docker, &config.instance).await,
        Engine::Swarm => swarm::members(docker, &config.instance).await,
    }
}

/// Removes one member: its container, or its service (and so its tasks on every node).
pub async fn remove(docker: &Docker, config: &Config, m: &Member) -> Result<(), DockerError> {
    match config.cluster.engine {
        Engine::Docker => super::remove_container(docker, &m.container_id).await,
        Engine::Swarm => swarm::remove(docker, &m.container_id).await,
    }
}

/// `Ok` while every named member (containers, or services on a swarm) runs; else the first
/// that does not, its service name first.
pub async fn all_running(docker: &Docker, config: &Config, names: &[String]) -> Result<(), String> {
    match config.cluster.engine {
        Engine::Docker => super::all_running(docker, names).await,
        Engine::Swarm => swarm::all_running(docker, names).await,
    }
}
