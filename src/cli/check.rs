//! `previewd check [PATH]`: validates a repository's preview config. On success it prints the
//! plan (`check_plan`); otherwise every problem found, each naming the file, the key, why, and
//! what to do, so that one round of fixes can address them all. With `--json`, the same as one
//! object: `{"valid": true, "plan": {..}, "problems": []}` or `{"valid": false, "problems": [..]}`;
//! the exit status is the same as without it.

use std::path::Path;

use serde::Serialize;

use super::check_plan::Plan;
use super::{CliError, Outcome};
use crate::spec::{self, SpecError};

pub fn run(path: &Path, json: bool) -> Result<Outcome, CliError> {
    // Otherwise a mistyped path reads as a repository without a preview config.
    if !path.is_dir() {
        return Err(CliError::NotAFolder(path.to_path_buf()));
    }
    let loaded = spec::load(path);
    if json {
        let report = match &loaded {
            Ok(spec) => Report {
                valid: true,
                plan: Some(plan(path, spec)),
                problems: Vec::new(),
            },
            Err(e) => Report {
                valid: false,
                plan: None,
                problems: e.problems().into_iter().map(Problem::of).collect(),
            },
        };
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(if report.valid {
            Outcome::Done
        } else {
            Outcome::Failed
        });
    }
    match loaded {
        Ok(spec) => {
            out!("{}", plan(path, &spec));
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

/// The plan, with what each built service's Dockerfile needs of the preview host.
fn plan(path: &Path, spec: &spec::Spec) -> Plan {
    use crate::preview::build::dockerfile;
    let mut plan = Plan::of(spec);
    for (service, planned) in spec.services.values().zip(plan.services.iter_mut()) {
        let spec::ImageSource::Build(b) = &service.image else {
            continue;
        };
        // Unreadable here: the build says why, with the context's own rules.
        let Ok(text) = std::fs::read(path.join(&b.context).join(&b.dockerfile)) else {
            continue;
        };
        for feature in dockerfile::newer_engine_features(&text) {
            planned.notes.push(format!(
                "{feature} needs Docker 23+ on the preview host (Docker 20.10's builder refuses it)"
            ));
        }
        let ids = dockerfile::secret_ids(&text);
        if !ids.is_empty() {
            planned.notes.push(format!(
                "build secrets {}: the operator sets them per repository ([build_secrets] in previewd.toml); a fork's pull request gets none",
                ids.join(", ")
            ));
        }
    }
    plan
}

#[derive(Serialize)]
struct Report {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<Plan>,
    problems: Vec<Problem>,
}

/// One problem as a script reads it: the file and key when the problem has them, and the
/// sentence a person reads.
#[derive(Serialize)]
struct Problem {
    kind: &'static str,
    file: Option<String>,
    key: Option<String>,
    message: String,
}

impl Problem {
    fn of(e: &SpecError) -> Problem {
        let (kind, file, key) = match e {
            SpecError::Missing => ("missing", None, None),
            SpecError::Unreadable { file, .. } => ("unreadable", Some(file), None),
            SpecError::Syntax { file, .. } => ("syntax", Some(file), None),
            SpecError::Refused { file, key, .. } => ("refused", Some(file), Some(key)),
            SpecError::Invalid { file, key, .. } => ("invalid", Some(file), Some(key)),
            // `problems()` flattens these away.
            SpecError::Several(_) => ("several", None, None),
        };
        Problem {
            kind,
            file: file.cloned(),
            key: key.cloned(),
            message: e.to_string(),
        }
    }
}
