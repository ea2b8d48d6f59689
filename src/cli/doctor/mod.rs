//! `previewd doctor`: what would break the first preview, checked before it does, each
//! finding with a one-line fix. Only reads (Docker's answers, a port bind it lets go at once,
//! a DNS lookup, the forges' `GET /user`); never starts, changes or removes anything, and never
//! prints a secret.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::ListNetworksOptions;

use super::{CliError, Outcome};
use crate::config::{Config, Tls};
use crate::forge::retry::RetryPolicy;
use crate::forge::{ForgeError, Forges};
use crate::preview::docker::{self, labels};

/// Bridge networks Docker's default address pools hold (172.17-31.0.0/16 and 192.168.0.0/16
/// cut into /20s) when the daemon's `default-address-pools` is not changed.
const DEFAULT_POOL_NETWORKS: usize = 31;

/// A forge's `GET /user` gets this long: doctor is run by a person waiting for it.
const FORGE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    /// Works today, but will break under load or in some setups.
    Warn,
    /// Breaks the first preview.
    Fail,
}

struct Finding {
    check: &'static str,
    verdict: Verdict,
    detail: String,
    fix: Option<String>,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        verdict: Verdict::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn bad(
    check: &'static str,
    verdict: Verdict,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        check,
        verdict,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

pub async fn run(config_path: Option<&Path>, json: bool) -> Result<Outcome, CliError> {
    let mut found = Vec::new();
    let config = match Config::load_located(config_path) {
        Ok((config, file)) => {
            let from = file.map_or("no file: defaults and the environment".to_owned(), |f| {
                f.display().to_string()
            });
            found.push(ok("config", format!("loaded ({from})")));
            Some(config)
        }
        Err(e) => {
            found.push(bad(
                "config",
                Verdict::Fail,
                e.to_string(),
                "fix the key it names (previewd config shows every value and its origin)",
            ));
            None
        }
    };
    if let Some(config) = &config {
        found.extend(docker_checks(config).await);
        found.extend(forge_checks(config).await);
        found.push(dns_check(config));
        if let Some(f) = tls_check(config) {
            found.push(f);
        }
    }
    print(&found, json)?;
    Ok(if found.iter().any(|f| f.verdict == Verdict::Fail) {
        Outcome::Failed
    } else {
        Outcome::Done
    })
}

async fn docker_checks(config: &Config) -> Vec<Finding> {
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

async fn forge_checks(config: &Config) -> Vec<Finding> {
    let enabled = config.enabled_forges();
    if enabled.is_empty() {
        return vec![bad(
            "forges",
            Verdict::Warn,
            "no forge has a webhook secret: previewd serve will refuse to start (up works without)",
            "set [github], [gitea] or [gitlab] webhook_secret (docs/github.md, docs/gitea.md, docs/gitlab.md)",
        )];
    }
    let forges = match Forges::from_config(config, &RetryPolicy::default()) {
        Ok(f) => f,
        Err(e) => {
            return vec![bad(
                "forges",
                Verdict::Fail,
                e.to_string(),
                "fix the forge section it names",
            )];
        }
    };
    let mut out = Vec::new();
    for kind in enabled {
        let Some(forge) = forges.get(kind) else {
            out.push(bad(
                "forge token",
                Verdict::Fail,
                format!("{}: a webhook secret but no token", kind.title()),
                format!(
                    "set [{kind}] token: previewd cannot report to the pull requests without one"
                ),
            ));
            continue;
        };
        let answer = tokio::time::timeout(FORGE_TIMEOUT, forge.self_user()).await;
        out.push(match answer {
            Ok(Ok(Some(user))) => ok("forge token", format!("{}: acts as {user}", kind.title())),
            // The forge reads no token user (GitHub: a bot's comments are marked as such).
            Ok(Ok(None)) => ok(
                "forge token",
                format!("{}: credentials set; not checked here", kind.title()),
            ),
            Ok(Err(ForgeError::Status { status: 401, .. })) => bad(
                "forge token",
                Verdict::Fail,
                format!(
                    "{}: 401, the token is wrong, expired or revoked",
                    kind.title()
                ),
                format!("create a new token for previewd's user and set [{kind}] token"),
            ),
            Ok(Err(e)) => bad(
                "forge token",
                Verdict::Fail,
                format!("{}: {e}", kind.title()),
                format!("check [{kind}] url and token (docs/{kind}.md lists the scopes)"),
            ),
            Err(_) => bad(
                "forge token",
                Verdict::Fail,
                format!(
                    "{}: no answer in {}s",
                    kind.title(),
                    FORGE_TIMEOUT.as_secs()
                ),
                format!("check [{kind}] url and that this host can reach it"),
            ),
        });
    }
    out
}

/// The preview hosts must reach this machine: `*.localhost` does in browsers and curl; any
/// other domain needs a wildcard record pointing here.
fn dns_check(config: &Config) -> Finding {
    // A made-up preview's URL: the same host name shape a real one gets.
    let url = config.preview_url(&crate::ids::PreviewId::generate());
    let host = url::Url::parse(&url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    if host == "localhost" || host.ends_with(".localhost") {
        return ok(
            "dns",
            format!("{host}: *.localhost is this machine in browsers and curl"),
        );
    }
    let addrs: Vec<IpAddr> = (host.as_str(), 80)
        .to_socket_addrs()
        .map(|a| a.map(|s| s.ip()).collect())
        .unwrap_or_default();
    let fix = format!(
        "add a wildcard DNS record *.{} pointing at this host's public address",
        config.gateway.domain
    );
    if addrs.is_empty() {
        return bad(
            "dns",
            Verdict::Fail,
            format!("{host} does not resolve"),
            fix,
        );
    }
    // An address is this host's own when a socket can be bound to it.
    let here = addrs
        .iter()
        .any(|a| a.is_loopback() || std::net::UdpSocket::bind((*a, 0)).is_ok());
    if here {
        ok("dns", format!("{host} resolves to this host"))
    } else {
        // Behind a load balancer or NAT the record names another address: worth a look only.
        bad(
            "dns",
            Verdict::Warn,
            format!("{host} resolves to {addrs:?}, none of them this host's"),
            format!("{fix} (fine if a proxy or NAT in front forwards to it)"),
        )
    }
}

fn tls_check(config: &Config) -> Option<Finding> {
    match &config.gateway.tls {
        Tls::Off => None,
        Tls::OnDemand { issuer, .. }
            if config.gateway.domain.ends_with("localhost") && issuer == "acme" =>
        {
            Some(bad(
                "tls",
                Verdict::Fail,
                "on-demand ACME certificates for a localhost domain: no CA will issue them",
                "set gateway.domain to a public domain, or gateway.tls_issuer = \"internal\"",
            ))
        }
        Tls::OnDemand { issuer, .. } => {
            Some(ok("tls", format!("on-demand certificates from {issuer}")))
        }
        Tls::Wildcard {
            cert_file,
            key_file,
        } => {
            let unreadable: Vec<String> = [cert_file, key_file]
                .into_iter()
                .filter(|p| std::fs::File::open(p).is_err())
                .map(|p| p.display().to_string())
                .collect();
            Some(if unreadable.is_empty() {
                ok("tls", "wildcard certificate and key are readable")
            } else {
                bad(
                    "tls",
                    Verdict::Fail,
                    format!("cannot read {}", unreadable.join(" and ")),
                    "fix gateway.cert_file / gateway.key_file, or the files' permissions",
                )
            })
        }
    }
}

fn print(found: &[Finding], json: bool) -> Result<(), CliError> {
    if json {
        let v: Vec<serde_json::Value> = found
            .iter()
            .map(|f| {
                serde_json::json!({
                    "check": f.check,
                    "status": match f.verdict { Verdict::Ok => "ok", Verdict::Warn => "warn", Verdict::Fail => "fail" },
                    "detail": f.detail,
                    "fix": f.fix,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let paint = super::paint::Paint::stdout();
    for f in found {
        let word = match f.verdict {
            Verdict::Ok => paint.good(format!("{:<4}", "ok")),
            Verdict::Warn => paint.warn(format!("{:<4}", "warn")),
            Verdict::Fail => paint.bad(format!("{:<4}", "FAIL")),
        };
        println!("{word}  {:<14} {}", f.check, f.detail);
        if let Some(fix) = &f.fix {
            println!("{:<20} fix: {fix}", "");
        }
    }
    let fails = found.iter().filter(|f| f.verdict == Verdict::Fail).count();
    if fails > 0 {
        println!("\n{fails} problem(s) would break the first preview");
    }
    Ok(())
}
