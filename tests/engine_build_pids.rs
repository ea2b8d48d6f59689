//! `limits.build_pids` and `limits.build_memory` on a real engine: previewd caps the cgroup in
//! which the daemon runs BuildKit's steps, a `RUN` step that forks without end fails the build
//! with a reason naming the cap while the count never passes it and the host keeps answering,
//! and a step that allocates past the memory cap does not get the memory. On a daemon of the test's own
//! (tests/build_daemon), whose `cgroup-parent` is the test's: a cap on the shared daemon's
//! `docker/buildkit` would hold every other test's builds too.

mod build_daemon;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use build_daemon::PrivateDaemon;
use previewd::preview::build::BuildError;

fn write(dir: &std::path::Path, dockerfile: &str) {
    std::fs::create_dir_all(dir).expect("context dir");
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("Dockerfile");
}

#[test]
fn a_step_that_forks_without_end_stops_at_build_pids_and_one_past_build_memory_fails() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let data = tempfile::tempdir().expect("tempdir");
    let daemon = rt.block_on(PrivateDaemon::start("pids"));
    // previewd reaches the daemon where DOCKER_HOST says, as bollard does; set before any
    // other thread of this test binary (one test) reads the environment.
    unsafe { std::env::set_var("DOCKER_HOST", &daemon.host) };
    let cgroup = format!("{}/buildkit", daemon.cgroup_parent);
    let config = build_daemon::config(
        "bpids",
        data.path(),
        &[
            ("PREVIEWD_LIMITS_BUILD_PIDS", "64"),
            ("PREVIEWD_LIMITS_BUILD_MEMORY", "96m"),
            ("PREVIEWD_LIMITS_BUILD_CGROUP", &cgroup),
            ("PREVIEWD_LIMITS_BUILD_TIMEOUT", "40s"),
        ],
    );
    rt.block_on(async {
        let docker = daemon.docker().expect("docker");
        // First a build within the caps: it builds, and the caps are in place before anything
        // forks (were they not, the fork bomb below would run uncapped on the host).
        let fine = data.path().join("fine");
        write(&fine, "FROM busybox\nRUN echo fine > /fine\n");
        let (r, log) = build_daemon::build(&docker, &config, "o/fine", &fine).await;
        r.unwrap_or_else(|e| panic!("{e}: {log:?}"));
        let read = |controller: &str, file: &str| {
            std::fs::read_to_string(daemon.build_cgroup(controller).join(file))
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        assert_eq!(read("pids", "pids.max"), "64", "limits.build_pids not applied");
        assert_eq!(
            read("memory", "memory.limit_in_bytes"),
            (96u64 << 20).to_string(),
            "limits.build_memory not applied"
        );

        // A chain that forks without end (each link a `sleep` and the next link, then waits)
        // beside a sleep forked first; the step ends (exit 1) after 15 s.
        let forks = data.path().join("forks");
        write(
            &forks,
            "FROM busybox\nRUN sleep 15 & s=$!; f() { sleep 600 & f & wait; }; f & wait $s; exit 1\n",
        );
        let pids_current = daemon.build_cgroup("pids").join("pids.current");
        let (peak, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (p, s, file) = (peak.clone(), stop.clone(), pids_current.clone());
        // The test's own view of the step's processes, and of the host's answers meanwhile.
        let slowest = Arc::new(AtomicU64::new(0));
        let slow = slowest.clone();
        let watcher = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(n) = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                {
                    p.fetch_max(n, Ordering::Relaxed);
                }
                let t = Instant::now();
                let ok = std::process::Command::new("true")
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "the host could not start a process");
                slow.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let started = Instant::now();
        let (r, log) = build_daemon::build(&docker, &config, "o/forks", &forks).await;
        stop.store(true, Ordering::Relaxed);
        watcher.join().expect("watcher");
        let peak = peak.load(Ordering::Relaxed);
        assert!(peak > 32, "the step forked: {peak} processes at most");
        assert!(peak <= 64, "{peak} processes in the build cgroup, over the cap of 64");
        let slowest = slowest.load(Ordering::Relaxed);
        assert!(slowest < 5_000, "the host took {slowest} ms to start `true`");
        match &r {
            Err(e @ BuildError::Timeout(..)) | Err(e @ BuildError::Failed { .. }) => {
                let tail = e.tail();
                assert!(
                    tail.iter().any(|l| l.contains("limits.build_pids (")),
                    "{e}: the reason does not name the cap: {tail:?}"
                );
            }
            other => panic!("the forking build did not fail: {other:?}: {log:?}"),
        }
        eprintln!(
            "forks: {:?} after {:?}, at most {peak} processes, host answered within {slowest} ms",
            r.as_ref().err().map(ToString::to_string),
            started.elapsed()
        );

        // Past the memory cap the step does not get its 200 MB: killed (exit code 137), or,
        // where the host swaps (cgroup v1 caps memory, not memory and swap), held until the
        // build's timeout.
        let hungry = data.path().join("hungry");
        write(
            &hungry,
            "FROM busybox\nRUN head -c 200000000 /dev/zero | tail -c 200000000 > /dev/null && echo survived\n",
        );
        let (r, log) = build_daemon::build(&docker, &config, "o/hungry", &hungry).await;
        eprintln!("hungry: {:?}", r.as_ref().err().map(ToString::to_string));
        assert!(
            matches!(r, Err(BuildError::Failed { .. } | BuildError::Timeout(..))),
            "200 MB under a 96 MB cap: {r:?}: {log:?}"
        );
        assert!(!log
                .iter()
                .any(|l| l.split_once(' ').is_some_and(|(_, out)| out == "survived")), "{log:?}");
    });
    drop(daemon);
}
