//! Doctor's checks of the Docker side: the daemon and its version, the gateway's image and
//! port, Docker's address pools against `max_previews`. Only reads: a port is bound and let go
//! at once, nothing is created.

use bollard::Docker;
use bollard::query_parameters::ListNetworksOptions;

use super::{Finding, Verdict, bad, ok};
use crate::config::Config;
use crate::preview::docker::{self, labels};

/// Bridge networks Docker's default address pools hold (172.17-31.0.0/16 and 192.168.0.0/16
/// cut into /20s) when the daemon's `default-address-pools` is not changed.
const DEFAULT_POOL_NETWORKS: usize = 31;

pub(super) async fn docker_checks(config: &Config) -> Vec<Finding> {
    let docker = match docker::connect().await {
        Ok(d) => d,
        Err(e) => {
            return vec![bad(
                "docker",
                Verdict::Fail,
                format!("cannot reach Docker: {e}"),
                "start Docker (systemctl start docker), or point DOCKER_HOST at it",
            )];
        }
    };
    let mut out = Vec::new();
    match docker.version().await {
        Ok(v) => out.push(ok(
            "docker",
            format!(
                "Docker {} (API {})",
                v.version.unwrap_or_default(),
                v.api_version.unwrap_or_default()
            ),
        )),
        Err(e) => out.push(bad(
            "docker",
            Verdict::Fail,
            format!("Docker does not answer: {e}"),
            "check that the Docker daemon runs and this user may use its socket",
        )),
    }
    let image = &config.gateway.image;
    out.push(match docker.inspect_image(image).await {
        Ok(_) => ok("gateway image", format!("{image} is on this host")),
        Err(_) => bad(
            "gateway image",
            Verdict::Fail,
            format!("{image} is not on this host"),
            format!("docker pull {image} (without a registry: deploy/offline-images)"),
        ),
    });
    out.push(port_check(config, &docker).await);
    out.push(pool_check(config, &docker).await);
    out
}

/// The gateway's port: ours when our gateway holds it, free, or taken by something else.
async fn port_check(config: &Config, docker: &Docker) -> Finding {
    let g = &config.gateway;
    let name = labels::gateway_name(&config.instance);
    let ours = docker
        .inspect_container(&name, None)
        .await
        .ok()
        .and_then(|c| c.state?.running)
        .unwrap_or(false);
    if ours {
        return ok(
            "gateway port",
            format!("{}:{} is this instance's gateway", g.bind, g.port),
        );
    }
    match std::net::TcpListener::bind((g.bind.as_str(), g.port)) {
        Ok(_) => ok("gateway port", format!("{}:{} is free", g.bind, g.port)),
        Err(e) => bad(
            "gateway port",
            Verdict::Fail,
            format!("{}:{} is taken by another program ({e})", g.bind, g.port),
            "set gateway.port (PREVIEWD_GATEWAY_PORT) to a free port, or stop that program",
        ),
    }
}

/// One network per preview generation, two while an update runs: Docker's default pools run
/// out at about 31 networks on the host.
async fn pool_check(config: &Config, docker: &Docker) -> Finding {
    let max = config.limits.max_previews;
    if let Some(pool) = config.network.subnet_pool {
        return ok(
            "address pools",
            format!(
                "network.subnet_pool {}/{} in /{}s for up to {max} previews",
                pool.base, pool.prefix, pool.size
            ),
        );
    }
    let existing = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .map(|n| {
            n.iter()
                .filter(|n| n.driver.as_deref() == Some("bridge"))
                .count()
        })
        .unwrap_or(0);
    let wanted = 2 * max;
    if existing + wanted > DEFAULT_POOL_NETWORKS {
        bad(
            "address pools",
            Verdict::Warn,
            format!(
                "{existing} bridge networks exist and {max} previews may need {wanted} more; \
                 Docker's default pools hold about {DEFAULT_POOL_NETWORKS}"
            ),
            "set network.subnet_pool = \"10.210.0.0/16\" (a range no other network of yours uses)",
        )
    } else {
        ok(
            "address pools",
            format!(
                "{existing} bridge networks + {wanted} for {max} previews fit Docker's default pools"
            ),
        )
    }
}
