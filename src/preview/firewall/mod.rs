//! The egress policy in the host's kernel: what a preview's containers may reach. The rules are
//! a pure function of the instance's preview networks as Docker lists them (each network's
//! `dev.previewd.egress` label says its mode), the operator's allow-list and the host's name
//! servers; [`sync`] rewrites them whole, so a restart of previewd, of Docker or of the host
//! gets them back from the labels, and the last network gone takes every chain and jump with
//! it. Only this instance's chains and the jumps into them are ever written or removed: never
//! another instance's, Docker's own, or the host's.
//!
//! iptables rather than a crate: Docker 20.10 itself programs iptables and offers
//! `DOCKER-USER` as the place for an operator's rules (previewd also hooks `FORWARD` itself:
//! see `rules::hooks`), and `iptables-restore` replaces chains and moves jumps in one atomic
//! step. The Rust iptables and nftables crates run the same binaries.

mod rules;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;

use bollard::Docker;
use bollard::query_parameters::ListNetworksOptions;
use tokio::io::AsyncWriteExt;

use crate::config::Config;
use crate::preview::docker::{self, DockerError, labels, lockfile};
pub use rules::{Chains, Family, Net};

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(
        "cannot run {command} ({source}); limits.egress = \"none\" or \"public\" needs iptables and root, or set limits.egress = \"all\""
    )]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} refused the egress rules: {stderr}")]
    Refused { command: String, stderr: String },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Docker's option naming a bridge network's Linux bridge.
const BRIDGE_NAME: &str = "com.docker.network.bridge.name";

/// Brings the kernel's rules in line with the instance's preview networks. Called after a
/// deployment creates its networks (before any of its containers starts), after every removal,
/// and by each reconcile pass (at `serve`'s start too). Serialized across the instance's
/// processes by a `flock`, so a listing never overwrites a newer one's rules.
pub async fn sync(docker: &Docker, config: &Config) -> Result<(), FirewallError> {
    let _one = lock(config).await?;
    let nets = preview_nets(docker, config).await?;
    let chains = Chains::new(config.instance.as_str());
    let nameservers = nameservers();
    for family in Family::BOTH {
        if !rules::filtered(&nets) {
            // Also where iptables is missing: `all` needs none.
            remove(family, &chains).await;
            continue;
        }
        // Read under the lock: only this instance's processes move its jumps.
        let listing = run(family.iptables(), &["-w", "5", "-S"]).await?;
        let inputs = rules::Inputs {
            allow: &config.limits.egress.allow,
            nameservers: &nameservers,
            listing: &listing,
        };
        let text = rules::restore_input(family, &chains, &nets, inputs);
        run_input(
            family.restore(),
            &["--noflush", "-w", "5"],
            Some(text.as_bytes()),
        )
        .await?;
    }
    Ok(())
}

/// Removes every chain and jump of `instance`, whatever its networks: for a cleanup that
/// cannot ask Docker (a test's guard after a failure).
pub async fn clear(instance: &str) {
    let chains = Chains::new(instance);
    for family in Family::BOTH {
        remove(family, &chains).await;
    }
}

/// The instance's rules as `iptables -S` prints them (both families), for tests and operators
/// who want to see what is in force. Empty when there are none.
pub async fn installed(instance: &str) -> Vec<String> {
    let chains = Chains::new(instance);
    let mut out = Vec::new();
    for family in Family::BOTH {
        if let Ok(text) = run(family.iptables(), &["-w", "5", "-S"]).await {
            out.extend(
                text.lines()
                    .filter(|l| l.contains(chains.prefix()))
                    .map(|l| format!("{} {l}", family.iptables())),
            );
        }
    }
    out
}

/// Every network of the instance with its bridge and its mode. A network without the label
/// (made before previewd filtered egress) gets the operator's mode.
async fn preview_nets(docker: &Docker, config: &Config) -> Result<Vec<Net>, DockerError> {
    let opts = ListNetworksOptions {
        filters: Some(docker::instance_filter(&config.instance)),
    };
    let mut nets = Vec::new();
    for n in docker.list_networks(Some(opts)).await? {
        let labels = n.labels.unwrap_or_default();
        if !labels.contains_key(labels::PREVIEW) {
            continue;
        }
        let Some(bridge) = bridge_of(n.id.as_deref().unwrap_or(""), n.options.as_ref()) else {
            tracing::warn!(network = ?n.name, "a preview network without a bridge name previewd can filter");
            continue;
        };
        let mode = labels
            .get(labels::EGRESS)
            .and_then(|m| m.parse().ok())
            .unwrap_or(config.limits.egress.mode);
        nets.push(Net { bridge, mode });
    }
    nets.sort_by(|a, b| a.bridge.cmp(&b.bridge));
    Ok(nets)
}

/// The Linux bridge of a bridge network: the one its options name, else Docker's
/// `br-<first 12 digits of the id>`. `None` for anything that is not a plain interface name
/// (it goes into a rule).
fn bridge_of(id: &str, options: Option<&HashMap<String, String>>) -> Option<String> {
    let name = match options.and_then(|o| o.get(BRIDGE_NAME)) {
        Some(n) => n.clone(),
        None => format!("br-{}", id.get(..12)?),
    };
    let plain = (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    plain.then_some(name)
}

/// The resolvers Docker's embedded DNS forwards to: the host's `/etc/resolv.conf`, or
/// systemd-resolved's upstream list when that names only the local stub (as Docker does).
fn nameservers() -> Vec<IpAddr> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|t| parse_nameservers(&t))
            .unwrap_or_default()
    };
    let main = read("/etc/resolv.conf");
    if !main.is_empty() && main.iter().all(IpAddr::is_loopback) {
        return read("/run/systemd/resolve/resolv.conf");
    }
    main
}

fn parse_nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse().ok())
        .collect()
}

async fn lock(config: &Config) -> Result<std::fs::File, FirewallError> {
    let path = config.instance_dir().join("firewall.lock");
    let p = path.clone();
    tokio::task::spawn_blocking(move || {
        let file = lockfile::open(&p)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    .map_err(|source| FirewallError::Lock { path, source })
}

/// Removes the instance's jumps and chains of `family`; what is not there is not an error
/// (nor is a host without the binary: then there is nothing to remove).
async fn remove(family: Family, chains: &Chains) {
    let ipt = family.iptables();
    // One listing first: the usual case (nothing of ours installed) costs one command.
    match run(ipt, &["-w", "5", "-S"]).await {
        Ok(all) if all.contains(chains.prefix()) => {}
        _ => return,
    }
    for hook in ["DOCKER-USER", "FORWARD", "INPUT"] {
        for chain in [chains.forward(), chains.input()] {
            // A jump inserted twice (two processes racing before the lock existed) goes too.
            for _ in 0..8 {
                if run(ipt, &["-w", "5", "-D", hook, "-j", chain.as_str()])
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    for op in ["-F", "-X"] {
        for chain in chains.all() {
            let _ = run(ipt, &["-w", "5", op, chain.as_str()]).await;
        }
    }
}

/// Runs `program args`, its stdout on success, its stderr as the error.
async fn run(program: &str, args: &[&str]) -> Result<String, FirewallError> {
    run_input(program, args, None).await
}

/// [`run`] with `input` on the program's stdin.
async fn run_input(
    program: &str,
    args: &[&str],
    input: Option<&[u8]>,
) -> Result<String, FirewallError> {
    let spawn_failed = |source| FirewallError::Spawn {
        command: program.to_owned(),
        source,
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_failed)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // Dropped at the end of this block: the program sees the end of its input.
        stdin.write_all(text).await.map_err(spawn_failed)?;
    }
    let out = child.wait_with_output().await.map_err(spawn_failed)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(FirewallError::Refused {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridges_come_from_the_option_or_the_id_and_must_be_plain_names() {
        let id = "0123456789abcdef0123";
        assert_eq!(bridge_of(id, None).as_deref(), Some("br-0123456789ab"));
        let named = HashMap::from([(BRIDGE_NAME.to_owned(), "pv0".to_owned())]);
        assert_eq!(bridge_of(id, Some(&named)).as_deref(), Some("pv0"));
        let hostile = HashMap::from([(BRIDGE_NAME.to_owned(), "x -j ACCEPT".to_owned())]);
        assert_eq!(bridge_of(id, Some(&hostile)), None);
        assert_eq!(bridge_of("short", None), None);
    }

    #[test]
    fn name_servers_are_read_from_resolv_conf() {
        let text = "# generated\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nsearch x\nnameserver bogus\n";
        assert_eq!(
            parse_nameservers(text),
            vec![
                "10.255.255.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
    }
}
