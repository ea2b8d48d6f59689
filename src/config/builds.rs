//! What the operator bounds about builds beside their time and network (`[limits] build_cache`,
//! `build_pids`, `build_memory`, `build_cgroup`), and the build secrets it gives each
//! repository (`[build_secrets]`): parsed and checked. Nothing here prunes a cache, writes a
//! cgroup or prints a secret's value: `preview::build` does the rest.

use std::collections::{BTreeMap, HashMap};

use secrecy::SecretString;

use super::ConfigError;
use super::units::parse_bytes;

/// `[build_secrets]`: for each repository (`"<forge>:<owner>/<name>"`), the values its builds'
/// `RUN --mount=type=secret,id=ID` steps get, by id. `Debug` shows repositories and ids only.
#[derive(Clone, Default)]
pub struct BuildSecrets(BTreeMap<(String, String), BTreeMap<String, SecretString>>);

impl std::fmt::Debug for BuildSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|((forge, repo), ids)| (format!("{forge}:{repo}"), ids.keys())),
            )
            .finish()
    }
}

/// The forges a repository of `[build_secrets]` may be on (`cli`: `previewd up`'s local path).
const FORGES: [&str; 4] = ["github", "gitea", "gitlab", "cli"];

impl BuildSecrets {
    pub(crate) fn from_raw(
        raw: Option<BTreeMap<String, BTreeMap<String, String>>>,
    ) -> Result<BuildSecrets, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            key: "build_secrets".to_owned(),
            reason,
        };
        let mut out = BTreeMap::new();
        for (repo, ids) in raw.unwrap_or_default() {
            let (forge, name) = repo
                .split_once(':')
                .filter(|(f, n)| FORGES.contains(f) && !n.is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "{repo:?}: name a repository as \"<forge>:<owner>/<name>\" with forge one of {}, e.g. \"github:acme/shop\"",
                        FORGES.join(", ")
                    ))
                })?;
            let mut secrets = BTreeMap::new();
            for (id, value) in ids {
                let plain = !id.is_empty()
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                if !plain {
                    return Err(invalid(format!(
                        "{repo:?}: secret id {id:?}: letters, digits, `_`, `.` and `-` only"
                    )));
                }
                if value.is_empty() {
                    return Err(invalid(format!("{repo:?}: secret {id} is empty")));
                }
                secrets.insert(id, SecretString::from(value));
            }
            out.insert((forge.to_owned(), name.to_owned()), secrets);
        }
        Ok(BuildSecrets(out))
    }

    /// The secrets a build of `forge`'s `repo` gets for the `ids` its Dockerfile mounts; `fork`
    /// when the build is of a fork's pull request, whose author is not trusted with them. An
    /// id the operator did not configure for the repository is refused, naming it.
    pub fn for_build(
        &self,
        forge: &str,
        repo: &str,
        fork: bool,
        ids: &[String],
    ) -> Result<HashMap<String, SecretString>, String> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let named = ids
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if fork {
            return Err(format!(
                "the Dockerfile mounts build secret {named} (RUN --mount=type=secret), and a \
                 pull request from a fork gets no build secrets"
            ));
        }
        let configured = self.0.get(&(forge.to_owned(), repo.to_owned()));
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        for id in ids {
            match configured.and_then(|c| c.get(id)) {
                Some(value) => {
                    out.insert(id.clone(), value.clone());
                }
                None => missing.push(format!("`{id}`")),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        Err(format!(
            "the Dockerfile mounts build secret {} (RUN --mount=type=secret), which the operator \
             has not configured for this repository: build_secrets.\"{forge}:{repo}\" in \
             previewd.toml",
            missing.join(", ")
        ))
    }
}

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
    fn build_secrets_go_to_their_repository_only_and_never_to_forks() {
        use secrecy::ExposeSecret;
        let raw = |repo: &str, id: &str| {
            Some(
                [(
                    repo.to_owned(),
                    [(id.to_owned(), "s3cr3t".to_owned())].into(),
                )]
                .into(),
            )
        };
        let s = BuildSecrets::from_raw(raw("github:acme/shop", "npm_token")).expect("valid");
        assert!(!format!("{s:?}").contains("s3cr3t"), "{s:?}");
        let ids = ["npm_token".to_owned()];
        let got = s
            .for_build("github", "acme/shop", false, &ids)
            .expect("configured");
        assert_eq!(got["npm_token"].expose_secret(), "s3cr3t");
        let err = s
            .for_build("gitea", "acme/shop", false, &ids)
            .expect_err("other forge");
        assert!(
            err.contains("`npm_token`") && err.contains("gitea:acme/shop"),
            "{err}"
        );
        let err = s
            .for_build("github", "acme/shop", true, &ids)
            .expect_err("fork");
        assert!(err.contains("fork"), "{err}");
        let other = ["other".to_owned()];
        assert!(s.for_build("github", "acme/shop", false, &other).is_err());
        assert!(
            s.for_build("github", "x/y", true, &[])
                .is_ok_and(|m| m.is_empty())
        );
        for bad in [
            raw("acme/shop", "a"),
            raw("svn:acme/shop", "a"),
            raw("github:a/b", "a b"),
        ] {
            assert!(BuildSecrets::from_raw(bad).is_err());
        }
    }

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
