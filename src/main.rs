//! The `previewd` binary: parses the command line, loads the operator config and calls the
//! library. Errors become one line on stderr and a non-zero exit.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use previewd::config::Config;
use previewd::engine::{DeployFailure, PreviewState};
use previewd::forge::Repo;
use previewd::forge::comment::Removal;
use previewd::forge::github::GitHub;
use previewd::forge::report::Reporter;
use previewd::ids::{CommitSha, PreviewId};
use previewd::metrics::Metrics;
use previewd::preview::labels::Observed;
use previewd::preview::manager::{Event, Manager, Mode, UpRequest};
use previewd::preview::reconcile;

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
        #[arg(long)]
        json: bool,
    },
    /// List previews.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show one preview, with a health check of each service through the gateway.
    Status {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Print the last lines of a preview's logs.
    Logs {
        id: String,
        service: Option<String>,
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
    /// Remove a preview (or all of them).
    Down {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Reconcile now: routes from labels, orphans, expired previews.
    Gc {
        #[arg(long)]
        json: bool,
    },
    /// Validate a repository's preview config and print the plan.
    Check {
        #[arg(default_value = ".")]
        path: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    // `serve` logs through a background thread: a slow or blocked stderr (a full pipe, a
    // stalled terminal) must never stall a webhook request. Lines past its buffer are dropped,
    // not waited for. The buffer is allocated whole at start, so it is kept small (8192 lines,
    // 256 KiB; the crate's default of 128 000 added 4 MiB to the idle footprint). The CLI
    // commands write directly, so their log lines stay in order with what they print. `flush`
    // writes what is buffered when main returns; how many lines were dropped is said then, so
    // an operator reading the log knows it has gaps (`/metrics` counts them while `serve`
    // runs). The thread writes through a `BufWriter`: it flushes whenever it has emptied its
    // queue, so a line is never held back, but a burst (one line per queued delivery) costs
    // one `write` per batch instead of one per line.
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("PREVIEWD_LOG")
        .unwrap_or_else(|_| "previewd=info,warn".into());
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
            std::process::exit(2);
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("previewd: PREVIEWD_LOG_FORMAT: not valid Unicode: use text or json");
            std::process::exit(2);
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("previewd: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let log_drops = flush.as_ref().map(|f| f.dropped.clone());
    if let Err(e) = runtime.block_on(run(cli, log_drops)) {
        drop(flush);
        eprintln!("previewd: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, each said once. Many errors, ours and the libraries',
/// quote their cause in their own message and also return it as their `source()`, so `{:#}`
/// printed "No such file or directory (os error 2): No such file or directory (os error 2)".
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
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

async fn run(
    cli: Cli,
    log_drops: Option<tracing_appender::non_blocking::ErrorCounter>,
) -> Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Check { path } => check(&path),
        Command::Serve => {
            let manager = Manager::connect(config.clone()).await?;
            let shutdown = CancellationToken::new();
            let s = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!(
                    "shutting down: no new work; running work finishes or is reconciled at the next start"
                );
                s.cancel();
            });
            let options = previewd::serve::ServeOptions {
                log_drops: log_drops
                    .map(|c| previewd::serve::LogDrops::new(move || c.dropped_lines() as u64)),
                ..Default::default()
            };
            previewd::serve::serve(config, Arc::new(manager), options, shutdown).await
        }
        Command::Up {
            repo,
            branch,
            mode,
            worktree,
            json,
        } => {
            let mode = match (mode, worktree) {
                (ModeArg::Preview, None) => Mode::Preview,
                (ModeArg::Preview, Some(_)) => bail!("--worktree needs --mode dev"),
                (ModeArg::Dev, Some(w)) => Mode::Dev { worktree: w },
                (ModeArg::Dev, None) => bail!("--mode dev needs --worktree PATH"),
            };
            let manager = Manager::connect(config).await?;
            let req = UpRequest {
                repo,
                branch,
                sha: None,
                pr: None,
                forge: "cli".into(),
                mode,
                key_repo: None,
                key_branch: None,
            };
            up(&manager, req, json).await
        }
        Command::Ls { json } => {
            let manager = Manager::connect(config).await?;
            let observed = manager.observed().await?;
            let states: Vec<(PreviewState, String)> = observed
                .iter()
                .map(|p| (manager.state(p, &Default::default()), mode_of(p)))
                .collect();
            if json {
                let all: Vec<_> = states.iter().map(|(s, m)| to_json(s, m)).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if states.is_empty() {
                println!("no previews");
            } else {
                println!("{:<12} {:<9} {:<40} REPO@BRANCH", "ID", "STATUS", "URL");
                for (s, _) in &states {
                    println!(
                        "{:<12} {:<9} {:<40} {}{}",
                        s.id,
                        s.status,
                        s.url,
                        s.key.repo,
                        if s.key.branch.is_empty() {
                            String::new()
                        } else {
                            format!("@{}", s.key.branch)
                        }
                    );
                }
            }
            Ok(())
        }
        Command::Status { id, json } => {
            let id = PreviewId::parse(&id)?;
            let manager = Manager::connect(config).await?;
            let p = manager.get(&id).await?;
            let state = manager.state_with_health(&p).await;
            print_state(&state, &mode_of(&p), json)?;
            if state.status != "running" {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Logs { id, service, tail } => {
            let id = PreviewId::parse(&id)?;
            let manager = Manager::connect(config).await?;
            let logs = manager.logs(&id, service.as_deref(), tail).await?;
            let many = logs.len() > 1;
            for (svc, lines) in logs {
                for l in lines {
                    if many {
                        println!("{svc} | {l}");
                    } else {
                        println!("{l}");
                    }
                }
            }
            Ok(())
        }
        Command::Down { id, all } => {
            let manager = Manager::connect(config.clone()).await?;
            let observed = manager.observed().await?;
            let ids: Vec<PreviewId> = match id {
                Some(id) => vec![PreviewId::parse(&id)?],
                None if all => observed.iter().map(|p| p.id.clone()).collect(),
                None => bail!("give a preview id or --all"),
            };
            // A preview a forge asked for: its PR is told, as when the PR closes.
            let reporter = forge_reporter(&config);
            for id in &ids {
                manager
                    .down(id)
                    .await
                    .with_context(|| format!("removing {id}"))?;
                println!("removed {id}");
                let Some(t) = forge_target(&observed, id) else {
                    continue;
                };
                match &reporter {
                    Some(r) => {
                        r.removed(&t.repo, t.pr, &t.branch, &Removal::Operator)
                            .await
                    }
                    None => eprintln!(
                        "note: {} was not told that {id} is gone (no GitHub credentials in the config)",
                        t.repo
                    ),
                }
            }
            if ids.is_empty() {
                manager.settle().await?;
                println!("no previews");
            }
            Ok(())
        }
        Command::Gc { json } => {
            let manager = Manager::connect(config.clone()).await?;
            let observed = manager.observed().await?;
            let reporter = forge_reporter(&config);
            // `limits.keep_label` is on the PR: a preview GitHub asked for is expired only when
            // its PR can be read and does not carry it, as `serve`'s reconciler does.
            // A preview that passes the ttl between this check and the reconcile pass below
            // would be expired unread: so PRs are read from a minute before the ttl on.
            let soon = config
                .limits
                .ttl
                .saturating_sub(std::time::Duration::from_secs(60));
            let mut keep = HashSet::new();
            let mut kept = Vec::new();
            for o in &observed {
                if !reconcile::past_ttl(o, soon) {
                    continue;
                }
                let past = reconcile::past_ttl(o, config.limits.ttl);
                let Some(ForgeTarget {
                    repo, pr: Some(pr), ..
                }) = forge_target_of(o)
                else {
                    continue;
                };
                let labels = match &reporter {
                    Some(r) => r
                        .forge()
                        .pull_request(&repo, pr)
                        .await
                        .map(|p| p.labels)
                        .map_err(|e| e.to_string()),
                    None => Err("no GitHub credentials in the config".to_owned()),
                };
                match labels {
                    Ok(l) if !l.contains(&config.limits.keep_label) => continue,
                    Ok(_) if !past => {}
                    Ok(_) => kept.push(format!(
                        "kept {} past limits.ttl: {repo}#{pr} carries the `{}` label",
                        o.id, config.limits.keep_label
                    )),
                    Err(_) if !past => {}
                    Err(why) => eprintln!(
                        "note: kept {} past limits.ttl: cannot read {repo}#{pr} to look for its `{}` label ({why})",
                        o.id, config.limits.keep_label
                    ),
                }
                keep.insert(o.id.clone());
            }
            // Leave alone what a deployment in another process may be creating right now.
            let grace = config.limits.build_timeout + config.limits.health_timeout;
            let report = reconcile::reconcile(&manager, grace, &HashSet::new(), &keep).await?;
            for id in &report.expired {
                let target = PreviewId::parse(id)
                    .ok()
                    .and_then(|id| forge_target(&observed, &id));
                if let (Some(r), Some(t)) = (&reporter, target) {
                    let why = Removal::Expired {
                        ttl: config.limits.ttl,
                        command: config.triggers.command.clone(),
                        sha: t.sha,
                    };
                    r.removed(&t.repo, t.pr, &t.branch, &why).await;
                }
            }
            if !json {
                kept.iter().for_each(|k| println!("{k}"));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if report.is_empty() {
                println!("nothing to clean up; routes reloaded");
            } else {
                for (what, items) in [
                    ("expired preview", &report.expired),
                    ("container", &report.containers),
                    ("network", &report.networks),
                    ("image", &report.images),
                    ("worktree", &report.worktrees),
                ] {
                    for i in items {
                        println!("removed {what} {i}");
                    }
                }
            }
            Ok(())
        }
    }
}

/// SIGTERM (systemd, docker stop) or SIGINT (a terminal).
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn check(path: &std::path::Path) -> Result<()> {
    // Otherwise a mistyped path reads as a repository without a preview config.
    if !path.is_dir() {
        bail!(
            "{}: not a folder; give the repository's root folder (where .previewd.yml or the compose file is)",
            path.display()
        );
    }
    let spec = previewd::spec::load(path)?;
    println!("{}: valid", spec.source);
    for svc in spec.services.values() {
        let what = match &svc.image {
            previewd::spec::ImageSource::Image(i) => format!("image {i}"),
            previewd::spec::ImageSource::Build(b) => {
                format!("build {} ({})", b.context.display(), b.dockerfile.display())
            }
        };
        let route = match (&svc.route, svc.internal) {
            (_, true) | (None, _) => "internal".to_owned(),
            (Some(r), false) => format!(
                "route {} → port {}, health GET {} = {}",
                r.as_str(),
                svc.port.map_or("?".into(), |p| p.to_string()),
                svc.healthcheck.path,
                svc.healthcheck.status
            ),
        };
        println!("  {:<12} {what}; {route}", svc.name.as_str());
    }
    for d in spec.dev.values() {
        println!(
            "  dev {:<8} image {} in {}",
            d.name.as_str(),
            d.image,
            d.workdir
        );
    }
    Ok(())
}

async fn up(manager: &Manager, req: UpRequest, json: bool) -> Result<()> {
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
            print_state(&d.state, mode, json)
        }
        Err(f) => {
            report_failure(&f);
            std::process::exit(1);
        }
    }
}

fn mode_of(p: &previewd::preview::labels::Observed) -> String {
    p.any()
        .map_or_else(|| "preview".to_owned(), |m| m.mode.clone())
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

fn to_json(s: &PreviewState, mode: &str) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "url": s.url,
        "repo": s.key.repo,
        "branch": s.key.branch,
        "sha": s.sha,
        "mode": mode,
        "status": s.status,
        "services": s.services.iter().map(|svc| serde_json::json!({
            "name": svc.name,
            "route": svc.route,
            "url": svc.url,
            "state": svc.state,
            "health": {"ok": svc.healthy, "status": svc.status, "latency_ms": svc.latency_ms},
        })).collect::<Vec<_>>(),
    })
}

fn print_state(s: &PreviewState, mode: &str, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&to_json(s, mode))?);
        return Ok(());
    }
    println!("{}  {}  ({}, {mode} mode)", s.url, s.status, s.id);
    println!(
        "  {:<12} {:<10} {:<8} {:<8} LATENCY",
        "SERVICE", "ROUTE", "STATE", "HEALTH"
    );
    for svc in &s.services {
        let health = match (svc.route.is_some(), svc.healthy, svc.status) {
            (false, _, _) => "internal".to_owned(),
            (true, true, Some(st)) => format!("ok {st}"),
            (true, true, None) => "ok".to_owned(),
            (true, false, Some(st)) => format!("FAIL {st}"),
            (true, false, None) => "FAIL".to_owned(),
        };
        println!(
            "  {:<12} {:<10} {:<8} {:<8} {}",
            svc.name,
            svc.route.as_deref().unwrap_or("-"),
            svc.state,
            health,
            svc.latency_ms.map_or("-".into(), |l| format!("{l} ms"))
        );
    }
    Ok(())
}

/// Where to report on a preview GitHub asked for.
struct ForgeTarget {
    repo: Repo,
    pr: Option<u64>,
    branch: String,
    sha: Option<CommitSha>,
}

/// The forge side of preview `id`, from its labels, when GitHub asked for it.
fn forge_target(observed: &[Observed], id: &PreviewId) -> Option<ForgeTarget> {
    forge_target_of(observed.iter().find(|o| &o.id == id)?)
}

/// The forge side of preview `o`, from its labels, when GitHub asked for it.
fn forge_target_of(o: &Observed) -> Option<ForgeTarget> {
    // The live generation's commit is the one the preview serves.
    let m = o
        .live_members()
        .first()
        .or_else(|| o.generations.values().flatten().next())?;
    if m.forge != "github" {
        return None;
    }
    Some(ForgeTarget {
        repo: Repo::parse(&m.repo)?,
        pr: m.pr,
        branch: m.branch.clone(),
        sha: m.sha.as_deref().and_then(|s| CommitSha::parse(s).ok()),
    })
}

/// A reporter for the commands that remove previews (`down`, `gc`), when the config has
/// GitHub credentials; `None` otherwise (the CLI works without a forge).
fn forge_reporter(config: &Config) -> Option<Reporter> {
    let github = GitHub::from_config(&config.github).ok()?;
    Some(Reporter::new(Arc::new(github), Metrics::new().ok()?))
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

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let quoted = anyhow::Error::new(Quoting {
            path: "/x",
            source: io(),
        });
        assert_eq!(one_line(&quoted), "cannot read /x: gone");
        let wrapped = anyhow::Error::new(io()).context("loading the config");
        assert_eq!(one_line(&wrapped), "loading the config: gone");
        let both = anyhow::Error::new(Quoting {
            path: "/x",
            source: io(),
        })
        .context("starting");
        assert_eq!(one_line(&both), "starting: cannot read /x: gone");
    }
}
