//! One compose service to the format-neutral draft `validate` checks: its container ports
//! (never a host side), whether it is routed or internal, the port the gateway routes to, and
//! its command in exec form. Nothing here checks limits or names, which are `validate`'s, and
//! nothing here may let a published host port through.

use super::words::split_words;
use super::{Port, RawService};
use crate::spec::SpecError;
use crate::spec::raw::Command;
use crate::spec::validate::Draft;
use crate::spec::yaml::{clip, join};

pub(super) fn draft(file: &str, name: String, s: RawService) -> Result<Draft, SpecError> {
    let prefix = join("services", &clip(&name));
    let mut ports = Vec::new();
    for (i, p) in s.ports.iter().flatten().enumerate() {
        let key = format!("{}[{i}]", join(&prefix, "ports"));
        let port = match p {
            Port::Short(text) => container_port(file, &key, text)?,
            Port::Long(long) => {
                if let Some(proto) = &long.protocol {
                    check_protocol(file, &join(&key, "protocol"), proto)?;
                }
                long.target
            }
        };
        ports.push(port);
    }
    let mut exposed = Vec::new();
    for (i, e) in s.expose.iter().flatten().enumerate() {
        let key = format!("{}[{i}]", join(&prefix, "expose"));
        exposed.push(container_port(file, &key, &e.0)?);
    }
    let x = s.x_previewd.unwrap_or_default();
    let internal = x
        .internal
        .unwrap_or(ports.is_empty() && x.route.is_none() && x.port.is_none());
    let port = match x.port {
        Some(p) if p == 0 || p > u64::from(u16::MAX) => {
            return Err(SpecError::Invalid {
                file: file.to_owned(),
                key: join(&prefix, "x-previewd.port"),
                reason: format!("{p} is not a port: use 1 to 65535"),
            });
        }
        Some(p) => Some(p),
        None => {
            let mut candidates = if ports.is_empty() { exposed } else { ports };
            candidates.sort_unstable();
            candidates.dedup();
            match candidates.as_slice() {
                [] => None,
                [one] => Some(*one),
                _ if internal => None,
                several => {
                    let list: Vec<String> = several.iter().map(u64::to_string).collect();
                    return Err(SpecError::Invalid {
                        file: file.to_owned(),
                        key: join(&prefix, "ports"),
                        reason: format!(
                            "lists several ports ({}): say which one the gateway routes to \
                             with `x-previewd.port`",
                            list.join(", ")
                        ),
                    });
                }
            }
        }
    };
    let command = match s.command {
        None => None,
        Some(Command::Exec(args)) => Some(args),
        Some(Command::Line(line)) => {
            Some(split_words(&line).map_err(|reason| SpecError::Invalid {
                file: file.to_owned(),
                key: join(&prefix, "command"),
                reason,
            })?)
        }
    };
    // With `build`, compose uses `image` as the tag of the result; previewd tags its own.
    let image = if s.build.is_some() { None } else { s.image };
    Ok(Draft {
        name,
        image,
        build: s.build,
        port,
        route: x.route,
        env: s.environment.unwrap_or_default(),
        command,
        health: x.healthcheck,
        depends_on: s.depends_on.map(|d| d.0).unwrap_or_default(),
        internal,
    })
}

/// A short-syntax port: the container side only. Anything with a host side is refused.
fn container_port(file: &str, key: &str, text: &str) -> Result<u64, SpecError> {
    let (spec, proto) = match text.split_once('/') {
        Some((spec, proto)) => (spec, Some(proto)),
        None => (text, None),
    };
    if let Some(proto) = proto {
        check_protocol(file, key, proto)?;
    }
    if spec.contains(':') {
        return Err(SpecError::Refused {
            file: file.to_owned(),
            key: key.to_owned(),
            reason: format!(
                "`{}` publishes a host port; previews publish no host ports: write the container \
                 port only (e.g. \"80\"), and the gateway routes to it",
                clip(text)
            ),
        });
    }
    let invalid = |reason: String| SpecError::Invalid {
        file: file.to_owned(),
        key: key.to_owned(),
        reason,
    };
    if spec.contains('-') {
        return Err(invalid(format!(
            "`{}`: port ranges are not supported",
            clip(text)
        )));
    }
    spec.trim()
        .parse::<u64>()
        .map_err(|_| invalid(format!("`{}` is not a port number", clip(text))))
}

fn check_protocol(file: &str, key: &str, proto: &str) -> Result<(), SpecError> {
    if proto.eq_ignore_ascii_case("tcp") {
        Ok(())
    } else {
        Err(SpecError::Invalid {
            file: file.to_owned(),
            key: key.to_owned(),
            reason: format!("protocol `{}`: only TCP ports can be routed", clip(proto)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ports_parse_and_host_ports_are_refused() {
        assert_eq!(container_port("f", "k", "8080").ok(), Some(8080));
        assert_eq!(container_port("f", "k", "8080/tcp").ok(), Some(8080));
        for refused in ["8080:80", "127.0.0.1:8080:80", "0.0.0.0::80"] {
            assert!(matches!(
                container_port("f", "k", refused),
                Err(SpecError::Refused { .. })
            ));
        }
        for bad in ["8080-8081", "80/udp", "http", ""] {
            assert!(matches!(
                container_port("f", "k", bad),
                Err(SpecError::Invalid { .. })
            ));
        }
    }
}
