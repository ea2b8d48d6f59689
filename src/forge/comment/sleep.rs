//! What a PR reads about sleeping and `limits.ttl`: the sticky comment's status line while its
//! preview sleeps, a failed wake, and the warning that a preview nears its ttl. Pure functions
//! of text and times; nothing here calls a forge or decides when a preview sleeps.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{failure_body, status_line, ttl_warning_marker};
use crate::engine::DeployFailure;
use crate::forge::Repo;
use crate::ids::CommitSha;

/// The sticky comment's status line while its preview is ready and awake.
pub const READY_HEADING: &str = "### ✅ Preview ready";
/// How the status line of a sleeping preview's comment starts.
const SLEEPING_HEADING: &str = "### 💤 Preview sleeping";

/// `since` (RFC 3339) as a PR shows it: to the minute, in UTC; as it is when it does not parse.
fn when(since: &str) -> String {
    OffsetDateTime::parse(since, &Rfc3339)
        .ok()
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|| since.to_owned())
}

/// "sleeping since …, wakes on the next visit", for the comment and `/preview status`.
pub(super) fn since_line(since: &str) -> String {
    format!("💤 sleeping since {}, wakes on the next visit", when(since))
}

/// The sticky comment `body` with its status line saying that the preview sleeps since
/// `since`; `None` when `body` is not a ready preview's comment (building, failed, removed:
/// then it says something truer than "sleeping").
pub fn sleeping(body: &str, since: &str) -> Option<String> {
    let line = format!(
        "{SLEEPING_HEADING} since {}, wakes on the next visit",
        when(since)
    );
    replace_status(body, &line)
}

/// The sticky comment `body` with its status line back to ready; `None` when it is not a
/// ready or sleeping preview's comment.
pub fn woken(body: &str) -> Option<String> {
    replace_status(body, READY_HEADING)
}

/// `body` with its ready or sleeping status line replaced by `line`, all else as it was.
fn replace_status(body: &str, line: &str) -> Option<String> {
    let mut found = false;
    let out: Vec<&str> = body
        .split('\n')
        .map(|l| {
            if !found && (l == READY_HEADING || l.starts_with(SLEEPING_HEADING)) {
                found = true;
                line
            } else {
                l
            }
        })
        .collect();
    found.then(|| out.join("\n"))
}

/// The commit status and deployment status of a failed wake.
pub fn status_wake_failed(f: &DeployFailure) -> String {
    status_line(&format!("wake failed: {f}"))
}

/// The sticky comment of a preview that did not wake: which step and service, why, and the
/// log tail, as a failed deployment's.
pub fn wake_failed(repo: &Repo, pr: u64, sha: &CommitSha, f: &DeployFailure) -> String {
    failure_body(repo, pr, "### ❌ Preview failed to wake", sha, f)
}

/// The reconciler's warning that the preview at `url` will be removed in about `left`, after
/// `unseen` without a deployment (or a visit, when `visits` count: `limits.idle_sleep` is on,
/// so the gateway tells previewd of them).
#[allow(clippy::too_many_arguments)]
pub fn ttl_warning(
    repo: &Repo,
    pr: u64,
    url: &str,
    unseen: Duration,
    left: Duration,
    visits: bool,
    command: &str,
    keep_label: &str,
) -> String {
    let round = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
    let (what, counts, keep) = if visits {
        (
            "has been neither redeployed nor visited",
            "`limits.ttl` counts from the last deployment or visit, whichever is later",
            "Visit it, push a commit",
        )
    } else {
        (
            "has not been redeployed",
            "`limits.ttl` counts from the last deployment",
            "Push a commit",
        )
    };
    format!(
        "{}\n:hourglass: The preview at {url} {what} for {} and will be removed in about {} \
         ({counts}). {keep} or comment `{command}` to keep it running, or add the label \
         `{keep_label}` to exempt it.",
        ttl_warning_marker(repo, pr),
        round(unseen),
        round(left),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_status_line_changes_when_a_preview_sleeps_and_wakes() {
        let body = "<!-- previewd:acme/shop#7 -->\n### ✅ Preview ready\n\n**URL:** http://x  \n";
        let asleep = sleeping(body, "2026-12-07T16:05:09Z").expect("a ready comment");
        assert_eq!(
            asleep,
            "<!-- previewd:acme/shop#7 -->\n### 💤 Preview sleeping since 2026-12-07 16:05 UTC, \
             wakes on the next visit\n\n**URL:** http://x  \n"
        );
        assert_eq!(woken(&asleep).as_deref(), Some(body));
        let failed = "<!-- previewd:acme/shop#7 -->\n### ❌ Preview failed\n";
        assert_eq!(sleeping(failed, "2026-12-07T16:05:09Z"), None);
        assert_eq!(woken(failed), None);
    }
}
