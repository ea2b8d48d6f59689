//! A compose service's ports: the container side of each `ports` entry is what the gateway
//! routes to; a host side is noted for `check` and never published, and a UDP port is noted
//! and not routed. Nothing here may publish a host port.

use super::project::invalid;
use super::shape::Port;
use crate::spec::SpecError;
use crate::spec::yaml::{clip, join};

/// The port the gateway routes to: `x-previewd.port`, else the container port published
/// (or, without `ports`, exposed), the first listed of several (noted in `changes`: compose
/// does not ask which, so a file that lists several is not refused for it).
pub(super) fn routed_port(
    file: &str,
    prefix: &str,
    chosen: Option<u64>,
    ports: Vec<u64>,
    exposed: Vec<u64>,
    internal: bool,
    changes: &mut Vec<String>,
) -> Result<Option<u64>, SpecError> {
    if let Some(p) = chosen {
        if p == 0 || p > u64::from(u16::MAX) {
            return Err(invalid(
                file,
                join(prefix, "x-previewd.port"),
                format!("{p} is not a port: use 1 to 65535"),
            ));
        }
        return Ok(Some(p));
    }
    let mut candidates = Vec::new();
    for p in if ports.is_empty() { exposed } else { ports } {
        if !candidates.contains(&p) {
            candidates.push(p);
        }
    }
    match candidates.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ if internal => Ok(None),
        [first, ..] => {
            let list: Vec<String> = candidates.iter().map(u64::to_string).collect();
            changes.push(format!(
                "routed to port {first}, the first of {} (choose another with \
                 `x-previewd.port`)",
                list.join(", ")
            ));
            Ok(Some(*first))
        }
    }
}

/// One `ports` entry: its container port, `None` for a UDP port (not routed, noted). A host
/// side is noted: it is never published.
pub(super) fn port(
    file: &str,
    key: &str,
    p: Port,
    changes: &mut Vec<String>,
) -> Result<Option<u64>, SpecError> {
    let (target, published, proto) = match p {
        Port::Short(text) => {
            let (spec, proto) = match text.split_once('/') {
                Some((spec, proto)) => (spec.to_owned(), Some(proto.to_owned())),
                None => (text.clone(), None),
            };
            // `[HOST_IP:][HOST_PORT:]CONTAINER_PORT`; an IPv6 host address has colons too.
            let (host, container) = match spec.rsplit_once(':') {
                Some((host, container)) => (Some(host.to_owned()), container.to_owned()),
                None => (None, spec.clone()),
            };
            (container, host, proto)
        }
        Port::Long(l) => {
            let host = match (&l.host_ip, &l.published) {
                (None, None) => None,
                (ip, port) => Some(format!(
                    "{}{}",
                    ip.as_deref().map(|i| format!("{i}:")).unwrap_or_default(),
                    port.as_ref().map(|p| p.0.as_str()).unwrap_or_default()
                )),
            };
            (l.target.to_string(), host, l.protocol)
        }
    };
    if let Some(proto) = proto.filter(|p| !p.eq_ignore_ascii_case("tcp")) {
        changes.push(format!(
            "{key}: {} port {target} is not routed (the gateway speaks HTTP) and not published",
            clip(&proto)
        ));
        return Ok(None);
    }
    let container = container_port(file, key, &target)?;
    if let Some(host) = published.filter(|h| !h.is_empty()) {
        changes.push(format!(
            "{key}: host side `{}` is not published; the gateway routes to container port \
             {container}",
            clip(&host)
        ));
    }
    Ok(Some(container))
}

/// A container port number.
pub(super) fn container_port(file: &str, key: &str, text: &str) -> Result<u64, SpecError> {
    let text = text.split('/').next().unwrap_or(text).trim();
    if text.contains('-') {
        return Err(invalid(
            file,
            key.to_owned(),
            format!("`{}`: port ranges are not supported", clip(text)),
        ));
    }
    // The range is `validate`'s, as for `.previewd.yml`'s `port`.
    match text.parse::<u64>() {
        Ok(p) => Ok(p),
        _ => Err(invalid(
            file,
            key.to_owned(),
            format!("`{}` is not a port number", clip(text)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_route_the_container_side_and_never_publish() {
        let mut notes = Vec::new();
        let mut p = |s: &str| port("f", "k", Port::Short(s.to_owned()), &mut notes);
        assert_eq!(p("8080").ok(), Some(Some(8080)));
        assert_eq!(p("8080/tcp").ok(), Some(Some(8080)));
        assert_eq!(p("8080:80").ok(), Some(Some(80)));
        assert_eq!(p("127.0.0.1:8080:80").ok(), Some(Some(80)));
        assert_eq!(p("[::1]:8080:80").ok(), Some(Some(80)));
        assert_eq!(p("53:53/udp").ok(), Some(None));
        for bad in ["8080-8081", "http", ""] {
            assert!(matches!(p(bad), Err(SpecError::Invalid { .. })), "{bad}");
        }
        assert_eq!(notes.len(), 4, "{notes:?}");
    }
}
