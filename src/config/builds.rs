//! What the operator bounds about builds beside their time and network (`[limits] build_cache`,
//! `build_pids`, `build_memory`, `build_cgroup`): parsed and checked. Nothing here prunes a
//! cache or writes a cgroup: `preview::build` does.

use super::ConfigError;
use super::units::parse_bytes;

/// The bounds on what every BuildKit build of the Docker daemon uses together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildLimits {
    /// Bytes of BuildKit cache the daemon keeps after each reconcile pass's prune; `None`
    /// (`0`): previewd never prunes the build cache.
    pub cache: Option<u64>,
    /// Processes that all BuildKit steps of the daemon may have at once; `None` (`0`):
    /// previewd leaves the daemon's build cgroup alone.
    pub pids: Option<u64>,
    /// Memory that all BuildKit steps of the daemon may use together; `None` (`0`): unset.
    pub memory: Option<u64>,
    /// The cgroup, under each hierarchy's root, in which the daemon runs BuildKit's steps:
    /// `<the daemon's cgroup-parent>/buildkit`.
    pub cgroup: CgroupPath,
}

/// A relative cgroup path of plain components (no `..`, nothing hidden), e.g. `docker/buildkit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPath(String);

impl CgroupPath {
    pub fn parse(s: &str) -> Result<CgroupPath, String> {
        let trimmed = s.trim().trim_matches('/');
        let plain = |c: &str| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
        };
        if trimmed.is_empty() || !trimmed.split('/').all(plain) {
            return Err(format!(
                "{s:?}: a cgroup path such as docker/buildkit (the daemon's cgroup-parent, then buildkit)"
            ));
        }
        Ok(CgroupPath(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl BuildLimits {
    /// `limits.build_cache`, `limits.build_pids`, `limits.build_memory`, `limits.build_cgroup`.
    pub(crate) fn from_keys(
        cache: &str,
        pids: i64,
        memory: &str,
        cgroup: &str,
    ) -> Result<BuildLimits, ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: key.to_owned(),
            reason,
        };
        let size = |key: &str, value: &str, example: &str| {
            parse_bytes(value)
                .and_then(|b| u64::try_from(b).ok())
                .map(|b| Some(b).filter(|b| *b > 0))
                .ok_or_else(|| {
                    invalid(key, format!("{value:?}: use e.g. {example}, or 0 for none"))
                })
        };
        let pids = match pids {
            0 => None,
            n if n >= 16 => u64::try_from(n).ok(),
            _ => {
                return Err(invalid(
                    "limits.build_pids",
                    "must be 0 (no cap) or at least 16".into(),
                ));
            }
        };
        let memory = size("limits.build_memory", memory, "2g")?;
        if memory.is_some_and(|m| m < 64 << 20) {
            return Err(invalid(
                "limits.build_memory",
                "must be 0 (no cap) or at least 64m".into(),
            ));
        }
        Ok(BuildLimits {
            cache: size("limits.build_cache", cache, "5g")?,
            pids,
            memory,
            cgroup: CgroupPath::parse(cgroup).map_err(|e| invalid("limits.build_cgroup", e))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_turns_a_bound_off_and_paths_must_be_plain() {
        let b = BuildLimits::from_keys("5g", 0, "0", "/docker/buildkit/").expect("valid");
        assert_eq!(b.cache, Some(5 << 30));
        assert_eq!((b.pids, b.memory), (None, None));
        assert_eq!(b.cgroup.as_str(), "docker/buildkit");
        let b = BuildLimits::from_keys("0", 256, "1g", "system.slice/buildkit").expect("valid");
        assert_eq!(
            (b.cache, b.pids, b.memory),
            (None, Some(256), Some(1 << 30))
        );
        assert!(BuildLimits::from_keys("5g", 8, "0", "docker/buildkit").is_err());
        assert!(BuildLimits::from_keys("lots", 0, "0", "docker/buildkit").is_err());
        assert!(BuildLimits::from_keys("5g", 0, "1m", "docker/buildkit").is_err());
        for bad in ["", "docker/../etc", "docker/.x", "a b", "docker//buildkit"] {
            assert!(
                BuildLimits::from_keys("5g", 0, "0", bad).is_err(),
                "{bad:?}"
            );
        }
    }
}
