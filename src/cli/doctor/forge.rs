//! Doctor's checks of the forges: each configured forge's token (its user, `GET /user` on
//! each forge) and, with `--repo`, whether that token sees the repository and may write there
//! (statuses, comments). Without `--repo` no repository is known: the token's line says so.
//! Only reads; a forge that does not answer in time is a finding, never a hang.

use std::time::Duration;

use super::{Finding, RepoArg, Verdict, bad, ok};
use crate::config::Config;
use crate::forge::retry::RetryPolicy;
use crate::forge::{ForgeError, ForgeKind, Forges, Permission, Repo};

/// Each forge call gets this long: doctor is run by a person waiting for it.
const FORGE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn forge_checks(config: &Config, repo: Option<&RepoArg>) -> Vec<Finding> {
    let mut out = Vec::new();
    // `serve`'s own refusal, word for word: what it refuses breaks every forge's previews.
    let enabled = match crate::serve::check_forges(config) {
        Ok(enabled) => enabled,
        Err(e) => {
            out.push(bad(
                "forges",
                Verdict::Fail,
                format!("previewd serve would refuse to start: {e}"),
                "set what it names (docs/github.md, docs/gitea.md, docs/gitlab.md); previewd up works without",
            ));
            config.enabled_forges()
        }
    };
    if enabled.is_empty() {
        return out;
    }
    let forges = match Forges::from_config(config, &RetryPolicy::default()) {
        Ok(f) => f,
        Err(e) => {
            out.push(bad(
                "forges",
                Verdict::Fail,
                e.to_string(),
                "fix the forge section it names",
            ));
            return out;
        }
    };
    for &kind in &enabled {
        let Some(forge) = forges.get(kind) else {
            out.push(bad(
                "forge token",
                Verdict::Fail,
                format!("{}: a webhook secret but no token", kind.title()),
                format!(
                    "set [{kind}] token: previewd cannot report to the pull requests without one"
                ),
            ));
            continue;
        };
        let answer = tokio::time::timeout(FORGE_TIMEOUT, forge.token_user()).await;
        // The permission is checked on the repository `--repo` names, if it names one.
        let unchecked = if repo.is_some() {
            ""
        } else {
            "; no repository given, so its permission is not checked (--repo OWNER/NAME)"
        };
        out.push(match answer {
            Ok(Ok(Some(user))) => ok(
                "forge token",
                format!("{}: acts as {user}{unchecked}", kind.title()),
            ),
            // Credentials without a user: a GitHub App's (`--repo` checks its installation).
            Ok(Ok(None)) => ok(
                "forge token",
                format!("{}: an App's credentials, no user to check", kind.title()),
            ),
            Ok(Err(ForgeError::Status { status: 401, .. })) => bad(
                "forge token",
                Verdict::Fail,
                format!(
                    "{}: 401, the token is wrong, expired or revoked",
                    kind.title()
                ),
                format!("create a new token for previewd's user and set [{kind}] token"),
            ),
            Ok(Err(e)) => bad(
                "forge token",
                Verdict::Fail,
                format!("{}: {e}", kind.title()),
                format!("check [{kind}] url and token (docs/{kind}.md lists the scopes)"),
            ),
            Err(_) => bad(
                "forge token",
                Verdict::Fail,
                format!(
                    "{}: no answer in {}s",
                    kind.title(),
                    FORGE_TIMEOUT.as_secs()
                ),
                format!("check [{kind}] url and that this host can reach it"),
            ),
        });
    }
    if let Some(wanted) = repo {
        out.push(repo_check(&forges, &enabled, wanted).await);
    }
    out
}

/// Whether previewd's token sees `--repo` and may write there: a missing repository or a
/// read-only token breaks every report on its pull requests.
async fn repo_check(forges: &Forges, enabled: &[ForgeKind], wanted: &RepoArg) -> Finding {
    let repo = &wanted.repo;
    let kind = match (wanted.forge, enabled) {
        (Some(k), _) => k,
        (None, [only]) => *only,
        (None, _) => {
            return bad(
                "repository",
                Verdict::Fail,
                format!("{repo}: several forges are configured"),
                format!("name the forge: --repo gitea:{repo} (or github:, gitlab:)"),
            );
        }
    };
    let title = kind.title();
    let Some(forge) = forges.get(kind) else {
        return bad(
            "repository",
            Verdict::Fail,
            format!("{title} is not configured (no webhook secret or no token)"),
            format!("set [{kind}] webhook_secret and token"),
        );
    };
    let open = match timed(forge.open_pull_requests(repo)).await {
        Ok(prs) => prs.len(),
        Err(Some(e)) if e.is_not_found() => {
            return bad(
                "repository",
                Verdict::Fail,
                format!("{title}: {repo} does not exist or previewd's token cannot see it"),
                format!("check the name, and give previewd's user access to {repo}"),
            );
        }
        Err(e) => return unanswered(kind, repo, e),
    };
    match timed(forge.own_permission(repo)).await {
        Ok(Some(p @ (Permission::Admin | Permission::Maintain | Permission::Write))) => ok(
            "repository",
            format!(
                "{title}: {repo}: {open} open pull requests; previewd's user may write ({})",
                p.as_str()
            ),
        ),
        Ok(Some(p)) => bad(
            "repository",
            Verdict::Fail,
            format!(
                "{title}: {repo}: previewd's user has {} access; statuses and comments need write",
                p.as_str()
            ),
            format!("give previewd's user write access to {repo} (GitLab: Developer or above)"),
        ),
        Ok(None) => ok(
            "repository",
            format!("{title}: {repo}: {open} open pull requests (the permission is the app's)"),
        ),
        Err(e) => unanswered(kind, repo, e),
    }
}

/// A forge call with doctor's deadline: `Err(None)` when it ran out.
async fn timed<T>(
    call: impl Future<Output = Result<T, ForgeError>>,
) -> Result<T, Option<ForgeError>> {
    match tokio::time::timeout(FORGE_TIMEOUT, call).await {
        Ok(answer) => answer.map_err(Some),
        Err(_) => Err(None),
    }
}

fn unanswered(kind: ForgeKind, repo: &Repo, e: Option<ForgeError>) -> Finding {
    let why = e.map_or_else(
        || format!("no answer in {}s", FORGE_TIMEOUT.as_secs()),
        |e| e.to_string(),
    );
    bad(
        "repository",
        Verdict::Fail,
        format!("{}: {repo}: {why}", kind.title()),
        format!("check [{kind}] url and token"),
    )
}
