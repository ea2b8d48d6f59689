//! Starting a generation: its own network, then one container per service in dependency
//! order, each with the design's (docs/architecture.md) labels, the operator's limits and no way out to the host.

use std::collections::{HashMap, HashSet};

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkingConfig,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::CreateContainerOptions;
use futures_util::future::join_all;

use super::{Manager, Mode, Prepared, UpRequest, fail};
use crate::engine::{DeployFailure, Phase};
use crate::preview::build;
use crate::preview::docker::{self, DockerError, labels, network};
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
        let created = crate::clock::rfc3339(self.clock.now());
        let net_labels = HashMap::from([
            (labels::INSTANCE.to_owned(), inst.to_string()),
            (labels::PREVIEW.to_owned(), p.id.to_string()),
            (labels::GENERATION.to_owned(), p.generation.to_string()),
            (labels::CREATED.to_owned(), created.clone()),
        ]);
        network::create_preview_network(&self.docker, &self.config, &net, net_labels)
            .await
            .map_err(|e| fail(Phase::Start, None, e.to_string()))?;
        // Every container is created at once (a create starts nothing), then started a level at
        // a time: each service after the ones it depends on, the rest side by side, as compose
        // does. All requests of a step are waited for, failed or not, so that a failure's
        // cleanup finds by label everything that was made.
        let created = &created;
        let created_all = join_all(spec.services.values().map(|svc| async move {
            let name = svc.name.as_str();
            let (cname, body) = self.container(req, p, spec, svc, created, images);
            let opts = CreateContainerOptions {
                name: Some(cname),
                ..Default::default()
            };
            self.docker
                .create_container(Some(opts), body)
                .await
                .map(drop)
                .map_err(|e| fail(Phase::Start, Some(name), DockerError::from(e).to_string()))
        }))
        .await;
        created_all.into_iter().collect::<Result<(), _>>()?;
        for level in start_levels(spec) {
            let started = join_all(level.into_iter().map(|svc| async move {
                let name = svc.name.as_str();
                let cname = labels::staging_name(inst, &p.id, name, p.generation);
                match self.docker.start_container(&cname, None).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let mut f =
                            fail(Phase::Start, Some(name), DockerError::from(e).to_string());
                        f.log_tail = docker::log_tail(&self.docker, &cname, build::TAIL).await;
                        Err(f)
                    }
                }
            }))
            .await;
            started.into_iter().collect::<Result<(), _>>()?;
        }
        Ok(())
    }

    /// The name and create request of `svc`'s container in this generation: the design's (docs/architecture.md) labels,
    /// the operator's limits, the generation's network and nothing else.
    fn container(
        &self,
        req: &UpRequest,
        p: &Prepared,
        spec: &Spec,
        svc: &spec::Service,
        created: &str,
        images: &HashMap<String, String>,
    ) -> (String, ContainerCreateBody) {
        let inst = &self.config.instance;
        let limits = &self.config.limits;
        let net = labels::network_name(inst, &p.id, p.generation);
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
            (labels::CREATED, created.to_owned()),
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
                    net,
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
        (cname, body)
    }
}

/// The services in start levels: each level's services depend only on those of the levels
/// before it (the spec has no cycles; should one slip through validation, the rest start last).
fn start_levels(spec: &Spec) -> Vec<Vec<&spec::Service>> {
    let mut done: HashSet<&str> = HashSet::new();
    let mut levels = Vec::new();
    while done.len() < spec.services.len() {
        let ready = |s: &&spec::Service| {
            !done.contains(s.name.as_str())
                && s.depends_on.iter().all(|d| done.contains(d.as_str()))
        };
        let mut level: Vec<&spec::Service> = spec.services.values().filter(ready).collect();
        if level.is_empty() {
            level = spec
                .services
                .values()
                .filter(|s| !done.contains(s.name.as_str()))
                .collect();
        }
        done.extend(level.iter().map(|s| s.name.as_str()));
        levels.push(level);
    }
    levels
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::start_levels;
    use crate::spec::parse_previewd_yml;

    fn levels(yml: &str) -> Vec<Vec<String>> {
        let spec = parse_previewd_yml(".previewd.yml", yml.as_bytes(), Path::new("/nonexistent"))
            .expect("valid spec");
        start_levels(&spec)
            .into_iter()
            .map(|l| {
                let mut names: Vec<String> = l.iter().map(|s| s.name.as_str().to_owned()).collect();
                names.sort();
                names
            })
            .collect()
    }

    #[test]
    fn services_start_after_what_they_depend_on_and_the_rest_side_by_side() {
        let yml = "services:
  web: {image: busybox, port: 80, route: /, depends_on: [api]}
  api: {image: busybox, port: 80, route: /api, depends_on: [db, cache]}
  db: {image: busybox, internal: true}
  cache: {image: busybox, internal: true}
  docs: {image: busybox, port: 80, route: /docs}
";
        assert_eq!(
            levels(yml),
            vec![vec!["cache", "db", "docs"], vec!["api"], vec!["web"]]
        );
        assert_eq!(
            levels("services:\n  a: {image: busybox, port: 80, route: /}\n"),
            vec![vec!["a"]]
        );
    }
}
