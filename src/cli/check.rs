//! `previewd check [PATH]`: validates a repository's preview config. On success it prints the
//! plan (`check_plan`); otherwise every problem found, one per line, each naming the file, the
//! key, why, and what to do, so that one round of fixes can address them all.

use std::path::Path;

use super::{CliError, Outcome};
use crate::spec::{self, SpecError};

pub fn run(path: &Path) -> Result<Outcome, CliError> {
    // Otherwise a mistyped path reads as a repository without a preview config.
    if !path.is_dir() {
        return Err(CliError::NotAFolder(path.to_path_buf()));
    }
    match spec::load(path) {
        Ok(spec) => {
            print!("{}", super::check_plan::plan(&spec));
            Ok(Outcome::Done)
        }
        Err(e @ SpecError::Several(_)) => {
            let problems = e.problems();
            eprintln!("previewd: {} problems:", problems.len());
            for p in problems {
                eprintln!("  - {p}");
            }
            Ok(Outcome::Failed)
        }
        Err(e) => Err(e.into()),
    }
}
