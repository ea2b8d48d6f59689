//! Removing things: what a failed attempt made, a whole preview (its named volumes and their
//! data included), and the gateway when the last preview is gone. Everything is found by label, so a removal also works after a crash.

use super::{Manager, ManagerError, Prepared};
use crate::ids::PreviewId;
use crate::preview::docker::{self, DockerError, labels, volumes};
use crate::preview::{build, source};

impl Manager {
    /// Removes what a failed or cancelled attempt created: its generation, and the whole
    /// preview when there was no live generation to fall back on.
    pub(super) async fn discard(&self, p: &Prepared) {
        // A build this attempt started and dropped may still be ending in the daemon.
        build::settled(std::time::Duration::from_secs(30)).await;
        let result = async {
            let observed = self.observed().await?;
            for o in observed.iter().filter(|o| o.id == p.id) {
                for (g, ms) in &o.generations {
                    if *g == p.generation || p.fresh {
                        for m in ms {
                            docker::placed::remove(&self.docker, &self.config, m).await?;
                        }
                    }
                }
            }
            self.remove_networks(&p.id, if p.fresh { None } else { Some(p.generation) })
                .await?;
            if p.fresh {
                self.remove_images(&p.id).await?;
                self.remove_volumes(&p.id).await?;
            } else {
                // Containers stopped for a stop-first replacement serve again.
                for m in p.old.iter().filter(|m| !m.volumes.is_empty()) {
                    let _ = self.docker.start_container(&m.container_id, None).await;
                }
            }
            // What a build that failed or was cancelled half-way committed.
            build::prune_leftovers(&self.docker, &self.config).await;
            self.settle_except(Some(&p.id)).await
        }
        .await;
        // The worktree is local: it goes even when Docker refused a step above.
        if p.fresh && p.owned_worktree {
            let (dir, id) = (self.config.instance_dir(), p.id.clone());
            let _ = tokio::task::spawn_blocking(move || source::remove_worktree(&dir, &id)).await;
        }
        if let Err(e) = result {
            tracing::warn!(preview = %p.id, error = %e, "cleanup after a failed deployment was incomplete; `previewd gc` will finish it");
        }
    }

    async fn remove_networks(
        &self,
        id: &PreviewId,
        generation: Option<u64>,
    ) -> Result<(), ManagerError> {
        for (name, l) in docker::networks(&self.docker, &self.config.instance).await? {
            let ours = l.get(labels::PREVIEW).map(String::as_str) == Some(id.as_str());
            let gen_ok =
                generation.is_none_or(|g| l.get(labels::GENERATION) == Some(&g.to_string()));
            if ours && gen_ok {
                self.gateway.leave(&name).await;
                docker::remove_network(&self.docker, &name).await?;
            }
        }
        Ok(())
    }

    /// Removes the preview's named volumes (its data goes with the preview).
    pub(super) async fn remove_volumes(&self, id: &PreviewId) -> Result<(), ManagerError> {
        for (name, l) in volumes::volumes(&self.docker, &self.config.instance).await? {
            if l.get(labels::PREVIEW).map(String::as_str) == Some(id.as_str()) {
                volumes::remove_volume(&self.docker, &name).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn remove_networks_of(
        &self,
        id: &PreviewId,
        generation: u64,
    ) -> Result<(), ManagerError> {
        self.remove_networks(id, Some(generation)).await
    }

    async fn remove_images(&self, id: &PreviewId) -> Result<(), ManagerError> {
        let prefix = format!("{}-{id}-", self.config.instance);
        // On a swarm the same image is tagged for the registry too: `<registry>/<tag>`.
        let pushed = self
            .swarm_registry()
            .map(|r| format!("{}/{prefix}", r.address));
        let ours = |t: &String| {
            t.starts_with(&prefix) || pushed.as_ref().is_some_and(|p| t.starts_with(p))
        };
        for (_, tags, _) in docker::images(&self.docker, &self.config.instance).await? {
            for t in tags.iter().filter(|t| ours(t)) {
                docker::remove_image(&self.docker, t).await?;
            }
        }
        Ok(())
    }

    /// Brings the gateway in line with the labels, or removes it when no preview is left.
    pub async fn settle(&self) -> Result<(), ManagerError> {
        self.settle_except(None).await
    }

    /// [`Manager::settle`] on behalf of `except`'s teardown: the gateway stays while any other
    /// deployment of this process is on its way (it has no containers yet, but will need it).
    pub(super) async fn settle_except(
        &self,
        except: Option<&PreviewId>,
    ) -> Result<(), ManagerError> {
        // Rules of networks that are gone go with them; a restart finds its networks' again.
        crate::preview::firewall::sync(&self.docker, &self.config).await?;
        let others_busy = self.busy().iter().any(|id| Some(id) != except);
        let removed = !self.config.gateway.keep_running
            && !others_busy
            && self.gateway.remove_if_unused().await?;
        if !removed {
            self.gateway.sync().await?;
        }
        Ok(())
    }

    /// Removes a preview: containers (its marks too), networks, images, worktree and routes.
    pub async fn down(&self, id: &PreviewId) -> Result<(), ManagerError> {
        let observed = self.observed().await?;
        let networks = docker::networks(&self.docker, &self.config.instance).await?;
        let known = observed.iter().any(|o| &o.id == id)
            || networks
                .iter()
                .any(|(_, l)| l.get(labels::PREVIEW).map(String::as_str) == Some(id.as_str()));
        if !known {
            return Err(ManagerError::NotFound(id.to_string()));
        }
        // A reconcile pass in this process leaves a preview being removed alone.
        let _busy = self.mark_busy(id);
        for o in observed.iter().filter(|o| &o.id == id) {
            for m in o.generations.values().flatten() {
                docker::placed::remove(&self.docker, &self.config, m).await?;
            }
        }
        docker::sleep::unmark(&self.docker, &self.config.instance, id).await?;
        docker::ready::unmark(&self.docker, &self.config.instance, id).await?;
        self.remove_networks(id, None).await?;
        self.remove_images(id).await?;
        self.remove_volumes(id).await?;
        build::prune_leftovers(&self.docker, &self.config).await;
        let (dir, id2) = (self.config.instance_dir(), id.clone());
        tokio::task::spawn_blocking(move || source::remove_worktree(&dir, &id2))
            .await
            .map_err(|e| ManagerError::Docker(DockerError::Api(e.to_string())))??;
        self.settle_except(Some(id)).await
    }
}
