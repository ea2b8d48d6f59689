//! What people read on a pull request: the sticky comment's markdown (found again by its
//! hidden marker), command replies, and status descriptions; and every hidden marker previewd
//! writes, with the one test of whether a comment is previewd's own (`is_ours`), so that no
//! other module spells a marker. Pure functions of the engine's results; nothing here calls a
//! forge, and nothing here may include a secret (but a `password` preview's own password, in
//! the sticky comment only) or an unescaped log (logs go in a fenced block
//! longer than any backtick run they contain).

mod markdown;
mod sleep;

use std::fmt::Write;

use crate::engine::{DeployFailure, Deployed, PreviewState, Timings};
use crate::forge::Repo;
use crate::ids::CommitSha;

use markdown::{cell, code_span, longest_backtick_run, one_line};
pub use markdown::{status_line, truncate};
pub use sleep::{READY_HEADING, sleeping, status_wake_failed, ttl_warning, wake_failed, woken};

/// The literal every hidden marker starts with; a macro so that `REPLY_MARKER`, a constant,
/// is built from it too.
macro_rules! marker_prefix {
    () => {
        "<!-- previewd:"
    };
}

/// The start of every hidden marker previewd writes (`marker`, `REPLY_MARKER`,
/// `expired_marker`, `ttl_warning_marker`).
pub const MARKER_PREFIX: &str = marker_prefix!();

/// Whether previewd wrote a comment: its body carries one of previewd's markers. Such a
/// comment is never read as a command.
pub fn is_ours(body: &str) -> bool {
    body.contains(MARKER_PREFIX)
}

/// The hidden marker that identifies previewd's one comment on a pull request.
pub fn marker(repo: &Repo, pr: u64) -> String {
    format!("{MARKER_PREFIX}{}#{pr} -->", repo.full_name())
}

/// Marks previewd's answers to commands, so they are never read as commands themselves.
pub const REPLY_MARKER: &str = concat!(marker_prefix!(), "reply -->");

/// The hidden marker of the reconciler's warning that a preview nears `limits.ttl`: a comment
/// of its own, apart from the sticky one, edited in place.
pub fn ttl_warning_marker(repo: &Repo, pr: u64) -> String {
    format!("{MARKER_PREFIX}ttl:{}#{pr} -->", repo.full_name())
}

/// The commit status and deployment status while a preview builds.
pub const STATUS_BUILDING: &str = "Building preview…";
/// The commit status and deployment status of a healthy preview (the URL goes beside it).
pub const STATUS_READY: &str = "Preview ready";

/// The commit status and deployment status of a failed deployment.
pub fn status_failed(f: &DeployFailure) -> String {
    status_line(&f.to_string())
}

/// The commit status and deployment status of a deployment a newer intent replaced; `by` is a
/// short sha or "a stop request".
pub fn status_superseded(by: &str) -> String {
    status_line(&format!("superseded by {by}"))
}

pub fn building(repo: &Repo, pr: u64, sha: &CommitSha) -> String {
    format!(
        "{}\n### ⏳ Building preview\n\nCommit `{}`: the preview is being built. This comment \
         is updated when it is ready.\n",
        marker(repo, pr),
        sha.short()
    )
}

pub fn ready(repo: &Repo, pr: u64, d: &Deployed) -> String {
    let s = &d.state;
    let mut out = format!("{}\n{READY_HEADING}\n\n", marker(repo, pr));
    let _ = writeln!(out, "**URL:** {}  ", s.url);
    if let Some(sha) = &s.sha {
        let _ = writeln!(out, "**Commit:** `{}`  ", sha.short());
    }
    out.push_str(&egress_line(s));
    out.push_str(&access_line(s));
    out.push('\n');
    out.push_str(&services_table(s));
    out.push('\n');
    out.push_str(&timings_line(&d.timings));
    if !d.downtime.is_empty() {
        out.push_str(&format!(
            "\n\nReplaced stop-first, with a moment of downtime (they mount a named volume): {}\n",
            d.downtime.join(", ")
        ));
    }
    out
}

pub fn failed(repo: &Repo, pr: u64, sha: &CommitSha, f: &DeployFailure) -> String {
    failure_body(repo, pr, "### ❌ Preview failed", sha, f)
}

/// A failure's comment under `heading`: the step, the service to blame, the reason and the
/// log tail.
fn failure_body(repo: &Repo, pr: u64, heading: &str, sha: &CommitSha, f: &DeployFailure) -> String {
    // The reason quotes what a pull request controls (a Dockerfile's command, a log line): in
    // a code span, so it cannot mention people, link or format anything.
    let who = f
        .service
        .as_deref()
        .map(|s| format!(" for service {}", code_span(s)))
        .unwrap_or_default();
    let mut out = format!(
        "{}\n{heading}\n\n**Commit:** `{}`  \n**{} failed**{who}: {}\n",
        marker(repo, pr),
        sha.short(),
        f.phase,
        code_span(&one_line(&f.reason))
    );
    if !f.log_tail.is_empty() {
        let log = f.log_tail.join("\n");
        let fence = "`".repeat(longest_backtick_run(&log).max(2) + 1);
        let _ = write!(
            out,
            "\n<details><summary>Last {} lines of the {} log</summary>\n\n{fence}text\n{log}\n{fence}\n</details>\n",
            f.log_tail.len(),
            f.phase
        );
    }
    out
}

pub fn superseded(repo: &Repo, pr: u64, sha: &CommitSha, by: &str) -> String {
    format!(
        "{}\n### ⏳ Building preview\n\nCommit `{}` was superseded by {by}.\n",
        marker(repo, pr),
        sha.short()
    )
}

/// Why a preview was removed, as its PR is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Removal {
    /// The PR closed, its label went, `/preview stop`, or its branch was deleted.
    Stopped,
    /// Not redeployed for `limits.ttl`. `sha` is the commit it ran: until the PR's head moves
    /// on (or `command` is said), the reconciler must not bring it back (`expired_marker`).
    Expired {
        ttl: std::time::Duration,
        command: String,
        sha: Option<CommitSha>,
    },
    /// `previewd down` on the host.
    Operator,
}

impl Removal {
    /// For the deployment status (140 characters at most).
    pub fn description(&self) -> &'static str {
        match self {
            Removal::Stopped => "Preview removed",
            Removal::Expired { .. } => "Preview removed after limits.ttl",
            Removal::Operator => "Preview removed by an operator",
        }
    }
}

/// Left in the sticky comment when a preview of `sha` expires: the forge, not previewd,
/// remembers that this commit's preview was removed on purpose.
pub fn expired_marker(sha: &CommitSha) -> String {
    format!("{MARKER_PREFIX}expired:{sha} -->")
}

pub fn removed(repo: &Repo, pr: u64, why: &Removal) -> String {
    let text = match why {
        Removal::Stopped => {
            "The preview for this pull request was stopped and its containers removed.".to_owned()
        }
        Removal::Expired { ttl, command, sha } => format!(
            "{}The preview was not redeployed for {} (`limits.ttl`), so it was stopped and its \
             containers removed. Push a commit or comment `{command}` to start it again.",
            sha.as_ref()
                .map(|s| expired_marker(s) + "\n")
                .unwrap_or_default(),
            humantime::format_duration(*ttl),
        ),
        Removal::Operator => "An operator stopped the preview on the previewd host \
                              (`previewd down`) and removed its containers."
            .to_owned(),
    };
    format!("{}\n### Preview removed\n\n{text}\n", marker(repo, pr))
}

/// The answer to `/preview status`.
pub fn status_reply(state: Option<&PreviewState>) -> String {
    let Some(s) = state else {
        return format!("{REPLY_MARKER}\nNo preview is running for this pull request.\n");
    };
    let mut out = format!("{REPLY_MARKER}\n**Preview {}**: {}  \n", s.status, s.url);
    if let Some(since) = &s.asleep {
        let _ = writeln!(out, "{}  ", sleep::since_line(since));
    }
    if let Some(sha) = &s.sha {
        let _ = writeln!(out, "**Commit:** `{}`  ", sha.short());
    }
    out.push_str(&egress_line(s));
    out.push('\n');
    out.push_str(&services_table(s));
    out
}

/// What the preview's code may reach, so a reviewer knows what it could have touched.
fn egress_line(s: &PreviewState) -> String {
    use crate::config::egress::Mode;
    let what = match s.egress {
        None => return String::new(),
        Some(Mode::None) => "none (its own services only)",
        Some(Mode::Public) => "public (no private, host or metadata addresses)",
        Some(Mode::All) => "all (unfiltered)",
    };
    format!("**Egress:** {what}  \n")
}

/// Who may see the preview, when its label says; in `password` mode the user and password,
/// which only people who can read the pull request see here (the one secret this module
/// writes, by design: it opens this preview only).
fn access_line(s: &PreviewState) -> String {
    use crate::config::AccessMode;
    match (s.access, &s.password) {
        (Some(AccessMode::Password), Some(p)) => format!(
            "**Access:** password: user `{}`, password `{}`  \n",
            crate::engine::PASSWORD_USER,
            p.expose()
        ),
        (Some(AccessMode::Forge), _) => {
            "**Access:** signed in with the forge, readers of the repository only  \n".to_owned()
        }
        _ => String::new(),
    }
}

/// The answer to an unknown sub-command.
pub fn help(command: &str) -> String {
    format!(
        "{REPLY_MARKER}\nUnknown command. previewd understands:\n\n\
         - `{command}`: start or redeploy the preview\n\
         - `{command} stop`: stop it and remove its containers\n\
         - `{command} status`: show its current state\n"
    )
}

/// The answer when a label or command does not count.
pub fn refused(reason: &str) -> String {
    format!("{REPLY_MARKER}\npreviewd did nothing: {reason}\n")
}

fn services_table(s: &PreviewState) -> String {
    if s.services.is_empty() {
        return String::new();
    }
    let mut out =
        String::from("| service | route | health | latency |\n| --- | --- | --- | --- |\n");
    for svc in &s.services {
        let route = svc
            .route
            .as_deref()
            .map(|r| format!("`{}`", cell(r)))
            .unwrap_or_else(|| "internal".into());
        let health = match (svc.healthy, svc.status) {
            (true, Some(code)) => format!("✅ {code}"),
            (true, None) => "✅".into(),
            (false, Some(code)) => format!("❌ {code}"),
            (false, None) => format!("❌ {}", cell(&svc.state)),
        };
        let latency = svc
            .latency_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            out,
            "| {} | {route} | {health} | {latency} |",
            cell(&svc.name)
        );
    }
    out
}

fn timings_line(t: &Timings) -> String {
    if t.total.is_zero() {
        return String::new();
    }
    let phases: Vec<String> = t
        .phases
        .iter()
        .map(|(p, d)| format!("{p} {:.1} s", d.as_secs_f64()))
        .collect();
    format!(
        "Time to ready: {:.1} s ({})\n",
        t.total.as_secs_f64(),
        phases.join(" · ")
    )
}

#[cfg(test)]
mod tests {
    use super::{REPLY_MARKER, expired_marker, failed, is_ours, marker, ttl_warning_marker};
    use crate::engine::{DeployFailure, Phase};
    use crate::forge::Repo;
    use crate::ids::CommitSha;

    #[test]
    fn every_marker_is_spelled_as_before_and_is_ours() {
        let repo = Repo::parse("acme/shop").expect("repo");
        let sha = CommitSha::parse(&"a".repeat(40)).expect("sha");
        let markers = [
            (marker(&repo, 7), "<!-- previewd:acme/shop#7 -->".to_owned()),
            (
                REPLY_MARKER.to_owned(),
                "<!-- previewd:reply -->".to_owned(),
            ),
            (
                expired_marker(&sha),
                format!("<!-- previewd:expired:{} -->", "a".repeat(40)),
            ),
            (
                ttl_warning_marker(&repo, 7),
                "<!-- previewd:ttl:acme/shop#7 -->".to_owned(),
            ),
        ];
        for (made, expected) in markers {
            assert_eq!(made, expected);
            assert!(is_ours(&format!("text\n{made}\nmore")), "{made}");
        }
        assert!(!is_ours("/preview status"));
        assert!(!is_ours("<!-- other:reply -->"));
    }

    #[test]
    fn the_egress_mode_is_shown_when_known() {
        use crate::config::egress::Mode;
        let mut s = crate::engine::PreviewState {
            id: crate::ids::PreviewId::parse("abcdefghij").expect("id"),
            url: "http://abcdefghij.localhost:8000".into(),
            key: crate::engine::PreviewKey {
                forge: "github".into(),
                repo: "acme/shop".into(),
                branch: "b".into(),
            },
            sha: None,
            pr: Some(7),
            status: crate::engine::PreviewStatus::Running,
            created: None,
            services: Vec::new(),
            egress: Some(Mode::None),
            asleep: None,
            visited: None,
            ready_in: None,
            access: None,
            password: None,
        };
        let body = super::status_reply(Some(&s));
        assert!(
            body.contains("**Egress:** none (its own services only)"),
            "{body}"
        );
        s.egress = None;
        assert!(!super::status_reply(Some(&s)).contains("Egress"));
    }

    #[test]
    fn a_failure_reason_is_quoted_as_code() {
        let repo = Repo::parse("acme/shop").expect("repo");
        let sha = CommitSha::parse(&"a".repeat(40)).expect("sha");
        let f = DeployFailure {
            phase: Phase::Build,
            service: Some("web".into()),
            reason: "The command '/bin/sh -c echo @octocat [x](https://evil.test) `tick` ``` && exit 3' returned 3\nsecond line".into(),
            log_tail: Vec::new(),
            cancelled: false,
        };
        let body = failed(&repo, 7, &sha, &f);
        assert!(
            body.contains(
                "**build failed** for service ` web `: ```` The command '/bin/sh -c echo @octocat [x](https://evil.test) `tick` ``` && exit 3' returned 3 ````\n"
            ),
            "{body}"
        );
        assert!(!body.contains("second line"), "{body}");
    }
}
