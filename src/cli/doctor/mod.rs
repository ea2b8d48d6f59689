//! `previewd doctor`: what would break the first preview, checked before it does, each
//! finding with a one-line fix. Only reads (Docker's answers, a port bind it lets go at once,
//! a DNS lookup, the forges' `GET /user` and, with `--repo`, the repository's pull requests and
//! the token's permission there); never starts, changes or removes anything, and never prints
//! a secret. One file per side checked: `docker`, `forge`, `host`.

mod docker;
mod forge;
mod host;

use std::path::Path;

use super::{CliError, Outcome};
use crate::config::Config;
use crate::forge::ForgeKind;
use crate::forge::Repo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Ok,
    /// Works today, but will break under load or in some setups.
    Warn,
    /// Breaks the first preview.
    Fail,
}

pub(super) struct Finding {
    check: &'static str,
    verdict: Verdict,
    detail: String,
    fix: Option<String>,
}

pub(super) fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        verdict: Verdict::Ok,
        detail: detail.into(),
        fix: None,
    }
}

pub(super) fn bad(
    check: &'static str,
    verdict: Verdict,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        check,
        verdict,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// The repository `doctor --repo [FORGE:]OWNER/NAME` checks the token against; the forge may
/// be left out when only one is configured.
#[derive(Debug, Clone)]
pub struct RepoArg {
    pub forge: Option<ForgeKind>,
    pub repo: Repo,
}

impl std::str::FromStr for RepoArg {
    type Err = String;

    fn from_str(s: &str) -> Result<RepoArg, String> {
        let (forge, path) = match s.split_once(':') {
            Some((f, path)) => match ForgeKind::parse(f) {
                Some(k) => (Some(k), path),
                None => return Err(format!("{f}: not a forge (github, gitea or gitlab)")),
            },
            None => (None, s),
        };
        let repo = Repo::parse(path).ok_or_else(|| format!("{path}: not OWNER/NAME"))?;
        Ok(RepoArg { forge, repo })
    }
}

pub async fn run(
    config_path: Option<&Path>,
    repo: Option<&RepoArg>,
    json: bool,
) -> Result<Outcome, CliError> {
    let mut found = Vec::new();
    let config = match Config::load_located(config_path) {
        Ok((config, file)) => {
            let from = file.map_or("no file: defaults and the environment".to_owned(), |f| {
                f.display().to_string()
            });
            found.push(ok("config", format!("loaded ({from})")));
            Some(config)
        }
        Err(e) => {
            found.push(bad(
                "config",
                Verdict::Fail,
                e.to_string(),
                "fix the key it names (previewd config shows every value and its origin)",
            ));
            None
        }
    };
    if let Some(config) = &config {
        found.extend(docker::docker_checks(config).await);
        found.extend(forge::forge_checks(config, repo).await);
        found.push(host::dns_check(config));
        found.push(host::egress_check(config));
        if let Some(f) = host::tls_check(config) {
            found.push(f);
        }
    }
    print(&found, json)?;
    Ok(if found.iter().any(|f| f.verdict == Verdict::Fail) {
        Outcome::Failed
    } else {
        Outcome::Done
    })
}

fn print(found: &[Finding], json: bool) -> Result<(), CliError> {
    if json {
        let v: Vec<serde_json::Value> = found
            .iter()
            .map(|f| {
                serde_json::json!({
                    "check": f.check,
                    "status": match f.verdict { Verdict::Ok => "ok", Verdict::Warn => "warn", Verdict::Fail => "fail" },
                    "detail": f.detail,
                    "fix": f.fix,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let paint = super::paint::Paint::stdout();
    for f in found {
        let word = match f.verdict {
            Verdict::Ok => paint.good(format!("{:<4}", "ok")),
            Verdict::Warn => paint.warn(format!("{:<4}", "warn")),
            Verdict::Fail => paint.bad(format!("{:<4}", "FAIL")),
        };
        outln!("{word}  {:<14} {}", f.check, f.detail);
        if let Some(fix) = &f.fix {
            outln!("{:<20} fix: {fix}", "");
        }
    }
    let fails = found.iter().filter(|f| f.verdict == Verdict::Fail).count();
    if fails > 0 {
        outln!("\n{fails} problem(s) would break the first preview");
    }
    Ok(())
}
