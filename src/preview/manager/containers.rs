//! Starting a generation, step by step for the rollout (`rollout.rs`): its own networks (the
//! default one and a compose project's) and the preview's named volumes, then each service's
//! container created and started after what it waits for, with the design's
//! (docs/architecture.md) labels, the operator's limits and no way out to the host. A service
//! that mounts a named volume starts only after the old generation's containers that mount it
//! have stopped.

use std::collections::{HashMap, HashSet};

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkingConfig,
};
use bollard::query_parameters::CreateContainerOptions;

use super::topology::{dev_of, oneshots, service_networks, used_networks};
use super::{Manager, Mode, Prepared, UpRequest, fail, run_options};
use crate::engine::{DeployFailure, Phase};

use crate::preview::docker::{self, DockerError, hooks, labels, lifecycle, network, volumes};
use crate::preview::{build, firewall};
use crate::spec::runtime::{Condition, DEFAULT_NETWORK};
use crate::spec::{self, Host, Spec};

impl Manager {
    /// Creates the generation's networks and the preview's volumes. Needs no image, so the
    /// deployment does it beside the build; never to be dropped half-way (a request already
    /// sent would land after a cleanup had looked).
    pub(super) async fn make_networks(
        &self,
        req: &UpRequest,
        p: &Prepared,
        spec: &Spec,
    ) -> Result<(), DeployFailure> {
        let inst = &self.config.instance;
        let created = crate::clock::rfc3339(self.clock.now());
        let start_fail = |e: DockerError| fail(Phase::Start, None, e.to_string());
        let egress = self.config.limits.egress.mode.narrowed(spec.egress);
        for net in used_networks(spec) {
            let name = labels::project_network_name(inst, &p.id, p.generation, &net);
            let project = spec.networks.get(&net);
            let mut l: HashMap<String, String> = project
                .map(|n| n.labels.clone().into_iter().collect())
                .unwrap_or_default();
            l.extend([
                (labels::INSTANCE.to_owned(), inst.to_string()),
                (labels::PREVIEW.to_owned(), p.id.to_string()),
                (labels::GENERATION.to_owned(), p.generation.to_string()),
                (labels::CREATED.to_owned(), created.clone()),
                (labels::NETWORK.to_owned(), net.clone()),
                (labels::EGRESS.to_owned(), egress.to_string()),
            ]);
            let internal = project.is_some_and(|n| n.internal);
            network::create_network(&self.docker, &self.config, &name, l, internal)
                .await
                .map_err(start_fail)?;
        }
        // The generation's networks are filtered before any of its containers exists (on one
        // host: on a swarm the filter cannot reach the nodes, and the config asks for none).
        if self.swarm_registry().is_none() {
            firewall::sync(&self.docker, &self.config)
                .await
                .map_err(|e| fail(Phase::Start, None, e.to_string()))?;
        }
        for (name, v) in &spec.volumes {
            let mut l: HashMap<String, String> = v.labels.clone().into_iter().collect();
            l.extend([
                (labels::INSTANCE.to_owned(), inst.to_string()),
                (labels::ROLE.to_owned(), labels::ROLE_VOLUME.to_owned()),
                (labels::PREVIEW.to_owned(), p.id.to_string()),
                (labels::VOLUMES.to_owned(), name.clone()),
                (labels::REPO.to_owned(), p.key.repo.clone()),
                (labels::BRANCH.to_owned(), p.key.branch.clone()),
                (labels::FORGE.to_owned(), req.forge.clone()),
                (labels::CREATED.to_owned(), created.clone()),
            ]);
            let vname = labels::volume_name(inst, &p.id, name);
            volumes::ensure_volume(&self.docker, &vname, l)
                .await
                .map_err(start_fail)?;
        }
        Ok(())
    }

    /// Creates `svc`'s container of the generation (its networks made) to run `image`; a
    /// create starts nothing. Every request is waited for, so that a failure's cleanup finds
    /// by label everything that was made.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn create(
        &self,
        req: &UpRequest,
        p: &Prepared,
        spec: &Spec,
        svc: &spec::Service,
        created: &str,
        image: &str,
    ) -> Result<(), DeployFailure> {
        let name = svc.name.as_str();
        let oneshot = oneshots(spec).contains(name);
        let (cname, body, extra) = self
            .container(req, p, spec, svc, created, image, oneshot)
            .map_err(|why| fail(Phase::Start, Some(name), why))?;
        if self.swarm_registry().is_some() {
            return self.create_service(p, name, body, extra, image).await;
        }
        let opts = CreateContainerOptions {
            name: Some(cname.clone()),
            platform: svc.run.platform.clone().unwrap_or_default(),
        };
        let docker_err = |e: DockerError| fail(Phase::Start, Some(name), e.to_string());
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| docker_err(DockerError::from(e)))?;
        for (net, aliases) in extra {
            lifecycle::connect(&self.docker, &net, &cname, aliases)
                .await
                .map_err(docker_err)?;
        }
        // Secrets and configs with their own owner and mode, before anything runs.
        run_options::copy_files(&self.docker, &cname, &svc.run, &p.worktree)
            .await
            .map_err(|why| fail(Phase::Start, Some(name), why))
    }

    /// Starts `svc`'s created container once what it waits for (`depends_on` conditions) is
    /// reached. Returns the services whose old container was stopped first (they mount a
    /// named volume, which two containers must never use at once): their moment of downtime.
    pub(super) async fn start(
        &self,
        p: &Prepared,
        svc: &spec::Service,
    ) -> Result<Vec<String>, DeployFailure> {
        let name = svc.name.as_str();
        let cname = labels::staging_name(&self.config.instance, &p.id, name, p.generation);
        self.wait_for_dependencies(p, svc).await?;
        if self.swarm_registry().is_some() {
            if !svc.run.post_start.is_empty() || !svc.run.pre_stop.is_empty() {
                return Err(fail(
                    Phase::Start,
                    Some(name),
                    "post_start and pre_stop hooks run on one Docker host only, not on a swarm",
                ));
            }
            return self.start_service(p, name).await.map(|()| Vec::new());
        }
        let stopped = self.stop_volume_sharers(p, svc).await?;
        if let Err(e) = self.docker.start_container(&cname, None).await {
            let mut f = fail(Phase::Start, Some(name), DockerError::from(e).to_string());
            f.log_tail = docker::log_tail(&self.docker, &cname, build::TAIL).await;
            return Err(f);
        }
        self.post_start(&cname, name, &svc.run.post_start).await?;
        Ok(stopped)
    }

    /// Runs a started container's `post_start` hooks in order: the first that fails fails the
    /// deployment, its output in the report's log tail.
    pub(super) async fn post_start(
        &self,
        cname: &str,
        service: &str,
        list: &[spec::runtime::Hook],
    ) -> Result<(), DeployFailure> {
        let limit = self.config.limits.health_timeout;
        for hook in list {
            if let Err(h) = hooks::run(&self.docker, cname, hook, limit).await {
                let mut f = fail(Phase::Start, Some(service), format!("post_start {}", h.why));
                f.log_tail = h.output;
                return Err(f);
            }
        }
        Ok(())
    }

    /// Waits until each of `svc`'s dependencies reached its `depends_on` condition.
    async fn wait_for_dependencies(
        &self,
        p: &Prepared,
        svc: &spec::Service,
    ) -> Result<(), DeployFailure> {
        let inst = &self.config.instance;
        let deadline = self.config.limits.health_timeout;
        for (dep, condition) in &svc.run.conditions {
            let dname = labels::staging_name(inst, &p.id, dep.as_str(), p.generation);
            if !matches!(condition, Condition::Started) && self.swarm_registry().is_some() {
                return Err(super::swarm::condition_refused(svc, dep.as_str()));
            }
            let (reached, wanted) = match condition {
                Condition::Started => continue,
                Condition::Healthy => (
                    lifecycle::wait_healthy(&self.docker, &dname, deadline).await,
                    "healthy",
                ),
                Condition::CompletedSuccessfully => (
                    lifecycle::wait_completed(&self.docker, &dname, deadline).await,
                    "completed successfully",
                ),
            };
            if let lifecycle::Reached::No(why) = reached {
                let mut f = fail(
                    Phase::Start,
                    Some(dep.as_str()),
                    format!("{} waits for {dep} to be {wanted}, but it {why}", svc.name),
                );
                f.log_tail = docker::log_tail(&self.docker, &dname, build::TAIL).await;
                return Err(f);
            }
        }
        Ok(())
    }

    /// Stops every container of the old generation that mounts one of `svc`'s named volumes,
    /// so that two containers never use a volume at once; returns their services.
    async fn stop_volume_sharers(
        &self,
        p: &Prepared,
        svc: &spec::Service,
    ) -> Result<Vec<String>, DeployFailure> {
        let mine: HashSet<&str> = svc.run.named_volumes().collect();
        let mut stopped = Vec::new();
        for old in p
            .old
            .iter()
            .filter(|o| o.volumes.iter().any(|v| mine.contains(v.as_str())))
        {
            hooks::pre_stop(&self.docker, old).await;
            lifecycle::stop(&self.docker, &old.container_id, svc.run.stop_grace_period)
                .await
                .map_err(|e| fail(Phase::Start, Some(&old.service), e.to_string()))?;
            stopped.push(old.service.clone());
        }
        Ok(stopped)
    }

    /// The name and create request of `svc`'s container in this generation, and the other
    /// networks it joins once created (with its aliases there): the design's
    /// (docs/architecture.md) labels, the operator's limits, the generation's networks and
    /// nothing else.
    #[allow(clippy::too_many_arguments)]
    fn container(
        &self,
        req: &UpRequest,
        p: &Prepared,
        spec: &Spec,
        svc: &spec::Service,
        created: &str,
        image: &str,
        oneshot: bool,
    ) -> Result<(String, ContainerCreateBody, ExtraNetworks), String> {
        let inst = &self.config.instance;
        let limits = &self.config.limits;
        let name = svc.name.as_str();
        let dev = dev_of(&req.mode, spec, svc);
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
            (
                labels::EGRESS,
                limits.egress.mode.narrowed(spec.egress).to_string(),
            ),
        ]);
        if let Some(mode) = crate::access::deployed_mode(&self.config, spec.access) {
            l.insert(labels::ACCESS, mode.as_str().to_owned());
        }
        if let Some(sha) = &p.sha {
            l.insert(labels::SHA, sha.to_string());
        }
        if let Some(pr) = req.pr {
            l.insert(labels::PR, pr.to_string());
        }
        if let (Some(route), Some(port), false) = (&svc.route, port, svc.internal) {
            l.insert(labels::ROUTE, route.as_str().to_owned());
            l.insert(labels::PORT, port.to_string());
            if svc.healthcheck.required {
                l.insert(
                    labels::HEALTH,
                    format!("{} {}", svc.healthcheck.path, svc.healthcheck.status),
                );
            }
            if svc.host == Host::Service {
                l.insert(labels::HOST, "service".to_owned());
            }
        }
        let networks = service_networks(svc);
        if networks != [DEFAULT_NETWORK] {
            l.insert(labels::NETWORKS, networks.join(","));
        }
        let vols: Vec<&str> = svc.run.named_volumes().collect();
        if !vols.is_empty() {
            l.insert(labels::VOLUMES, vols.join(","));
        }
        if oneshot {
            l.insert(labels::ONESHOT, "true".to_owned());
        }
        if !svc.sleeps {
            l.insert(labels::SLEEP, "never".to_owned());
        }
        if let Some(depends) = super::wake::depends_label(svc) {
            l.insert(labels::DEPENDS, depends);
        }
        if let Some(hooks) = hooks::Hooks::label(&svc.run) {
            l.insert(labels::HOOKS, hooks);
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
        let mounts = run_options::mounts(inst, &p.id, &svc.run, &p.worktree, limits)?;
        // Every network the service joins knows it by its name, the gateway's upstream alias,
        // and the names the file gives it (hostname, container_name, links, aliases).
        let aliases_on = |net: &str| {
            let mut a = vec![
                name.to_owned(),
                labels::upstream_alias(&p.id, name, p.generation),
            ];
            a.extend(svc.run.aliases.iter().cloned());
            a.extend(svc.run.networks.get(net).into_iter().flatten().cloned());
            a
        };
        let first = labels::project_network_name(inst, &p.id, p.generation, &networks[0]);
        let extra = networks[1..]
            .iter()
            .map(|n| {
                (
                    labels::project_network_name(inst, &p.id, p.generation, n),
                    aliases_on(n),
                )
            })
            .collect();
        let mut body = ContainerCreateBody {
            image: Some(image.to_owned()),
            env: Some(env),
            cmd,
            working_dir,
            // No `hostname`: Docker makes it an alias on every network the container joins;
            // a service's names are the aliases on its preview networks, nothing else.
            labels: Some(l.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
            host_config: Some(HostConfig {
                network_mode: Some(first.clone()),
                binds,
                mounts: (!mounts.is_empty()).then_some(mounts),
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
                    first,
                    EndpointSettings {
                        aliases: Some(aliases_on(&networks[0])),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        run_options::apply(&mut body, &svc.run, limits, oneshot);
        let cname = labels::staging_name(inst, &p.id, name, p.generation);
        Ok((cname, body, extra))
    }
}

/// Networks a container joins after its create, each with its aliases there.
type ExtraNetworks = Vec<(String, Vec<String>)>;
