//! Sleeping and waking a preview. Sleep: the sleep mark first (Docker now says the preview
//! sleeps, so the gateway sends its visitors to the wake route), the routes, the requests in
//! flight drained, then the live generation's containers stopped; nothing is removed. Wake:
//! the containers started in the order a deployment starts them, every public service checked
//! through the gateway (previewd's probes pass the wake route), then the mark removed and the
//! routes switched back. One transition per preview at a time in this process. Nothing here
//! decides *when* a preview sleeps (that is `serve`'s idle sweep, or the operator) and
//! nothing here talks to a forge.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::{Manager, ManagerError, fail};
use crate::engine::{DeployFailure, Phase};
use crate::ids::PreviewId;
use crate::preview::docker::labels::{self, Member};
use crate::preview::docker::{self, DockerError, hooks, lifecycle, sleep as marks};
use crate::preview::{build, gateway, health};
use crate::spec::{self, runtime::Condition};

/// Per-preview locks, so that a sleep and a wake of one preview never interleave.
pub(super) type Transitions =
    Arc<std::sync::Mutex<HashMap<PreviewId, Arc<tokio::sync::Mutex<()>>>>>;

/// The last visit of each preview this process heard of.
pub(super) type Visits = Arc<std::sync::Mutex<HashMap<PreviewId, time::OffsetDateTime>>>;

/// The [`labels::DEPENDS`] value of `svc`: what it waits for and how, in the order a
/// deployment starts services; `None` when it waits for nothing.
pub(super) fn depends_label(svc: &spec::Service) -> Option<String> {
    let pairs: Vec<String> = svc
        .depends_on
        .iter()
        .map(|d| {
            let how = match svc.run.conditions.get(d).copied().unwrap_or_default() {
                Condition::Started => "started",
                Condition::Healthy => "healthy",
                Condition::CompletedSuccessfully => "completed",
            };
            format!("{d}:{how}")
        })
        .collect();
    (!pairs.is_empty()).then(|| pairs.join(","))
}

/// Parses a [`labels::DEPENDS`] value back: each dependency with its condition.
fn parse_depends(value: &str) -> Vec<(String, Condition)> {
    value
        .split(',')
        .filter_map(|pair| {
            let (name, how) = pair.split_once(':').unwrap_or((pair, "started"));
            let how = match how {
                "healthy" => Condition::Healthy,
                "completed" => Condition::CompletedSuccessfully,
                _ => Condition::Started,
            };
            (!name.is_empty()).then(|| (name.to_owned(), how))
        })
        .collect()
}

/// The members in start levels, in the order a deployment starts their services.
fn levels<'a>(
    members: &'a [Member],
    depends: &HashMap<String, Vec<(String, Condition)>>,
) -> Vec<Vec<&'a Member>> {
    super::topology::in_levels(
        members.iter().collect(),
        |m| m.service.as_str(),
        |m| {
            let deps = depends.get(&m.service).into_iter().flatten();
            deps.map(|(d, _)| d.clone()).collect()
        },
    )
}

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

    fn transition(&self, id: &PreviewId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.transitions.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.clone()).or_default().clone()
    }

    /// The labels of the containers of `id`, by container id.
    async fn container_labels(
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

    /// Wakes preview `id`: `Ok(true)` when it slept and every public service now answers
    /// through the gateway, `Ok(false)` when it was awake. `answering` is told as soon as
    /// every public service answers, before the sleep mark goes and the routes switch back: a
    /// visitor waiting at the wake route may go on then (its request is proxied to the same
    /// upstream either way), not after two more Docker round trips. A failed wake leaves the
    /// preview failed (no longer asleep), as a failed deployment would, and says which service.
    pub async fn wake(
        &self,
        id: &PreviewId,
        answering: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<bool, DeployFailure> {
        let lock = self.transition(id);
        let _one = lock.lock().await;
        let start_fail = |e: String| fail(Phase::Start, None, e);
        let p = self.get(id).await.map_err(|e| start_fail(e.to_string()))?;
        if p.asleep.is_none() {
            return Ok(false);
        }
        let live: Vec<Member> = p.live_members().to_vec();
        let result = self.start_and_check(id, &live).await;
        if let (Ok(()), Some(tx)) = (&result, answering) {
            let _ = tx.send(());
        }
        let inst = &self.config.instance;
        // Awake or failed, it no longer sleeps: a failure is then shown as one.
        marks::unmark(&self.docker, inst, id)
            .await
            .map_err(|e| start_fail(e.to_string()))?;
        self.gateway
            .sync()
            .await
            .map_err(|e| fail(Phase::Route, None, e.to_string()))?;
        result?;
        tracing::info!(preview = %id, "awake");
        Ok(true)
    }

    async fn start_and_check(&self, id: &PreviewId, live: &[Member]) -> Result<(), DeployFailure> {
        let deadline = self.config.limits.health_timeout;
        let all_labels = self
            .container_labels(id)
            .await
            .map_err(|e| fail(Phase::Start, None, e.to_string()))?;
        let depends: HashMap<String, Vec<(String, Condition)>> = live
            .iter()
            .map(|m| {
                let value = all_labels
                    .get(&m.container_id)
                    .and_then(|l| l.get(labels::DEPENDS))
                    .map(|v| parse_depends(v))
                    .unwrap_or_default();
                (m.service.clone(), value)
            })
            .collect();
        let by_service: HashMap<&str, &Member> =
            live.iter().map(|m| (m.service.as_str(), m)).collect();
        let (depends, by_service) = (&depends, &by_service);
        for level in levels(live, depends) {
            let started = join_all(level.into_iter().map(|m| async move {
                // A job others waited for ran to its end at the deployment; it is not re-run.
                if m.oneshot {
                    return Ok(());
                }
                for (dep, how) in depends.get(&m.service).into_iter().flatten() {
                    let Some(d) = by_service.get(dep.as_str()) else {
                        continue;
                    };
                    if *how == Condition::Healthy
                        && let lifecycle::Reached::No(why) =
                            lifecycle::wait_healthy(&self.docker, &d.container_id, deadline).await
                    {
                        let mut f = fail(
                            Phase::Start,
                            Some(dep.as_str()),
                            format!("{} waits for {dep} to be healthy, but it {why}", m.service),
                        );
                        f.log_tail =
                            docker::log_tail(&self.docker, &d.container_id, build::TAIL).await;
                        return Err(f);
                    }
                }
                match self.docker.start_container(&m.container_id, None).await {
                    // Started again: its post_start hooks run again, as compose's start runs them.
                    Ok(()) => {
                        let hooks = hooks::Hooks::of(m).post_start;
                        self.post_start(&m.container_id, &m.service, &hooks).await
                    }
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 304,
                        ..
                    }) => Ok(()),
                    Err(e) => {
                        let mut f = fail(
                            Phase::Start,
                            Some(m.service.as_str()),
                            DockerError::from(e).to_string(),
                        );
                        f.log_tail =
                            docker::log_tail(&self.docker, &m.container_id, build::TAIL).await;
                        Err(f)
                    }
                }
            }))
            .await;
            started.into_iter().collect::<Result<(), _>>()?;
        }
        self.check_live(id, live).await
    }

    /// Waits until every public service of the live generation answers its health check
    /// through the gateway at its live host, while every container stays up.
    async fn check_live(&self, id: &PreviewId, live: &[Member]) -> Result<(), DeployFailure> {
        let addr = health::gateway_addr(&self.config.gateway.bind, self.config.gateway.port);
        let pass = crate::access::gateway_pass(&self.config);
        let domain = &self.config.gateway.domain;
        let all: Vec<String> = live
            .iter()
            .filter(|m| !m.oneshot)
            .map(|m| m.container_id.clone())
            .collect();
        let checks = live
            .iter()
            .filter(|m| m.route.is_some())
            .filter_map(|m| Some((m, m.health.clone()?)))
            .map(|(m, (path, status))| {
                let host = if m.own_host {
                    gateway::service_host(id.as_str(), &m.service, domain)
                } else {
                    gateway::live_host(id.as_str(), domain)
                };
                let (addr, all, docker) = (addr.clone(), all.clone(), self.docker.clone());
                let limit = self.config.limits.health_timeout;
                let pass = pass.as_deref();
                async move {
                    let alive = move || -> crate::engine::BoxFuture<'static, Result<(), String>> {
                        let (docker, all) = (docker.clone(), all.clone());
                        Box::pin(async move { docker::all_running(&docker, &all).await })
                    };
                    let poll = health::WAKE_POLL;
                    health::wait(&addr, &host, &path, status, limit, poll, pass, alive)
                        .await
                        .map_err(|(_, why)| (m, why))
                }
            });
        for r in join_all(checks).await {
            if let Err((m, why)) = r {
                let mut f = fail(Phase::Health, Some(m.service.as_str()), why);
                f.log_tail = docker::log_tail(&self.docker, &m.container_id, build::TAIL).await;
                return Err(f);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_depends_label_reads_back() {
        assert_eq!(
            parse_depends("db:healthy,api:started,seed:completed,old"),
            vec![
                ("db".to_owned(), Condition::Healthy),
                ("api".to_owned(), Condition::Started),
                ("seed".to_owned(), Condition::CompletedSuccessfully),
                ("old".to_owned(), Condition::Started),
            ]
        );
        assert!(parse_depends("").is_empty());
    }
}
