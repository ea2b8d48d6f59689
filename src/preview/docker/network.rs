//! Preview networks and their subnets.
//!
//! With `network.subnet_pool` previewd picks each network's subnet itself, because Docker's
//! default pools hold only ~31 bridge networks and previewd uses one per generation.
//! Nothing here connects a container to a network or makes a network that two previews share:
//! one network per preview generation is what keeps previews from reaching each other.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::Docker;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};

use super::DockerError;
use crate::config::{Config, SubnetPool};

/// Creation is serialized in this process so two deployments never pick the same subnet;
/// another process doing the same is caught by Docker's overlap check and retried.
static CREATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Attempts when another process takes the subnet we picked between listing and creating.
const OVERLAP_RETRIES: usize = 8;

/// Creates a generation's network, with a subnet from `network.subnet_pool` when one is set.
pub async fn create_preview_network(
    docker: &Docker,
    config: &Config,
    name: &str,
    labels: HashMap<String, String>,
) -> Result<(), DockerError> {
    create_network(docker, config, name, labels, false).await
}

/// Creates one network of a generation (its default one, or a compose project network);
/// `internal`: Docker's, no route out.
pub async fn create_network(
    docker: &Docker,
    config: &Config,
    name: &str,
    labels: HashMap<String, String>,
    internal: bool,
) -> Result<(), DockerError> {
    let swarm = config.cluster.engine == crate::config::Engine::Swarm;
    // On a swarm: an overlay that spans the nodes, attachable so that the gateway (a container
    // on the manager) joins it as it joins a bridge on one host.
    let request = |subnet: Option<String>| NetworkCreateRequest {
        name: name.to_owned(),
        driver: Some(if swarm { "overlay" } else { "bridge" }.to_owned()),
        attachable: swarm.then_some(true),
        internal: internal.then_some(true),
        labels: Some(labels.clone()),
        ipam: subnet.map(|s| Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(s),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    // A swarm allocates overlay subnets from its own pool (`docker swarm init
    // --default-addr-pool`); the host's bridge pool says nothing about other nodes.
    let Some(pool) = config.network.subnet_pool.filter(|_| !swarm) else {
        docker.create_network(request(None)).await?;
        return Ok(());
    };
    let _one = CREATE.lock().await;
    let mut taken = used_subnets(docker).await?;
    for _ in 0..OVERLAP_RETRIES {
        let subnet = free_subnet(pool, &taken).ok_or_else(|| {
            DockerError::Api(format!(
                "network.subnet_pool {}/{} has no free /{} left; remove previews or widen the pool",
                pool.base, pool.prefix, pool.size
            ))
        })?;
        match docker.create_network(request(Some(cidr(subnet)))).await {
            Ok(_) => return Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                if message.contains("overlap") =>
            {
                taken.push(subnet);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(DockerError::Api(format!(
        "no free subnet in network.subnet_pool {}/{} after {OVERLAP_RETRIES} tries",
        pool.base, pool.prefix
    )))
}

/// Every IPv4 subnet any Docker network on this host uses, previewd's or not.
async fn used_subnets(docker: &Docker) -> Result<Vec<(u32, u8)>, DockerError> {
    let nets = docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await?;
    Ok(nets
        .iter()
        .filter_map(|n| n.ipam.as_ref()?.config.as_ref())
        .flatten()
        .filter_map(|c| parse_cidr(c.subnet.as_deref()?))
        .collect())
}

fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((u32::from(addr), len))
}

fn cidr((addr, len): (u32, u8)) -> String {
    format!("{}/{len}", Ipv4Addr::from(addr))
}

fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let m = mask(a.1.min(b.1));
    a.0 & m == b.0 & m
}

/// The first `pool.size` subnet of the pool that overlaps nothing in `taken`.
pub fn free_subnet(pool: SubnetPool, taken: &[(u32, u8)]) -> Option<(u32, u8)> {
    let base = u32::from(pool.base);
    let count = 1u64 << (pool.size - pool.prefix);
    let step = 1u64 << (32 - pool.size);
    (0..count)
        .map(|i| ((u64::from(base) + i * step) as u32, pool.size))
        .find(|cand| !taken.iter().any(|t| overlaps(*cand, *t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(s: &str, size: u8) -> SubnetPool {
        let (a, p) = s.split_once('/').unwrap();
        SubnetPool {
            base: a.parse().unwrap(),
            prefix: p.parse().unwrap(),
            size,
        }
    }

    #[test]
    fn picks_the_first_subnet_nothing_overlaps() {
        let p = pool("10.213.0.0/16", 24);
        assert_eq!(
            free_subnet(p, &[]).map(cidr).as_deref(),
            Some("10.213.0.0/24")
        );
        let taken = [
            parse_cidr("10.213.0.0/24").unwrap(),
            parse_cidr("10.213.1.128/25").unwrap(),
            parse_cidr("172.17.0.0/16").unwrap(),
        ];
        assert_eq!(
            free_subnet(p, &taken).map(cidr).as_deref(),
            Some("10.213.2.0/24")
        );
    }

    #[test]
    fn a_wider_network_covering_the_pool_leaves_nothing() {
        let p = pool("10.213.0.0/16", 24);
        assert_eq!(free_subnet(p, &[parse_cidr("10.0.0.0/8").unwrap()]), None);
        let full: Vec<_> = (0..256u32)
            .map(|i| (u32::from(Ipv4Addr::new(10, 213, i as u8, 0)), 24))
            .collect();
        assert_eq!(free_subnet(p, &full), None);
    }

    #[test]
    fn cidrs_that_are_not_ipv4_are_ignored() {
        assert_eq!(parse_cidr("fd00::/64"), None);
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("nonsense"), None);
    }
}
