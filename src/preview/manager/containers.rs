//! Starting a generation: its own network, then one container per service in dependency
//! order, each with DESIGN.md's labels, the operator's limits and no way out to the host.

use std::collections::{HashMap, HashSet};

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkingConfig,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::CreateContainerOptions;

use super::{Manager, Mode, Prepared, UpRequest, fail, now_rfc3339};
use crate::engine::{DeployFailure, Phase};
use crate::preview::build;
use crate::preview::docker::{self, DockerError};
use crate::preview::{labels, network};
use crate::spec::{self, Spec};

impl Manager {
    /// Creates the generation's network and starts its containers in dependency order.
    pub(super) async fn start(
        &self,
        req: &UpRequest,
        p: &Prepared,
        spec: &Spec,
        images: &HashMap<String, String>,
    ) -> Result<(), DeployFailure> {
        let inst = &self.config.instance;
        let net = labels::network_name(inst, &p.id, p.generation);
        let created = now_rfc3339();
        let net_labels = HashMap::from([
            (labels::INSTANCE.to_owned(), inst.to_string()),
            (labels::PREVIEW.to_owned(), p.id.to_string()),
            (labels::GENERATION.to_owned(), p.generation.to_string()),
            (labels::CREATED.to_owned(), created.clone()),
        ]);
        network::create_preview_network(&self.docker, &self.config, &net, net_labels)
            .await
            .map_err(|e| fail(Phase::Start, None, e.to_string()))?;
        let limits = &self.config.limits;
        for svc in start_order(spec) {
            let name = svc.name.as_str();
            let dev = match req.mode {
                Mode::Dev { .. } => spec.dev.get(&svc.name),
                Mode::Preview => None,
            };
            let port = dev.and_then(|d| d.port).or(svc.port);
            let mut l = HashMap::from([
                (labels::INSTANCE, inst.to_string()),
                (labels::ROLE, labels::ROLE_SERVICE.to_owned()),
                (labels::PREVIEW, p.id.to_string()),
                (labels::SERVICE, name.to_owned()),
                (labels::REPO, p.key.repo.clone()),
                (labels::BRANCH, p.key.branch.clone()),
                (labels::MODE, req.mode.label().to_owned()),
                (labels::GENERATION, p.generation.to_string()),
                (labels::CREATED, created.clone()),
                (labels::FORGE, req.forge.clone()),
            ]);
            if let Some(sha) = &p.sha {
                l.insert(labels::SHA, sha.to_string());
            }
            if let Some(pr) = req.pr {
                l.insert(labels::PR, pr.to_string());
            }
            if let (Some(route), Some(port), false) = (&svc.route, port, svc.internal) {
                l.insert(labels::ROUTE, route.as_str().to_owned());
                l.insert(labels::PORT, port.to_string());
                l.insert(
                    labels::HEALTH,
                    format!("{} {}", svc.healthcheck.path, svc.healthcheck.status),
                );
            }
            let mut env: Vec<String> = svc.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut cmd = svc.command.clone();
            let mut working_dir = None;
            let mut binds = None;
            if let (Some(d), Mode::Dev { .. }) = (dev, &req.mode) {
                env.extend(d.env.iter().map(|(k, v)| format!("{k}={v}")));
                cmd = d.command.clone();
                working_dir = Some(d.workdir.clone());
                binds = Some(vec![format!("{}:{}", p.worktree.display(), d.workdir)]);
            }
            let image = images.get(name).cloned().unwrap_or_default();
            let body = ContainerCreateBody {
                image: Some(image),
                env: Some(env),
                cmd,
                working_dir,
                // No `hostname`: Docker makes it an alias on every network the container joins;
                // a service's names are the aliases on its preview network, nothing else.
                labels: Some(l.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
                host_config: Some(HostConfig {
                    memory: Some(limits.memory),
                    nano_cpus: Some((limits.cpus * 1e9) as i64),
                    pids_limit: Some(limits.pids),
                    network_mode: Some(net.clone()),
                    binds,
                    restart_policy: Some(RestartPolicy {
                        name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                        maximum_retry_count: None,
                    }),
                    security_opt: Some(vec!["no-new-privileges:true".into()]),
                    log_config: Some(HostConfigLogConfig {
                        typ: Some("json-file".into()),
                        config: Some(HashMap::from([
                            ("max-size".into(), "10m".into()),
                            ("max-file".into(), "2".into()),
                        ])),
                    }),
                    ..Default::default()
                }),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        net.clone(),
                        EndpointSettings {
                            aliases: Some(vec![
                                name.to_owned(),
                                labels::upstream_alias(&p.id, name, p.generation),
                            ]),
                            ..Default::default()
                        },
                    )])),
                }),
                ..Default::default()
            };
            let cname = labels::staging_name(inst, &p.id, name, p.generation);
            let opts = CreateContainerOptions {
                name: Some(cname.clone()),
                ..Default::default()
            };
            self.docker
                .create_container(Some(opts), body)
                .await
                .map_err(|e| fail(Phase::Start, Some(name), DockerError::from(e).to_string()))?;
            if let Err(e) = self.docker.start_container(&cname, None).await {
                let mut f = fail(Phase::Start, Some(name), DockerError::from(e).to_string());
                f.log_tail = docker::log_tail(&self.docker, &cname, build::TAIL).await;
                return Err(f);
            }
        }
        Ok(())
    }
}

/// Services ordered so that each comes after what it depends on (the spec has no cycles).
fn start_order(spec: &Spec) -> Vec<&spec::Service> {
    let mut done: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    while out.len() < spec.services.len() {
        let before = out.len();
        for svc in spec.services.values() {
            if !done.contains(svc.name.as_str())
                && svc.depends_on.iter().all(|d| done.contains(d.as_str()))
            {
                done.insert(svc.name.as_str());
                out.push(svc);
            }
        }
        if out.len() == before {
            // A cycle slipped through validation: start the rest in name order.
            out.extend(
                spec.services
                    .values()
                    .filter(|s| !done.contains(s.name.as_str())),
            );
            break;
        }
    }
    out
}
