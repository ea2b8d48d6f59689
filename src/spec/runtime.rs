//! How a service runs beyond its image, command and route: what it mounts, which of the
//! project's networks it joins and under which names, how Docker checks its health, what it
//! waits for, and the container options compose passes through. Only a compose file fills
//! these in; `.previewd.yml` leaves the defaults. Every value here was checked by the format
//! that read it (paths inside the repository, nothing that reaches the host); the operator's
//! limits are applied later, by the manager, which alone knows them. Nothing here talks to
//! Docker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::ids::ServiceName;

/// The network every service without `networks:` joins, as in compose.
pub const DEFAULT_NETWORK: &str = "default";

/// Where a routed service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Host {
    /// The preview's own host, `<id>.<domain>`, at the service's route.
    #[default]
    Preview,
    /// A host of its own, `<id>-<service>.<domain>`, at `/`: a compose project's other
    /// published services.
    Service,
}

/// One thing mounted into a service's container.
#[derive(Debug, Clone, PartialEq)]
pub enum Mount {
    /// A named volume of the project: one Docker volume per preview and name, kept across
    /// updates, removed with the preview.
    Volume {
        name: String,
        target: String,
        read_only: bool,
        /// `volume.nocopy`: a new volume does not get the image's files at `target`.
        nocopy: bool,
    },
    /// A volume of this container alone, removed with it.
    Anonymous { target: String, nocopy: bool },
    /// A file or folder of the repository (relative to the worktree root, already resolved
    /// inside it), mounted from the preview's worktree. Secrets and configs are such mounts,
    /// read-only.
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// A memory-backed folder, `size` bytes at most when given, with the permission bits
    /// `mode` (Docker's default, 1777, when `None`).
    Tmpfs {
        target: String,
        size: Option<i64>,
        mode: Option<u32>,
    },
    /// A secret or config copied into the container before it starts, with that owner and
    /// mode: a repository file whose owner or mode the file sets (a bind mount keeps the
    /// repository file's own), or a config's inline content.
    File {
        source: Copied,
        target: String,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

/// What a secret or config holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Copied {
    /// A file of the repository, relative to the worktree root (already resolved inside it).
    Repo(PathBuf),
    /// A config's `content:` written in the compose file, taken literally, at most 1 MiB.
    Inline(String),
}

impl Mount {
    pub fn target(&self) -> &str {
        match self {
            Mount::Volume { target, .. }
            | Mount::Anonymous { target, .. }
            | Mount::Bind { target, .. }
            | Mount::Tmpfs { target, .. }
            | Mount::File { target, .. } => target,
        }
    }
}

/// What a dependent service waits for before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// The dependency's container has started (compose's default).
    #[default]
    Started,
    /// The dependency's Docker health check says healthy.
    Healthy,
    /// The dependency ran to its end and exited with status 0 (a migration, a seed job).
    CompletedSuccessfully,
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
            Condition::CompletedSuccessfully => "service_completed_successfully",
        })
    }
}

/// Compose's `healthcheck`, run by Docker inside the container (its `HEALTHCHECK`).
#[derive(Debug, Clone, PartialEq)]
pub struct DockerHealth {
    /// Docker's form: `["CMD", ...]`, `["CMD-SHELL", "..."]`, or `["NONE"]` to disable the
    /// image's own.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<i64>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
}

/// A lifecycle hook (compose's `post_start` and `pre_stop`): a command Docker's exec runs inside
/// the service's own container, never privileged. Kept on the container as a label, so that a
/// teardown or a wake after a restart of previewd still knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hook {
    /// Exec form.
    pub command: Vec<String>,
    /// `None`: the service's user.
    pub user: Option<String>,
    /// `None`: the service's working directory.
    pub working_dir: Option<String>,
    /// `NAME=value`, added to the service's environment for this command.
    pub env: Vec<String>,
}

/// Compose's `restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    Always,
    UnlessStopped,
    OnFailure(Option<i64>),
}

/// One `ulimits` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Resources the file asks for; the manager takes the smaller of each and the operator's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
    pub shm_size: Option<i64>,
}

/// A project network the preview creates for this generation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkSpec {
    /// Docker's `internal`: no route out of the network.
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

/// A named volume the preview creates once and keeps across updates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeSpec {
    pub labels: BTreeMap<String, String>,
}

/// Everything about running a service that compose can say and `.previewd.yml` cannot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Runtime {
    pub mounts: Vec<Mount>,
    /// The project networks joined, each with its extra aliases. Empty: the default network.
    pub networks: BTreeMap<String, Vec<String>>,
    /// Names other services reach this one by on every network it joins, besides its own
    /// (`hostname`, `container_name`, the aliases `links` give it).
    pub aliases: Vec<String>,
    /// Per dependency, what it must reach before this service starts.
    pub conditions: BTreeMap<ServiceName, Condition>,
    pub docker_health: Option<DockerHealth>,
    /// Replaces the image's ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub group_add: Vec<String>,
    /// `None`: previewd's default (restarted unless stopped).
    pub restart: Option<Restart>,
    pub init: Option<bool>,
    pub tty: bool,
    pub stdin_open: bool,
    pub read_only: bool,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<Duration>,
    pub ulimits: Vec<Ulimit>,
    pub resources: Resources,
    pub sysctls: BTreeMap<String, String>,
    pub cap_drop: Vec<String>,
    pub extra_hosts: Vec<String>,
    /// Name servers, search domains and resolver options (`dns`, `dns_search`, `dns_opt`).
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opt: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Run after the container starts, before it counts as ready; one failing fails the
    /// deployment.
    pub post_start: Vec<Hook>,
    /// Run before previewd stops the container (teardown, the retirement of an update, sleep),
    /// within a time limit; a failure is logged, never fatal.
    pub pre_stop: Vec<Hook>,
    pub platform: Option<String>,
    pub pull: PullPolicy,
    /// What previewd does differently from the file's literal meaning, said by `check`
    /// (e.g. "ports 8080:80: host port 8080 is not published").
    pub changes: Vec<String>,
}

impl Runtime {
    /// The project's named volumes this service mounts.
    pub fn named_volumes(&self) -> impl Iterator<Item = &str> {
        self.mounts.iter().filter_map(|m| match m {
            Mount::Volume { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }
}

/// Compose's `pull_policy` for an `image:` service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pulled only when the host does not have it (compose's default).
    #[default]
    Missing,
    /// Pulled on every deployment.
    Always,
    /// Never pulled: it must be on the host.
    Never,
    /// Compose's `daily`, `weekly` and `every_<duration>`: pulled when the host lacks it or
    /// when the host's copy is older than this (see `manager::images` for what "older" means).
    Refresh(std::time::Duration),
}
