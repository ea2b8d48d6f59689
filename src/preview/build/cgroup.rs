//! `limits.build_pids` and `limits.build_memory`: caps on the cgroup in which the Docker daemon
//! runs every BuildKit step (`limits.build_cgroup`, `<its cgroup-parent>/buildkit`).
//!
//! Why there: BuildKit in Docker 20.10 ignores a build's `cgroupparent`, `ulimits`, `memory`
//! and CPU options (measured, see docs/builds.md) and runs each step in
//! `<cgroup-parent>/buildkit/<id>`, so the parent is the one place a cap holds for every step.
//! It is the daemon's, not the instance's: the caps bound all BuildKit builds of the daemon
//! together (another tool's too), which is why they are off unless the operator sets them.
//! Written before every build (a restart of the daemon or a reboot resets them), which needs
//! write access to the cgroup files (root on the host); a cap that cannot be written fails the
//! build rather than letting it run uncapped. Nothing here reads or writes another cgroup, or
//! removes one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::task::AbortOnDropHandle;

use crate::config::builds::BuildLimits;

/// Where the cgroup hierarchies are mounted.
const ROOT: &str = "/sys/fs/cgroup";

/// One cap: the cgroup's folder, the file in it, the value to write.
#[derive(Debug, PartialEq, Eq)]
struct Cap {
    dir: PathBuf,
    file: &'static str,
    value: u64,
}

/// The caps to write for `limits` under the hierarchies at `root`: cgroup v2 when `root` is
/// the unified hierarchy (it has `cgroup.controllers`), else v1's `pids` and `memory`.
fn caps(root: &Path, limits: &BuildLimits) -> Vec<Cap> {
    let path = limits.cgroup.as_str();
    let unified = root.join("cgroup.controllers").exists();
    let at = |controller: &str| {
        if unified {
            root.join(path)
        } else {
            root.join(controller).join(path)
        }
    };
    let mut caps = Vec::new();
    if let Some(n) = limits.pids {
        caps.push(Cap {
            dir: at("pids"),
            file: "pids.max",
            value: n,
        });
    }
    if let Some(m) = limits.memory {
        caps.push(Cap {
            dir: at("memory"),
            file: if unified {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            },
            value: m,
        });
    }
    caps
}

/// Writes the operator's caps on the daemon's build cgroup (creating it: the daemon makes it
/// only at its first build). Nothing to do when neither cap is set.
pub async fn apply(limits: &BuildLimits) -> Result<(), String> {
    let caps = caps(Path::new(ROOT), limits);
    if caps.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || caps.iter().try_for_each(write))
        .await
        .map_err(|e| e.to_string())?
}

fn write(cap: &Cap) -> Result<(), String> {
    let file = cap.dir.join(cap.file);
    let failed = |e: std::io::Error| {
        format!(
            "cannot write {} ({e}): previewd needs root on the host for limits.build_pids and limits.build_memory, and limits.build_cgroup must be where the Docker daemon runs BuildKit's steps (<its cgroup-parent>/buildkit); or set both to 0",
            file.display()
        )
    };
    std::fs::create_dir_all(&cap.dir).map_err(failed)?;
    let want = cap.value.to_string();
    if std::fs::read_to_string(&file).is_ok_and(|now| now.trim() == want) {
        return Ok(());
    }
    std::fs::write(&file, &want).map_err(failed)
}

/// Watches the build cgroup's process count while one build runs (a sample every 200 ms),
/// so that a build that failed or timed out can say it ran into `limits.build_pids`: its
/// `RUN` step could not fork, or forked without end. Stops when dropped.
pub struct Watch {
    max: u64,
    peak: Arc<AtomicU64>,
    _task: AbortOnDropHandle<()>,
}

/// `None` when `limits.build_pids` is not set.
pub fn watch(limits: &BuildLimits) -> Option<Watch> {
    let max = limits.pids?;
    let cap = caps(Path::new(ROOT), limits)
        .into_iter()
        .find(|c| c.file == "pids.max")?;
    let file = cap.dir.join("pids.current");
    let peak = Arc::new(AtomicU64::new(0));
    let seen = peak.clone();
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(200));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Some(n) = tokio::fs::read_to_string(&file)
                .await
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
            {
                seen.fetch_max(n, Ordering::Relaxed);
            }
        }
    });
    Some(Watch {
        max,
        peak,
        _task: AbortOnDropHandle::new(task),
    })
}

impl Watch {
    /// A line for the failure's log when the builds' processes reached the cap.
    pub fn note(&self) -> Option<String> {
        let peak = self.peak.load(Ordering::Relaxed);
        (peak + 1 >= self.max).then(|| {
            format!(
                "the builds' processes reached limits.build_pids ({peak} of {}, all BuildKit steps of the daemon together): a RUN step that forks without end is stopped there",
                self.max
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pids: i64, memory: &str) -> BuildLimits {
        BuildLimits::from_keys("0", pids, memory, "docker/buildkit").expect("valid")
    }

    #[test]
    fn v1_caps_go_to_each_controller_and_v2_caps_to_the_one_folder() {
        let v1 = tempfile_dir("v1");
        let got = caps(&v1, &limits(256, "1g"));
        assert_eq!(
            got,
            vec![
                Cap {
                    dir: v1.join("pids/docker/buildkit"),
                    file: "pids.max",
                    value: 256
                },
                Cap {
                    dir: v1.join("memory/docker/buildkit"),
                    file: "memory.limit_in_bytes",
                    value: 1 << 30
                },
            ]
        );
        let v2 = tempfile_dir("v2");
        std::fs::write(v2.join("cgroup.controllers"), "pids memory\n").expect("write");
        let got = caps(&v2, &limits(256, "1g"));
        assert_eq!(got[0].dir, v2.join("docker/buildkit"));
        assert_eq!(got[1].file, "memory.max");
        assert!(caps(&v2, &limits(0, "0")).is_empty());
        let cap = &got[0];
        write(cap).expect("writes");
        assert_eq!(
            std::fs::read_to_string(cap.dir.join("pids.max")).expect("read"),
            "256"
        );
        let _ = std::fs::remove_dir_all(&v1);
        let _ = std::fs::remove_dir_all(&v2);
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "previewd-cgroup-test-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
