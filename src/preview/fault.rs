//! A test-only fault hook: with `PREVIEWD_FAULT_PAUSE_AT=<phase>` (fetch, config, build, start,
//! route, health) a deployment that reaches that point of that phase prints
//! `previewd: fault: paused at <phase>` to stderr and waits until it is cancelled or the process
//! is killed. The crash tests (tests/e2e_kill.rs) use it to SIGKILL `serve` with exactly that
//! step's partial state on the host. It exists only with the `fault-injection` feature, which
//! only test builds have: a shipped binary has no such hook, and refuses the variable as one
//! that names no setting. Nothing here touches Docker, git or the forge.

use std::sync::OnceLock;

use crate::engine::Phase;

/// The environment variable naming the phase to pause at (a process setting, so the config
/// knows it and does not refuse it).
pub use crate::config::FAULT_PAUSE_AT as PAUSE_AT;

/// The phase named by [`PAUSE_AT`], read once; `None` when unset or not a phase.
fn pause_at() -> Option<Phase> {
    static AT: OnceLock<Option<Phase>> = OnceLock::new();
    *AT.get_or_init(|| parse(&std::env::var(PAUSE_AT).ok()?))
}

fn parse(name: &str) -> Option<Phase> {
    [
        Phase::Fetch,
        Phase::Config,
        Phase::Build,
        Phase::Start,
        Phase::Route,
        Phase::Health,
    ]
    .into_iter()
    .find(|p| p.as_str() == name.trim())
}

/// The line printed to stderr when a deployment pauses at `phase`.
pub fn paused_line(phase: Phase) -> String {
    format!("previewd: fault: paused at {}", phase.as_str())
}

/// Waits forever if the hook names `phase`; returns at once otherwise.
pub async fn pause(phase: Phase) {
    if pause_at() == Some(phase) {
        eprintln!("{}", paused_line(phase));
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_name_parses_and_nothing_else() {
        for p in ["fetch", "config", "build", "start", "route", "health"] {
            assert_eq!(parse(p).map(Phase::as_str), Some(p));
        }
        assert_eq!(parse(""), None);
        assert_eq!(parse("commit"), None);
        assert_eq!(
            paused_line(Phase::Start),
            "previewd: fault: paused at start"
        );
    }
}
