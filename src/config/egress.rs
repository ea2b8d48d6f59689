//! What a preview's containers may reach on the network (`[limits] egress`, `egress_allow`,
//! `build_egress`): the modes and the allow-list as the operator writes them, parsed and
//! checked. Nothing here installs a rule or touches the host: `preview::firewall` does.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::ConfigError;

/// How far a preview's containers reach. Ordered from the narrowest: a repository may ask for
/// a narrower mode than the operator's, never a wider one ([`Mode::narrowed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The preview's own services and the gateway's answers to them; nothing else.
    None,
    /// The public internet, but no private, loopback, link-local, metadata or host address,
    /// and no other preview.
    Public,
    /// No filtering at all.
    All,
}

impl Mode {
    pub const NAMES: &str = "none, public or all";

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Public => "public",
            Mode::All => "all",
        }
    }

    /// The narrower of the operator's mode and the one a repository asks for.
    pub fn narrowed(self, asked: Option<Mode>) -> Mode {
        asked.map_or(self, |a| a.min(self))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s.trim() {
            "none" => Ok(Mode::None),
            "public" => Ok(Mode::Public),
            "all" => Ok(Mode::All),
            other => Err(format!("{other:?}: use {}", Mode::NAMES)),
        }
    }
}

/// One allowed destination: an address or a CIDR range, and optionally one TCP/UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allow {
    pub addr: IpAddr,
    pub prefix: u8,
    pub port: Option<u16>,
}

impl Allow {
    /// `10.1.2.3:5432`, `10.1.0.0/16`, `10.1.0.0/16:443`, `fd00::5`, `[fd00::5]:5432`.
    /// Host names are refused: a kernel rule holds addresses, and a name resolved once would
    /// silently go stale.
    pub fn parse(text: &str) -> Result<Allow, String> {
        let t = text.trim();
        let bad = |why: &str| format!("{t:?}: {why}");
        let (host, port) = split_port(t).map_err(|e| bad(&e))?;
        let (addr, prefix) = match host.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (host, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            bad("not an IP address or CIDR range (host names cannot be firewall rules; give the address)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(&format!("the prefix length must be 0-{max}")))?,
        };
        Ok(Allow { addr, prefix, port })
    }

    /// The destination as iptables writes it: `10.1.0.0/16`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        let host = match (self.addr, self.prefix == full) {
            (IpAddr::V6(a), true) if self.port.is_some() => format!("[{a}]"),
            (a, true) => a.to_string(),
            _ => self.cidr(),
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

/// The host part and the port of `host:port`, `[v6]:port`, or a bare host (an IPv6 address
/// without brackets has no port).
fn split_port(t: &str) -> Result<(&str, Option<u16>), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{p:?} is not a port (1-65535)"))
    };
    if let Some(rest) = t.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "an opening [ without ]".to_owned())?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err("after ] only :PORT may follow".to_owned()),
        };
    }
    match t.rsplit_once(':') {
        Some((host, p)) if !host.contains(':') => Ok((host, Some(port(p)?))),
        _ => Ok((t, None)),
    }
}

/// The whole egress policy of the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// What a running preview's containers reach.
    pub mode: Mode,
    /// Destinations open in every mode but `all` (which has them anyway).
    pub allow: Vec<Allow>,
    /// What a build's `RUN` steps reach; `mode` unless `limits.build_egress` is set.
    pub build: Mode,
}

impl Egress {
    /// `limits.egress`, `limits.egress_allow` and `limits.build_egress`, checked; an unset
    /// `build_egress` follows `egress`.
    pub(super) fn from_keys(
        mode: &str,
        allow: Option<Vec<String>>,
        build: Option<&str>,
    ) -> Result<Egress, ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: key.to_owned(),
            reason,
        };
        let mode: Mode = mode.parse().map_err(|e| invalid("limits.egress", e))?;
        let build = match build.map(str::trim) {
            None | Some("") => mode,
            Some(b) => b.parse().map_err(|e| invalid("limits.build_egress", e))?,
        };
        let allow = allow
            .unwrap_or_default()
            .iter()
            .map(|a| Allow::parse(a).map_err(|e| invalid("limits.egress_allow", e)))
            .collect::<Result<_, _>>()?;
        Ok(Egress { mode, allow, build })
    }
}

impl Default for Egress {
    fn default() -> Egress {
        Egress {
            mode: Mode::Public,
            allow: Vec::new(),
            build: Mode::Public,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_narrow_never_widen() {
        assert_eq!("none".parse::<Mode>(), Ok(Mode::None));
        assert_eq!(" all ".parse::<Mode>(), Ok(Mode::All));
        assert!(
            "private"
                .parse::<Mode>()
                .unwrap_err()
                .contains("none, public or all")
        );
        assert_eq!(Mode::Public.narrowed(Some(Mode::None)), Mode::None);
        assert_eq!(Mode::Public.narrowed(Some(Mode::All)), Mode::Public);
        assert_eq!(Mode::None.narrowed(Some(Mode::Public)), Mode::None);
        assert_eq!(Mode::All.narrowed(None), Mode::All);
    }

    #[test]
    fn allow_entries_parse_addresses_ranges_and_ports() {
        let a = Allow::parse("10.1.2.3:5432").unwrap();
        assert_eq!((a.cidr(), a.port), ("10.1.2.3/32".to_owned(), Some(5432)));
        let a = Allow::parse("10.1.0.0/16").unwrap();
        assert_eq!((a.cidr(), a.port), ("10.1.0.0/16".to_owned(), None));
        let a = Allow::parse("10.1.0.0/16:443").unwrap();
        assert_eq!((a.cidr(), a.port), ("10.1.0.0/16".to_owned(), Some(443)));
        let a = Allow::parse("[fd00::5]:5432").unwrap();
        assert_eq!((a.cidr(), a.port), ("fd00::5/128".to_owned(), Some(5432)));
        let a = Allow::parse("fd00::/8").unwrap();
        assert_eq!((a.cidr(), a.port), ("fd00::/8".to_owned(), None));
        for (text, shown) in [
            ("10.1.2.3:5432", "10.1.2.3:5432"),
            ("[fd00::5]:80", "[fd00::5]:80"),
            ("10.0.0.0/8", "10.0.0.0/8"),
        ] {
            assert_eq!(Allow::parse(text).unwrap().to_string(), shown);
        }
    }

    #[test]
    fn the_keys_are_checked_and_build_egress_follows_egress() {
        let e = Egress::from_keys("none", Some(vec!["10.0.0.0/8".into()]), None).unwrap();
        assert_eq!(
            (e.mode, e.build, e.allow.len()),
            (Mode::None, Mode::None, 1)
        );
        let e = Egress::from_keys("public", None, Some("all")).unwrap();
        assert_eq!((e.mode, e.build), (Mode::Public, Mode::All));
        let err = Egress::from_keys("public", Some(vec!["db:5432".into()]), None).unwrap_err();
        assert!(err.to_string().contains("limits.egress_allow"), "{err}");
        let err = Egress::from_keys("open", None, None).unwrap_err();
        assert!(err.to_string().contains("limits.egress"), "{err}");
    }

    #[test]
    fn allow_entries_that_are_not_addresses_are_refused() {
        for bad in [
            "db.internal:5432",
            "10.1.2.3:0",
            "10.1.2.3:70000",
            "10.0.0.0/33",
            "[fd00::5",
            "[fd00::5]x",
            "",
        ] {
            assert!(Allow::parse(bad).is_err(), "{bad}");
        }
    }
}
