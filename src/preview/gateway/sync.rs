//! Route sync: the route table recomputed from the containers' labels, the gateway joined to
//! every network it must reach before the table names a container there, and left again; and
//! draining a retiring generation's requests through the admin API's counts. A preview's change
//! only ever rewrites the table: nothing here reloads Caddy for it or starts the gateway when
//! there is nothing to route.

use std::collections::BTreeSet;
use std::time::Duration;

use bollard::models::{NetworkConnectRequest, NetworkDisconnectRequest};
use bollard::query_parameters::InspectContainerOptions;
use serde_json::Value;

use super::admin::{admin_socket, load_if_changed, one_change, routes_dir, write_config_file};
use super::caddy::caddy_config;
use super::routes;
use super::{Gateway, GatewayError};
use crate::config::Config;
use crate::preview::docker::labels::{self, Observed};
use crate::preview::docker::{self, DockerError};
use crate::preview::http_client as http;

/// The networks the gateway must have joined to reach every routed container: each routed
/// service's networks (a compose project's backend network, say, is not among them).
pub fn routed_networks(config: &Config, previews: &[Observed]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in previews {
        let live = p.live().unwrap_or(0);
        for (_, members) in p.generations.iter().filter(|(g, _)| **g >= live) {
            for m in members.iter().filter(|m| m.route.is_some()) {
                out.extend(m.network_names(&config.instance));
            }
        }
    }
    out
}

impl Gateway {
    /// Recomputes the route table from Docker, makes sure the gateway runs (with the current
    /// config) and has joined every routed network, then writes the table. Starts the gateway on
    /// first need.
    pub async fn sync(&self) -> Result<(), GatewayError> {
        let Gateway { docker, config, .. } = self;
        // One change at a time: two syncs computing their tables in one order and writing them in
        // the other would put older routes back.
        let _one = one_change(config).await?;
        let name = labels::gateway_name(&config.instance);
        // The three reads are independent: side by side, a sync waits for the slowest of
        // them, not for their sum (the listing of every container dominates at N previews).
        let (members, marks, inspected) = tokio::join!(
            docker::placed::members(docker, config),
            docker::sleep::marks(docker, &config.instance),
            docker.inspect_container(&name, None::<InspectContainerOptions>),
        );
        let mut previews = labels::group(members?);
        docker::sleep::attach(&mut previews, &marks?);
        let cfg = caddy_config(config);
        write_config_file(config, &cfg)?;
        let table_dir = routes_dir(config);
        let table = routes::mark_asleep(routes::table(config, &previews), &previews);
        let table = routes::mark_protected(table, &previews);
        let dir_err = |source| GatewayError::Dir {
            path: table_dir.clone(),
            source,
        };
        // The gateway comes with the first route: a pass that finds nothing to route (a reconcile
        // while the first deployment is still building) must not start it.
        if table.is_empty()
            && let Err(e) = &inspected
            && docker::is_not_found(e)
        {
            return routes::write(&table_dir, &table).map_err(dir_err);
        }
        let (joined, running) = self.ensure_running(inspected).await?;
        let wanted = routed_networks(config, &previews);
        for net in wanted.difference(&joined) {
            self.connect(net).await?;
        }
        routes::write(&table_dir, &table).map_err(dir_err)?;
        load_if_changed(config, &cfg, running).await?;
        // Leave only networks no container of ours is on any more. A retiring generation's network
        // stays joined until it is removed: requests already sent to it must be able to finish.
        let present: BTreeSet<String> = previews
            .iter()
            .flat_map(|p| p.generations.values().flatten())
            .flat_map(|m| m.network_names(&config.instance))
            .collect();
        let ours = labels::network_prefix(&config.instance);
        let ahead = {
            let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
            ahead.retain(|n| !present.contains(n));
            ahead.clone()
        };
        for net in joined.difference(&present) {
            if net.starts_with(&ours) && !ahead.contains(net) {
                self.leave(net).await;
            }
        }
        Ok(())
    }

    /// Waits until the gateway has no request in flight to any upstream whose address starts with
    /// one of `prefixes` (a retiring generation's), at least `min` (a request accepted just before
    /// the switch may not be counted yet) and at most `max`. Caddy reports in-flight requests per
    /// upstream on its admin API, so this is exact where a fixed pause is a guess.
    pub async fn drain(&self, prefixes: &[String], min: Duration, max: Duration) {
        let start = tokio::time::Instant::now();
        tokio::time::sleep(min).await;
        while start.elapsed() < max {
            let busy = match http::unix(
                &admin_socket(&self.config),
                "GET",
                "/reverse_proxy/upstreams",
                None,
                Duration::from_secs(5),
            )
            .await
            {
                Ok(r) if r.status == 200 => serde_json::from_slice::<Vec<Value>>(&r.body)
                    .map(|ups| {
                        ups.iter().any(|u| {
                            let addr = u["address"].as_str().unwrap_or("");
                            let n = u["num_requests"].as_u64().unwrap_or(0);
                            n > 0 && prefixes.iter().any(|p| addr.starts_with(p.as_str()))
                        })
                    })
                    .unwrap_or(false),
                // No answer: nothing better to go on than the time already waited.
                _ => false,
            };
            if !busy {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The previews with a request in flight at the gateway now (an open WebSocket is one),
    /// from the admin API's per-upstream counts: an upstream's address starts with its
    /// preview's id ([`labels::upstream_alias`]). None when the gateway does not answer.
    pub async fn in_flight(&self) -> std::collections::HashSet<crate::ids::PreviewId> {
        let answer = http::unix(
            &admin_socket(&self.config),
            "GET",
            "/reverse_proxy/upstreams",
            None,
            Duration::from_secs(5),
        )
        .await;
        let Ok(r) = answer.map_err(|e| tracing::debug!(error = %e, "no upstream counts")) else {
            return Default::default();
        };
        serde_json::from_slice::<Vec<Value>>(&r.body)
            .unwrap_or_default()
            .iter()
            .filter(|u| u["num_requests"].as_u64().unwrap_or(0) > 0)
            .filter_map(|u| {
                let addr = u["address"].as_str()?;
                crate::ids::PreviewId::parse(addr.get(..crate::ids::PREVIEW_ID_LEN)?).ok()
            })
            .collect()
    }

    /// Joins the gateway to a new generation's `networks` ahead of its first route, while the
    /// generation's containers are made and started: the join is Docker's slowest step of a
    /// route (~150 ms at 200 previews on a loaded host), and [`Gateway::sync`] then finds the
    /// networks joined. Best effort: without a gateway yet (the first preview) or on any
    /// error, the sync joins them, or reports why it cannot. Takes no lock: joining twice is
    /// harmless. Until a container is on them, this process's syncs do not leave them (another
    /// process's may: the next sync joins them again).
    pub async fn join(&self, networks: &[String]) {
        let container = labels::gateway_name(&self.config.instance);
        for net in networks {
            let req = NetworkConnectRequest {
                container: container.clone(),
                ..Default::default()
            };
            // Marked first: a sync between the connect and the mark would leave it again.
            self.ahead
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(net.clone());
            match self.docker.connect_network(net, req).await {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 403, ..
                }) => {}
                Err(e) => {
                    tracing::debug!(network = %net, error = %e, "not joined ahead: the route sync joins it");
                    let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
                    for n in networks {
                        ahead.remove(n);
                    }
                    return;
                }
            }
        }
    }

    /// Connects the gateway to `net`; already connected is success, and so is a network gone
    /// (a leftover of a crash between steps must not keep every other preview from being
    /// routed; reconcile removes the leftover itself).
    async fn connect(&self, net: &str) -> Result<(), GatewayError> {
        let req = NetworkConnectRequest {
            container: labels::gateway_name(&self.config.instance),
            ..Default::default()
        };
        match self.docker.connect_network(net, req).await {
            Ok(()) => Ok(()),
            // Already connected (a race with another process) is fine.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 403, ..
            }) => Ok(()),
            Err(e) if docker::is_not_found(&e) => {
                tracing::warn!(network = %net, "not routing a generation whose network is gone");
                Ok(())
            }
            Err(e) => Err(DockerError::from(e).into()),
        }
    }

    /// Disconnects the gateway from a network so the network can be removed.
    pub async fn leave(&self, network: &str) {
        self.ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(network);
        let req = NetworkDisconnectRequest {
            container: labels::gateway_name(&self.config.instance),
            force: Some(true),
        };
        let _ = self.docker.disconnect_network(network, req).await;
    }
}
