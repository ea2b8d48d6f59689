//! `previewd check [PATH]`: validates a repository's preview config and prints the plan.

use std::path::Path;

use super::{CliError, Outcome};
use crate::spec::{self, ImageSource};

pub fn run(path: &Path) -> Result<Outcome, CliError> {
    // Otherwise a mistyped path reads as a repository without a preview config.
    if !path.is_dir() {
        return Err(CliError::NotAFolder(path.to_path_buf()));
    }
    let spec = spec::load(path)?;
    println!("{}: valid", spec.source);
    for svc in spec.services.values() {
        let what = match &svc.image {
            ImageSource::Image(i) => format!("image {i}"),
            ImageSource::Build(b) => {
                format!("build {} ({})", b.context.display(), b.dockerfile.display())
            }
        };
        let route = match (&svc.route, svc.internal) {
            (_, true) | (None, _) => "internal".to_owned(),
            (Some(r), false) => format!(
                "route {} → port {}, health GET {} = {}",
                r.as_str(),
                svc.port.map_or("?".into(), |p| p.to_string()),
                svc.healthcheck.path,
                svc.healthcheck.status
            ),
        };
        println!("  {:<12} {what}; {route}", svc.name.as_str());
    }
    for d in spec.dev.values() {
        println!(
            "  dev {:<8} image {} in {}",
            d.name.as_str(),
            d.image,
            d.workdir
        );
    }
    Ok(Outcome::Done)
}
