//! The preview manager: one deployment is fetch → config → build → start → route → health →
//! commit. A deployment prepares a new generation beside the live one (its own network, its
//! own staging host on the gateway), checks it through the gateway, and only then renames it
//! live and switches the routes, so an update has no downtime and a failed update leaves the
//! old generation serving. Whatever an attempt created is removed when it fails or is
//! cancelled. The manager keeps nothing in memory that Docker's labels do not also say.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    CreateImageOptions, InspectContainerOptions, RenameContainerOptions,
};
use futures_util::StreamExt;
use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::build;
use super::docker::{self, DockerError};
use super::fault;
use super::gateway::{self, Gateway, GatewayError};
use super::health::{self};
use super::labels::{self, Member, Observed};
use super::source::{self, Origin, SourceError};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::engine::{
    DeployFailure, Deployed, GitCredentials, Phase, PreviewKey, PreviewState, PreviewStatus,
    Timings,
};
use crate::ids::{CommitSha, PreviewId};
use crate::spec::{self, ImageSource, Spec};

mod containers;
mod teardown;
mod view;

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

/// Everything known once the source is fetched and the preview's identity settled.
struct Prepared {
    key: PreviewKey,
    id: PreviewId,
    generation: u64,
    worktree: PathBuf,
    /// The worktree is previewd's own (not a user's folder), so it may be removed.
    owned_worktree: bool,
    sha: Option<CommitSha>,
    /// No live generation existed: a failure removes the whole preview.
    fresh: bool,
    old: Vec<Member>,
    /// Marks the preview busy from the moment its id is known until the attempt is over.
    _busy: BusyGuard,
}

/// A retired generation keeps running after the routes switch away from it until the gateway
/// has no request in flight to it: at least this long...
const DRAIN_MIN: Duration = Duration::from_millis(500);
/// ...and at most this long (a request still running then is cut off).
const DRAIN_MAX: Duration = Duration::from_secs(30);

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

/// A worktree being checked out. A deployment superseded meanwhile drops the future that waits
/// for it, but the checkout (a blocking task) still finishes: the worktree of a fresh preview,
/// which nothing else will use or remove, is then removed once it is there.
struct Checkout {
    task: Option<tokio::task::JoinHandle<Result<PathBuf, SourceError>>>,
    /// The instance directory and id whose worktree goes if the wait is abandoned.
    abandoned: Option<(PathBuf, PreviewId)>,
}

impl Checkout {
    async fn wait(&mut self) -> Result<Result<PathBuf, SourceError>, tokio::task::JoinError> {
        let Some(task) = self.task.as_mut() else {
            return Ok(Err(SourceError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other("checkout awaited twice"),
            }));
        };
        let done = task.await;
        self.task = None;
        done
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let (Some(task), Some((dir, id))) = (self.task.take(), self.abandoned.take()) else {
            return;
        };
        // Outside a runtime (shutting down) the next reconcile removes it instead.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = task.await;
                let _ =
                    tokio::task::spawn_blocking(move || source::remove_worktree(&dir, &id)).await;
            });
        }
    }
}

/// Marks a preview busy for as long as it lives.
struct BusyGuard {
    set: Arc<Mutex<HashSet<PreviewId>>>,
    id: PreviewId,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.id);
        }
    }
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
        let phase = Mutex::new(Phase::Fetch);
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
        let attempt = self.attempt(&req, &prepared, &progress, &phase, &mut timings);
        let result = tokio::select! {
            r = attempt => r,
            _ = cancel.cancelled() => {
                let at = phase.lock().map(|p| *p).unwrap_or(Phase::Build);
                Err(cancelled(at))
            }
        };
        let result = match result {
            Ok(()) => self.finish(&prepared).await,
            Err(f) => Err(f),
        };
        match result {
            Ok(mut state) => {
                timings.total = started.elapsed();
                state.status = PreviewStatus::Running;
                Ok(Deployed { state, timings })
            }
            Err(f) => {
                self.discard(&prepared).await;
                Err(f)
            }
        }
    }

    async fn prepare(&self, req: &UpRequest) -> Result<Prepared, DeployFailure> {
        let fetch_err = |e: SourceError| fail(Phase::Fetch, None, e.to_string());
        let origin = Origin::classify(&req.repo).map_err(fetch_err)?;
        let instance_dir = self.config.instance_dir();
        let (branch, sha, fetched) = match (&req.mode, &origin) {
            (Mode::Dev { .. }, _) | (_, Origin::Folder(_)) => {
                (req.branch.clone().unwrap_or_default(), None, None)
            }
            (Mode::Preview, Origin::Git(url)) => {
                let (dir, url, branch, sha, pr) = (
                    instance_dir.clone(),
                    url.clone(),
                    req.branch.clone(),
                    req.sha.clone(),
                    req.pr,
                );
                let token = self.git_token(req, &url).await?;
                let f = tokio::task::spawn_blocking(move || {
                    source::fetch(
                        &dir,
                        &url,
                        branch.as_deref(),
                        sha.as_ref(),
                        pr,
                        token.as_ref(),
                    )
                })
                .await
                .map_err(|e| fail(Phase::Fetch, None, e.to_string()))?
                .map_err(fetch_err)?;
                let key_branch = req.key_branch.clone().unwrap_or_else(|| f.branch.clone());
                (key_branch, Some(f.sha.clone()), Some(f))
            }
        };
        let key = PreviewKey {
            repo: req.key_repo.clone().unwrap_or_else(|| origin.key()),
            branch,
        };
        let observed = self
            .observed()
            .await
            .map_err(|e| fail(Phase::Fetch, None, e.to_string()))?;
        let existing = observed.iter().find(|p| {
            p.any()
                .is_some_and(|m| m.repo == key.repo && m.branch == key.branch)
        });
        let (id, generation, fresh, old) = match existing {
            Some(p) => (
                p.id.clone(),
                p.max_generation() + 1,
                p.live().is_none(),
                p.live_members().to_vec(),
            ),
            None => {
                if observed.len() >= self.config.limits.max_previews {
                    return Err(fail(
                        Phase::Fetch,
                        None,
                        format!(
                            "this host already runs {} previews (limits.max_previews); remove one with `previewd down ID`",
                            observed.len()
                        ),
                    ));
                }
                let taken: HashSet<&PreviewId> = observed.iter().map(|p| &p.id).collect();
                let mut id = PreviewId::generate();
                while taken.contains(&id) {
                    id = PreviewId::generate();
                }
                (id, 1, true, Vec::new())
            }
        };
        if let Ok(mut s) = self.busy.lock() {
            s.insert(id.clone());
        }
        let busy = BusyGuard {
            set: self.busy.clone(),
            id: id.clone(),
        };
        let (worktree, owned_worktree) = match (&req.mode, &origin, fetched) {
            (Mode::Dev { worktree }, _, _) => (
                worktree.canonicalize().map_err(|e| {
                    fail(
                        Phase::Fetch,
                        None,
                        format!("--worktree {}: {e}", worktree.display()),
                    )
                })?,
                false,
            ),
            (_, Origin::Folder(p), _) => (p.clone(), false),
            (_, _, Some(f)) => {
                let (dir, id2) = (instance_dir.clone(), id.clone());
                let mut checkout = Checkout {
                    task: Some(tokio::task::spawn_blocking(move || {
                        source::checkout(&dir, &f, &id2)
                    })),
                    abandoned: fresh.then(|| (instance_dir, id.clone())),
                };
                let wt = checkout
                    .wait()
                    .await
                    .map_err(|e| fail(Phase::Fetch, None, e.to_string()))?
                    .map_err(fetch_err)?;
                (wt, true)
            }
            (_, Origin::Git(_), None) => {
                return Err(fail(Phase::Fetch, None, "nothing was fetched"));
            }
        };
        Ok(Prepared {
            key,
            id,
            generation,
            worktree,
            owned_worktree,
            sha,
            fresh,
            old,
            _busy: busy,
        })
    }

    /// The token for fetching `url`, as the forge side decides it (never for a URL that is
    /// not the forge's own).
    async fn git_token(
        &self,
        req: &UpRequest,
        url: &str,
    ) -> Result<Option<secrecy::SecretString>, DeployFailure> {
        match &self.git {
            Some(git) => git
                .git_token(url, req.key_repo.as_deref())
                .await
                .map_err(|reason| fail(Phase::Fetch, None, reason)),
            None => Ok(None),
        }
    }

    async fn attempt(
        &self,
        req: &UpRequest,
        p: &Prepared,
        progress: &Progress,
        phase: &Mutex<Phase>,
        timings: &mut Timings,
    ) -> Result<(), DeployFailure> {
        let enter = |ph: Phase| {
            if let Ok(mut g) = phase.lock() {
                *g = ph;
            }
            progress(Event::Phase(ph));
            Instant::now()
        };

        fault::pause(Phase::Fetch).await;
        let t = enter(Phase::Config);
        fault::pause(Phase::Config).await;
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
        timings.phases.push((Phase::Config, t.elapsed()));

        let t = enter(Phase::Build);
        let images = self.images(req, p, &spec, progress).await?;
        fault::pause(Phase::Build).await;
        timings.phases.push((Phase::Build, t.elapsed()));

        let t = enter(Phase::Start);
        self.start(req, p, &spec, &images).await?;
        fault::pause(Phase::Start).await;
        timings.phases.push((Phase::Start, t.elapsed()));

        let t = enter(Phase::Route);
        self.gateway
            .sync()
            .await
            .map_err(|e| fail(Phase::Route, None, e.to_string()))?;
        fault::pause(Phase::Route).await;
        timings.phases.push((Phase::Route, t.elapsed()));

        let t = enter(Phase::Health);
        let host = gateway::staging_host(p.id.as_str(), p.generation, &self.config.gateway.domain);
        self.wait_healthy(p, &spec, &host).await?;
        fault::pause(Phase::Health).await;
        timings.phases.push((Phase::Health, t.elapsed()));

        Ok(())
    }

    /// Makes the healthy new generation live and reads its state back. Not cancellable: once
    /// the switch starts it finishes, so a superseding request never leaves a preview between
    /// two generations.
    async fn finish(&self, p: &Prepared) -> Result<PreviewState, DeployFailure> {
        self.commit(p)
            .await
            .map_err(|e| fail(Phase::Route, None, e.to_string()))?;
        let observed = self
            .observed()
            .await
            .map_err(|e| fail(Phase::Route, None, e.to_string()))?;
        let live = observed.iter().find(|o| o.id == p.id).ok_or_else(|| {
            fail(
                Phase::Route,
                None,
                "the preview vanished while it was committed",
            )
        })?;
        Ok(self.state_with_health(live).await)
    }

    /// Builds or finds every service's image, in parallel.
    async fn images(
        &self,
        req: &UpRequest,
        p: &Prepared,
        spec: &Spec,
        progress: &Progress,
    ) -> Result<HashMap<String, String>, DeployFailure> {
        let jobs: Vec<_> = spec
            .services
            .values()
            .map(|svc| async move {
                let name = svc.name.as_str();
                if let Mode::Dev { .. } = req.mode
                    && let Some(dev) = spec.dev.get(&svc.name)
                {
                    return self.ensure_image(name, &dev.image).await;
                }
                match &svc.image {
                    ImageSource::Image(image) => self.ensure_image(name, image).await,
                    ImageSource::Build(b) => {
                        let on_line = |line: &str| {
                            progress(Event::Line {
                                service: name.to_owned(),
                                line: line.to_owned(),
                            })
                        };
                        let r = build::build(
                            &self.docker,
                            &self.config,
                            &p.id,
                            name,
                            &p.worktree,
                            b,
                            &on_line,
                        )
                        .await;
                        match r {
                            Ok(built) => Ok((name.to_owned(), built.tag)),
                            Err(e) => {
                                let mut f = fail(Phase::Build, Some(name), e.to_string());
                                f.log_tail = e.tail();
                                Err(f)
                            }
                        }
                    }
                }
            })
            .collect();
        join_all(jobs).await.into_iter().collect()
    }

    /// An image named in the config must be on the host; it is pulled when it is not (where a
    /// registry is reachable).
    async fn ensure_image(
        &self,
        service: &str,
        image: &str,
    ) -> Result<(String, String), DeployFailure> {
        if let Ok(info) = self.docker.inspect_image(image).await {
            // An image previewd built holds some branch's code: a config must not borrow another
            // preview's (perhaps another repository's) build by naming it.
            let built_by_us = info
                .config
                .and_then(|c| c.labels)
                .is_some_and(|l| l.keys().any(|k| k.starts_with(labels::PREFIX)));
            if built_by_us {
                return Err(fail(
                    Phase::Config,
                    Some(service),
                    format!(
                        "image {image} was built by previewd for a preview; name a base image or use build:"
                    ),
                ));
            }
            return Ok((service.to_owned(), image.to_owned()));
        }
        let opts = CreateImageOptions {
            from_image: Some(image.to_owned()),
            ..Default::default()
        };
        let mut pull = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = pull.next().await {
            if let Err(e) = item {
                return Err(fail(
                    Phase::Build,
                    Some(service),
                    format!(
                        "image {image} is not on this Docker host and could not be pulled: {e}"
                    ),
                ));
            }
        }
        Ok((service.to_owned(), image.to_owned()))
    }

    async fn wait_healthy(
        &self,
        p: &Prepared,
        spec: &Spec,
        host: &str,
    ) -> Result<(), DeployFailure> {
        let addr = health::gateway_addr(&self.config.gateway.bind, self.config.gateway.port);
        let inst = &self.config.instance;
        // Every container, internal ones too, must stay up while the public ones come up.
        let all: Vec<String> = spec
            .services
            .keys()
            .map(|s| labels::staging_name(inst, &p.id, s.as_str(), p.generation))
            .collect();
        let checks: Vec<_> = spec
            .services
            .values()
            .filter(|s| !s.internal && s.route.is_some())
            .map(|svc| {
                let addr = addr.clone();
                let all = all.clone();
                async move {
                    let limit = self.config.limits.health_timeout;
                    let timeout = svc.healthcheck.timeout.map_or(limit, |t| t.min(limit));
                    let docker = self.docker.clone();
                    let alive = move || -> crate::engine::BoxFuture<'static, Result<(), String>> {
                        let (docker, all) = (docker.clone(), all.clone());
                        Box::pin(async move { all_running(&docker, &all).await })
                    };
                    health::wait(
                        &addr,
                        host,
                        &svc.healthcheck.path,
                        svc.healthcheck.status,
                        timeout,
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
                let dead = all_running(&self.docker, &all).await.err();
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

    /// Makes the new generation live: the old one's containers step aside, the new one's take
    /// the canonical names, the gateway switches, then the old generation is removed.
    async fn commit(&self, p: &Prepared) -> Result<(), ManagerError> {
        let inst = &self.config.instance;
        let observed = self.observed().await?;
        let new: Vec<&Member> = observed
            .iter()
            .filter(|o| o.id == p.id)
            .flat_map(|o| o.generations.get(&p.generation).into_iter().flatten())
            .collect();
        // Service by service, the old container steps aside and the new one takes its name:
        // a crash in between leaves the new generation recognisably live (it has a canonical
        // name), and reconcile finishes the rest.
        for m in &new {
            if let Some(o) = p.old.iter().find(|o| o.service == m.service) {
                let aside = labels::staging_name(inst, &p.id, &o.service, o.generation);
                self.rename(&o.container_id, &aside).await?;
            }
            let live = labels::container_name(inst, &p.id, &m.service);
            self.rename(&m.container_id, &live).await?;
        }
        for o in p
            .old
            .iter()
            .filter(|o| !new.iter().any(|m| m.service == o.service))
        {
            let aside = labels::staging_name(inst, &p.id, &o.service, o.generation);
            self.rename(&o.container_id, &aside).await?;
        }
        self.gateway.sync().await?;
        if !p.old.is_empty() {
            // Requests sent to the old generation before the switch finish first.
            let old: Vec<String> = p
                .old
                .iter()
                .map(|m| {
                    format!(
                        "{}:",
                        labels::upstream_alias(&p.id, &m.service, m.generation)
                    )
                })
                .collect();
            self.gateway.drain(&old, DRAIN_MIN, DRAIN_MAX).await;
        }
        let new_images: HashSet<String> = self
            .observed()
            .await?
            .iter()
            .filter(|o| o.id == p.id)
            .flat_map(|o| o.live_members().iter().map(|m| m.image.clone()))
            .collect();
        let mut old_gens = HashSet::new();
        for m in &p.old {
            docker::remove_container(&self.docker, &m.container_id).await?;
            old_gens.insert(m.generation);
            if !new_images.contains(&m.image) && m.image.starts_with(&format!("{inst}-")) {
                docker::remove_image(&self.docker, &m.image).await?;
            }
        }
        for g in old_gens {
            let net = labels::network_name(inst, &p.id, g);
            self.gateway.leave(&net).await;
            docker::remove_network(&self.docker, &net).await?;
        }
        // What builds this deployment superseded (a push after a push) left half-way, and the
        // images whose tags went to this generation's builds.
        build::prune_leftovers(&self.docker, &self.config).await;
        Ok(())
    }

    async fn rename(&self, container: &str, to: &str) -> Result<(), DockerError> {
        let opts = RenameContainerOptions {
            name: to.to_owned(),
        };
        self.docker.rename_container(container, opts).await?;
        Ok(())
    }
}

/// `Err("<service> exited with code N")` for the first container that is not running.
async fn all_running(docker: &Docker, containers: &[String]) -> Result<(), String> {
    for c in containers {
        if let Ok(info) = docker
            .inspect_container(c, None::<InspectContainerOptions>)
            .await
        {
            let st = info.state.unwrap_or_default();
            let restarting = st.restarting.unwrap_or(false);
            if !st.running.unwrap_or(false) || restarting {
                let service = info
                    .config
                    .and_then(|c| c.labels)
                    .and_then(|l| l.get(labels::SERVICE).cloned())
                    .unwrap_or_else(|| c.clone());
                return Err(format!(
                    "{service} exited with code {}",
                    st.exit_code.unwrap_or(-1)
                ));
            }
        }
    }
    Ok(())
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
