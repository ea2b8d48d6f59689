//! The commands of the `previewd` binary, one module each: what a command does, prints and
//! exits with. `main.rs` only parses the command line, sets up logging and the runtime, and
//! calls the command's `run`. Output texts, exit statuses and JSON shapes are the contract of
//! docs/architecture.md ("CLI").

/// `println!` for a command's output: a reader that went away (`previewd ls | head -1`) ends
/// the command quietly, as SIGPIPE ends a C tool, where `println!` would panic.
macro_rules! outln {
    () => {
        $crate::cli::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` with [`outln!`]'s handling of a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

pub mod check;
mod check_plan;
pub mod config;
pub mod doctor;
pub mod down;
pub mod gc;
pub mod logs;
pub mod ls;
pub mod paint;
pub mod serve;
pub mod sleep;
pub mod status;
pub mod up;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::engine::PreviewState;
use crate::forge::report::Reporter;
use crate::forge::retry::RetryPolicy;
use crate::forge::{ForgeKind, Forges};
use crate::ids::PreviewId;
use crate::metrics::Metrics;
use crate::preview::docker::DockerError;
use crate::preview::docker::labels::Observed;
use crate::preview::manager::ManagerError;
use crate::serve::ServeError;
use crate::spec::SpecError;

/// Why a command failed. `main` prints it on one line, each cause once, and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("--worktree needs --mode dev")]
    WorktreeWithoutDev,
    #[error("--mode dev needs --worktree PATH")]
    DevWithoutWorktree,
    #[error(
        "{}: not a folder; give the repository's root folder (where .previewd.yml or the compose file is)",
        .0.display()
    )]
    NotAFolder(PathBuf),
    #[error("removing {id}: {source}")]
    Removing {
        id: PreviewId,
        #[source]
        source: ManagerError,
    },
    #[error(transparent)]
    Manager(#[from] ManagerError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Writes a command's output. Rust ignores SIGPIPE (so that a socket's closed peer is an
/// error, not the process's end), which turns a closed pipe into a panic in `println!`: here it
/// ends the process quietly with success, as `ripgrep` and `git` do; any other write error
/// ends it with status 1 and one line.
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        drop(stdout);
        eprintln!("previewd: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// How a command that ran to its end went, for the exit status (0, 1, 3; clap's usage errors
/// are 2). `Failed` and `NotRunning` exit without a further message: the command has said why.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Exit 1: the command failed (a failed `up`).
    Failed,
    /// Exit 3: `status` of a preview that exists but is not running, so a script can tell it
    /// from a failure to ask.
    NotRunning,
}

/// An error and its causes on one line, each said once: what `main` prints. Many errors, ours
/// and the libraries', quote their cause in their own message and also return it as their
/// `source()`, so `{:#}` printed "No such file or directory (os error 2): No such file or
/// directory (os error 2)".
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// The mode a preview runs in, from its labels (`preview` when it has no members).
fn mode_of(p: &Observed) -> String {
    p.any()
        .map_or_else(|| "preview".to_owned(), |m| m.mode.clone())
}

/// A preview as `up --json`, `status --json` and each element of `ls --json` print it.
pub fn to_json(s: &PreviewState, mode: &str) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "url": s.url,
        "repo": s.key.repo,
        "branch": s.key.branch,
        "sha": s.sha,
        "mode": mode,
        "status": s.status,
        "egress": s.egress,
        "services": s.services.iter().map(|svc| serde_json::json!({
            "name": svc.name,
            "route": svc.route,
            "url": svc.url,
            "state": svc.state,
            "health": {"ok": svc.healthy, "status": svc.status, "latency_ms": svc.latency_ms},
        })).collect::<Vec<_>>(),
    })
}

/// Prints one preview on stdout: its JSON object, or its URL and a table of its services.
pub fn print_state(s: &PreviewState, mode: &str, json: bool) -> Result<(), CliError> {
    if json {
        outln!("{}", serde_json::to_string_pretty(&to_json(s, mode))?);
        return Ok(());
    }
    let paint = paint::Paint::stdout();
    let egress = s
        .egress
        .map(|e| format!(", egress {e}"))
        .unwrap_or_default();
    outln!(
        "{}  {}  ({}, {mode} mode{egress})",
        s.url,
        paint.status(s.status, 0),
        s.id
    );
    outln!(
        "  {:<12} {:<10} {:<8} {:<8} LATENCY",
        "SERVICE",
        "ROUTE",
        "STATE",
        "HEALTH"
    );
    for svc in &s.services {
        let health = match (svc.route.is_some(), svc.healthy, svc.status) {
            (false, _, _) => format!("{:<8}", "internal"),
            (true, true, Some(st)) => paint.good(format!("{:<8}", format!("ok {st}"))),
            (true, true, None) => paint.good(format!("{:<8}", "ok")),
            (true, false, Some(st)) => paint.bad(format!("{:<8}", format!("FAIL {st}"))),
            (true, false, None) => paint.bad(format!("{:<8}", "FAIL")),
        };
        outln!(
            "  {:<12} {:<10} {:<8} {} {}",
            svc.name,
            svc.route.as_deref().unwrap_or("-"),
            svc.state,
            health,
            svc.latency_ms.map_or("-".into(), |l| format!("{l} ms"))
        );
    }
    Ok(())
}

/// The reporters of the commands that remove previews (`down`, `gc`): one per forge whose
/// credentials are in the config. The CLI works without any.
struct Reporters {
    map: BTreeMap<ForgeKind, Reporter>,
}

impl Reporters {
    fn from_config(config: &Config) -> Reporters {
        let forges = Forges::from_config(config, &RetryPolicy::default()).unwrap_or_default();
        let map = match Metrics::new() {
            Ok(metrics) => forges
                .iter()
                .map(|(kind, forge)| (kind, Reporter::new(Arc::clone(forge), metrics.clone())))
                .collect(),
            Err(_) => BTreeMap::new(),
        };
        Reporters { map }
    }

    /// The reporter for `forge`, or why there is none.
    fn get(&self, forge: ForgeKind) -> Result<&Reporter, String> {
        self.map
            .get(&forge)
            .ok_or_else(|| format!("no {} credentials in the config", forge.title()))
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct Quoting {
        path: &'static str,
        source: std::io::Error,
    }

    /// A context that does not quote its cause, as `anyhow::Context` makes.
    #[derive(Debug, thiserror::Error)]
    #[error("{what}")]
    struct Context<E: std::error::Error + 'static> {
        what: &'static str,
        #[source]
        source: E,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let quoted = Quoting {
            path: "/x",
            source: io(),
        };
        assert_eq!(one_line(&quoted), "cannot read /x: gone");
        let wrapped = Context {
            what: "loading the config",
            source: io(),
        };
        assert_eq!(one_line(&wrapped), "loading the config: gone");
        let both = Context {
            what: "starting",
            source: Quoting {
                path: "/x",
                source: io(),
            },
        };
        assert_eq!(one_line(&both), "starting: cannot read /x: gone");
    }
}
