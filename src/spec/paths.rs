//! Paths from the config that point into the worktree: build contexts and Dockerfiles. Each is
//! resolved against the real file system (symbolic links included) and must stay inside the
//! worktree, and a Dockerfile inside its context, so that a pull request cannot make previewd
//! send `/etc` or another repository's checkout to Docker. Nothing here reads file contents.

use std::io;
use std::path::{Component, Path, PathBuf};

use super::raw::{Build, Vars};
use super::yaml::{clip, join};
use super::{BuildSpec, SpecError};

/// Where a build's paths came from, for messages.
struct Keys {
    context: String,
    dockerfile: String,
}

/// Resolves a raw `build:` against the worktree. Returns the build with the context relative to
/// the worktree and the Dockerfile relative to the context (both after symlinks are resolved),
/// and the raw build args for `validate` to check.
pub fn resolve_build(
    file: &str,
    prefix: &str,
    worktree: &Path,
    build: &Build,
) -> Result<(BuildSpec, Vars), SpecError> {
    let (context, dockerfile, args, target, keys) = match build {
        Build::Short(context) => {
            let key = join(prefix, "build");
            let keys = Keys {
                context: key.clone(),
                dockerfile: key,
            };
            (context.as_str(), None, Vars::default(), None, keys)
        }
        Build::Full(map) => (
            map.context.as_deref().unwrap_or("."),
            map.dockerfile.as_deref(),
            map.args.clone().unwrap_or_default(),
            map.target.as_deref(),
            Keys {
                context: join(prefix, "build.context"),
                dockerfile: join(prefix, "build.dockerfile"),
            },
        ),
    };
    let dockerfile = dockerfile.unwrap_or("Dockerfile");
    let err = |key: &str, refused: bool, reason: String| {
        let (file, key) = (file.to_owned(), key.to_owned());
        if refused {
            SpecError::Refused { file, key, reason }
        } else {
            SpecError::Invalid { file, key, reason }
        }
    };

    if let Some(target) = target
        && !is_stage_name(target)
    {
        let reason = format!(
            "`{}` is not a build stage name (a letter, then letters, digits, `_`, `.` or `-`)",
            clip(target)
        );
        return Err(err(&join(prefix, "build.target"), false, reason));
    }
    check_relative(context).map_err(|(refused, reason)| err(&keys.context, refused, reason))?;
    check_relative(dockerfile)
        .map_err(|(refused, reason)| err(&keys.dockerfile, refused, reason))?;

    let root = worktree.canonicalize().map_err(|e| SpecError::Unreadable {
        file: file.to_owned(),
        reason: format!(
            "the worktree {} cannot be resolved: {e}",
            worktree.display()
        ),
    })?;
    let context_dir = resolve(&root, context).map_err(|e| {
        err(
            &keys.context,
            false,
            format!("`{}` {}", clip(context), not_found(&e)),
        )
    })?;
    if !context_dir.starts_with(&root) {
        return Err(err(
            &keys.context,
            true,
            format!(
                "`{}` leads outside the repository (through a symbolic link)",
                clip(context)
            ),
        ));
    }
    if !context_dir.is_dir() {
        return Err(err(
            &keys.context,
            false,
            format!("`{}` is not a directory", clip(context)),
        ));
    }
    let dockerfile_path = resolve(&context_dir, dockerfile).map_err(|e| {
        err(
            &keys.dockerfile,
            false,
            format!(
                "Dockerfile `{}` {} in the build context",
                clip(dockerfile),
                not_found(&e)
            ),
        )
    })?;
    if !dockerfile_path.starts_with(&context_dir) {
        return Err(err(
            &keys.dockerfile,
            true,
            format!(
                "Dockerfile `{}` leads outside the build context (through a symbolic link)",
                clip(dockerfile)
            ),
        ));
    }
    if !dockerfile_path.is_file() {
        return Err(err(
            &keys.dockerfile,
            false,
            format!("Dockerfile `{}` is not a file", clip(dockerfile)),
        ));
    }
    let relative_context = relative(&context_dir, &root);
    let relative_dockerfile = relative(&dockerfile_path, &context_dir);
    let spec = BuildSpec {
        context: relative_context,
        dockerfile: relative_dockerfile,
        args: Default::default(),
        target: target.map(str::to_owned),
        options: Default::default(),
    };
    Ok((spec, args))
}

/// A stage name as Docker's Dockerfile parser accepts it after `FROM ... AS`.
fn is_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A path of the repository as a config writes it (`./conf/nginx.conf`), resolved against the
/// real file system, symbolic links included, and refused unless it stays inside `worktree`.
/// Returns it relative to the worktree's root. A tail that does not exist yet is kept as
/// written (compose creates a missing bind-mount folder; previewd creates it inside the
/// worktree). `Err((refused, reason))` as [`check_relative`]. Run again right before a mount,
/// since the worktree may have changed since the config was read.
pub fn resolve_inside(worktree: &Path, path: &str) -> Result<PathBuf, (bool, String)> {
    if path.contains("docker.sock") {
        return Err((
            true,
            "it mounts the Docker socket, which would give the preview control of every \
             container on the host"
                .to_owned(),
        ));
    }
    check_relative(path)?;
    let root = worktree
        .canonicalize()
        .map_err(|e| (false, format!("the worktree cannot be resolved: {e}")))?;
    let mut existing = root.clone();
    let mut rest = PathBuf::new();
    for c in Path::new(path).components() {
        let Component::Normal(part) = c else { continue };
        if rest.as_os_str().is_empty() {
            let next = existing.join(part);
            match std::fs::symlink_metadata(&next) {
                Ok(_) => {
                    existing = next
                        .canonicalize()
                        .map_err(|e| (true, format!("`{}` cannot be resolved: {e}", clip(path))))?;
                    if !existing.starts_with(&root) {
                        return Err((
                            true,
                            format!(
                                "`{}` leads outside the repository (through a symbolic link)",
                                clip(path)
                            ),
                        ));
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err((false, format!("`{}` cannot be read: {e}", clip(path)))),
            }
        }
        rest.push(part);
    }
    let relative = relative(&existing, &root);
    Ok(if rest.as_os_str().is_empty() {
        relative
    } else if relative == Path::new(".") {
        rest
    } else {
        relative.join(rest)
    })
}

fn resolve(base: &Path, relative: &str) -> io::Result<PathBuf> {
    base.join(relative).canonicalize()
}

fn not_found(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        "does not exist".to_owned()
    } else {
        format!("cannot be read ({e})")
    }
}

fn relative(path: &Path, base: &Path) -> PathBuf {
    match path.strip_prefix(base) {
        Ok(rel) if rel.as_os_str().is_empty() => PathBuf::from("."),
        Ok(rel) => rel.to_path_buf(),
        Err(_) => PathBuf::from("."),
    }
}

/// Checks the spelling of a path that must stay inside the worktree. `Err((refused, reason))`:
/// `refused` when the path tries to leave the worktree, as opposed to being malformed.
fn check_relative(path: &str) -> Result<(), (bool, String)> {
    if path.is_empty() {
        return Err((false, "is empty".to_owned()));
    }
    if path.contains('\0') {
        return Err((false, "contains a NUL byte".to_owned()));
    }
    if path.contains("://") || path.starts_with("git@") {
        return Err((
            true,
            "remote build contexts are not supported: use a folder of the repository".to_owned(),
        ));
    }
    let p = Path::new(path);
    if p.is_absolute() || path.starts_with('~') || path.starts_with('$') {
        return Err((
            true,
            format!(
                "`{}` must be a path inside the repository, relative to its root",
                clip(path)
            ),
        ));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err((
            true,
            format!("`{}` must not leave the repository (`..`)", clip(path)),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::raw::BuildMap;

    #[test]
    fn context_and_dockerfile_resolve_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("api/docker")).expect("mkdir");
        std::fs::write(dir.path().join("api/docker/Dockerfile.dev"), "FROM x").expect("write");
        let build = Build::Full(BuildMap {
            context: Some("./api/".into()),
            dockerfile: Some("docker/Dockerfile.dev".into()),
            args: None,
            target: Some("dev-stage_1.x".into()),
        });
        let (spec, _) = resolve_build("f", "services.api", dir.path(), &build).expect("ok");
        assert_eq!(spec.context, PathBuf::from("api"));
        assert_eq!(spec.dockerfile, PathBuf::from("docker/Dockerfile.dev"));
        assert_eq!(spec.target.as_deref(), Some("dev-stage_1.x"));
    }

    #[test]
    fn a_target_must_be_a_stage_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("Dockerfile"), "FROM x").expect("write");
        for bad in ["", "1st", "a b", "a;rm", "--help"] {
            let build = Build::Full(BuildMap {
                context: None,
                dockerfile: None,
                args: None,
                target: Some(bad.into()),
            });
            let r = resolve_build("f", "services.web", dir.path(), &build);
            assert!(
                matches!(r, Err(SpecError::Invalid { ref key, .. }) if key == "services.web.build.target"),
                "{bad:?}: {r:?}"
            );
        }
    }

    #[test]
    fn missing_dockerfile_is_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = resolve_build("f", "services.web", dir.path(), &Build::Short(".".into()));
        assert!(
            matches!(r, Err(SpecError::Invalid { ref key, .. }) if key == "services.web.build")
        );
    }
}
