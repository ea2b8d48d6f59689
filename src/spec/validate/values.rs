//! The checks of one value as written, whichever service or `dev:` entry it belongs to: ports,
//! environment variables and build args (names, count, sizes, no value copied from previewd's
//! own environment), commands, image references and the dev workdir, with the limits they
//! enforce. Each check sees one value and its key; nothing here looks at other services (that
//! is `wiring`) or reads YAML.

use std::collections::BTreeMap;

use super::invalid;
use crate::spec::SpecError;
use crate::spec::raw::Vars;
use crate::spec::yaml::{clip, join};

/// Most environment variables (or build args) per service.
pub const MAX_ENV_VARS: usize = 200;
/// Largest environment variable (or build arg) value, in bytes.
pub const MAX_ENV_VALUE: usize = 64 * 1024;
/// Largest command, all arguments together, in bytes.
pub const MAX_COMMAND: usize = 64 * 1024;

pub(super) fn check_port(file: &str, key: &str, port: u64) -> Result<u16, SpecError> {
    match u16::try_from(port) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(invalid(
            file,
            key,
            format!("{port} is not a port: use 1 to 65535"),
        )),
    }
}

/// Checks environment variables or build args: names, count, sizes, and no value-less entries
/// (compose would fill those from the environment of the process, i.e. previewd's secrets).
pub(crate) fn check_vars(
    file: &str,
    key: &str,
    vars: Vars,
) -> Result<BTreeMap<String, String>, SpecError> {
    if vars.0.len() > MAX_ENV_VARS {
        return Err(invalid(
            file,
            key,
            format!(
                "sets {} variables; the limit is {MAX_ENV_VARS}",
                vars.0.len()
            ),
        ));
    }
    let mut out = BTreeMap::new();
    for (name, value) in vars.0 {
        let var_key = join(key, &clip(&name));
        if !valid_var_name(&name) {
            return Err(invalid(
                file,
                var_key,
                "is not a valid variable name: use letters, digits, `_`, `.` and `-`, not starting with a digit",
            ));
        }
        let Some(value) = value else {
            return Err(SpecError::Refused {
                file: file.to_owned(),
                key: var_key,
                reason: "has no value, which would copy it from previewd's own environment \
                         (where its secrets live): write the value"
                    .to_owned(),
            });
        };
        if value.len() > MAX_ENV_VALUE {
            return Err(invalid(
                file,
                var_key,
                format!("is {} bytes; the limit is {MAX_ENV_VALUE}", value.len()),
            ));
        }
        if value.contains('\0') {
            return Err(invalid(file, var_key, "contains a NUL byte"));
        }
        if out.insert(name, value).is_some() {
            return Err(invalid(file, var_key, "is set twice"));
        }
    }
    Ok(out)
}

/// A shell's names, plus `.` and `-` after the first character: Docker passes any name
/// without `=`, and real projects use dotted ones (Elasticsearch's `discovery.type`, Spring's
/// `spring.profiles.active`); nothing that could split or end the `NAME=value` entry.
fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub(super) fn check_command(
    file: &str,
    key: &str,
    args: Vec<String>,
) -> Result<Vec<String>, SpecError> {
    if args.is_empty() || args.iter().all(|a| a.trim().is_empty()) {
        return Err(invalid(
            file,
            key,
            "is empty: remove it to keep the image's own command",
        ));
    }
    if args.iter().map(String::len).sum::<usize>() > MAX_COMMAND {
        return Err(invalid(
            file,
            key,
            format!("is longer than {MAX_COMMAND} bytes"),
        ));
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(invalid(file, key, "contains a NUL byte"));
    }
    Ok(args)
}

/// An image reference as Docker reads it (`redis:7`, `ghcr.io/o/app@sha256:...`).
pub(in crate::spec) fn check_image(file: &str, key: &str, image: &str) -> Result<(), SpecError> {
    let ok_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':' | '@' | '-');
    let first_ok = image
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if image.len() > 255 || !first_ok || !image.chars().all(ok_char) {
        return Err(invalid(
            file,
            key,
            format!("`{}` is not an image reference like `redis:7`", clip(image)),
        ));
    }
    Ok(())
}

/// A build stage name (`FROM ... AS name`): what Docker accepts after `--target`.
pub(super) fn check_stage(file: &str, key: &str, stage: &str) -> Result<(), SpecError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if stage.is_empty() || stage.len() > 128 || !stage.chars().all(ok_char) {
        return Err(invalid(
            file,
            key,
            format!(
                "`{}` is not a stage name (letters, digits, `.`, `_`, `-`)",
                clip(stage)
            ),
        ));
    }
    Ok(())
}

/// The container path the worktree is mounted at in dev mode: absolute, plain, not `/`.
pub(super) fn check_workdir(file: &str, key: &str, workdir: &str) -> Result<(), SpecError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/');
    let fine = workdir.starts_with('/')
        && workdir.len() <= 256
        && !workdir.trim_end_matches('/').is_empty()
        && workdir.chars().all(plain)
        && !workdir.split('/').any(|s| s == ".." || s == ".");
    if fine {
        Ok(())
    } else {
        Err(invalid(
            file,
            key,
            format!(
                "`{}` must be an absolute container path other than `/`, of letters, digits, \
                 `-`, `.`, `_` and `/`, without `..` (e.g. `/app`)",
                clip(workdir)
            ),
        ))
    }
}
