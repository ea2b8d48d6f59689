//! The serde shapes of a compose file, one field per key `keys` accepts, each documented with
//! what it means in a preview. They mirror the input (values written in several forms keep
//! their form); every check is made by the module that turns them into the spec. Nothing here
//! decides what is allowed: a key that reaches these structs was accepted by `keys`. How the
//! values written in two forms are read is `forms`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use yaml_serde::Value;

use crate::spec::raw::{Build, Command, Health, Text, Vars};

/// One service.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    /// A context folder or `{context, dockerfile, args, target, labels}`.
    pub build: Option<Build>,
    /// An image on the Docker host; with `build`, compose's tag for the result, not used.
    pub image: Option<String>,
    /// Environment variables, as a mapping or a list of `NAME=value`.
    pub environment: Option<Vars>,
    /// Files of the repository with `NAME=value` lines, read before `environment`.
    pub env_file: Option<Value>,
    /// Replaces the image's CMD: a list as is, a string split into words like compose.
    pub command: Option<Command>,
    /// Replaces the image's ENTRYPOINT, in the same forms as `command`.
    pub entrypoint: Option<Command>,
    /// Ports; the container side is routed, a host side is never published.
    pub ports: Option<Vec<Port>>,
    /// Container ports reachable by other services; a fallback for the routed port.
    pub expose: Option<Vec<Text>>,
    /// Services started before this one, with what they must reach first.
    pub depends_on: Option<DependsOn>,
    /// Docker's health check inside the container (its HEALTHCHECK).
    pub healthcheck: Option<ComposeHealth>,
    /// `no`, `always`, `on-failure[:N]` or `unless-stopped`.
    pub restart: Option<String>,
    pub init: Option<bool>,
    pub tty: Option<bool>,
    pub stdin_open: Option<bool>,
    pub read_only: Option<bool>,
    pub working_dir: Option<String>,
    pub user: Option<Text>,
    pub group_add: Option<Vec<Text>>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<String>,
    /// Memory-backed folders: a path or a list of `path[:options]`.
    pub tmpfs: Option<Value>,
    pub shm_size: Option<Text>,
    pub mem_limit: Option<Text>,
    pub mem_reservation: Option<Text>,
    pub memswap_limit: Option<Text>,
    pub cpus: Option<Text>,
    pub pids_limit: Option<i64>,
    /// Per limit, a number or `{soft, hard}`.
    pub ulimits: Option<BTreeMap<String, Value>>,
    pub deploy: Option<Deploy>,
    /// Services with profiles start only when a profile is enabled: a preview runs the
    /// default profile, so they do not start.
    pub profiles: Option<Vec<String>>,
    pub platform: Option<String>,
    pub pull_policy: Option<String>,
    /// Named volumes, anonymous volumes and bind mounts of the repository's paths.
    pub volumes: Option<Vec<ServiceVolume>>,
    pub networks: Option<ServiceNetworks>,
    /// Another name other services reach this one by.
    pub hostname: Option<String>,
    /// Compose's domain name for the container; previewd keeps Docker's.
    pub domainname: Option<String>,
    /// Another name other services reach this one by; previewd keeps its container names.
    pub container_name: Option<String>,
    /// `service` or `service:alias`: the alias becomes a name of that service.
    pub links: Option<Vec<String>>,
    pub secrets: Option<Vec<FileRef>>,
    pub configs: Option<Vec<FileRef>>,
    /// Container labels (never `dev.previewd.*`).
    pub labels: Option<Vars>,
    /// Files of the repository with `label=value` lines, read before `labels`.
    pub label_file: Option<Value>,
    /// OCI annotations: accepted, not applied (see `meta`).
    pub annotations: Option<Vars>,
    /// Commands run in the container after it starts.
    pub post_start: Option<Vec<RawHook>>,
    /// Commands run in the container before previewd stops it.
    pub pre_stop: Option<Vec<RawHook>>,
    pub cap_drop: Option<Vec<String>>,
    pub sysctls: Option<Vars>,
    /// `host:ip` entries for the container's /etc/hosts.
    pub extra_hosts: Option<Value>,
    /// One container per service in a preview.
    pub scale: Option<u64>,
    /// Whether `compose up` attaches to the logs: no meaning for a preview.
    #[allow(dead_code)]
    pub attach: Option<bool>,
    /// `compose watch`'s settings: no meaning for a preview built from a commit.
    #[allow(dead_code)]
    pub develop: Option<IgnoredAny>,
    pub oom_score_adj: Option<i64>,
    /// The OCI runtime: `runc`, Docker's default, only.
    pub runtime: Option<String>,
    /// Name servers (IP addresses, none towards the host): one address or a list.
    pub dns: Option<Value>,
    /// Search domains: one or a list.
    pub dns_search: Option<Value>,
    /// resolv.conf options of the safe set (`ndots:2`, `timeout:1`, `rotate`, ...).
    pub dns_opt: Option<Vec<String>>,
    /// previewd's extension: routing and health.
    #[serde(rename = "x-previewd")]
    pub x_previewd: Option<XPreviewd>,
}

/// One `post_start` or `pre_stop` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHook {
    /// Required: exec form, or a string split into words.
    pub command: Command,
    pub user: Option<Text>,
    /// `true` is refused.
    pub privileged: Option<bool>,
    pub working_dir: Option<String>,
    pub environment: Option<Vars>,
}

/// `x-previewd` in a service.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct XPreviewd {
    /// Path prefix on the preview host; the service then answers on the preview's host.
    pub route: Option<String>,
    /// The container port to route to when `ports`/`expose` list several.
    pub port: Option<u64>,
    /// Force the service internal (`true`) or routed (`false`).
    pub internal: Option<bool>,
    /// previewd's health check through the gateway.
    pub healthcheck: Option<Health>,
    /// `false` keeps the preview awake for this service's sake.
    pub sleep: Option<bool>,
    /// Refused here: who may see the preview is the whole project's, set once at the top
    /// level ([`XProject::access`]).
    pub access: Option<IgnoredAny>,
}

/// The top-level `x-previewd`: what previewd reads of the whole project (of the main compose
/// file only).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct XProject {
    /// Who may see the preview (`public`, `password`, `forge`): tightens the operator's
    /// `access.mode`, never loosens it, as `.previewd.yml`'s `access` does.
    pub access: Option<String>,
}

/// Compose's `healthcheck`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ComposeHealth {
    /// `[CMD, ...]`, `[CMD-SHELL, "..."]`, `[NONE]` or a string run by the shell.
    pub test: Option<Command>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u64>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    /// Turns off the image's own check.
    pub disable: Option<bool>,
}

/// `deploy`: what a single-host preview can honour of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Deploy {
    pub resources: Option<DeployResources>,
    pub restart_policy: Option<RestartPolicy>,
    /// One container per service in a preview.
    pub replicas: Option<u64>,
    /// `replicated` (one container) or `global` (one per node: one here).
    pub mode: Option<String>,
    /// Swarm service labels: no service here; noted.
    pub labels: Option<IgnoredAny>,
    /// Swarm rollout settings: previewd has its own update; noted.
    pub update_config: Option<IgnoredAny>,
    pub rollback_config: Option<IgnoredAny>,
    pub placement: Option<IgnoredAny>,
    pub endpoint_mode: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeployResources {
    pub limits: Option<ResourceLimits>,
    pub reservations: Option<ResourceReservations>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourceLimits {
    pub cpus: Option<Text>,
    pub memory: Option<Text>,
    pub pids: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourceReservations {
    pub cpus: Option<Text>,
    pub memory: Option<Text>,
    /// Host devices (GPUs): refused when present.
    pub devices: Option<IgnoredAny>,
    pub generic_resources: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestartPolicy {
    /// `none`, `on-failure` or `any`.
    pub condition: Option<String>,
    pub max_attempts: Option<i64>,
    /// Swarm's pacing of restarts: Docker restarts with its own back-off; noted.
    pub delay: Option<IgnoredAny>,
    pub window: Option<IgnoredAny>,
}

/// A top-level volume.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopVolume {
    pub labels: Option<Vars>,
    /// The Docker name; previewd names it after the preview.
    pub name: Option<String>,
    /// A volume made outside the project: refused.
    pub external: Option<Value>,
    /// `local` only.
    pub driver: Option<String>,
}

/// A top-level network.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopNetwork {
    pub labels: Option<Vars>,
    pub name: Option<String>,
    pub external: Option<Value>,
    /// `bridge` only.
    pub driver: Option<String>,
    /// No route out of the network.
    pub internal: Option<bool>,
    /// Lets other containers join: previewd joins only its own.
    #[allow(dead_code)]
    pub attachable: Option<bool>,
    pub enable_ipv4: Option<bool>,
    pub enable_ipv6: Option<bool>,
    /// Address management: the subnets are not used (previewd assigns every preview network
    /// one of its pool); a driver other than `default` is refused.
    pub ipam: Option<Value>,
}

/// A top-level secret or config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopFile {
    /// A file of the repository.
    pub file: Option<String>,
    pub name: Option<String>,
    pub external: Option<Value>,
    /// Inline content.
    pub content: Option<String>,
}

/// A service's reference to a secret or config: its name, or `{source, target, uid, gid,
/// mode}`.
#[derive(Debug)]
pub(super) enum FileRef {
    Short(String),
    Long(LongFileRef),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LongFileRef {
    pub source: String,
    pub target: Option<String>,
    /// Ownership and mode of the mounted file: a bind mount keeps the repository file's.
    pub uid: Option<Text>,
    pub gid: Option<Text>,
    pub mode: Option<Text>,
}

/// One `volumes` entry of a service.
#[derive(Debug)]
pub(super) enum ServiceVolume {
    Short(String),
    Long(Box<LongVolume>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LongVolume {
    /// `volume`, `bind`, `tmpfs`; `npipe`, `cluster` and `image` are refused.
    #[serde(rename = "type")]
    pub kind: String,
    pub source: Option<String>,
    pub target: String,
    pub read_only: Option<bool>,
    /// Docker Desktop's file-sharing hint: no meaning on Linux.
    #[allow(dead_code)]
    pub consistency: Option<IgnoredAny>,
    pub bind: Option<BindOptions>,
    pub volume: Option<VolumeOptions>,
    pub tmpfs: Option<TmpfsOptions>,
    /// Options of `type: image`, which is refused.
    #[allow(dead_code)]
    pub image: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BindOptions {
    /// Propagation to the host's mounts: refused.
    pub propagation: Option<String>,
    /// Folders compose would create on the host when missing: the path must exist.
    pub create_host_path: Option<bool>,
    pub selinux: Option<String>,
    pub recursive: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VolumeOptions {
    /// Do not copy the image's files into a new volume.
    pub nocopy: Option<bool>,
    pub subpath: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TmpfsOptions {
    pub size: Option<Text>,
    /// Noted as not applied.
    pub mode: Option<Text>,
}

/// `networks` of a service: a list of names, or names mapped to their settings.
#[derive(Debug)]
pub(super) struct ServiceNetworks(pub Vec<(String, Option<NetworkAttach>)>);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkAttach {
    pub aliases: Option<Vec<String>>,
    /// Fixed addresses: refused (previewd picks subnets).
    pub ipv4_address: Option<IgnoredAny>,
    pub ipv6_address: Option<IgnoredAny>,
    pub link_local_ips: Option<IgnoredAny>,
    pub mac_address: Option<IgnoredAny>,
    pub driver_opts: Option<IgnoredAny>,
    pub interface_name: Option<IgnoredAny>,
    /// Order of connection: previewd connects at create.
    #[allow(dead_code)]
    pub priority: Option<IgnoredAny>,
    #[allow(dead_code)]
    pub gw_priority: Option<IgnoredAny>,
}

/// `depends_on`: names, each with its condition when the long form gives one.
#[derive(Debug)]
pub(super) struct DependsOn(pub Vec<(String, Option<DependsOnCondition>)>);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DependsOnCondition {
    /// `service_started`, `service_healthy` or `service_completed_successfully`.
    pub condition: Option<String>,
    /// Restart this service when the dependency restarts: Docker restarts neither here.
    pub restart: Option<bool>,
    /// `false`: the dependency may be missing.
    pub required: Option<bool>,
}

/// One `ports` entry.
#[derive(Debug)]
pub(super) enum Port {
    Short(String),
    Long(LongPort),
}

/// The long form of a `ports` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LongPort {
    /// The container port: what the gateway routes to.
    pub target: u64,
    /// The host port: never published.
    pub published: Option<Text>,
    /// The host address: nothing is published on it.
    pub host_ip: Option<String>,
    /// `tcp` only: the gateway speaks HTTP.
    pub protocol: Option<String>,
    /// `ingress` or `host`: nothing is published either way.
    #[allow(dead_code)]
    pub mode: Option<String>,
    /// A hint for tools.
    #[allow(dead_code)]
    pub app_protocol: Option<IgnoredAny>,
    /// A human-readable name.
    #[allow(dead_code)]
    pub name: Option<IgnoredAny>,
}
