//! The preview manager: one deployment is fetch → config → build → start → route → health →
//! commit. A deployment prepares a new generation beside the live one (its own network, its
//! own staging host on the gateway), checks it through the gateway, and only then renames it
//! live and switches the routes, so an update has no downtime and a failed update leaves the
//! old generation serving. Whatever an attempt created is removed when it fails or is
//! cancelled. The manager keeps nothing in memory that Docker's labels do not also say.
//!
//! This file tells the deployment's story (`up`: prepare, attempt, commit); the steps live
//! beside it: `prepare.rs` (fetch, identity, worktree), `images.rs` (build), `containers.rs`
//! (start), `commit.rs` (switch, drain, retire), `teardown.rs`, and `view.rs` for reading
//! previews back. Raw Docker calls belong in `preview/docker/`, not here.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bollard::Docker;
use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::build;
use super::docker::labels::{self, Observed};
use super::docker::{self, DockerError};
use super::fault;
use super::gateway::{self, Gateway, GatewayError};
use super::health::{self};
use super::source::SourceError;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::engine::{DeployFailure, Deployed, GitCredentials, Phase, PreviewStatus, Timings};
use crate::ids::{CommitSha, PreviewId};
use crate::spec::{self, Spec};

mod commit;
mod containers;
mod images;
mod logs;
pub use logs::{LogLine, LogQuery, LogStream, Logs};
mod prepare;
mod run_options;
mod teardown;
mod view;

use prepare::Prepared;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("no preview has the id {0}")]
    NotFound(String),
    #[error("preview {id} has no service {service}")]
    NoService { id: String, service: String },
}

/// How the services run.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Built from the commit, as a reviewer sees it.
    Preview,
    /// The given folder mounted into the `dev:` images, running their dev servers.
    Dev { worktree: PathBuf },
}

impl Mode {
    fn label(&self) -> &'static str {
        match self {
            Mode::Preview => "preview",
            Mode::Dev { .. } => "dev",
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpRequest {
    /// A git URL, a local git repository or a plain folder.
    pub repo: String,
    pub branch: Option<String>,
    pub sha: Option<CommitSha>,
    pub pr: Option<u64>,
    pub forge: String,
    pub mode: Mode,
    /// The repository part of the key when it differs from `repo` (a forge's `owner/name`).
    pub key_repo: Option<String>,
    /// The branch part of the key when it differs from the branch fetched (a fork's head,
    /// `owner/name:branch`).
    pub key_branch: Option<String>,
    /// When the webhook that asked for this arrived; time to ready counts from there.
    pub received: Option<Instant>,
}

/// What a deployment tells whoever watches it (the CLI's progress line, the logs).
#[derive(Debug, Clone)]
pub enum Event {
    Phase(Phase),
    Line { service: String, line: String },
}

pub type Progress = Arc<dyn Fn(Event) + Send + Sync>;

pub struct Manager {
    docker: Docker,
    config: Arc<Config>,
    gateway: Gateway,
    /// Previews with a deployment running in this process: a cache for the reconciler, so it
    /// never removes what is being built. Lost on restart, which is right: then nothing is.
    busy: Arc<Mutex<HashSet<PreviewId>>>,
    /// Tokens for git over HTTPS, from the forge side; `None`: every fetch is anonymous.
    git: Option<Arc<dyn GitCredentials>>,
    /// "Now" for the `created` labels and every age computed from them.
    clock: SharedClock,
}

fn fail(phase: Phase, service: Option<&str>, reason: impl Into<String>) -> DeployFailure {
    DeployFailure {
        phase,
        service: service.map(str::to_owned),
        reason: reason.into(),
        log_tail: Vec::new(),
        cancelled: false,
    }
}

impl Manager {
    pub async fn connect(config: Config) -> Result<Manager, ManagerError> {
        let docker = docker::connect().await?;
        let shared = Arc::new(config.clone());
        Ok(Manager {
            gateway: Gateway::new(docker.clone(), shared.clone()),
            docker,
            config: shared,
            busy: Arc::default(),
            git: None,
            clock: Arc::new(SystemClock),
        })
    }

    /// Ages and ttls follow `clock` instead of the system's.
    pub fn with_clock(mut self, clock: SharedClock) -> Manager {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Fetches of repositories on a forge use `git`'s tokens.
    pub fn with_git_credentials(mut self, git: Arc<dyn GitCredentials>) -> Manager {
        self.git = Some(git);
        self
    }

    /// Previews with a deployment running in this process right now.
    pub fn busy(&self) -> HashSet<PreviewId> {
        self.busy.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    pub async fn observed(&self) -> Result<Vec<Observed>, DockerError> {
        Ok(labels::group(
            docker::members(&self.docker, &self.config.instance).await?,
        ))
    }

    /// Starts or updates a preview. On failure or cancellation, nothing this attempt created
    /// is left, and a live generation from before keeps serving.
    pub async fn up(
        &self,
        req: UpRequest,
        progress: Progress,
        cancel: CancellationToken,
    ) -> Result<Deployed, DeployFailure> {
        // Time to ready is what the PR's author waits: from the webhook, when one asked.
        let started = req.received.unwrap_or_else(Instant::now);
        let mut timings = Timings::default();
        if req.received.is_some() {
            timings.phases.push((Phase::Queue, started.elapsed()));
        }
        progress(Event::Phase(Phase::Fetch));
        let t = Instant::now();
        let prepared = tokio::select! {
            r = self.prepare(&req) => r?,
            _ = cancel.cancelled() => return Err(cancelled(Phase::Fetch)),
        };
        timings.phases.push((Phase::Fetch, t.elapsed()));
        let result = self
            .attempt(&req, &prepared, &progress, &mut timings, &cancel)
            .await;
        let result = match result {
            Ok(downtime) => self.finish(&prepared).await.map(|s| (s, downtime)),
            Err(f) => Err(f),
        };
        match result {
            Ok((mut state, downtime)) => {
                timings.total = started.elapsed();
                state.status = PreviewStatus::Running;
                Ok(Deployed {
                    state,
                    timings,
                    downtime,
                })
            }
            Err(f) => {
                self.discard(&prepared).await;
                Err(f)
            }
        }
    }

    /// Config → build → start → route → health, each phase entered (for `progress`), paused at
    /// for fault injection and timed. Returns the services that were stopped before their
    /// replacement started (their moment of downtime).
    ///
    /// A cancellation interrupts the phases that wait (config, build, health). Start and route
    /// run to their end once begun, then the cancellation is seen: dropped half-way, a Docker
    /// request already sent (a network, a container being created) would land after the
    /// cleanup had looked, and be left behind.
    async fn attempt(
        &self,
        req: &UpRequest,
        p: &Prepared,
        progress: &Progress,
        timings: &mut Timings,
        cancel: &CancellationToken,
    ) -> Result<Vec<String>, DeployFailure> {
        let enter = |ph: Phase| {
            progress(Event::Phase(ph));
            Instant::now()
        };

        tokio::select! {
            () = fault::pause(Phase::Fetch) => {}
            _ = cancel.cancelled() => return Err(cancelled(Phase::Fetch)),
        }
        let t = enter(Phase::Config);
        let spec = tokio::select! {
            r = async {
                fault::pause(Phase::Config).await;
                self.load_spec(req, p).await
            } => r?,
            _ = cancel.cancelled() => return Err(cancelled(Phase::Config)),
        };
        timings.phases.push((Phase::Config, t.elapsed()));

        let t = enter(Phase::Build);
        let images = tokio::select! {
            r = async {
                let images = self.images(req, p, &spec, progress).await?;
                fault::pause(Phase::Build).await;
                Ok(images)
            } => r?,
            _ = cancel.cancelled() => return Err(cancelled(Phase::Build)),
        };
        timings.phases.push((Phase::Build, t.elapsed()));

        let t = enter(Phase::Start);
        let downtime = self.start(req, p, &spec, &images).await?;
        let held = async { fault::pause(Phase::Start).await };
        tokio::select! {
            () = held => {}
            _ = cancel.cancelled() => {}
        }
        if cancel.is_cancelled() {
            return Err(cancelled(Phase::Start));
        }
        timings.phases.push((Phase::Start, t.elapsed()));

        let t = enter(Phase::Route);
        self.route().await?;
        tokio::select! {
            () = fault::pause(Phase::Route) => {}
            _ = cancel.cancelled() => {}
        }
        if cancel.is_cancelled() {
            return Err(cancelled(Phase::Route));
        }
        timings.phases.push((Phase::Route, t.elapsed()));

        let t = enter(Phase::Health);
        let host = gateway::staging_host(p.id.as_str(), p.generation, &self.config.gateway.domain);
        tokio::select! {
            r = async {
                self.wait_healthy(p, &spec, &host).await?;
                fault::pause(Phase::Health).await;
                Ok::<(), DeployFailure>(())
            } => r?,
            _ = cancel.cancelled() => return Err(cancelled(Phase::Health)),
        }
        timings.phases.push((Phase::Health, t.elapsed()));

        Ok(downtime)
    }

    /// Reads the worktree's `.previewd.yml`; dev mode needs its `dev:` section.
    async fn load_spec(&self, req: &UpRequest, p: &Prepared) -> Result<Spec, DeployFailure> {
        let wt = p.worktree.clone();
        let spec = tokio::task::spawn_blocking(move || spec::load(&wt))
            .await
            .map_err(|e| fail(Phase::Config, None, e.to_string()))?
            .map_err(|e| fail(Phase::Config, None, e.to_string()))?;
        if matches!(req.mode, Mode::Dev { .. }) && spec.dev.is_empty() {
            return Err(fail(
                Phase::Config,
                None,
                format!(
                    "{} has no dev: section, which --mode dev needs",
                    spec.source
                ),
            ));
        }
        Ok(spec)
    }

    /// Gives the new generation its staging host on the gateway.
    async fn route(&self) -> Result<(), DeployFailure> {
        self.gateway
            .sync()
            .await
            .map_err(|e| fail(Phase::Route, None, e.to_string()))
    }

    /// Waits until every public service answers its healthcheck through the gateway's
    /// staging host while every container stays up.
    async fn wait_healthy(
        &self,
        p: &Prepared,
        spec: &Spec,
        host: &str,
    ) -> Result<(), DeployFailure> {
        let addr = health::gateway_addr(&self.config.gateway.bind, self.config.gateway.port);
        let inst = &self.config.instance;
        // Every container, internal ones too, must stay up while the public ones come up; a
        // job others waited to complete has ended, as it should.
        let oneshots = containers::oneshots(spec);
        let all: Vec<String> = spec
            .services
            .keys()
            .filter(|s| !oneshots.contains(s.as_str()))
            .map(|s| labels::staging_name(inst, &p.id, s.as_str(), p.generation))
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
                    let alive = move || -> crate::engine::BoxFuture<'static, Result<(), String>> {
                        let (docker, all) = (docker.clone(), all.clone());
                        Box::pin(async move { docker::all_running(&docker, &all).await })
                    };
                    health::wait(
                        &addr,
                        host,
                        &svc.healthcheck.path,
                        svc.healthcheck.status,
                        timeout,
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
                let dead = docker::all_running(&self.docker, &all).await.err();
                let (blame, reason) = match dead {
                    Some(d) => (d.split(' ').next().unwrap_or(&service).to_owned(), d),
                    None => (service.clone(), why),
                };
                let mut f = fail(Phase::Health, Some(&blame), reason);
                let cname = labels::staging_name(inst, &p.id, &blame, p.generation);
                f.log_tail = docker::log_tail(&self.docker, &cname, build::TAIL).await;
                return Err(f);
            }
        }
        Ok(())
    }
}

fn cancelled(phase: Phase) -> DeployFailure {
    DeployFailure {
        phase,
        service: None,
        reason: "cancelled: a newer request superseded this one".into(),
        log_tail: Vec::new(),
        cancelled: true,
    }
}
