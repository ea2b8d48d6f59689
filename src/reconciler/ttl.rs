//! The reconciler's part in `limits.ttl`: the warning a day ahead, telling a PR that its
//! preview expired, and remembering (on the forge, in the sticky comment) at which commit it
//! did, so a pass never undoes the ttl. Never removes anything itself: the engine's clean-up
//! does.

use std::sync::Arc;
use std::time::Duration;

use super::Reconciler;
use crate::engine::{PreviewKey, PreviewState};
use crate::forge::comment::{self, Removal};
use crate::forge::{Forge, ForgeKind, PullRequest, Repo};

/// The longest warning ahead of a ttl removal.
const WARN_AHEAD: Duration = Duration::from_secs(24 * 3600);

impl Reconciler {
    /// Tells the forge that the preview of `key` expired: its deployment goes inactive and its
    /// PR's sticky comment says why, with the commit it ran (`expired_at_head` reads it back).
    pub(super) async fn report_expired(&self, key: &PreviewKey, previews: &[PreviewState]) {
        let Some(p) = previews.iter().find(|p| &p.key == key) else {
            return;
        };
        let Some(repo) = Repo::parse(&key.repo) else {
            return; // a preview of a local folder or URL (the CLI's): no forge to tell
        };
        let Some(reporter) = ForgeKind::parse(&key.forge).and_then(|k| self.queue.reporter(k))
        else {
            return;
        };
        let why = Removal::Expired {
            ttl: self.config.limits.ttl,
            command: self.config.triggers.command.clone(),
            sha: p.sha.clone(),
        };
        reporter.removed(&repo, p.pr, &key.branch, &why).await;
    }

    /// Whether the PR's preview was removed by the ttl at the commit that is still its head:
    /// then a labelled PR without a preview is as its users left it, and bringing it back
    /// would undo the ttl at every pass. The forge remembers it (the sticky comment), so a
    /// restart does not forget it. When the comment cannot be read, the PR is started.
    pub(super) async fn expired_at_head(
        &self,
        forge: &Arc<dyn Forge>,
        repo: &Repo,
        pr: &PullRequest,
    ) -> bool {
        let sticky = comment::marker(repo, pr.number);
        match forge.find_comment(repo, pr.number, &sticky).await {
            Ok(Some(body)) => body.contains(&comment::expired_marker(&pr.head_sha)),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(repo = %repo, pr = pr.number, error = %e, "reconcile: cannot read the PR's comment");
                false
            }
        }
    }

    /// Posts (once per deployment or visit) a warning when the preview will be removed within a
    /// day.
    pub(super) async fn warn_if_expiring(
        &self,
        forge: &Arc<dyn Forge>,
        repo: &Repo,
        number: u64,
        p: &PreviewState,
    ) -> bool {
        let ttl = self.config.limits.ttl;
        // From the latest deployment or visit (a sleeping preview was visited until it slept).
        let Some(age) = p.unseen_for(self.clock.now()) else {
            return false;
        };
        let ahead = WARN_AHEAD.min(ttl / 2);
        if age + ahead < ttl || age >= ttl {
            return false;
        }
        let since = [&p.created, &p.visited, &p.asleep].map(|t| t.clone().unwrap_or_default());
        let key = (
            p.key.forge.clone(),
            repo.full_name(),
            number,
            since.join(" "),
        );
        if self.warned.lock().is_ok_and(|w| w.contains(&key)) {
            return false;
        }
        let marker = comment::ttl_warning_marker(repo, number);
        let body = comment::ttl_warning(
            repo,
            number,
            &p.url,
            age,
            ttl - age,
            self.config.limits.idle_sleep.is_some(),
            &self.config.triggers.command,
            &self.config.limits.keep_label,
        );
        match forge.upsert_comment(repo, number, &marker, &body).await {
            Ok(()) => {
                if let Ok(mut w) = self.warned.lock() {
                    w.insert(key);
                }
                true
            }
            Err(e) => {
                tracing::warn!(repo = %repo, pr = number, error = %e, "cannot post the ttl warning");
                false
            }
        }
    }
}
