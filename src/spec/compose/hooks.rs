//! Compose's lifecycle hooks, `post_start` and `pre_stop`: commands run inside the service's
//! own container, with its user, working directory and environment unless the hook sets its
//! own. Nothing here runs anything (the manager runs them through Docker's exec), and no hook
//! ever runs privileged: `privileged: true` is refused naming the key.

use super::project::{invalid, refused};
use super::shape::{RawHook, RawService};
use super::storage::check_target;
use super::words::split_words;
use crate::spec::SpecError;
use crate::spec::raw::Command;
use crate::spec::runtime::{Hook, Runtime};
use crate::spec::validate;
use crate::spec::yaml::join;

/// Hooks a service may have in each of `post_start` and `pre_stop`.
const MAX_HOOKS: usize = 8;

/// Reads `post_start` and `pre_stop` into `run`.
pub(super) fn hooks(
    file: &str,
    prefix: &str,
    raw: &mut RawService,
    run: &mut Runtime,
    problems: &mut Vec<SpecError>,
) {
    for (section, list) in [
        ("post_start", raw.post_start.take()),
        ("pre_stop", raw.pre_stop.take()),
    ] {
        let list = list.unwrap_or_default();
        let key = join(prefix, section);
        if list.len() > MAX_HOOKS {
            problems.push(invalid(
                file,
                key.clone(),
                format!("has {} hooks; the limit is {MAX_HOOKS}", list.len()),
            ));
            continue;
        }
        let out: Vec<Hook> = list
            .into_iter()
            .enumerate()
            .filter_map(|(i, h)| hook(file, &format!("{key}[{i}]"), h, problems))
            .collect();
        if section == "post_start" {
            run.post_start = out;
        } else {
            run.pre_stop = out;
        }
    }
}

fn hook(file: &str, key: &str, h: RawHook, problems: &mut Vec<SpecError>) -> Option<Hook> {
    let before = problems.len();
    if h.privileged == Some(true) {
        problems.push(refused(
            file,
            join(key, "privileged"),
            "a privileged hook would get the host's devices and every capability; previews \
             never run privileged (a hook may run as `user: root`)",
        ));
    }
    let command = match h.command {
        Command::Exec(args) => args,
        Command::Line(line) => split_words(&line).unwrap_or_else(|reason| {
            problems.push(invalid(file, join(key, "command"), reason));
            Vec::new()
        }),
    };
    if command.is_empty() && problems.len() == before {
        problems.push(invalid(
            file,
            join(key, "command"),
            "is empty: the command to run",
        ));
    }
    if let Some(wd) = &h.working_dir
        && wd != "/"
        && let Err(e) = check_target(file, &join(key, "working_dir"), wd)
    {
        problems.push(e);
    }
    // The same rules as a service's environment: a name without a value (which compose
    // would copy from its own environment) is refused.
    let env = match h.environment {
        None => Vec::new(),
        Some(vars) => match validate::check_vars(file, &join(key, "environment"), vars) {
            Ok(vars) => vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            Err(e) => {
                problems.push(e);
                Vec::new()
            }
        },
    };
    (problems.len() == before).then(|| Hook {
        command,
        user: h.user.map(|u| u.0),
        working_dir: h.working_dir,
        env,
    })
}
