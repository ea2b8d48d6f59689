//! Doctor's checks of the host: the preview hosts' DNS as the outside sees it, the TLS
//! settings, and whether the egress policy can be written. Only reads (a DNS lookup, a UDP
//! bind let go at once, the certificate files, a listing of one iptables chain).

use std::net::{IpAddr, ToSocketAddrs};

use super::{Finding, Verdict, bad, ok};
use crate::config::{Config, Tls};

/// The preview hosts must reach this machine: `*.localhost` does in browsers and curl; any
/// other domain needs a wildcard record pointing here.
pub(super) fn dns_check(config: &Config) -> Finding {
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

pub(super) fn tls_check(config: &Config) -> Option<Finding> {
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

/// `limits.egress` other than `all` is enforced with iptables, which needs root or
/// `CAP_NET_ADMIN`: without them every deployment fails at its start. Listing a chain is the
/// read-only question that needs the same rights.
pub(super) fn egress_check(config: &Config) -> Finding {
    use crate::config::egress::Mode;
    let mode = config.limits.egress.mode;
    if mode == Mode::All {
        return ok(
            "egress",
            "limits.egress = \"all\": no firewall rules to write",
        );
    }
    let listed = std::process::Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output();
    let fix = "run previewd as root or with CAP_NET_ADMIN (deploy/previewd.service grants it), \
               or set limits.egress = \"all\" (PREVIEWD_LIMITS_EGRESS=all) to run previews \
               unfiltered";
    match listed {
        Ok(out) if out.status.success() => ok(
            "egress",
            format!("limits.egress = \"{}\": iptables answers", mode.as_str()),
        ),
        Ok(out) => bad(
            "egress",
            Verdict::Fail,
            format!(
                "limits.egress = \"{}\" but iptables refuses: {}",
                mode.as_str(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            fix,
        ),
        Err(e) => bad(
            "egress",
            Verdict::Fail,
            format!(
                "limits.egress = \"{}\" but iptables cannot run: {e}",
                mode.as_str()
            ),
            fix,
        ),
    }
}
