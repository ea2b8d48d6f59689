//! Reading previews back: by key or id, and their state for `ls`/`status`/`--json`.

use std::collections::HashMap;

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;

use super::{Manager, ManagerError};
use crate::engine::{BoxFuture, PreviewKey, PreviewState, PreviewStatus, ServiceHealth};
use crate::ids::{CommitSha, PreviewId};
use crate::preview::docker::DockerError;
use crate::preview::docker::labels::Observed;
use crate::preview::gateway;
use crate::preview::health::{self, Probe};

/// Previews probed at once for the status page (each probes its services side by side): a
/// page of 20 previews with dead services waits at most 3 probe timeouts.
const PAGE_PROBES: usize = 8;

impl Manager {
    /// The preview for a key, if there is one.
    pub async fn find(&self, key: &PreviewKey) -> Result<Option<Observed>, DockerError> {
        Ok(self
            .observed()
            .await?
            .into_iter()
            .find(|p| p.any().is_some_and(|m| m.is_for(key))))
    }

    pub async fn get(&self, id: &PreviewId) -> Result<Observed, ManagerError> {
        self.observed()
            .await?
            .into_iter()
            .find(|p| &p.id == id)
            .ok_or_else(|| ManagerError::NotFound(id.to_string()))
    }

    /// A preview's state from its labels alone (no health probes): what `ls` shows.
    pub fn state(&self, p: &Observed, probes: &HashMap<String, Probe>) -> PreviewState {
        let live = p.live_members();
        let members = if live.is_empty() {
            p.generations
                .values()
                .next_back()
                .map(Vec::as_slice)
                .unwrap_or(&[])
        } else {
            live
        };
        let url = self.config.preview_url(&p.id);
        let status = if live.is_empty() {
            PreviewStatus::Building
        } else if p.asleep.is_some() {
            PreviewStatus::Sleeping
        } else if live
            .iter()
            .all(|m| m.state == "running" || (m.oneshot && m.state == "exited"))
        {
            PreviewStatus::Running
        } else {
            PreviewStatus::Failed
        };
        let first = p.any();
        // The tightest label of the generation shown (all its members carry the same).
        let access = members.iter().filter_map(|m| m.access).max();
        let services = members
            .iter()
            .map(|m| {
                let probe = probes.get(&m.service);
                let expected = m.health.as_ref().map_or(200, |h| h.1);
                ServiceHealth {
                    name: m.service.clone(),
                    route: m.route.clone(),
                    url: m.route.as_ref().map(|r| {
                        let base = if m.own_host {
                            gateway::service_url(&url, p.id.as_str(), &m.service)
                        } else {
                            url.clone()
                        };
                        format!("{base}{}", r.trim_end_matches('/'))
                    }),
                    state: m.state.clone(),
                    healthy: match probe {
                        Some(pr) => pr.ok(expected),
                        None => m.state == "running",
                    },
                    status: probe.and_then(|pr| pr.status),
                    latency_ms: probe.map(|pr| pr.latency.as_millis() as u64),
                }
            })
            .collect();
        PreviewState {
            id: p.id.clone(),
            url,
            key: PreviewKey {
                forge: first.map(|m| m.forge.clone()).unwrap_or_default(),
                repo: first.map(|m| m.repo.clone()).unwrap_or_default(),
                branch: first.map(|m| m.branch.clone()).unwrap_or_default(),
            },
            sha: first
                .and_then(|m| m.sha.as_deref())
                .and_then(|s| CommitSha::parse(s).ok()),
            pr: first.and_then(|m| m.pr),
            status,
            created: live.first().map(|m| m.created.clone()),
            services,
            egress: members.first().and_then(|m| m.egress),
            asleep: p.asleep.clone(),
            visited: self.last_visit(&p.id).map(crate::clock::rfc3339),
            ready_in: p.ready_in,
            access,
            password: crate::access::password_of(&self.config, &p.id, access),
        }
    }

    /// Every preview, each with its public services probed (`probe_timeout` each), a few
    /// previews at a time: what the status page shows.
    pub async fn states_with_health(
        &self,
        probe_timeout: Duration,
    ) -> Result<Vec<PreviewState>, DockerError> {
        let observed = self.observed().await?;
        // Boxed before the stream: a stream of these futures trips the compiler's check that
        // the caller's future is `Send` (rust-lang/rust#102211).
        let jobs: Vec<BoxFuture<'_, PreviewState>> = observed
            .iter()
            .map(|p| Box::pin(self.state_probed(p, probe_timeout)) as BoxFuture<'_, PreviewState>)
            .collect();
        Ok(futures_util::stream::iter(jobs)
            .buffered(PAGE_PROBES)
            .collect()
            .await)
    }

    /// The state with one health probe per public service through the gateway.
    pub async fn state_with_health(&self, p: &Observed) -> PreviewState {
        self.state_probed(p, health::PROBE_TIMEOUT).await
    }

    async fn state_probed(&self, p: &Observed, probe_timeout: Duration) -> PreviewState {
        let addr = health::gateway_addr(&self.config.gateway.bind, self.config.gateway.port);
        let host = gateway::live_host(p.id.as_str(), &self.config.gateway.domain);
        // A sleeping preview is not probed: a probe would find it stopped (and is no visit).
        let pass = crate::access::gateway_pass(&self.config);
        let pass = pass.as_deref();
        let jobs: Vec<_> = p
            .live_members()
            .iter()
            .filter(|m| p.asleep.is_none() && m.route.is_some() && m.health.is_some())
            .map(|m| {
                let addr = addr.clone();
                let host = if m.own_host {
                    gateway::service_host(p.id.as_str(), &m.service, &self.config.gateway.domain)
                } else {
                    host.clone()
                };
                async move {
                    let path = m.health.as_ref().map_or("/", |h| h.0.as_str());
                    (
                        m.service.clone(),
                        health::probe_within(&addr, &host, path, pass, probe_timeout).await,
                    )
                }
            })
            .collect();
        let probes = join_all(jobs).await.into_iter().collect();
        let mut state = self.state(p, &probes);
        if state.status == PreviewStatus::Running && state.services.iter().any(|s| !s.healthy) {
            state.status = PreviewStatus::Failed;
        }
        state
    }
}
