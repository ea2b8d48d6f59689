//! Putting a preview to sleep: the sleep mark first (Docker now says the preview sleeps, so
//! the gateway sends its visitors to the wake route), the routes, the requests in flight
//! drained, then the live generation's containers stopped; nothing is removed. Waking is in
//! `wake.rs`. One transition per preview at a time in this process. Nothing here decides
//! *when* a preview sleeps (that is `serve`'s idle sweep, or the operator) and nothing here
//! talks to a forge.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::{Manager, ManagerError};
use crate::ids::PreviewId;
use crate::preview::docker::labels::{self, Member};
use crate::preview::docker::{self, DockerError, hooks, lifecycle, sleep as marks};

/// Per-preview locks, so that a sleep and a wake of one preview never interleave.
pub(super) type Transitions =
    Arc<std::sync::Mutex<HashMap<PreviewId, Arc<tokio::sync::Mutex<()>>>>>;

/// The last visit of each preview this process heard of.
pub(super) type Visits = Arc<std::sync::Mutex<HashMap<PreviewId, time::OffsetDateTime>>>;

/// Why a preview was not put to sleep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAsleep {
    /// It sleeps already.
    Asleep,
    /// It is being deployed, has no live generation, or a container of it is not running (a
    /// crashed preview is reported as failed, never put to sleep).
    NotRunning,
    /// The repository's config keeps it awake (`sleep: false`), for this service.
    KeptAwake(String),
}

impl Manager {
    /// Notes a visit to `id` now (the manager's clock).
    pub fn visited(&self, id: &PreviewId) {
        let now = self.clock.now();
        let mut map = self.visits.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(id.clone(), now);
    }

    /// When `id` was last visited, as far as this process heard.
    pub fn last_visit(&self, id: &PreviewId) -> Option<time::OffsetDateTime> {
        let map = self.visits.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).copied()
    }

    pub(super) fn transition(&self, id: &PreviewId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.transitions.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.clone()).or_default().clone()
    }

    /// The labels of the containers of `id`, by container id.
    pub(super) async fn container_labels(
        &self,
        id: &PreviewId,
    ) -> Result<HashMap<String, HashMap<String, String>>, DockerError> {
        let wanted = vec![
            format!("{}={}", labels::INSTANCE, self.config.instance),
            format!("{}={id}", labels::PREVIEW),
            format!("{}={}", labels::ROLE, labels::ROLE_SERVICE),
        ];
        Ok(docker::labelled(&self.docker, wanted)
            .await?
            .into_iter()
            .filter_map(|c| Some((c.id?, c.labels.unwrap_or_default())))
            .collect())
    }

    /// Puts preview `id` to sleep now: `Ok(Err(why))` when it stays as it is.
    pub async fn sleep(&self, id: &PreviewId) -> Result<Result<(), NotAsleep>, ManagerError> {
        let lock = self.transition(id);
        let _one = lock.lock().await;
        let p = self.get(id).await?;
        if p.asleep.is_some() {
            return Ok(Err(NotAsleep::Asleep));
        }
        let (Some(generation), false) = (p.live(), self.busy().contains(id)) else {
            return Ok(Err(NotAsleep::NotRunning));
        };
        let live = p.live_members().to_vec();
        let running = |m: &Member| m.state == "running" || (m.oneshot && m.state == "exited");
        if !live.iter().all(running) {
            return Ok(Err(NotAsleep::NotRunning));
        }
        let all_labels = self.container_labels(id).await?;
        if let Some(m) = live.iter().find(|m| {
            all_labels
                .get(&m.container_id)
                .and_then(|l| l.get(labels::SLEEP))
                .is_some_and(|v| v == "never")
        }) {
            return Ok(Err(NotAsleep::KeptAwake(m.service.clone())));
        }
        let inst = &self.config.instance;
        let since = crate::clock::rfc3339(self.clock.now());
        let image = &self.config.gateway.image;
        // A mark left by a generation a push replaced says nothing: a fresh one for this one.
        marks::unmark(&self.docker, inst, id).await?;
        marks::mark(&self.docker, inst, image, id, generation, &since).await?;
        self.gateway.sync().await?;
        // A request proxied just before the switch finishes first.
        let prefixes: Vec<String> = live
            .iter()
            .map(|m| format!("{}:", labels::upstream_alias(id, &m.service, m.generation)))
            .collect();
        self.gateway
            .drain(
                &prefixes,
                Duration::from_millis(50),
                Duration::from_secs(10),
            )
            .await;
        let stops = live
            .iter()
            .filter(|m| m.state == "running")
            .map(|m| async move {
                hooks::pre_stop(&self.docker, m).await;
                lifecycle::stop(&self.docker, &m.container_id, None).await
            });
        for r in join_all(stops).await {
            r?;
        }
        tracing::info!(preview = %id, "asleep");
        Ok(Ok(()))
    }
}
