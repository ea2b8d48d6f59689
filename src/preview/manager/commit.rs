//! Committing a healthy generation: its containers take the live names, the gateway switches
//! to it, the old generation drains and is removed. Never cancelled half-way, and never
//! removes the old generation before the routes have switched away from it.

use std::collections::HashSet;
use std::time::Duration;

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
    /// Makes the healthy new generation live and reads its state back. Not cancellable: once
    /// the switch starts it finishes, so a superseding request never leaves a preview between
    /// two generations.
    pub(super) async fn finish(&self, p: &Prepared) -> Result<PreviewState, DeployFailure> {
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

    /// Makes the new generation live: the old one's containers step aside, the new one's take
    /// the canonical names, the gateway switches, then the old generation is removed.
    async fn commit(&self, p: &Prepared) -> Result<(), ManagerError> {
        self.take_live_names(p).await?;
        self.gateway.sync().await?;
        self.drain_old(p).await;
        self.retire_old(p).await
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
        // Service by service, the old container steps aside and the new one takes its name:
        // a crash in between leaves the new generation recognisably live (it has a canonical
        // name), and reconcile finishes the rest.
        for m in &new {
            if let Some(o) = p.old.iter().find(|o| o.service == m.service) {
                let aside = labels::staging_name(inst, &p.id, &o.service, o.generation);
                docker::rename_container(&self.docker, &o.container_id, &aside).await?;
            }
            let live = labels::container_name(inst, &p.id, &m.service);
            docker::rename_container(&self.docker, &m.container_id, &live).await?;
        }
        for o in p
            .old
            .iter()
            .filter(|o| !new.iter().any(|m| m.service == o.service))
        {
            let aside = labels::staging_name(inst, &p.id, &o.service, o.generation);
            docker::rename_container(&self.docker, &o.container_id, &aside).await?;
        }
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
            docker::remove_container(&self.docker, &m.container_id).await?;
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
