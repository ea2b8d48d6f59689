//! `previewd up`: starts or updates the preview of a repository's branch (or of a plain
//! folder), showing its progress on stderr, then prints it like `status`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{CliError, Outcome, print_state};
use crate::config::Config;
use crate::engine::DeployFailure;
use crate::preview::manager::{Event, Manager, Mode, UpRequest};

/// `up`'s arguments as given; `--mode dev` and `--worktree` are checked against each other here.
#[derive(Debug, Clone)]
pub struct UpArgs {
    /// A git URL, a local git repository, or a plain folder used as it is.
    pub repo: String,
    /// `None`: the repository's default branch.
    pub branch: Option<String>,
    /// `--mode dev` rather than `--mode preview`.
    pub dev: bool,
    pub worktree: Option<PathBuf>,
}

impl UpArgs {
    /// The mode: `--mode dev` needs `--worktree`, which needs `--mode dev`.
    pub fn mode(&self) -> Result<Mode, CliError> {
        match (self.dev, &self.worktree) {
            (false, None) => Ok(Mode::Preview),
            (false, Some(_)) => Err(CliError::WorktreeWithoutDev),
            (true, Some(w)) => Ok(Mode::Dev {
                worktree: w.clone(),
            }),
            (true, None) => Err(CliError::DevWithoutWorktree),
        }
    }
}

/// `Failed` when the deployment failed: the reason and the log's tail are on stderr.
pub async fn run(config: Config, args: UpArgs, json: bool) -> Result<Outcome, CliError> {
    let mode = args.mode()?;
    let git = crate::forge::git_credentials(&config);
    let manager = Manager::connect(config).await?.with_git_credentials(git);
    let req = UpRequest {
        repo: args.repo,
        branch: args.branch,
        sha: None,
        pr: None,
        forge: "cli".into(),
        mode,
        key_repo: None,
        key_branch: None,
        received: None,
    };
    up(&manager, req, json).await
}

async fn up(manager: &Manager, req: UpRequest, json: bool) -> Result<Outcome, CliError> {
    let tty = std::io::stderr().is_terminal();
    let progress = Arc::new(move |e: Event| {
        let mut err = std::io::stderr();
        match e {
            Event::Phase(p) => {
                if tty {
                    let _ = write!(err, "\r\x1b[2K");
                }
                let _ = writeln!(err, "==> {p}");
            }
            Event::Line { service, line } if tty => {
                let short: String = line.chars().take(100).collect();
                let _ = write!(err, "\r\x1b[2K  {service} | {short}");
            }
            Event::Line { service, line } => {
                let _ = writeln!(err, "  {service} | {line}");
            }
        }
        let _ = err.flush();
    });
    let mode = match req.mode {
        Mode::Preview => "preview",
        Mode::Dev { .. } => "dev",
    };
    let result = manager.up(req, progress, CancellationToken::new()).await;
    if tty {
        eprint!("\r\x1b[2K");
    }
    match result {
        Ok(d) => {
            if !json {
                let phases: Vec<String> = d
                    .timings
                    .phases
                    .iter()
                    .map(|(p, t)| format!("{p} {:.1}s", t.as_secs_f64()))
                    .collect();
                eprintln!(
                    "ready in {:.1}s ({})",
                    d.timings.total.as_secs_f64(),
                    phases.join(", ")
                );
            }
            if !d.downtime.is_empty() {
                eprintln!(
                    "replaced stop-first, with a moment of downtime (they mount a named volume): {}",
                    d.downtime.join(", ")
                );
            }
            print_state(&d.state, mode, json)?;
            Ok(Outcome::Done)
        }
        Err(f) => {
            report_failure(&f);
            Ok(Outcome::Failed)
        }
    }
}

fn report_failure(f: &DeployFailure) {
    if !f.log_tail.is_empty() {
        eprintln!("--- last {} lines of the log ---", f.log_tail.len());
        for l in &f.log_tail {
            eprintln!("{l}");
        }
        eprintln!("---");
    }
    eprintln!("previewd: {f}");
}
