//! Packing real directories: `.dockerignore` semantics, the tar's shape, and the hash.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, content).expect("write");
}

fn as_is(dockerfile: &[u8]) -> Vec<u8> {
    dockerfile.to_vec()
}

fn spec(context: &str, dockerfile: &str, args: &[(&str, &str)]) -> BuildSpec {
    BuildSpec {
        context: PathBuf::from(context),
        dockerfile: PathBuf::from(dockerfile),
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: None,
        options: Default::default(),
    }
}

/// Every entry of a tar: path -> (type, mode, mtime, uid, gid, link target, content).
type Listing = BTreeMap<String, (tar::EntryType, u32, u64, u64, u64, Option<String>, Vec<u8>)>;

fn list(tar_bytes: &[u8]) -> Listing {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let h = entry.header().clone();
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let link = entry
            .link_name()
            .expect("link")
            .map(|l| l.to_string_lossy().into_owned());
        let mut content = Vec::new();
        io::Read::read_to_end(&mut entry, &mut content).expect("read");
        let meta = (
            h.entry_type(),
            h.mode().expect("mode"),
            h.mtime().expect("mtime"),
            h.uid().expect("uid"),
            h.gid().expect("gid"),
            link,
            content,
        );
        out.insert(path.trim_end_matches('/').to_owned(), meta);
    }
    out
}

fn paths(listing: &Listing) -> Vec<&str> {
    listing.keys().map(String::as_str).collect()
}

#[test]
fn dockerignore_semantics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(
        root,
        ".dockerignore",
        "# secrets and noise\n.env\n**/*.log\nnode_modules\ndocs\n!docs/keep.md\nDockerfile\n.dockerignore\n",
    );
    write(root, ".env", "SECRET=1\n");
    write(root, "README.md", "hi\n");
    write(root, "src/main.rs", "fn main() {}\n");
    write(root, "src/deep/trace.log", "x\n");
    write(root, "logs/a.log", "x\n");
    write(root, "node_modules/pkg/index.js", "x\n");
    write(root, "docs/keep.md", "keep\n");
    write(root, "docs/other.md", "drop\n");

    let ctx = pack(root, &spec(".", "Dockerfile", &[]), &as_is).expect("packs");
    let listing = list(&ctx.tar);
    assert_eq!(
        paths(&listing),
        [
            ".dockerignore",
            "Dockerfile",
            "README.md",
            "docs/keep.md",
            "logs",
            "src",
            "src/deep",
            "src/main.rs",
        ]
    );
    assert_eq!(ctx.dockerfile, "Dockerfile");
}

#[test]
fn dockerfile_in_an_ignored_folder_is_still_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "app/docker/Dockerfile.prod", "FROM scratch\n");
    write(root, "app/docker/other", "x\n");
    write(root, "app/.dockerignore", "docker\n");
    write(root, "app/index.html", "x\n");
    let ctx = pack(root, &spec("app", "docker/Dockerfile.prod", &[]), &as_is).expect("packs");
    assert_eq!(ctx.dockerfile, "docker/Dockerfile.prod");
    assert_eq!(
        paths(&list(&ctx.tar)),
        [".dockerignore", "docker/Dockerfile.prod", "index.html"]
    );
}

#[test]
fn only_the_dockerfile_is_edited_and_the_hash_covers_the_edit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "docker/app.Dockerfile", "FROM scratch\n");
    write(root, "Dockerfile", "FROM scratch\n");
    let build = spec(".", "docker/app.Dockerfile", &[]);
    let shout = |d: &[u8]| d.to_ascii_uppercase();
    let edited = pack(root, &build, &shout).expect("packs");
    let listing = list(&edited.tar);
    assert_eq!(listing["docker/app.Dockerfile"].6, b"FROM SCRATCH\n");
    assert_eq!(listing["Dockerfile"].6, b"FROM scratch\n");
    assert_ne!(pack(root, &build, &as_is).expect("packs").hash, edited.hash);
}

#[test]
fn tar_is_normalised_and_links_are_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "run.sh", "#!/bin/sh\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700)).expect("chmod");
    write(root, "data.txt", "data\n");
    fs::set_permissions(root.join("data.txt"), fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).expect("symlink");
    std::os::unix::fs::symlink("/", root.join("host")).expect("symlink");
    let _socket = std::os::unix::net::UnixListener::bind(root.join("app.sock")).expect("socket");

    let ctx = pack(root, &spec(".", "Dockerfile", &[]), &as_is).expect("packs");
    let listing = list(&ctx.tar);
    assert_eq!(
        paths(&listing),
        ["Dockerfile", "data.txt", "host", "passwd", "run.sh"]
    );
    for (path, (_, _, mtime, uid, gid, _, _)) in &listing {
        assert_eq!((*mtime, *uid, *gid), (0, 0, 0), "{path}");
    }
    assert_eq!(listing["run.sh"].1, 0o755);
    assert_eq!(listing["data.txt"].1, 0o644);
    assert_eq!(listing["passwd"].0, tar::EntryType::Symlink);
    assert_eq!(listing["passwd"].5.as_deref(), Some("/etc/passwd"));
    assert!(
        listing["passwd"].6.is_empty(),
        "the link's target was not read"
    );
    assert_eq!(listing["host"].0, tar::EntryType::Symlink);
}

#[test]
fn same_content_same_hash_whatever_the_mtimes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "src/a.txt", "a\n");
    write(root, "src/b.txt", "b\n");
    let build = spec(".", "Dockerfile", &[("V", "1")]);
    let first = pack(root, &build, &as_is).expect("packs");

    // touch(1) every file, far into the past.
    let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    for rel in ["Dockerfile", "src/a.txt", "src/b.txt"] {
        let f = fs::File::options()
            .write(true)
            .open(root.join(rel))
            .expect("open");
        f.set_modified(then).expect("touch");
    }
    let second = pack(root, &build, &as_is).expect("packs");
    assert_eq!(first.tar, second.tar);
    assert_eq!(first.hash, second.hash);
    assert_eq!(first.hash.len(), 64);
    assert!(first.hash.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn hash_changes_with_content_dockerfile_and_args() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "Dockerfile.dev", "FROM scratch\n");
    write(root, "a.txt", "a\n");
    let base = pack(root, &spec(".", "Dockerfile", &[("V", "1")]), &as_is)
        .expect("packs")
        .hash;

    let other_arg = pack(root, &spec(".", "Dockerfile", &[("V", "2")]), &as_is)
        .expect("packs")
        .hash;
    let more_args = pack(
        root,
        &spec(".", "Dockerfile", &[("V", "1"), ("W", "")]),
        &as_is,
    )
    .expect("packs")
    .hash;
    let other_dockerfile = pack(root, &spec(".", "Dockerfile.dev", &[("V", "1")]), &as_is)
        .expect("packs")
        .hash;
    let with_target = |target: &str| {
        let mut build = spec(".", "Dockerfile", &[("V", "1")]);
        build.target = Some(target.to_owned());
        pack(root, &build, &as_is).expect("packs").hash
    };
    let (target_a, target_b) = (with_target("a"), with_target("b"));
    write(root, "a.txt", "b\n");
    let other_content = pack(root, &spec(".", "Dockerfile", &[("V", "1")]), &as_is)
        .expect("packs")
        .hash;
    write(root, "a.txt", "a\n");
    write(root, "Dockerfile", "FROM scratch\nRUN true\n");
    let other_dockerfile_content = pack(root, &spec(".", "Dockerfile", &[("V", "1")]), &as_is)
        .expect("packs")
        .hash;

    let all = [
        &base,
        &other_arg,
        &more_args,
        &other_dockerfile,
        &target_a,
        &target_b,
        &other_content,
        &other_dockerfile_content,
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn env_file_is_left_out_when_ignored_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, ".dockerignore", ".env\n");
    write(root, ".env", "TOKEN=one\n");
    let build = spec(".", "Dockerfile", &[]);
    let first = pack(root, &build, &as_is).expect("packs");
    assert!(!list(&first.tar).contains_key(".env"));
    write(root, ".env", "TOKEN=two\n");
    assert_eq!(pack(root, &build, &as_is).expect("packs").hash, first.hash);
}

#[test]
fn refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    write(&root, "Dockerfile", "FROM scratch\n");
    write(dir.path(), "outside/Dockerfile", "FROM scratch\n");
    std::os::unix::fs::symlink(dir.path().join("outside"), root.join("link")).expect("symlink");

    let err = |build: BuildSpec| pack(&root, &build, &as_is).expect_err("refused");
    assert!(matches!(
        err(spec("../outside", "Dockerfile", &[])),
        ContextError::Outside { .. }
    ));
    assert!(matches!(
        err(spec("link", "Dockerfile", &[])),
        ContextError::Outside { .. }
    ));
    assert!(matches!(
        err(spec(".", "../Dockerfile", &[])),
        ContextError::Outside { .. }
    ));
    assert!(matches!(
        err(spec(".", "Missing.Dockerfile", &[])),
        ContextError::DockerfileMissing { .. }
    ));

    write(&root, ".dockerignore", "ok\n[broken\n");
    assert!(matches!(
        err(spec(".", "Dockerfile", &[])),
        ContextError::Dockerignore { line: 2, .. }
    ));
    fs::remove_file(root.join(".dockerignore")).expect("rm");

    // A sparse file: the size is refused before anything is read.
    let big = fs::File::create(root.join("big.bin")).expect("create");
    big.set_len(MAX_CONTEXT_BYTES + 1).expect("sparse");
    let e = err(spec(".", "Dockerfile", &[]));
    assert!(matches!(e, ContextError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("512 MiB"), "{e}");
}
