//! The build context of one service: the tar sent to Docker's build API, and a content hash
//! that lets an unchanged service reuse its image. `.dockerignore` is honoured with Docker's
//! semantics (or `.env` files and `node_modules` end up in images). The tar is deterministic:
//! sorted entries, mtime 0, owner 0, modes normalised, so the hash depends on content only.
//! Nothing here follows a symbolic link (links are stored as links), sends a device, socket
//! or FIFO, or reads outside the context directory; nothing here talks to Docker. The work is
//! blocking file I/O: call it from `spawn_blocking`.

mod dockerignore;

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::spec::BuildSpec;
use dockerignore::Matcher;

/// Largest build context sent to Docker (the tar, headers included).
pub const MAX_CONTEXT_BYTES: u64 = 512 * 1024 * 1024;

/// A packed build context.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The context as a tar archive, ready for the build API's body.
    pub tar: Vec<u8>,
    /// Hex SHA-256 over the tar, the Dockerfile path, the sorted build args and the target:
    /// equal for equal inputs whatever the files' mtimes, different when any file, the
    /// Dockerfile, an arg or the target changes.
    pub hash: String,
    /// The Dockerfile path relative to the context, with `/`, as the build API wants it.
    pub dockerfile: String,
}

/// Why a context could not be packed. Messages name the file and say what to change.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot read `{path}` in the build context: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the build context `{path}` leads outside the repository")]
    Outside { path: String },
    #[error(
        "the build context is over {limit} bytes (512 MiB): at least {size} bytes; \
         add large files and folders to .dockerignore"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error(".dockerignore line {line}: {reason}")]
    Dockerignore { line: usize, reason: String },
    #[error(".dockerignore: {reason}")]
    DockerignoreFile { reason: String },
    #[error("the Dockerfile `{path}` is not a regular file in the build context")]
    DockerfileMissing { path: String },
    #[error("`{path}`: names in the build context must be UTF-8")]
    BadName { path: String },
    #[error("`{path}` changed while the build context was packed; try again")]
    Changed { path: String },
}

fn io_error(path: &str) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: if path.is_empty() {
            ".".to_owned()
        } else {
            path.to_owned()
        },
        source,
    }
}

/// One thing to put in the tar.
enum Kind {
    Dir,
    File { meta: Metadata },
    Symlink { target: PathBuf },
}

struct Entry {
    /// Path relative to the context root, `/`-separated.
    rel: String,
    kind: Kind,
}

/// Packs the context of `build` (paths relative to `worktree`) into a deterministic tar, with
/// the Dockerfile's bytes as `edit_dockerfile` returns them (the hash covers the edited tar).
pub fn pack(
    worktree: &Path,
    build: &BuildSpec,
    edit_dockerfile: &dyn Fn(&[u8]) -> Vec<u8>,
) -> Result<BuildContext, ContextError> {
    let dockerfile = dockerfile_path(&build.dockerfile)?;
    let context_dir = context_dir(worktree, &build.context)?;
    let mut matcher = read_dockerignore(&context_dir)?;
    // As the docker CLI does: the Dockerfile and .dockerignore are sent even when ignored.
    for always in [dockerfile.as_str(), ".dockerignore"] {
        matcher
            .push(&format!("!{}", escape(always)))
            .map_err(|reason| ContextError::DockerignoreFile { reason })?;
    }

    let mut entries = walk(&context_dir, &matcher)?;
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    let has_dockerfile = entries
        .iter()
        .any(|e| e.rel == dockerfile && matches!(e.kind, Kind::File { .. }));
    if !has_dockerfile {
        return Err(ContextError::DockerfileMissing { path: dockerfile });
    }
    let tar = write_tar(&context_dir, &entries, &dockerfile, edit_dockerfile)?;
    let hash = hash(&tar, &dockerfile, build);
    Ok(BuildContext {
        tar,
        hash,
        dockerfile,
    })
}

/// The Dockerfile path as the build API wants it, refusing any way out of the context.
fn dockerfile_path(path: &Path) -> Result<String, ContextError> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                parts.push(part.to_str().ok_or_else(|| ContextError::BadName {
                    path: path.to_string_lossy().into_owned(),
                })?)
            }
            Component::CurDir => {}
            _ => {
                return Err(ContextError::Outside {
                    path: path.to_string_lossy().into_owned(),
                });
            }
        }
    }
    if parts.is_empty() {
        return Err(ContextError::DockerfileMissing {
            path: path.to_string_lossy().into_owned(),
        });
    }
    Ok(parts.join("/"))
}

/// The context directory, resolved, checked again to be inside the worktree (the spec checked
/// it, but a `BuildSpec` can be built elsewhere and the worktree may have changed since).
fn context_dir(worktree: &Path, context: &Path) -> Result<PathBuf, ContextError> {
    let shown = context.to_string_lossy().into_owned();
    let root = worktree.canonicalize().map_err(io_error("."))?;
    let dir = root
        .join(context)
        .canonicalize()
        .map_err(io_error(&shown))?;
    if !dir.starts_with(&root) {
        return Err(ContextError::Outside { path: shown });
    }
    if !dir.is_dir() {
        return Err(ContextError::Io {
            path: shown,
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    Ok(dir)
}

fn read_dockerignore(context_dir: &Path) -> Result<Matcher, ContextError> {
    let path = context_dir.join(".dockerignore");
    let meta = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Matcher::default()),
        Err(e) => return Err(io_error(".dockerignore")(e)),
    };
    let refuse = |reason: &str| ContextError::DockerignoreFile {
        reason: reason.to_owned(),
    };
    if !meta.is_file() {
        return Err(refuse("must be a regular file (not a symbolic link)"));
    }
    if meta.len() > dockerignore::MAX_BYTES as u64 {
        return Err(refuse("is over 1 MiB"));
    }
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|f| {
            f.take(dockerignore::MAX_BYTES as u64)
                .read_to_end(&mut bytes)
        })
        .map_err(io_error(".dockerignore"))?;
    Matcher::parse(&String::from_utf8_lossy(&bytes)).map_err(|e| ContextError::Dockerignore {
        line: e.line,
        reason: e.reason,
    })
}

/// Escapes pattern characters so that a path matches only itself.
fn escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Lists what goes into the tar, without following links. Stops as soon as the estimated tar
/// size passes the limit, before reading any file content.
fn walk(context_dir: &Path, matcher: &Matcher) -> Result<Vec<Entry>, ContextError> {
    let mut entries = Vec::new();
    let mut estimate: u64 = 1024;
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        let abs = context_dir.join(&dir);
        for item in fs::read_dir(&abs).map_err(io_error(&dir))? {
            let item = item.map_err(io_error(&dir))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else {
                return Err(ContextError::BadName {
                    path: format!("{dir}/{}", name.to_string_lossy()),
                });
            };
            let rel = if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            };
            let meta = fs::symlink_metadata(item.path()).map_err(io_error(&rel))?;
            let file_type = meta.file_type();
            let excluded = matcher.excluded(&rel);
            if file_type.is_dir() {
                if !excluded {
                    dirs.push(rel.clone());
                    entries.push(Entry {
                        rel,
                        kind: Kind::Dir,
                    });
                } else if matcher.exception_inside(&rel) {
                    dirs.push(rel);
                }
                estimate += 512;
            } else if excluded {
                continue;
            } else if file_type.is_symlink() {
                let target = fs::read_link(item.path()).map_err(io_error(&rel))?;
                entries.push(Entry {
                    rel,
                    kind: Kind::Symlink { target },
                });
                estimate += 1024;
            } else if file_type.is_file() {
                estimate += 1024 + meta.len().div_ceil(512) * 512;
                entries.push(Entry {
                    rel,
                    kind: Kind::File { meta },
                });
            } else if file_type.is_block_device()
                || file_type.is_char_device()
                || file_type.is_fifo()
                || file_type.is_socket()
            {
                // Never sent: reading a device or a FIFO could block or leak the host.
                continue;
            }
            if estimate > MAX_CONTEXT_BYTES {
                return Err(ContextError::TooLarge {
                    size: estimate,
                    limit: MAX_CONTEXT_BYTES,
                });
            }
        }
    }
    Ok(entries)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn write_tar(
    context_dir: &Path,
    entries: &[Entry],
    dockerfile: &str,
    edit_dockerfile: &dyn Fn(&[u8]) -> Vec<u8>,
) -> Result<Vec<u8>, ContextError> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let rel = entry.rel.as_str();
        match &entry.kind {
            Kind::Dir => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                builder
                    .append_data(&mut h, rel, io::empty())
                    .map_err(io_error(rel))?;
            }
            Kind::Symlink { target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                builder
                    .append_link(&mut h, rel, target)
                    .map_err(io_error(rel))?;
            }
            Kind::File { meta } => {
                let mut data = read_same_file(&context_dir.join(rel), rel, meta)?;
                if rel == dockerfile {
                    data = edit_dockerfile(&data);
                }
                let exec = meta.permissions().mode() & 0o111 != 0;
                let mode = if exec { 0o755 } else { 0o644 };
                let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
                builder
                    .append_data(&mut h, rel, data.as_slice())
                    .map_err(io_error(rel))?;
            }
        }
        if builder.get_ref().len() as u64 > MAX_CONTEXT_BYTES {
            return Err(ContextError::TooLarge {
                size: builder.get_ref().len() as u64,
                limit: MAX_CONTEXT_BYTES,
            });
        }
    }
    builder.into_inner().map_err(io_error("."))
}

/// Reads a file listed by the walk, refusing it if it is no longer the same file (swapped for
/// a link to somewhere else, for instance) or changed size.
fn read_same_file(path: &Path, rel: &str, listed: &Metadata) -> Result<Vec<u8>, ContextError> {
    let changed = || ContextError::Changed {
        path: rel.to_owned(),
    };
    let file = File::open(path).map_err(io_error(rel))?;
    let opened = file.metadata().map_err(io_error(rel))?;
    if opened.dev() != listed.dev() || opened.ino() != listed.ino() || !opened.is_file() {
        return Err(changed());
    }
    let mut data = Vec::with_capacity(usize::try_from(listed.len()).unwrap_or(0));
    file.take(listed.len() + 1)
        .read_to_end(&mut data)
        .map_err(io_error(rel))?;
    if data.len() as u64 != listed.len() {
        return Err(changed());
    }
    Ok(data)
}

/// The cache key of a build: every input Docker sees, each length-prefixed so that no two
/// different inputs can be spelled with the same bytes.
fn hash(tar: &[u8], dockerfile: &str, build: &BuildSpec) -> String {
    fn feed(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    let mut h = Sha256::new();
    h.update(b"previewd build context v1\0");
    feed(&mut h, tar);
    feed(&mut h, dockerfile.as_bytes());
    h.update((build.args.len() as u64).to_le_bytes());
    for (key, value) in &build.args {
        feed(&mut h, key.as_bytes());
        feed(&mut h, value.as_bytes());
    }
    // Absent and empty differ: `None` feeds nothing, `Some` a length and the name.
    if let Some(target) = &build.target {
        h.update(b"target");
        feed(&mut h, target.as_bytes());
    }
    // The image's labels and platform are in what is built; the rest of the options only
    // change how (and `no_cache` and `pull` skip the reuse altogether).
    let o = &build.options;
    if !o.labels.is_empty() {
        h.update(b"labels");
        h.update((o.labels.len() as u64).to_le_bytes());
        for (key, value) in &o.labels {
            feed(&mut h, key.as_bytes());
            feed(&mut h, value.as_bytes());
        }
    }
    if let Some(platform) = &o.platform {
        h.update(b"platform");
        feed(&mut h, platform.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests;
