//! `previewd up`: starts or updates the preview of a repository's branch (or of a plain
//! folder), showing its progress on stderr, then prints it like `status` as soon as it is
//! ready, and exits once the generation it replaced has drained and been removed.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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
    let progress = Progress::new(std::io::stderr().is_terminal());
    let events = {
        let progress = progress.clone();
        Arc::new(move |e: Event| progress.event(e))
    };
    let mode = match req.mode {
        Mode::Preview => "preview",
        Mode::Dev { .. } => "dev",
    };
    let result = manager.up(req, events, CancellationToken::new()).await;
    progress.finish();
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
            let printed = print_state(&d.state, mode, json);
            // The preview serves the new generation; the old one drains and goes before `up`
            // exits (even when stdout is gone), so nothing of it is left behind.
            manager.retired().await;
            printed?;
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

/// `up`'s progress on stderr. At a terminal: one status line (spinner, phase, its elapsed
/// time, the newest build or log line cut to the terminal's width, never wrapped) and a line
/// per finished phase with its time. Elsewhere (CI logs, pipes): plain lines, every one kept.
#[derive(Clone)]
struct Progress {
    bar: Option<ProgressBar>,
    /// The phase under way and when it began, to print its time when the next one starts.
    phase: Arc<Mutex<Option<(String, Instant)>>>,
}

impl Progress {
    fn new(tty: bool) -> Progress {
        let bar = tty.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            // The template is ours and valid; a bad one would only lose the style.
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:.bold} {elapsed:>4} {wide_msg}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            phase: Arc::new(Mutex::new(None)),
        }
    }

    fn event(&self, e: Event) {
        match (e, &self.bar) {
            (Event::Phase(p), bar) => {
                let name = p.to_string();
                let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
                let done = phase.replace((name.clone(), Instant::now()));
                if let Some(bar) = bar {
                    if let Some((prev, t)) = done {
                        bar.println(format!("  {prev} {:.1}s", t.elapsed().as_secs_f64()));
                    }
                    bar.set_prefix(name);
                    bar.set_message("");
                    bar.reset_elapsed();
                } else {
                    let mut err = std::io::stderr();
                    let _ = writeln!(err, "==> {name}");
                }
            }
            (Event::Line { service, line }, Some(bar)) => {
                bar.set_message(format!("{service} | {line}"));
            }
            (Event::Line { service, line }, None) => {
                let mut err = std::io::stderr();
                let _ = writeln!(err, "  {service} | {line}");
            }
        }
    }

    /// Clears the status line, so what `up` prints next starts on a clean line.
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
