//! The build, start and route phases as one rollout, so that a service does not wait for the
//! others' builds: every image is built side by side and the generation's networks are made
//! beside the builds; each service's container is created as soon as its image is there and
//! started once what it depends on has started (a service that mounts a named volume only once
//! every image is built, since its start stops the old generation's container); the gateway
//! routes the staging host once every container is created, while they start. The phases stay
//! back to back on the clock: build ends when the last image is there, start when the last
//! container has started, route when the routes are in place.
//!
//! Never drops a Docker request half-way: a cancellation interrupts only the builds, and every
//! create, start and route that began runs to its end (a service gives up only between them),
//! so the cleanup finds by label all that was made. Never decides what a failure means for the
//! live generation: that is `up`'s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::join_all;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Event, Manager, Prepared, Progress, UpRequest, cancelled, topology};
use crate::engine::{DeployFailure, Phase};
use crate::preview::fault;
use crate::spec::{self, Spec};

/// When the rollout's phases ended, and the services replaced stop-first.
pub(super) struct Rolled {
    pub(super) built: Instant,
    pub(super) started: Instant,
    pub(super) routed: Instant,
    /// Services whose old container was stopped before the new one started (they mount a
    /// named volume): their moment of downtime.
    pub(super) downtime: Vec<String>,
}

/// Why one service's part of the rollout ended early.
enum Stop {
    Failed(DeployFailure),
    /// Another service failed, or the deployment was cancelled: this one gave up at a point
    /// where nothing of it was in flight.
    GaveUp,
}

/// What the services' parts share: the marks each waits on and sets.
struct Shared<'a> {
    /// Cancelled when a service fails: the others give up at their next safe point.
    failed: CancellationToken,
    images_left: AtomicUsize,
    creates_left: AtomicUsize,
    /// When the last image (and the networks) were there: the end of the build phase.
    built_at: Mutex<Option<Instant>>,
    /// `Some(true)` once every image is there, `Some(false)` when one never will be.
    all_built: watch::Sender<Option<bool>>,
    /// `Some(true)` once every container is created, `Some(false)` when one never will be.
    all_created: watch::Sender<Option<bool>>,
    /// Per service: `Some(true)` once started, `Some(false)` when it never will be.
    started: HashMap<&'a str, watch::Sender<Option<bool>>>,
    /// The start level of each service: it waits only for dependencies of earlier levels.
    level: HashMap<&'a str, usize>,
    downtime: Mutex<Vec<String>>,
}

impl Manager {
    /// Builds, creates, starts and routes the generation (see the module's comment).
    pub(super) async fn roll_out(
        &self,
        req: &UpRequest,
        p: &Prepared,
        spec: &Spec,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<Rolled, DeployFailure> {
        let n = spec.services.len();
        let level = topology::start_levels(spec)
            .into_iter()
            .enumerate()
            .flat_map(|(i, l)| l.into_iter().map(move |s| (s.name.as_str(), i)))
            .collect();
        let shared = Shared {
            failed: CancellationToken::new(),
            images_left: AtomicUsize::new(n),
            creates_left: AtomicUsize::new(n),
            built_at: Mutex::new(None),
            all_built: watch::Sender::new((n == 0).then_some(true)),
            all_created: watch::Sender::new((n == 0).then_some(true)),
            started: spec
                .services
                .keys()
                .map(|s| (s.as_str(), watch::Sender::new(None)))
                .collect(),
            level,
            downtime: Mutex::new(Vec::new()),
        };
        let created_at = crate::clock::rfc3339(self.clock.now());
        let networks = self.make_networks(req, p, spec).shared();
        // The gateway joins the generation's routed networks while its containers are made
        // and started, so that the route step waits for the table only, not for Docker's
        // slowest step of a route (issue 17). The sync still joins what this did not.
        let to_join =
            topology::routed_networks(&self.config.instance, &req.mode, &p.id, p.generation, spec);
        let joined = {
            let networks = networks.clone();
            async move {
                if networks.await.is_ok() && !to_join.is_empty() {
                    self.gateway.join(&to_join).await;
                }
            }
            .shared()
        };
        let shared = &shared;
        let parts = spec.services.values().map(|svc| {
            let networks = networks.clone();
            let created_at = created_at.as_str();
            async move {
                let r = self
                    .service(
                        req, p, spec, svc, progress, cancel, networks, shared, created_at,
                    )
                    .await;
                if r.is_err() {
                    shared.failed.cancel();
                }
                if let Some(tx) = shared.started.get(svc.name.as_str()) {
                    tx.send_replace(Some(r.is_ok()));
                }
                r
            }
        });
        let parts = async {
            let results = join_all(parts).await;
            (results, Instant::now())
        };
        let routing = async {
            if reached(&shared.all_created).await {
                joined.clone().await;
                self.route().await.map(|()| Some(Instant::now()))
            } else {
                Ok(None)
            }
        };
        // The networks are joined too: made to the end even when every service gave up early.
        let ((results, started), made, routed, ()) =
            tokio::join!(parts, networks.clone(), routing, joined.clone());
        progress(Event::Phase(Phase::Route));
        let mut gave_up = false;
        for r in results {
            match r {
                Ok(()) => {}
                Err(Stop::Failed(f)) => return Err(f),
                Err(Stop::GaveUp) => gave_up = true,
            }
        }
        made?;
        let built = shared.built_at.lock().ok().and_then(|b| *b);
        if gave_up {
            // Nothing failed: the deployment was cancelled between two steps.
            let phase = if built.is_some() {
                Phase::Start
            } else {
                Phase::Build
            };
            return Err(cancelled(phase));
        }
        let routed = routed?.unwrap_or(started);
        let mut downtime = shared
            .downtime
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        downtime.sort();
        downtime.dedup();
        Ok(Rolled {
            built: built.unwrap_or(started),
            started,
            routed: routed.max(started),
            downtime,
        })
    }

    /// One service's part: its image, then (the networks made) its container, then its start
    /// once its dependencies have started.
    #[allow(clippy::too_many_arguments)]
    async fn service(
        &self,
        req: &UpRequest,
        p: &Prepared,
        spec: &Spec,
        svc: &spec::Service,
        progress: &Progress,
        cancel: &CancellationToken,
        networks: impl std::future::Future<Output = Result<(), DeployFailure>>,
        shared: &Shared<'_>,
        created_at: &str,
    ) -> Result<(), Stop> {
        let name = svc.name.as_str();
        let image = tokio::select! {
            r = self.image(req, p, spec, svc, progress) => r,
            _ = cancel.cancelled() => Err(cancelled(Phase::Build)),
        };
        let image = match image {
            Ok(image) => networks.await.map(|()| image),
            Err(f) => Err(f),
        };
        let built = match image {
            Ok(image) => self
                .last_image(shared, progress, cancel)
                .await
                .map(|()| image),
            Err(f) => Err(f),
        };
        if built.is_err() {
            shared.all_built.send_replace(Some(false));
        }
        let created = match built {
            Err(f) => Err(Stop::Failed(f)),
            Ok(_) if shared.failed.is_cancelled() || cancel.is_cancelled() => Err(Stop::GaveUp),
            Ok(image) => self
                .create(req, p, spec, svc, created_at, &image)
                .await
                .map_err(Stop::Failed),
        };
        if created.is_err() {
            shared.failed.cancel();
        }
        if shared.creates_left.fetch_sub(1, Ordering::SeqCst) == 1 {
            shared
                .all_created
                .send_replace(Some(!shared.failed.is_cancelled()));
        }
        created?;
        // What it depends on has started (those of earlier levels: see `start_levels`).
        let mine = shared.level.get(name).copied().unwrap_or(0);
        for dep in &svc.depends_on {
            let earlier = shared.level.get(dep.as_str()).is_some_and(|l| *l < mine);
            let Some(started) = shared.started.get(dep.as_str()).filter(|_| earlier) else {
                continue;
            };
            if !reached(started).await {
                return Err(Stop::GaveUp);
            }
        }
        // Its start stops the old generation's containers that share its named volumes: only
        // once every build has succeeded, so a failed build keeps the old one serving.
        if svc.run.named_volumes().next().is_some() && !reached(&shared.all_built).await {
            return Err(Stop::GaveUp);
        }
        if shared.failed.is_cancelled() || cancel.is_cancelled() {
            return Err(Stop::GaveUp);
        }
        let stopped = self.start(p, svc).await.map_err(Stop::Failed)?;
        if let Ok(mut d) = shared.downtime.lock() {
            d.extend(stopped);
        }
        Ok(())
    }

    /// Counts one image done; the last one (the networks made too) ends the build phase.
    async fn last_image(
        &self,
        shared: &Shared<'_>,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(), DeployFailure> {
        if shared.images_left.fetch_sub(1, Ordering::SeqCst) != 1 {
            return Ok(());
        }
        tokio::select! {
            () = fault::pause(Phase::Build) => {}
            _ = cancel.cancelled() => return Err(cancelled(Phase::Build)),
        }
        if let Ok(mut b) = shared.built_at.lock() {
            *b = Some(Instant::now());
        }
        progress(Event::Phase(Phase::Start));
        shared.all_built.send_replace(Some(true));
        Ok(())
    }
}

/// Waits until `mark` is set; whether it was set to `true`.
async fn reached(mark: &watch::Sender<Option<bool>>) -> bool {
    let mut rx = mark.subscribe();
    matches!(
        rx.wait_for(Option::is_some).await.map(|v| *v),
        Ok(Some(true))
    )
}
