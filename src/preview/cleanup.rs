//! Clean-up, the Docker side of a reconcile pass: make Docker, the gateway and `data_dir` agree
//! with the labels again. Run by `previewd gc`, and by `serve`'s reconciler at start and
//! periodically (which also compares the previews with the forge). It removes what no live preview
//! explains (retired or unfinished generations, ready marks of generations not live, empty
//! networks, images and worktrees of previews that are gone, untagged images builds left),
//! prunes BuildKit's cache down to `limits.build_cache`, removes previews past `limits.ttl`,
//! and reloads the routes.
//! Things younger than `grace` are left alone: another process may be creating them.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use super::docker;
use super::docker::labels::{self, Observed};
use super::manager::{Manager, ManagerError};
use super::source;
use crate::clock::age;
use crate::ids::PreviewId;

/// What a reconcile pass removed, for the operator and the tests.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub images: Vec<String>,
    pub worktrees: Vec<String>,
    pub expired: Vec<String>,
    /// Members of a live generation whose switch a crash interrupted, switched now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub switched: Vec<String>,
    /// What the prune of BuildKit's cache down to `limits.build_cache` took, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_cache: Option<super::build::cache::Pruned>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.networks.is_empty()
            && self.volumes.is_empty()
            && self.images.is_empty()
            && self.worktrees.is_empty()
            && self.expired.is_empty()
            && self.switched.is_empty()
            && self.build_cache.as_ref().is_none_or(|p| p.records == 0)
    }
}

/// Whether `p` has been neither (re)deployed nor visited for longer than `ttl` at `now`: the
/// age of its live generation, or, when it sleeps, the time since it went to sleep (it was
/// visited until then at the latest), whichever is less.
pub fn past_ttl(p: &Observed, ttl: Duration, now: time::OffsetDateTime) -> bool {
    let slept = p.asleep.as_deref().and_then(|s| age(s, now));
    p.live_members()
        .first()
        .is_some_and(|mem| age(&mem.created, now).is_some_and(|a| a.min(slept.unwrap_or(a)) > ttl))
}

fn older(created: &str, grace: Duration, now: time::OffsetDateTime) -> bool {
    // An unreadable timestamp is old: it cannot belong to a deployment in progress of ours.
    age(created, now).is_none_or(|a| a >= grace)
}

/// One reconcile pass. `busy` lists previews with a deployment running in this process, which
/// are left alone whatever their age; `keep` lists previews exempt from `limits.ttl` (their PR
/// carries `limits.keep_label`).
pub async fn clean_up(
    m: &Manager,
    grace: Duration,
    busy: &HashSet<PreviewId>,
    keep: &HashSet<PreviewId>,
) -> Result<Report, ManagerError> {
    let config = m.config();
    let d = m.docker();
    let inst = &config.instance;
    let now = m.clock().now();
    let mut report = Report::default();
    // Busy at the pass's start, or now: a deployment of this process that started during the
    // pass (serve takes webhooks while its start-up pass runs, which has no grace) is marked
    // busy before it makes its worktree or network, so ask again right before removing one.
    let busy_now = |id: &PreviewId| busy.contains(id) || m.busy().contains(id);

    // Expired previews go whole.
    for p in m.observed().await? {
        if busy.contains(&p.id) || keep.contains(&p.id) {
            continue;
        }
        // A visit this process heard of counts as much as a deployment.
        let visited = m
            .last_visit(&p.id)
            .is_some_and(|t| now - t <= config.limits.ttl);
        if past_ttl(&p, config.limits.ttl, now) && !visited {
            m.down(&p.id).await?;
            report.expired.push(p.id.to_string());
        }
    }

    // Generations that are not live: retired ones at once, unfinished ones after the grace.
    let observed = m.observed().await?;
    for p in &observed {
        if busy.contains(&p.id) {
            continue;
        }
        let live = p.live();
        for (g, members) in &p.generations {
            let stale = match live {
                Some(l) if *g == l => false,
                Some(l) if *g < l => true,
                _ => members.iter().all(|mem| older(&mem.created, grace, now)),
            };
            if stale {
                for mem in members {
                    docker::placed::remove(d, m.config(), mem).await?;
                    report.containers.push(mem.name.clone());
                }
            }
        }
        // A live generation half-switched by a crash (some of its containers renamed, some of
        // its Swarm services marked live): finish the switch.
        if let Some(l) = live {
            for mem in p.generations.get(&l).into_iter().flatten() {
                // One gone meanwhile is the next pass's to see.
                if !mem.canonical && docker::placed::make_live(d, config, mem).await.is_ok() {
                    report.switched.push(mem.name.clone());
                }
            }
        }
    }

    // What is left explains which networks, images and worktrees may stay.
    let observed = m.observed().await?;
    let live_ids: HashSet<String> = observed.iter().map(|p| p.id.to_string()).collect();
    // Ready marks of a generation that is not live (a preview gone without `down`, a crash
    // before a new generation's mark replaced the old one's) say nothing.
    for mark in docker::ready::marks(d, inst).await? {
        let live = observed
            .iter()
            .find(|p| p.id == mark.preview)
            .and_then(Observed::live);
        let id = &mark.preview;
        if live != Some(mark.generation) && !busy_now(id) && older(&mark.value.created, grace, now)
        {
            docker::ready::unmark(d, inst, id).await?;
            report.containers.push(labels::ready_mark_name(inst, id));
        }
    }
    // A generation's networks (its default one and a compose project's) are known by their
    // preview and generation labels.
    let used_gens: HashSet<(String, String)> = observed
        .iter()
        .flat_map(|p| {
            p.generations
                .keys()
                .map(|g| (p.id.to_string(), g.to_string()))
        })
        .collect();
    for (name, l) in docker::networks(d, inst).await? {
        let preview = l.get(labels::PREVIEW).cloned().unwrap_or_default();
        let created = l.get(labels::CREATED).cloned().unwrap_or_default();
        let generation = l.get(labels::GENERATION).cloned().unwrap_or_default();
        let busy_id = PreviewId::parse(&preview).is_ok_and(|id| busy_now(&id));
        let used = used_gens.contains(&(preview.clone(), generation));
        if !used && !busy_id && older(&created, grace, now) {
            m.gateway().leave(&name).await;
            docker::remove_network(d, &name).await?;
            report.networks.push(name);
        }
    }
    let used_images: HashSet<String> = observed
        .iter()
        .flat_map(|p| {
            p.generations
                .values()
                .flatten()
                .map(|mem| mem.image.clone())
        })
        .collect();
    for (_, tags, l) in docker::images(d, inst).await? {
        let preview = l.get(labels::PREVIEW).cloned().unwrap_or_default();
        for tag in tags {
            // The tag names the preview that uses it: `<instance>-<id>-<service>:<hash>`.
            let owner = tag
                .strip_prefix(&format!("{inst}-"))
                .and_then(|rest| rest.get(..crate::ids::PREVIEW_ID_LEN))
                .unwrap_or(&preview)
                .to_owned();
            let gone = !live_ids.contains(&owner)
                && PreviewId::parse(&owner).is_ok_and(|id| !busy.contains(&id));
            if gone && !used_images.contains(&tag) {
                docker::remove_image(d, &tag).await?;
                report.images.push(tag);
            }
        }
    }
    // Named volumes of previews that are gone.
    for (name, l) in docker::volumes::volumes(d, inst).await? {
        let preview = l.get(labels::PREVIEW).cloned().unwrap_or_default();
        let created = l.get(labels::CREATED).cloned().unwrap_or_default();
        let busy_id = PreviewId::parse(&preview).is_ok_and(|id| busy_now(&id));
        if !live_ids.contains(&preview) && !busy_id && older(&created, grace, now) {
            docker::volumes::remove_volume(d, &name).await?;
            report.volumes.push(name);
        }
    }
    let wt_dir = source::worktrees_dir(&config.instance_dir());
    if let Ok(entries) = std::fs::read_dir(&wt_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(id) = PreviewId::parse(&name) else {
                continue;
            };
            let fresh = e
                .metadata()
                .and_then(|md| md.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|a| a < grace);
            if !live_ids.contains(&name) && !busy_now(&id) && !fresh {
                let dir = config.instance_dir();
                let _ =
                    tokio::task::spawn_blocking(move || source::remove_worktree(&dir, &id)).await;
                report.worktrees.push(name);
            }
        }
    }

    // What builds left half-way, a crashed process's included.
    if let Some(ids) = super::build::prune_leftovers(d, config).await {
        report.images.extend(ids.iter().map(|id| {
            let hex = id.strip_prefix("sha256:").unwrap_or(id);
            format!("{} (untagged)", hex.get(..12).unwrap_or(hex))
        }));
    }

    // BuildKit's cache, down to `limits.build_cache`: best effort, like the images above.
    match super::build::cache::prune(d, config).await {
        Some(Ok(pruned)) => report.build_cache = Some(pruned),
        Some(Err(e)) => tracing::warn!(error = %e, "the build cache was not pruned this time"),
        None => {}
    }

    // Routes from labels; the gateway goes when nothing is left to route.
    m.settle().await?;
    Ok(report)
}
