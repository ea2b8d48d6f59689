//! The health phase: the new generation's public services answer their healthchecks through
//! the gateway's staging host while every container of it stays up. Never touches the live
//! host or the old generation.

use futures_util::future::join_all;

use super::{Manager, Prepared, fail, topology};
use crate::engine::{DeployFailure, Phase};
use crate::preview::docker;
use crate::preview::{build, gateway, health};
use crate::spec::{self, Spec};

impl Manager {
    /// Waits until every public service answers its healthcheck through the gateway's
    /// staging host while every container stays up.
    pub(super) async fn wait_healthy(
        &self,
        p: &Prepared,
        spec: &Spec,
        host: &str,
    ) -> Result<(), DeployFailure> {
        let addr = health::gateway_addr(&self.config.gateway.bind, self.config.gateway.port);
        // Every container, internal ones too, must stay up while the public ones come up; a
        // job others waited to complete has ended, as it should.
        let oneshots = topology::oneshots(spec);
        let all: Vec<String> = spec
            .services
            .keys()
            .filter(|s| !oneshots.contains(s.as_str()))
            .map(|s| self.staging_name(&p.id, s.as_str(), p.generation))
            .collect();
        let domain = &self.config.gateway.domain;
        let pass = crate::access::gateway_pass(&self.config);
        let pass = pass.as_deref();
        let checks: Vec<_> = spec
            .services
            .values()
            .filter(|s| !s.internal && s.route.is_some() && s.healthcheck.required)
            .map(|svc| {
                let addr = addr.clone();
                let all = all.clone();
                let host = match svc.host {
                    spec::Host::Preview => host.to_owned(),
                    spec::Host::Service => gateway::staging_service_host(
                        p.id.as_str(),
                        p.generation,
                        svc.name.as_str(),
                        domain,
                    ),
                };
                async move {
                    let host = host.as_str();
                    let limit = self.config.limits.health_timeout;
                    let timeout = svc.healthcheck.timeout.map_or(limit, |t| t.min(limit));
                    let docker = self.docker.clone();
                    let config = self.config.clone();
                    let alive = move || -> crate::engine::BoxFuture<'static, Result<(), String>> {
                        let (docker, all, config) = (docker.clone(), all.clone(), config.clone());
                        Box::pin(async move {
                            docker::placed::all_running(&docker, &config, &all).await
                        })
                    };
                    health::wait(
                        &addr,
                        host,
                        &svc.healthcheck.path,
                        svc.healthcheck.status,
                        timeout,
                        health::DEPLOY_POLL,
                        pass,
                        alive,
                    )
                    .await
                    .map_err(|(_, why)| (svc.name.to_string(), why))
                }
            })
            .collect();
        for r in join_all(checks).await {
            if let Err((service, why)) = r {
                // Blame the container that died, if one did; else the unhealthy service.
                let dead = docker::placed::all_running(&self.docker, &self.config, &all)
                    .await
                    .err();
                let (blame, reason) = match dead {
                    Some(d) => (d.split(' ').next().unwrap_or(&service).to_owned(), d),
                    None => (service.clone(), why),
                };
                let mut f = fail(Phase::Health, Some(&blame), reason);
                let name = self.staging_name(&p.id, &blame, p.generation);
                f.log_tail =
                    docker::placed::log_tail(&self.docker, &self.config, &name, build::TAIL).await;
                return Err(f);
            }
        }
        Ok(())
    }
}
