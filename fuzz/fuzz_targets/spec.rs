//! `.previewd.yml` and the compose subset, parsed and validated from arbitrary bytes: a spec
//! or an error naming the problem, never a panic, and quickly (bounded size, depth, aliases).
//! The worktree is real (made once, under the temporary folder): build contexts, Dockerfiles
//! and bind mounts are checked against folders and files that exist, and a link that leaves
//! the worktree, as a pull request could commit one, so the path checks run as in production.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn worktree() -> &'static Path {
    static WT: OnceLock<PathBuf> = OnceLock::new();
    WT.get_or_init(|| {
        let wt = std::env::temp_dir().join(format!("previewd-fuzz-wt-{}", std::process::id()));
        for dir in ["web", "api/src", "conf"] {
            std::fs::create_dir_all(wt.join(dir)).expect("make the worktree");
        }
        for file in ["Dockerfile", "web/Dockerfile", "api/Dockerfile", "conf/nginx.conf"] {
            std::fs::write(wt.join(file), "FROM busybox\n").expect("write the worktree");
        }
        let _ = std::os::unix::fs::symlink("/etc", wt.join("escape"));
        wt
    })
}

fuzz_target!(|data: &[u8]| {
    let wt = worktree();
    let _ = previewd::spec::parse_previewd_yml(".previewd.yml", data, wt);
    let _ = previewd::spec::parse_compose("compose.yaml", data, wt);
});
