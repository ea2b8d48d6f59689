//! Committing a healthy generation: its containers take the live names and the gateway
//! switches to it (the deployment's last phase, `switch`), and its time to ready is kept in
//! a ready mark; after the report, the old generation drains and is removed on a task of its
//! own. Never cancelled half-way, and never removes the old generation before the routes have
//! switched away from it.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;

use super::{Manager, ManagerError, Prepared, fail};
use crate::engine::{DeployFailure, Phase, PreviewState};
use crate::preview::build;
use crate::preview::docker;
use crate::preview::docker::labels::{self, Member};

/// A retired generation keeps running after the routes switch away from it until the gateway
/// has no request in flight to it: at least this long...
const DRAIN_MIN: Duration = Duration::from_millis(500);
/// ...and at most this long (a request still running then is cut off).
const DRAIN_MAX: Duration = Duration::from_secs(30);

impl Manager {
    /// Makes the healthy new generation live and reads its state back, its public services
    /// probed on the live host. Not cancellable: once the switch starts it finishes, so a
    /// superseding request never leaves a preview between two generations.
    pub(super) async fn switch(&self, p: &Prepared) -> Result<PreviewState, DeployFailure> {
        let switched = async {
            self.take_live_names(p).await?;
            self.gateway.sync().await?;
            Ok::<_, ManagerError>(())
        };
        switched
            .await
            .map_err(|e| fail(Phase::Switch, None, e.to_string()))?;
        let observed = self
            .observed()
            .await
            .map_err(|e| fail(Phase::Switch, None, e.to_string()))?;
        let live = observed.iter().find(|o| o.id == p.id).ok_or_else(|| {
            fail(
                Phase::Switch,
                None,
                "the preview vanished while it was switched",
            )
        })?;
        Ok(self.state_with_health(live).await)
    }

    /// Keeps `p`'s time to ready in Docker (its ready mark, see `docker::ready`), so that the
    /// status page still shows it after a restart, and shows it for a generation another
    /// process deployed. Made before the report, so a ready preview has its mark. Best
    /// effort: a mark that could not be made loses the figure, never the deployment.
    pub(super) async fn keep_ready_in(&self, p: &Prepared, took: Duration) {
        let now = crate::clock::rfc3339(self.clock.now());
        let (inst, image) = (&self.config.instance, &self.config.gateway.image);
        let kept = docker::ready::mark(&self.docker, inst, image, &p.id, p.generation, took, &now);
        if let Err(e) = kept.await {
            tracing::warn!(preview = %p.id, error = %e, "the time to ready was not kept in Docker; the status page will not show it");
        }
    }

    /// Drains and removes the generation `p` replaced on a task of its own (the preview stays
    /// busy until it is done): the deployment is ready without waiting for it.
    /// [`Manager::retired`] waits for these tasks. A removal that fails is left to the next
    /// reconcile, which removes generations older than the live one.
    pub(super) fn retire_later(&self, p: Prepared) {
        let m = self.clone();
        let task = tokio::spawn(async move {
            m.drain_old(&p).await;
            if let Err(e) = m.retire_old(&p).await {
                tracing::warn!(preview = %p.id, error = %e, "the old generation was not removed; the next reconcile removes it");
            }
        });
        if let Ok(mut r) = self.retiring.lock() {
            r.retain(|t| !t.is_finished());
            r.push(task);
        }
    }

    /// Renames the old generation's containers aside and the new one's to the live names.
    async fn take_live_names(&self, p: &Prepared) -> Result<(), ManagerError> {
        let inst = &self.config.instance;
        let observed = self.observed().await?;
        let new: Vec<&Member> = observed
            .iter()
            .filter(|o| o.id == p.id)
            .flat_map(|o| o.generations.get(&p.generation).into_iter().flatten())
            .collect();
        if let Some(registry) = self.swarm_registry() {
            // A Swarm service keeps its name: the new generation's are marked live instead,
            // and the newest generation with a live mark is the live one (`Observed::live`).
            let marked = join_all(
                new.iter()
                    .map(|m| docker::swarm::mark_live(&self.docker, &m.container_id, registry)),
            )
            .await;
            return Ok(marked.into_iter().collect::<Result<(), _>>()?);
        }
        // Service by service (the services side by side), the old container steps aside and
        // the new one takes its name: a crash in between leaves the new generation
        // recognisably live (it has a canonical name), and reconcile finishes the rest.
        let renamed = join_all(new.iter().map(|m| async move {
            if let Some(o) = p.old.iter().find(|o| o.service == m.service) {
                let aside = labels::staging_name(inst, &p.id, &o.service, o.generation);
                docker::rename_container(&self.docker, &o.container_id, &aside).await?;
            }
            let live = labels::container_name(inst, &p.id, &m.service);
            docker::rename_container(&self.docker, &m.container_id, &live).await
        }))
        .await;
        let gone = p
            .old
            .iter()
            .filter(|o| !new.iter().any(|m| m.service == o.service));
        let stepped_aside = join_all(gone.map(|o| {
            let aside = labels::staging_name(inst, &p.id, &o.service, o.generation);
            async move { docker::rename_container(&self.docker, &o.container_id, &aside).await }
        }))
        .await;
        renamed
            .into_iter()
            .chain(stepped_aside)
            .collect::<Result<(), _>>()?;
        Ok(())
    }

    /// Waits (`DRAIN_MIN` to `DRAIN_MAX`) until the gateway has nothing in flight to the old
    /// generation.
    async fn drain_old(&self, p: &Prepared) {
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
    }

    /// Removes the old generation: its containers, the images no live container uses, its
    /// networks, and what superseded builds left behind.
    async fn retire_old(&self, p: &Prepared) -> Result<(), ManagerError> {
        let inst = &self.config.instance;
        let new_images: HashSet<String> = self
            .observed()
            .await?
            .iter()
            .filter(|o| o.id == p.id)
            .flat_map(|o| o.live_members().iter().map(|m| m.image.clone()))
            .collect();
        let mut old_gens = HashSet::new();
        for m in &p.old {
            docker::placed::remove(&self.docker, &self.config, m).await?;
            old_gens.insert(m.generation);
            if !new_images.contains(&m.image) && m.image.starts_with(&format!("{inst}-")) {
                docker::remove_image(&self.docker, &m.image).await?;
            }
        }
        for g in old_gens {
            // The generation's default network and its compose project networks.
            self.remove_networks_of(&p.id, g).await?;
        }
        // What builds this deployment superseded (a push after a push) left half-way, and the
        // images whose tags went to this generation's builds.
        build::prune_leftovers(&self.docker, &self.config).await;
        Ok(())
    }
}
