//! The plan `check` prints for a valid config: each service with its image or build, its URL
//! (or that it is internal), its mounts and networks, and what previewd does differently from
//! the file's literal meaning. The preview's id is not known yet, so URLs show `<id>`. Pure:
//! nothing here reads files or talks to Docker.

use std::fmt::Write;

use crate::spec::{Host, ImageSource, Mount, Spec};

pub fn plan(spec: &Spec) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: valid", spec.source);
    for svc in spec.services.values() {
        let what = match &svc.image {
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
            (_, true) | (None, _) => "internal".to_owned(),
            (Some(r), false) => {
                let host = match svc.host {
                    Host::Preview => "<id>.<domain>".to_owned(),
                    Host::Service => format!("<id>-{}.<domain>", svc.name),
                };
                let health = if svc.healthcheck.required {
                    format!(
                        ", health GET {} = {}",
                        svc.healthcheck.path, svc.healthcheck.status
                    )
                } else {
                    String::new()
                };
                format!(
                    "route {} → port {}{health}; URL http://{host}{}",
                    r.as_str(),
                    svc.port.map_or("?".into(), |p| p.to_string()),
                    if r.as_str() == "/" { "/" } else { r.as_str() },
                )
            }
        };
        let _ = writeln!(out, "  {:<12} {what}; {route}", svc.name.as_str());
        let pad = " ".repeat(15);
        let run = &svc.run;
        if !run.mounts.is_empty() {
            let mounts: Vec<String> = run.mounts.iter().map(mount).collect();
            let _ = writeln!(out, "{pad}mounts: {}", mounts.join(", "));
        }
        if !run.networks.is_empty() {
            let nets: Vec<String> = run
                .networks
                .iter()
                .map(|(n, a)| {
                    if a.is_empty() {
                        n.clone()
                    } else {
                        format!("{n} (aliases {})", a.join(", "))
                    }
                })
                .collect();
            let _ = writeln!(out, "{pad}networks: {}", nets.join(", "));
        }
        if !run.aliases.is_empty() {
            let _ = writeln!(out, "{pad}also reachable as: {}", run.aliases.join(", "));
        }
        if !run.conditions.is_empty() {
            let waits: Vec<String> = run
                .conditions
                .iter()
                .map(|(d, c)| format!("{d} ({c})"))
                .collect();
            let _ = writeln!(out, "{pad}starts after: {}", waits.join(", "));
        }
        for change in &run.changes {
            let _ = writeln!(out, "{pad}changed: {change}");
        }
    }
    for d in spec.dev.values() {
        let _ = writeln!(
            out,
            "  dev {:<8} image {} in {}",
            d.name.as_str(),
            d.image,
            d.workdir
        );
    }
    if !spec.volumes.is_empty() {
        let names: Vec<&str> = spec.volumes.keys().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "volumes: {} (one Docker volume each per preview, kept across pushes, removed with \
             the preview)",
            names.join(", ")
        );
    }
    if !spec.networks.is_empty() {
        let names: Vec<&str> = spec.networks.keys().map(String::as_str).collect();
        let _ = writeln!(out, "networks: {} (of this preview only)", names.join(", "));
    }
    for change in &spec.changes {
        let _ = writeln!(out, "changed: {change}");
    }
    out
}

fn mount(m: &Mount) -> String {
    let ro = |r: bool| if r { " (ro)" } else { "" };
    match m {
        Mount::Volume {
            name,
            target,
            read_only,
        } => format!("volume {name} → {target}{}", ro(*read_only)),
        Mount::Anonymous { target } => format!("anonymous volume → {target}"),
        Mount::Bind {
            source,
            target,
            read_only,
        } => format!("./{} → {target}{}", source.display(), ro(*read_only)),
        Mount::Tmpfs { target, .. } => format!("tmpfs → {target}"),
    }
}
