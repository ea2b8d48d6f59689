//! `.previewd.yml`, previewd's own format (see docs/architecture.md and docs/config.md). The raw structs
//! below mirror the file one to one and refuse any key they do not list; the checks are in
//! `validate`. Nothing here decides a default or a limit.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::raw::{Build, Command, Health, Vars};
use super::validate::{self, DevDraft, Draft, Keys};
use super::{Spec, SpecError, hostile, tree, yaml};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// The services of the preview, by name (each name a DNS label).
    #[serde(default)]
    services: BTreeMap<String, RawService>,
    /// `--mode dev`: per service, an image that runs a dev server on the mounted worktree.
    #[serde(default)]
    dev: BTreeMap<String, RawDev>,
    /// What the preview's containers may reach (`none`, `public`, `all`): narrows the
    /// operator's `limits.egress`, never widens it.
    egress: Option<String>,
    /// Who may see the preview (`public`, `password`, `forge`): tightens the operator's
    /// `access.mode`, never loosens it.
    access: Option<String>,
    /// `false` keeps the whole preview awake however long nobody visits it.
    sleep: Option<bool>,
}

/// One entry of `services:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    /// A context folder (`build: api`) or `{context, dockerfile, args}`; exclusive with `image`.
    build: Option<Build>,
    /// An image already on the Docker host; exclusive with `build`.
    image: Option<String>,
    /// Container port the gateway routes to; required unless `internal`.
    port: Option<u64>,
    /// Path prefix on the preview host; `/` when only one routed service has none.
    route: Option<String>,
    /// Environment variables, as a mapping (or a list of `NAME=value`).
    env: Option<Vars>,
    /// Replaces the image's CMD: a list is run as is, a string through `/bin/sh -c`.
    command: Option<Command>,
    /// How previewd decides the service is up, through the gateway.
    healthcheck: Option<Health>,
    /// Services started before this one.
    depends_on: Option<Vec<String>>,
    /// Not routed; reachable by the other services of the preview only.
    internal: Option<bool>,
    /// `false` keeps the preview awake for this service's sake (a scheduled job, a consumer).
    sleep: Option<bool>,
}

/// One entry of `dev:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDev {
    /// The image with the toolchain (e.g. `node:22`).
    image: String,
    /// Absolute container path where the worktree is mounted and the command runs.
    workdir: String,
    /// The dev server command: a list is run as is, a string through `/bin/sh -c`.
    command: Option<Command>,
    /// Environment variables for the dev server.
    env: Option<Vars>,
    /// Container port of the dev server; defaults to the service's `port`.
    port: Option<u64>,
}

const KEYS: Keys = Keys {
    env: "env",
    port: "port",
    route: "route",
    health: "healthcheck",
    command: "command",
    depends_on: "depends_on",
};

/// A string command runs through a shell, as in a Dockerfile's shell form.
fn exec_form(command: Command) -> Vec<String> {
    match command {
        Command::Exec(args) => args,
        Command::Line(line) => vec!["/bin/sh".to_owned(), "-c".to_owned(), line],
    }
}

/// Parses and validates a `.previewd.yml`.
pub fn parse(file: &str, bytes: &[u8], worktree: &Path) -> Result<Spec, SpecError> {
    let tree = yaml::parse_tree(file, bytes)?;
    hostile::refuse_hostile(file, &tree, &["services", "dev"])?;
    let raw: File = tree::from_tree(&tree, "").map_err(|e| validate::tree_error(file, e))?;
    let egress = raw
        .egress
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: String| validate::invalid(file, "egress", e))?;
    let access = validate::access(file, "access", raw.access.as_deref())?;
    let preview_sleeps = raw.sleep.unwrap_or(true);
    let drafts = raw
        .services
        .into_iter()
        .map(|(name, s)| Draft {
            name,
            image: s.image,
            build: s.build,
            port: s.port,
            route: s.route,
            env: s.env.unwrap_or_default(),
            command: s.command.map(exec_form),
            health: s.healthcheck,
            depends_on: s.depends_on.unwrap_or_default(),
            internal: s.internal.unwrap_or(false),
            sleep: preview_sleeps && s.sleep.unwrap_or(true),
            host: Default::default(),
            run: Default::default(),
        })
        .collect();
    let devs = raw
        .dev
        .into_iter()
        .map(|(name, d)| DevDraft {
            name,
            image: d.image,
            workdir: d.workdir,
            command: d.command.map(exec_form),
            env: d.env.unwrap_or_default(),
            port: d.port,
        })
        .collect();
    let mut spec = validate::finish(file, &KEYS, drafts, devs, Default::default(), worktree)?;
    spec.egress = egress;
    spec.access = access;
    Ok(spec)
}
