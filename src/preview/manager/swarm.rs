//! The deployment steps that differ on a Docker Swarm (`cluster.engine = "swarm"`): a service's
//! container becomes a Swarm service made with no task and started by asking for one, looked
//! up by its Swarm name. The rollout, the health phase and the switch stay the manager's own;
//! raw Engine API calls stay in `preview/docker/swarm.rs`. Never used on one host.

use bollard::models::ContainerCreateBody;

use super::{Manager, Prepared, fail};
use crate::config::{Engine, Registry};
use crate::engine::{DeployFailure, Phase};
use crate::ids::PreviewId;
use crate::preview::docker::{labels, swarm};
use crate::spec;

impl Manager {
    /// The cluster's registry when services run on a swarm; `None` on one host.
    pub(super) fn swarm_registry(&self) -> Option<&Registry> {
        match self.config.cluster.engine {
            Engine::Docker => None,
            Engine::Swarm => self.config.cluster.registry.as_ref(),
        }
    }

    /// The name of `service`'s container (one host) or Swarm service in generation `g` while
    /// it is not live: what the start and the health phase look it up by.
    pub(super) fn staging_name(&self, id: &PreviewId, service: &str, g: u64) -> String {
        let inst = &self.config.instance;
        match self.swarm_registry() {
            None => labels::staging_name(inst, id, service, g),
            Some(_) => labels::swarm_service_name(inst, id, service, g),
        }
    }

    /// Makes `service`'s Swarm service from the container request the manager would send
    /// on one host, with no task yet, placed by `cluster.constraints`.
    pub(super) async fn create_service(
        &self,
        p: &Prepared,
        service: &str,
        body: ContainerCreateBody,
        extra: Vec<(String, Vec<String>)>,
        image: &str,
    ) -> Result<(), DeployFailure> {
        let Some(registry) = self.swarm_registry() else {
            return Err(fail(Phase::Start, Some(service), "not on a swarm"));
        };
        let name = self.staging_name(&p.id, service, p.generation);
        let constraints = &self.config.cluster.constraints;
        let spec = swarm::service_spec(&name, body, extra, image, constraints)
            .map_err(|why| fail(Phase::Start, Some(service), why))?;
        swarm::create(&self.docker, spec, registry)
            .await
            .map_err(|e| fail(Phase::Start, Some(service), e.to_string()))
    }

    /// Starts `service`: one task, on whichever node Swarm places it.
    pub(super) async fn start_service(
        &self,
        p: &Prepared,
        service: &str,
    ) -> Result<(), DeployFailure> {
        let Some(registry) = self.swarm_registry() else {
            return Err(fail(Phase::Start, Some(service), "not on a swarm"));
        };
        let name = self.staging_name(&p.id, service, p.generation);
        swarm::scale(&self.docker, &name, registry, 1)
            .await
            .map_err(|e| fail(Phase::Start, Some(service), e.to_string()))
    }
}

/// A `depends_on` condition other than `started` is not waited for on a swarm yet: refused,
/// naming the service, never skipped.
pub(super) fn condition_refused(svc: &spec::Service, dep: &str) -> DeployFailure {
    fail(
        Phase::Start,
        Some(svc.name.as_str()),
        format!(
            "{}: depends_on {dep} with a condition is not waited for on a swarm yet \
             (cluster.engine = \"swarm\"); depend on it without one",
            svc.name
        ),
    )
}
