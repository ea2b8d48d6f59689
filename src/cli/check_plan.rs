//! The plan `check` prints for a valid config: each service with its image or build, its URL
//! (or that it is internal), its mounts and networks, and what previewd does differently from
//! the file's literal meaning. One [`Plan`] value is rendered as text for a person and as JSON
//! for a script, so the two never say different things. The preview's id is not known yet, so
//! URLs show `<id>`. Pure: nothing here reads files or talks to Docker.

use std::fmt::{self, Display, Write};

use serde::Serialize;

use crate::spec::runtime::Copied;
use crate::spec::{Host, ImageSource, Mount, Spec};

#[derive(Debug, Serialize)]
pub struct Plan {
    /// The file the config was read from (`.previewd.yml`, `compose.yaml`, ...).
    pub file: String,
    pub services: Vec<PlanService>,
    pub dev: Vec<PlanDev>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
    /// What previewd does differently from the file's literal meaning, beyond single services.
    pub changed: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PlanService {
    pub name: String,
    /// `image NAME`, or `build CONTEXT (DOCKERFILE[, target T])`.
    pub source: String,
    /// `None` for an internal service.
    pub route: Option<PlanRoute>,
    pub mounts: Vec<String>,
    /// Each network with the aliases the service has there.
    pub networks: Vec<PlanNetwork>,
    pub aliases: Vec<String>,
    /// The services this one starts after, each with its condition.
    pub starts_after: Vec<String>,
    /// Lifecycle hooks: `post_start: CMD` and `pre_stop: CMD`, in order.
    pub hooks: Vec<String>,
    pub changed: Vec<String>,
    /// What its Dockerfile needs of the host (`check` reads it; the plan alone does not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PlanRoute {
    pub path: String,
    pub port: Option<u16>,
    pub url: String,
    /// `GET PATH = STATUS` when a deployment waits for it.
    pub health: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PlanNetwork {
    pub name: String,
    pub aliases: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PlanDev {
    pub name: String,
    pub image: String,
    pub workdir: String,
}

impl Plan {
    pub fn of(spec: &Spec) -> Plan {
        Plan {
            file: spec.source.clone(),
            services: spec.services.values().map(service).collect(),
            dev: spec
                .dev
                .values()
                .map(|d| PlanDev {
                    name: d.name.as_str().to_owned(),
                    image: d.image.clone(),
                    workdir: d.workdir.clone(),
                })
                .collect(),
            volumes: spec.volumes.keys().cloned().collect(),
            networks: spec.networks.keys().cloned().collect(),
            changed: spec.changes.clone(),
        }
    }
}

fn service(svc: &crate::spec::Service) -> PlanService {
    let source = match &svc.image {
        ImageSource::Image(i) => format!("image {i}"),
        ImageSource::Build(b) => format!(
            "build {} ({}{})",
            b.context.display(),
            b.dockerfile.display(),
            b.target
                .as_ref()
                .map(|t| format!(", target {t}"))
                .unwrap_or_default()
        ),
    };
    let route = match (&svc.route, svc.internal) {
        (_, true) | (None, _) => None,
        (Some(r), false) => {
            let host = match svc.host {
                Host::Preview => "<id>.<domain>".to_owned(),
                Host::Service => format!("<id>-{}.<domain>", svc.name),
            };
            Some(PlanRoute {
                path: r.as_str().to_owned(),
                port: svc.port,
                url: format!("http://{host}{}", r.as_str()),
                health: svc
                    .healthcheck
                    .required
                    .then(|| format!("GET {} = {}", svc.healthcheck.path, svc.healthcheck.status)),
            })
        }
    };
    let run = &svc.run;
    PlanService {
        name: svc.name.as_str().to_owned(),
        source,
        route,
        mounts: run.mounts.iter().map(mount).collect(),
        networks: run
            .networks
            .iter()
            .map(|(n, a)| PlanNetwork {
                name: n.clone(),
                aliases: a.clone(),
            })
            .collect(),
        aliases: run.aliases.clone(),
        starts_after: run
            .conditions
            .iter()
            .map(|(d, c)| format!("{d} ({c})"))
            .collect(),
        hooks: [("post_start", &run.post_start), ("pre_stop", &run.pre_stop)]
            .into_iter()
            .flat_map(|(when, hooks)| {
                hooks.iter().map(move |h| {
                    let user = h
                        .user
                        .as_ref()
                        .map(|u| format!(" (as {u})"))
                        .unwrap_or_default();
                    format!("{when}: {}{user}", h.command.join(" "))
                })
            })
            .collect(),
        changed: run.changes.clone(),
        notes: Vec::new(),
    }
}

impl Display for Plan {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(out, "{}: valid", self.file)?;
        let pad = " ".repeat(15);
        for svc in &self.services {
            let route = match &svc.route {
                None => "internal".to_owned(),
                Some(r) => format!(
                    "route {} → port {}{}; URL {}",
                    r.path,
                    r.port.map_or("?".into(), |p| p.to_string()),
                    r.health
                        .as_ref()
                        .map(|h| format!(", health {h}"))
                        .unwrap_or_default(),
                    r.url,
                ),
            };
            writeln!(out, "  {:<12} {}; {route}", svc.name, svc.source)?;
            if !svc.mounts.is_empty() {
                writeln!(out, "{pad}mounts: {}", svc.mounts.join(", "))?;
            }
            if !svc.networks.is_empty() {
                let nets: Vec<String> = svc.networks.iter().map(network).collect();
                writeln!(out, "{pad}networks: {}", nets.join(", "))?;
            }
            if !svc.aliases.is_empty() {
                writeln!(out, "{pad}also reachable as: {}", svc.aliases.join(", "))?;
            }
            if !svc.starts_after.is_empty() {
                writeln!(out, "{pad}starts after: {}", svc.starts_after.join(", "))?;
            }
            for hook in &svc.hooks {
                writeln!(out, "{pad}runs {hook}")?;
            }
            for change in &svc.changed {
                writeln!(out, "{pad}changed: {change}")?;
            }
            for note in &svc.notes {
                writeln!(out, "{pad}note: {note}")?;
            }
        }
        for d in &self.dev {
            writeln!(
                out,
                "  dev {:<8} image {} in {}",
                d.name, d.image, d.workdir
            )?;
        }
        if !self.volumes.is_empty() {
            writeln!(
                out,
                "volumes: {} (one Docker volume each per preview, kept across pushes, removed \
                 with the preview)",
                self.volumes.join(", ")
            )?;
        }
        if !self.networks.is_empty() {
            writeln!(
                out,
                "networks: {} (of this preview only)",
                self.networks.join(", ")
            )?;
        }
        for change in &self.changed {
            writeln!(out, "changed: {change}")?;
        }
        Ok(())
    }
}

fn network(n: &PlanNetwork) -> String {
    let mut s = n.name.clone();
    if !n.aliases.is_empty() {
        let _ = write!(s, " (aliases {})", n.aliases.join(", "));
    }
    s
}

fn mount(m: &Mount) -> String {
    let ro = |r: bool| if r { " (ro)" } else { "" };
    match m {
        Mount::Volume {
            name,
            target,
            read_only,
            ..
        } => format!("volume {name} → {target}{}", ro(*read_only)),
        Mount::Anonymous { target, .. } => format!("anonymous volume → {target}"),
        Mount::Bind {
            source,
            target,
            read_only,
        } => format!("./{} → {target}{}", source.display(), ro(*read_only)),
        Mount::Tmpfs { target, .. } => format!("tmpfs → {target}"),
        Mount::File {
            source,
            target,
            uid,
            gid,
            mode,
        } => {
            let what = match source {
                Copied::Repo(p) => format!("./{}", p.display()),
                Copied::Inline(data) => format!("inline content ({} bytes)", data.len()),
            };
            format!("{what} copied to {target} (owner {uid}:{gid}, mode {mode:o})")
        }
    }
}
