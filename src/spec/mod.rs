//! A repository's preview config, parsed and validated: `.previewd.yml`, or the documented
//! subset of its compose file. The input is untrusted (a pull request can change it), so
//! everything that could reach the host is refused here, with the offending key named, before
//! anything is built or started. Nothing here talks to Docker or the forge.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ids::ServiceName;

mod compose;
mod hostile;
mod paths;
mod previewd_yml;
mod raw;
mod route;
pub mod runtime;
mod tree;
mod validate;
mod yaml;

pub use paths::resolve_inside;
pub use route::MAX_SEGMENTS;
pub use runtime::{Host, Mount, NetworkSpec, Runtime, VolumeSpec};
pub use validate::{MAX_ENV_VALUE, MAX_ENV_VARS, MAX_SERVICES};
pub use yaml::{MAX_DEPTH, MAX_FILE_BYTES};

/// previewd's own config file, read first.
pub const PREVIEWD_FILE: &str = ".previewd.yml";
/// Compose files read when there is no `.previewd.yml`, in this order (compose's own order).
pub const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// Reads and validates the preview config at the root of `worktree`: `.previewd.yml`, else
/// the first compose file found. The file must be a regular file: a symbolic link could make
/// previewd read (and echo in an error on the PR) a file outside the repository.
pub fn load(worktree: &Path) -> Result<Spec, SpecError> {
    for name in std::iter::once(PREVIEWD_FILE).chain(COMPOSE_FILES) {
        let Some(bytes) = read_config(worktree, name)? else {
            continue;
        };
        return if name == PREVIEWD_FILE {
            parse_previewd_yml(name, &bytes, worktree)
        } else {
            parse_compose(name, &bytes, worktree)
        };
    }
    Err(SpecError::Missing)
}

/// Parses and validates the bytes of a `.previewd.yml`; `file` names it in messages, and build
/// paths are resolved against `worktree`.
pub fn parse_previewd_yml(file: &str, bytes: &[u8], worktree: &Path) -> Result<Spec, SpecError> {
    previewd_yml::parse(file, bytes, worktree)
}

/// Parses and validates the bytes of a compose file (the subset described in `compose`).
pub fn parse_compose(file: &str, bytes: &[u8], worktree: &Path) -> Result<Spec, SpecError> {
    compose::parse(file, bytes, worktree)
}

/// The bytes of `worktree/name`, `None` when it does not exist. Refuses anything but a regular
/// file, and anything over the size limit before reading it.
fn read_config(worktree: &Path, name: &str) -> Result<Option<Vec<u8>>, SpecError> {
    let unreadable = |reason: String| SpecError::Unreadable {
        file: name.to_owned(),
        reason,
    };
    let path = worktree.join(name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
    };
    if meta.file_type().is_symlink() {
        return Err(unreadable(
            "it is a symbolic link; previewd reads only a regular file here".to_owned(),
        ));
    }
    if !meta.is_file() {
        return Err(unreadable("it is not a regular file".to_owned()));
    }
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(unreadable(format!(
            "it is {} bytes, over the limit of {MAX_FILE_BYTES} bytes (1 MiB)",
            meta.len()
        )));
    }
    let file = std::fs::File::open(&path).map_err(|e| unreadable(e.to_string()))?;
    let mut bytes = Vec::new();
    // Bounded even if the file grows after the size check: parse_* refuses the extra byte.
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(e.to_string()))?;
    Ok(Some(bytes))
}

/// The validated plan for one preview: what to build or pull, and how to run and route it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Where the config came from (`.previewd.yml`, `compose.yaml`, ...), for messages.
    pub source: String,
    /// Services in a deterministic order (by name); start order comes from `depends_on`.
    pub services: BTreeMap<ServiceName, Service>,
    /// The `dev:` section, used by `--mode dev`.
    pub dev: BTreeMap<ServiceName, DevService>,
    /// The project's named volumes (compose only): one Docker volume each per preview.
    pub volumes: BTreeMap<String, VolumeSpec>,
    /// The project's networks (compose only), besides the default one: one Docker network
    /// each per generation.
    pub networks: BTreeMap<String, NetworkSpec>,
    /// What previewd does differently from the file's literal meaning, beyond single services
    /// (each service's own are in its `run.changes`).
    pub changes: Vec<String>,
    /// The egress mode the repository asks for (`.previewd.yml`'s `egress`): it may narrow
    /// the operator's `limits.egress`, never widen it.
    pub egress: Option<crate::config::egress::Mode>,
    /// Who may see the preview as the repository asks (`.previewd.yml`'s `access`, a compose
    /// file's top-level `x-previewd.access`): it may tighten the operator's `access.mode`,
    /// never loosen it.
    pub access: Option<crate::config::AccessMode>,
}

impl Spec {
    /// The key the repository writes its access mode under in [`Spec::source`], for
    /// messages: `access` in `.previewd.yml`, `x-previewd.access` in a compose file.
    pub fn access_key(&self) -> &'static str {
        if self.source == PREVIEWD_FILE {
            "access"
        } else {
            "x-previewd.access"
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: ServiceName,
    pub image: ImageSource,
    /// Container port to route to. `None` only for internal services.
    pub port: Option<u16>,
    /// Path prefix on the preview host (starts with `/`, no `..`, no host). `None` when internal.
    pub route: Option<Route>,
    pub env: BTreeMap<String, String>,
    /// Replaces the image's CMD when set.
    pub command: Option<Vec<String>>,
    pub healthcheck: HealthCheck,
    pub depends_on: Vec<ServiceName>,
    /// Not routed; reachable by the other services of the preview only.
    pub internal: bool,
    /// `false` keeps the whole preview awake: it never goes to sleep for want of visits.
    pub sleeps: bool,
    /// The host a routed service answers at.
    pub host: Host,
    /// Mounts, networks, aliases and the container options compose passes through.
    pub run: Runtime,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// An image that must already exist on the Docker host (no registry is assumed).
    Image(String),
    Build(BuildSpec),
}

/// A build, with every path already checked to stay inside the worktree (no `..`, no absolute
/// path, no symlink leading out).
#[derive(Debug, Clone, PartialEq)]
pub struct BuildSpec {
    /// Context directory, relative to the worktree root (`.` for the root).
    pub context: PathBuf,
    /// Dockerfile path relative to the context (default `Dockerfile`).
    pub dockerfile: PathBuf,
    pub args: BTreeMap<String, String>,
    /// The stage of a multi-stage Dockerfile to build (`--target`); the last stage when `None`.
    pub target: Option<String>,
    /// What else a compose file's `build` says (none in `.previewd.yml`).
    pub options: BuildOptions,
}

/// A compose build's options that the Engine API's build applies, each already checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildOptions {
    /// Labels of the built image (never `dev.previewd.*`).
    pub labels: BTreeMap<String, String>,
    /// Images whose build cache the build may use (plain image references only).
    pub cache_from: Vec<String>,
    /// Build every step again: no builder cache, and no reuse of an image of the same content.
    pub no_cache: bool,
    /// Pull the base images again: no reuse of an image of the same content either.
    pub pull: bool,
    /// `/dev/shm` of the build's steps, in bytes (clamped to the operator's memory limit).
    pub shm_size: Option<i64>,
    /// The platform to build for: the service's `platform`, else the host's.
    pub platform: Option<String>,
}

/// A route's path prefix, e.g. `/` or `/api`. Always starts with `/`, never ends with `/`
/// unless it is `/`, contains no `..`, `//`, `?`, `#`, `*`, whitespace or host part.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route(pub(crate) String);

impl Route {
    pub fn root() -> Self {
        Route("/".to_owned())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// Path requested through the gateway (default: the route itself).
    pub path: String,
    /// Expected HTTP status (default 200).
    pub status: u16,
    /// How long to wait for the service to become healthy (default: the operator's
    /// `limits.health_timeout`, and never more than it).
    pub timeout: Option<Duration>,
    /// Whether a deployment waits for this answer. A compose service on a host of its own
    /// may speak no HTTP at all (a database publishing its port): it is probed only when
    /// `x-previewd.healthcheck` asks.
    pub required: bool,
}

/// One service of `--mode dev`: the worktree is mounted at `workdir` in `image`, and `command`
/// runs there (a dev server with live reload).
#[derive(Debug, Clone, PartialEq)]
pub struct DevService {
    pub name: ServiceName,
    pub image: String,
    pub workdir: String,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// Falls back to the same service's `port` in `services:`.
    pub port: Option<u16>,
}

/// Why a config was refused. Messages are read on a pull request: they say which file, which
/// key and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "no preview config: add .previewd.yml (or compose.yaml / docker-compose.yml) at the repository root"
    )]
    Missing,
    #[error("{file}: could not be read: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("{file}: invalid YAML: {reason}")]
    Syntax { file: String, reason: String },
    #[error("{file}: `{key}` is not allowed: {reason}")]
    Refused {
        file: String,
        key: String,
        reason: String,
    },
    #[error("{file}: `{key}`: {reason}")]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
    /// Every problem found, so that one round of fixes can address them all.
    #[error("{}", several(.0))]
    Several(Vec<SpecError>),
}

impl SpecError {
    /// One error as it is, several as [`SpecError::Several`].
    pub fn from_all(mut all: Vec<SpecError>) -> SpecError {
        if all.len() == 1 {
            all.remove(0)
        } else {
            SpecError::Several(all)
        }
    }

    /// The single problems, in the order found.
    pub fn problems(&self) -> Vec<&SpecError> {
        match self {
            SpecError::Several(all) => all.iter().flat_map(SpecError::problems).collect(),
            one => vec![one],
        }
    }
}

fn several(all: &[SpecError]) -> String {
    let lines: Vec<String> = all.iter().map(|e| format!("  - {e}")).collect();
    format!("{} problems:\n{}", all.len(), lines.join("\n"))
}
