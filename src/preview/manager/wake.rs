//! Waking a sleeping preview: each container started as soon as what it depends on has (the
//! order a deployment starts them in, without waiting for whole levels), each public service
//! checked through the gateway from the moment its own container has started (previewd's
//! probes pass the wake route), then the sleep mark removed and the routes switched back. The
//! visitor who asked is let go as soon as every public service answers. Docker is read once,
//! at the start. Each step's time since the wake began is logged at debug level
//! (`PREVIEWD_LOG=previewd=debug`), so where a wake's time goes can be read from `serve`'s
//! log. Nothing here decides *when* a preview wakes (the edge does, on a visit, or the
//! operator) and nothing here talks to a forge.

use std::collections::HashMap;
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::{Shared, try_join_all};

use super::{Manager, fail};
use crate::engine::{BoxFuture, DeployFailure, Phase};
use crate::ids::PreviewId;
use crate::preview::docker::labels::Member;
use crate::preview::docker::{self, DockerError, hooks, lifecycle, sleep as marks};
use crate::preview::{build, gateway, health};
use crate::spec::{self, runtime::Condition};

/// The [`DEPENDS`](crate::preview::docker::labels::DEPENDS) value of `svc`: what it waits for and how, in the order a
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

/// Parses a [`DEPENDS`](crate::preview::docker::labels::DEPENDS) value back: each dependency with its condition.
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

/// A wake's timeline: each step logged with the milliseconds since the wake began.
struct Steps<'a> {
    id: &'a PreviewId,
    start: Instant,
}

impl Steps<'_> {
    fn at(&self, step: &str, service: &str) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(preview = %self.id, step, service, ms, "wake step");
    }
}

/// A container's start, awaited by the containers that depend on it and by its own health
/// probes: each waits for the one start, which runs once.
type Start<'a> = Shared<BoxFuture<'a, Result<(), DeployFailure>>>;

impl Manager {
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
        let steps = Steps {
            id,
            start: Instant::now(),
        };
        let start_fail = |e: String| fail(Phase::Start, None, e);
        let p = self.get(id).await.map_err(|e| start_fail(e.to_string()))?;
        steps.at("read", "");
        if p.asleep.is_none() {
            return Ok(false);
        }
        let live: Vec<Member> = p.live_members().to_vec();
        let result = self.start_and_check(&steps, &live).await;
        if let (Ok(()), Some(tx)) = (&result, answering) {
            let _ = tx.send(());
            steps.at("released", "");
        }
        let inst = &self.config.instance;
        // Awake or failed, it no longer sleeps: a failure is then shown as one.
        marks::unmark(&self.docker, inst, id)
            .await
            .map_err(|e| start_fail(e.to_string()))?;
        steps.at("unmarked", "");
        self.gateway
            .sync()
            .await
            .map_err(|e| fail(Phase::Route, None, e.to_string()))?;
        steps.at("routed", "");
        result?;
        let ms = u64::try_from(steps.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(preview = %id, ms, "awake");
        Ok(true)
    }

    /// Starts the containers of `live` and waits until every public service answers through
    /// the gateway. Each container starts as soon as what it depends on has started (or is
    /// healthy, as its condition says), not when a whole start level has: what waits for
    /// nothing starts at once, side by side. Each public service's probes begin as soon as its
    /// own container has started, beside the other starts. The first failure ends the wake.
    async fn start_and_check(
        &self,
        steps: &Steps<'_>,
        live: &[Member],
    ) -> Result<(), DeployFailure> {
        // What each waits for, from its label: Docker was read once, by the caller.
        let depends: HashMap<String, Vec<(String, Condition)>> = live
            .iter()
            .map(|m| {
                let deps = m.depends.as_deref().map(parse_depends).unwrap_or_default();
                (m.service.clone(), deps)
            })
            .collect();
        let by_service: HashMap<&str, &Member> =
            live.iter().map(|m| (m.service.as_str(), m)).collect();
        // In start-level order, so that what a container waits for has its start made first
        // (in a cycle, which compose refuses, the rest start side by side, as a deployment's).
        let mut starts: HashMap<&str, Start<'_>> = HashMap::new();
        for m in levels(live, &depends).into_iter().flatten() {
            let deps: Vec<(&Member, Condition, Start<'_>)> = depends[&m.service]
                .iter()
                .filter_map(|(d, how)| {
                    Some((
                        *by_service.get(d.as_str())?,
                        *how,
                        starts.get(d.as_str())?.clone(),
                    ))
                })
                .collect();
            let start: BoxFuture<'_, _> = Box::pin(self.start_one(steps, m, deps));
            starts.insert(m.service.as_str(), start.shared());
        }
        let checks = live
            .iter()
            .filter(|m| m.route.is_some())
            .filter_map(|m| Some((m, m.health.clone()?)))
            .map(|(m, health)| {
                let own = starts[m.service.as_str()].clone();
                let watched = watched(m, &by_service, &depends);
                let check: BoxFuture<'_, _> = Box::pin(async move {
                    own.await?;
                    self.check_one(steps, m, health, watched).await
                });
                check
            });
        let all: Vec<BoxFuture<'_, Result<(), DeployFailure>>> = starts
            .values()
            .map(|s| -> BoxFuture<'_, _> { Box::pin(s.clone()) })
            .chain(checks)
            .collect();
        try_join_all(all).await.map(|_| ())
    }

    /// Starts `m` once what it depends on (`deps`, with their starts) is as its condition
    /// says: started, or healthy by Docker's health check.
    async fn start_one(
        &self,
        steps: &Steps<'_>,
        m: &Member,
        deps: Vec<(&Member, Condition, Start<'_>)>,
    ) -> Result<(), DeployFailure> {
        // A job others waited for ran to its end at the deployment; it is not re-run.
        if m.oneshot {
            return Ok(());
        }
        let deadline = self.config.limits.health_timeout;
        for (d, how, started) in deps {
            started.await?;
            if how == Condition::Healthy
                && let lifecycle::Reached::No(why) =
                    lifecycle::wait_healthy(&self.docker, &d.container_id, deadline).await
            {
                let dep = d.service.as_str();
                let mut f = fail(
                    Phase::Start,
                    Some(dep),
                    format!("{} waits for {dep} to be healthy, but it {why}", m.service),
                );
                f.log_tail = docker::log_tail(&self.docker, &d.container_id, build::TAIL).await;
                return Err(f);
            }
        }
        match self.docker.start_container(&m.container_id, None).await {
            // Started again: its post_start hooks run again, as compose's start runs them.
            Ok(()) => {
                let hooks = hooks::Hooks::of(m).post_start;
                self.post_start(&m.container_id, &m.service, &hooks).await?;
                steps.at("started", &m.service);
                Ok(())
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {
                steps.at("started", &m.service);
                Ok(())
            }
            Err(e) => {
                let mut f = fail(
                    Phase::Start,
                    Some(m.service.as_str()),
                    DockerError::from(e).to_string(),
                );
                f.log_tail = docker::log_tail(&self.docker, &m.container_id, build::TAIL).await;
                Err(f)
            }
        }
    }

    /// Waits until the public service `m` answers its health check through the gateway at
    /// its live host, while the `watched` containers (its own and what it depends on, all
    /// started before it) stay up.
    async fn check_one(
        &self,
        steps: &Steps<'_>,
        m: &Member,
        (path, status): (String, u16),
        watched: Vec<String>,
    ) -> Result<(), DeployFailure> {
        let id = steps.id.as_str();
        let domain = &self.config.gateway.domain;
        let host = if m.own_host {
            gateway::service_host(id, &m.service, domain)
        } else {
            gateway::live_host(id, domain)
        };
        let addr = health::gateway_addr(&self.config.gateway.bind, self.config.gateway.port);
        let pass = crate::access::gateway_pass(&self.config);
        let docker = self.docker.clone();
        let alive = move || -> BoxFuture<'static, Result<(), String>> {
            let (docker, watched) = (docker.clone(), watched.clone());
            Box::pin(async move { docker::all_running(&docker, &watched).await })
        };
        let limit = self.config.limits.health_timeout;
        let poll = health::WAKE_POLL;
        let answer = health::wait(
            &addr,
            &host,
            &path,
            status,
            limit,
            poll,
            pass.as_deref(),
            alive,
        )
        .await;
        steps.at("checked", &m.service);
        if let Err((_, why)) = answer {
            let mut f = fail(Phase::Health, Some(m.service.as_str()), why);
            f.log_tail = docker::log_tail(&self.docker, &m.container_id, build::TAIL).await;
            return Err(f);
        }
        Ok(())
    }
}

/// The containers a probe of `m` watches: its own and, through its dependencies, every one it
/// needs (jobs that ran to their end excepted), all started before its probes begin.
fn watched(
    m: &Member,
    by_service: &HashMap<&str, &Member>,
    depends: &HashMap<String, Vec<(String, Condition)>>,
) -> Vec<String> {
    let mut seen: Vec<&str> = vec![m.service.as_str()];
    let mut i = 0;
    while let Some(s) = seen.get(i).copied() {
        for (d, _) in depends.get(s).into_iter().flatten() {
            if by_service.contains_key(d.as_str()) && !seen.contains(&d.as_str()) {
                seen.push(d.as_str());
            }
        }
        i += 1;
    }
    seen.iter()
        .filter_map(|s| by_service.get(s))
        .filter(|m| !m.oneshot)
        .map(|m| m.container_id.clone())
        .collect()
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
