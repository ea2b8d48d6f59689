//! The preview manager: one deployment is fetch → config → build → start → route → health →
//! switch. A deployment prepares a new generation beside the live one (its own network, its
//! own staging host on the gateway), checks it through the gateway, and only then renames it
//! live and switches the routes, so an update has no downtime and a failed update leaves the
//! old generation serving. The deployment is ready once switched; the old generation then
//! drains and is removed on a task of its own ([`Manager::retired`] waits for it). Whatever an
//! attempt created is removed when it fails or is cancelled. The manager keeps nothing in
//! memory that Docker's labels do not also say.
//!
//! This file tells the deployment's story (`up`: prepare, attempt, switch); the steps live
//! beside it: `prepare.rs` (fetch, identity, worktree), `images.rs` (build), `containers.rs`
//! (start), `commit.rs` (switch, drain, retire), `teardown.rs`, `view.rs` for reading
//! previews back, and `swarm.rs` for the steps that differ on a Docker Swarm. Raw Docker calls belong in `preview/docker/`, not here.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bollard::Docker;
use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::docker::labels::{self, Observed};
use super::docker::{self, DockerError};
use super::fault;
use super::gateway::{self, Gateway, GatewayError};
use super::source::SourceError;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::engine::{DeployFailure, Deployed, GitCredentials, Phase, PreviewStatus, Timings};
use crate::ids::{CommitSha, PreviewId};
use crate::spec::{self, Spec};

mod checks;
mod commit;
mod containers;
mod images;
mod logs;
pub use logs::{LogLine, LogQuery, LogStream, Logs};
mod prepare;
mod rollout;
mod run_options;
mod sleep;
pub use sleep::NotAsleep;
mod swarm;
mod teardown;
mod topology;
mod view;
mod wake;

use prepare::Prepared;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Firewall(#[from] crate::preview::firewall::FirewallError),
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

/// Cheap to clone: every clone shares the connection, the config and the marks below, so the
/// retirement of an old generation can run on its own task after the deployment returned.
#[derive(Clone)]
pub struct Manager {
    docker: Docker,
    config: Arc<Config>,
    gateway: Gateway,
    /// Previews with a deployment running in this process: a cache for the reconciler, so it
    /// never removes what is being built or retired. Lost on restart, which is right: then
    /// nothing is. Counted per preview (see `prepare::BusyGuard`).
    busy: Arc<Mutex<HashMap<PreviewId, usize>>>,
    /// Old generations being drained and removed after their replacement was reported ready.
    retiring: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Tokens for git over HTTPS, from the forge side; `None`: every fetch is anonymous.
    git: Option<Arc<dyn GitCredentials>>,
    /// "Now" for the `created` labels and every age computed from them.
    clock: SharedClock,
    /// One sleep or wake per preview at a time.
    transitions: sleep::Transitions,
    /// When each preview was last visited, as `serve` hears it from the gateway: the ttl
    /// counts from the later of this and the deployment. Lost on restart, as visits are; a
    /// sleeping preview's time to sleep is in Docker.
    visits: sleep::Visits,
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
            retiring: Arc::default(),
            git: None,
            clock: Arc::new(SystemClock),
            transitions: Arc::default(),
            visits: Arc::default(),
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
        self.busy
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
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

    /// Every preview of the instance, with whether it sleeps and its time to ready.
    pub async fn observed(&self) -> Result<Vec<Observed>, DockerError> {
        let inst = &self.config.instance;
        // Independent reads, side by side: a wake's first step waits for the slowest only.
        let (members, asleep, ready) = tokio::try_join!(
            docker::placed::members(&self.docker, &self.config),
            docker::sleep::marks(&self.docker, inst),
            docker::ready::marks(&self.docker, inst),
        )?;
        let mut previews = labels::group(members);
        docker::sleep::attach(&mut previews, &asleep);
        docker::ready::attach(&mut previews, &ready);
        Ok(previews)
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
            Ok(downtime) => {
                progress(Event::Phase(Phase::Switch));
                let t = Instant::now();
                let switched = self.switch(&prepared).await;
                // The phases run back to back: together they are the total.
                let now = Instant::now();
                timings.phases.push((Phase::Switch, now - t));
                timings.total = now - started;
                switched.map(|s| (s, downtime))
            }
            Err(f) => Err(f),
        };
        match result {
            Ok((mut state, downtime)) => {
                state.status = PreviewStatus::Running;
                state.ready_in = Some(timings.total);
                self.keep_ready_in(&prepared, timings.total).await;
                // Ready now: the old generation drains and goes after the report.
                self.retire_later(prepared);
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

    /// Waits until every old generation this manager switched away from has drained and been
    /// removed (those whose retirement starts meanwhile included). `previewd up` waits for it
    /// before it exits, and `serve` when it shuts down, so nothing is left half-removed.
    pub async fn retired(&self) {
        loop {
            let running = match self.retiring.lock() {
                Ok(mut r) => std::mem::take(&mut *r),
                Err(_) => return,
            };
            if running.is_empty() {
                return;
            }
            join_all(running).await;
        }
    }

    /// Config → build, start and route (one rollout: `rollout.rs`) → health, each phase
    /// entered (for `progress`), paused at for fault injection and timed. Returns the services
    /// that were stopped before their replacement started (their moment of downtime).
    ///
    /// A cancellation interrupts the steps that wait (config, the builds, health). A network,
    /// container or route request runs to its end once sent, then the cancellation is seen:
    /// dropped half-way, it would land after the cleanup had looked, and be left behind.
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
        let rolled = self.roll_out(req, p, &spec, progress, cancel).await?;
        timings.phases.push((Phase::Build, rolled.built - t));
        timings
            .phases
            .push((Phase::Start, rolled.started - rolled.built));
        tokio::select! {
            () = fault::pause(Phase::Start) => {}
            _ = cancel.cancelled() => return Err(cancelled(Phase::Start)),
        }
        timings
            .phases
            .push((Phase::Route, rolled.routed - rolled.started));
        tokio::select! {
            () = fault::pause(Phase::Route) => {}
            _ = cancel.cancelled() => {}
        }
        if cancel.is_cancelled() {
            return Err(cancelled(Phase::Route));
        }
        let downtime = rolled.downtime;

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
        let forge = crate::forge::ForgeKind::parse(&req.forge);
        if let Some(why) = crate::access::unservable(
            &self.config,
            forge,
            spec.access,
            &spec.source,
            spec.access_key(),
        ) {
            return Err(fail(Phase::Config, None, why));
        }
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
