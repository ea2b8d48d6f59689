//! `limits.build_cache` on a real engine: builds of three repositories pass a small cap, the
//! reconcile pass's prune takes the daemon's cache down to it, and a warm rebuild finds the
//! cache mount that was kept while a pruned one starts empty. On a daemon of the test's own (tests/build_daemon): a prune down to a few MB on the
//! shared daemon would take every other test's cache.

mod build_daemon;

use std::collections::HashSet;

use build_daemon::PrivateDaemon;

/// Bytes of the daemon's build cache that a prune may take (not held by an image, not in use),
/// and those records' ids.
fn prunable(daemon: &PrivateDaemon) -> (u64, HashSet<String>) {
    let df = daemon.get_json("/system/df");
    let mut total = 0;
    let mut ids = HashSet::new();
    for r in df["BuildCache"].as_array().cloned().unwrap_or_default() {
        if r["Shared"].as_bool() == Some(true) || r["InUse"].as_bool() == Some(true) {
            continue;
        }
        total += r["Size"].as_u64().unwrap_or(0);
        ids.insert(r["ID"].as_str().unwrap_or_default().to_owned());
    }
    (total, ids)
}

/// A context whose `RUN` step lists its cache mount (`seen: ...`, a text its command line does
/// not hold), then leaves 4 MB of its own there.
fn context(root: &std::path::Path, name: &str, source: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("context dir");
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM busybox\nCOPY src.txt /src.txt\n\
             RUN --mount=type=cache,target=/cache echo \"se\"\"en: $(ls /cache | tr '\\n' ' ')\" && \
             head -c 4000000 /dev/urandom > /cache/{name}-$(cat /src.txt)\n"
        ),
    )
    .expect("Dockerfile");
    std::fs::write(dir.join("src.txt"), source).expect("src.txt");
    dir
}

fn seen(log: &[String]) -> String {
    log.iter()
        .find_map(|l| l.split_once("seen: ").map(|(_, s)| s.trim().to_owned()))
        .unwrap_or_else(|| panic!("no `seen:` line in {log:?}"))
}

#[test]
fn the_build_cache_is_pruned_down_to_its_cap_and_a_warm_rebuild_finds_what_was_kept() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let data = tempfile::tempdir().expect("tempdir");
    let daemon = rt.block_on(PrivateDaemon::start("cache"));
    // previewd reaches the daemon where DOCKER_HOST says, as bollard does; set before any
    // other thread of this test binary (one test) reads the environment.
    unsafe { std::env::set_var("DOCKER_HOST", &daemon.host) };
    let config = build_daemon::config(
        "bcache",
        data.path(),
        &[("PREVIEWD_LIMITS_BUILD_CACHE", "6m")],
    );
    assert_eq!(config.limits.builds.cache, Some(6 << 20));
    rt.block_on(async {
        let docker = daemon.docker().expect("docker");
        for repo in ["one", "two", "three"] {
            let dir = context(data.path(), repo, "1");
            let (r, log) = build_daemon::build(&docker, &config, &format!("o/{repo}"), &dir).await;
            r.unwrap_or_else(|e| panic!("{repo}: {e}: {log:?}"));
            assert_eq!(seen(&log), "", "a new repository's cache mount is empty");
        }
        let (before, records) = prunable(&daemon);
        assert!(before >= 12_000_000, "three cache mounts of 4 MB: {before}");

        let pruned = previewd::preview::build::cache::prune(&docker, &config)
            .await
            .expect("build_cache is set")
            .expect("prune");
        let (after, left) = prunable(&daemon);
        eprintln!(
            "build cache: {before} bytes prunable in {} records; pruned {pruned:?}; {after} bytes in {} records left",
            records.len(),
            left.len()
        );
        assert!(pruned.records > 0 && pruned.bytes > 0, "{pruned:?}");
        assert!(after <= 6 << 20, "{after} bytes left over a 6 MiB cap");
        assert!(left.len() < records.len(), "{left:?} of {records:?}");

        // What was kept is what a warm rebuild (a changed source) finds in its cache mount;
        // what was pruned starts empty. BuildKit 0.8 ranks records by last use and use count
        // together, so which repository keeps its mount is its choice: at least one does, and
        // not all three fit under the cap.
        let mut warm = Vec::new();
        for repo in ["one", "two", "three"] {
            let dir = context(data.path(), repo, "2");
            let (r, log) = build_daemon::build(&docker, &config, &format!("o/{repo}"), &dir).await;
            r.unwrap_or_else(|e| panic!("{repo}: {e}: {log:?}"));
            match seen(&log).as_str() {
                "" => {}
                s if s == format!("{repo}-1") => warm.push(repo),
                other => panic!("{repo} saw another repository's cache: {other}"),
            }
        }
        eprintln!("warm after the prune: {warm:?}");
        assert!(
            !warm.is_empty() && warm.len() < 3,
            "cache mounts kept under a 6 MiB cap: {warm:?}"
        );

        // 0 turns the prune off.
        let off = build_daemon::config(
            "bcache",
            data.path(),
            &[("PREVIEWD_LIMITS_BUILD_CACHE", "0")],
        );
        assert!(
            previewd::preview::build::cache::prune(&docker, &off)
                .await
                .is_none()
        );
    });
    drop(daemon);
}
