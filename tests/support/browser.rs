//! Headless Chromium (Debian's), for the tests that look at pages as a browser shows them.

use std::path::PathBuf;
use std::process::Command;

/// Chromium, or `None` outside CI when it is not installed (`./run setup` installs it; CI
/// must not pass by skipping).
pub fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"]
        .into_iter()
        .find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
        });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing: ./run setup installs it"
        );
        eprintln!("skipped: chromium is not installed (./run setup installs it)");
    }
    found
}

/// Runs headless Chromium on `url` with `extra` arguments; its stdout and stderr.
pub fn browse(
    chromium: &PathBuf,
    url: &str,
    extra: &[&str],
    profile: &std::path::Path,
) -> (String, String) {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=412,915",
            "--timeout=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
