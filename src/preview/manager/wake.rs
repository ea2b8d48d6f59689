//! Waking a sleeping preview: the containers started in the order a deployment starts them,
//! every public service checked through the gateway (previewd's probes pass the wake route),
//! then the sleep mark removed and the routes switched back. The visitor who asked is let go
//! as soon as every public service answers. Each step's time since the wake began is logged
//! at debug level (`PREVIEWD_LOG=previewd=debug`), so where a wake's time goes can be read
//! from `serve`'s log. Nothing here decides *when* a preview wakes (the edge does, on a
//! visit, or the operator) and nothing here talks to a forge.

use std::collections::HashMap;
use std::time::Instant;

use futures_util::future::join_all;

use super::{Manager, fail};
use crate::engine::{DeployFailure, Phase};
use crate::ids::PreviewId;
use crate::preview::docker::labels::{self, Member};
use crate::preview::docker::{self, DockerError, lifecycle, sleep as marks};
use crate::preview::{build, gateway, health};
use crate::spec::{self, runtime::Condition};

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
        tracing::info!(preview = %id, ms = steps.start.elapsed().as_millis() as u64, "awake");
        Ok(true)
    }

    async fn start_and_check(
        &self,
        steps: &Steps<'_>,
        live: &[Member],
    ) -> Result<(), DeployFailure> {
        let id = steps.id;
        let deadline = self.config.limits.health_timeout;
        let all_labels = self
            .container_labels(id)
            .await
            .map_err(|e| fail(Phase::Start, None, e.to_string()))?;
        steps.at("labels", "");
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
                    Ok(())
                    | Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 304,
                        ..
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
                        f.log_tail =
                            docker::log_tail(&self.docker, &m.container_id, build::TAIL).await;
                        Err(f)
                    }
                }
            }))
            .await;
            started.into_iter().collect::<Result<(), _>>()?;
        }
        self.check_live(steps, live).await
    }

    /// Waits until every public service of the live generation answers its health check
    /// through the gateway at its live host, while every container stays up.
    async fn check_live(&self, steps: &Steps<'_>, live: &[Member]) -> Result<(), DeployFailure> {
        let id = steps.id;
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
                    let answer =
                        health::wait(&addr, &host, &path, status, limit, poll, pass, alive)
                            .await
                            .map_err(|(_, why)| (m, why));
                    steps.at("answers", &m.service);
                    answer
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
