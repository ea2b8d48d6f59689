//! The `previewd` binary: parses the command line, sets up logging and the runtime, loads the
//! operator config and calls the command in `previewd::cli`. Errors become one line on stderr
//! and a non-zero exit, after the runtime and the log writer have shut down.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use previewd::cli::{self, Outcome, up::UpArgs};
use previewd::config::Config;
use previewd::ids::PreviewId;
use previewd::preview::manager::LogQuery;
use previewd::serve::LogDrops;

#[derive(Parser)]
#[command(
    name = "previewd",
    version,
    about = "Preview environments for pull requests"
)]
struct Cli {
    /// Operator config (previewd.toml); every key can also come from PREVIEWD_* variables.
    #[arg(long, global = true, env = "PREVIEWD_CONFIG")]
    config: Option<PathBuf>,
    /// Print JSON on stdout (up, ls, status, logs as one object per line, gc, check, down,
    /// config, doctor).
    #[arg(long, global = true)]
    json: bool,
    /// Say more on stderr: which config file was loaded, and previewd's debug lines.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Preview,
    Dev,
}

#[derive(Subcommand)]
enum Command {
    /// Webhook server, workers and reconciler.
    Serve,
    /// Start or update the preview of a repository's branch (or of a plain folder).
    Up {
        /// A git URL, a local git repository, or a plain folder used as it is.
        #[arg(long)]
        repo: String,
        /// Default: the repository's default branch.
        #[arg(long)]
        branch: Option<String>,
        #[arg(long, value_enum, default_value = "preview")]
        mode: ModeArg,
        /// With --mode dev: the folder mounted into the dev images.
        #[arg(long)]
        worktree: Option<PathBuf>,
    },
    /// List previews.
    Ls,
    /// Show one preview, with a health check of each service through the gateway.
    Status { id: PreviewId },
    /// Print a preview's logs (the last lines of each service), or follow them.
    Logs {
        id: PreviewId,
        service: Option<String>,
        /// Lines from the end of each service's log to start with.
        #[arg(long, default_value_t = 100)]
        tail: usize,
        /// Only lines since a duration ago (10m, 2h) or a time (2026-12-07T10:00:00Z).
        #[arg(long, value_parser = cli::logs::parse_since)]
        since: Option<i64>,
        /// Keep printing lines as the services write them.
        #[arg(short, long)]
        follow: bool,
    },
    /// Remove a preview (or all of them).
    Down {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<PreviewId>,
        #[arg(long)]
        all: bool,
    },
    /// Reconcile now: routes from labels, orphans, expired previews.
    Gc,
    /// Put a preview to sleep now: its containers stop, its URL stays; a visit wakes it.
    Sleep { id: PreviewId },
    /// Wake a sleeping preview now; returns once every public service answers.
    Wake { id: PreviewId },
    /// Validate a repository's preview config and print the plan (needs no operator config).
    Check {
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Check what would break the first preview (Docker, the gateway's image and port, address
    /// pools, forge tokens, DNS, TLS), each finding with its fix; exit 1 when something would.
    Doctor {
        /// Also check that the forge's token sees this repository and may write there
        /// (statuses, comments): `OWNER/NAME`, or `gitea:OWNER/NAME` when several forges are
        /// configured.
        #[arg(long, value_name = "[FORGE:]OWNER/NAME")]
        repo: Option<cli::doctor::RepoArg>,
    },
    /// Print the effective operator config: each value and where it came from, secrets masked.
    Config,
    /// Print a shell completion script: `previewd completions bash > /etc/bash_completion.d/previewd`.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff): `previewd man | man -l -`.
    Man,
}

impl Command {
    fn prints_json(&self) -> bool {
        matches!(
            self,
            Command::Up { .. }
                | Command::Ls
                | Command::Status { .. }
                | Command::Gc
                | Command::Config
                | Command::Doctor { .. }
                | Command::Logs { .. }
                | Command::Check { .. }
                | Command::Down { .. }
                | Command::Sleep { .. }
                | Command::Wake { .. }
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.json && !cli.command.prints_json() {
        let e = "--json: only up, ls, status, logs, gc, check, down, sleep, wake, config and doctor print JSON";
        Cli::command().error(ErrorKind::ArgumentConflict, e).exit();
    }
    // `serve` logs through a background thread, so a slow or blocked stderr never stalls a
    // webhook request: lines past its buffer (8192 lines, allocated at start: kept small) are
    // dropped, counted on `/metrics` and, when main returns, in one last line. It writes through
    // a `BufWriter` flushed whenever its queue is empty: a burst costs one `write` per batch.
    // The CLI commands log directly, so their lines stay in order with what they print.
    let (writer, flush) = if matches!(cli.command, Command::Serve) {
        let (w, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .buffered_lines_limit(8192)
            .lossy(true)
            .finish(std::io::BufWriter::with_capacity(
                32 * 1024,
                std::io::stderr(),
            ));
        let dropped = w.error_counter();
        let guard = Some(guard);
        (BoxMakeWriter::new(w), Some(LogFlush { guard, dropped }))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let quiet_default = if cli.verbose {
        "previewd=debug,warn"
    } else {
        "previewd=info,warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PREVIEWD_LOG")
        .unwrap_or_else(|_| quiet_default.into());
    // Colour only for a person at a terminal: under systemd, Docker or a pipe the escape codes
    // would end up in the journal and in log files. NO_COLOR (no-color.org) wins.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match std::env::var("PREVIEWD_LOG_FORMAT").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("text") => builder.with_ansi(ansi).init(),
        // One JSON object per line, for log collectors.
        Ok("json") => builder.json().with_ansi(false).init(),
        Ok(other) => {
            eprintln!("previewd: PREVIEWD_LOG_FORMAT: {other:?}: use text or json");
            return ExitCode::from(2);
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("previewd: PREVIEWD_LOG_FORMAT: not valid Unicode: use text or json");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("previewd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_drops = flush.as_ref().map(|f| {
        let c = f.dropped.clone();
        LogDrops::new(move || c.dropped_lines() as u64)
    });
    let result = runtime.block_on(run(cli, log_drops));
    // Tasks and their destructors first, then what the log writer holds, then the error.
    drop(runtime);
    drop(flush);
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::FAILURE,
        Ok(Outcome::NotRunning) => ExitCode::from(3),
        Err(e) => {
            eprintln!("previewd: {}", cli::one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, log_drops: Option<LogDrops>) -> Result<Outcome, anyhow::Error> {
    let json = cli.json;
    let config_path = cli.config;
    // Read only by the commands that need it: a broken previewd.toml must not stop a
    // repository's check, nor printing completions or the manual.
    let load = || Config::load(config_path.as_deref());
    let outcome = match cli.command {
        Command::Check { path } => cli::check::run(&path, json),
        Command::Config => cli::config::run(config_path.as_deref(), json),
        Command::Doctor { repo } => {
            cli::doctor::run(config_path.as_deref(), repo.as_ref(), json).await
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "previewd",
                &mut std::io::stdout(),
            );
            Ok(Outcome::Done)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(Outcome::Done)
        }
        Command::Serve => cli::serve::run(load()?, log_drops).await,
        Command::Up {
            repo,
            branch,
            mode,
            worktree,
        } => {
            let dev = matches!(mode, ModeArg::Dev);
            let args = UpArgs {
                repo,
                branch,
                dev,
                worktree,
            };
            cli::up::run(load()?, args, json).await
        }
        Command::Ls => cli::ls::run(load()?, json).await,
        Command::Status { id } => cli::status::run(load()?, &id, json).await,
        Command::Logs {
            id,
            service,
            tail,
            since,
            follow,
        } => {
            let query = LogQuery {
                service,
                tail,
                since,
                follow,
            };
            cli::logs::run(load()?, &id, query, json).await
        }
        // clap lets `id` be absent only with `--all`.
        Command::Down { id, .. } => cli::down::run(load()?, id, json).await,
        Command::Gc => cli::gc::run(load()?, json).await,
        Command::Sleep { id } => cli::sleep::sleep(load()?, &id, json).await,
        Command::Wake { id } => cli::sleep::wake(load()?, &id, json).await,
    };
    Ok(outcome?)
}

/// Flushes `serve`'s log writer when dropped, then says how many lines it had to drop.
struct LogFlush {
    guard: Option<tracing_appender::non_blocking::WorkerGuard>,
    dropped: tracing_appender::non_blocking::ErrorCounter,
}

impl Drop for LogFlush {
    fn drop(&mut self) {
        // What was buffered first, so the count comes last.
        drop(self.guard.take());
        let n = self.dropped.dropped_lines();
        if n > 0 {
            eprintln!("previewd: {n} log lines were dropped: stderr did not keep up");
        }
    }
}
