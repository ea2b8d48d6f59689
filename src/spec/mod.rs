//! A repository's preview config, parsed and validated: `.previewd.yml`, or the documented
//! subset of its compose file. The input is untrusted (a pull request can change it), so
//! everything that could reach the host is refused here, with the offending key named, before
//! anything is built or started. Nothing here talks to Docker or the forge.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::ids::ServiceName;

/// The validated plan for one preview: what to build or pull, and how to run and route it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Where the config came from (`.previewd.yml`, `compose.yaml`, ...), for messages.
    pub source: String,
    /// Services in a deterministic order (by name); start order comes from `depends_on`.
    pub services: BTreeMap<ServiceName, Service>,
    /// The `dev:` section, used by `--mode dev`.
    pub dev: BTreeMap<ServiceName, DevService>,
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
    #[error("no preview config: add .previewd.yml (or compose.yaml / docker-compose.yml) at the repository root")]
    Missing,
    #[error("{file}: could not be read: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("{file}: invalid YAML: {reason}")]
    Syntax { file: String, reason: String },
    #[error("{file}: `{key}` is not allowed: {reason}")]
    Refused { file: String, key: String, reason: String },
    #[error("{file}: `{key}`: {reason}")]
    Invalid { file: String, key: String, reason: String },
}
