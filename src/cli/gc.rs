//! `previewd gc`: one reconcile pass now (routes from labels, orphans, expired previews),
//! without `serve`'s comparisons with the forge except the one that decides expiry: a preview
//! a forge asked for is expired only when its PR can be read and is not exempt
//! ([`exempt_from_ttl`], the rule `serve`'s reconciler applies), and its PR is told.

use std::collections::HashSet;
use std::time::Duration;

use super::{CliError, Outcome, Reporters};
use crate::config::Config;
use crate::forge::comment::Removal;
use crate::ids::PreviewId;
use crate::intent::exempt_from_ttl;
use crate::preview::cleanup;
use crate::preview::docker::labels::{ForgeTarget, Observed};
use crate::preview::manager::Manager;

pub async fn run(config: Config, json: bool) -> Result<Outcome, CliError> {
    let manager = Manager::connect(config.clone()).await?;
    let observed = manager.observed().await?;
    let reporters = Reporters::from_config(&config);
    let now = manager.clock().now();
    let (keep, kept) = kept_past_ttl(&config, &observed, &reporters, now).await;
    // Leave alone what a deployment in another process may be creating right now.
    let grace = config.limits.build_timeout + config.limits.health_timeout;
    let report = cleanup::clean_up(&manager, grace, &HashSet::new(), &keep).await?;
    for id in &report.expired {
        let target = PreviewId::parse(id)
            .ok()
            .and_then(|id| observed.iter().find(|o| o.id == id))
            .and_then(Observed::forge_target);
        let Some(t) = target else { continue };
        let Ok(r) = reporters.get(t.forge) else {
            continue;
        };
        let why = Removal::Expired {
            ttl: config.limits.ttl,
            command: config.triggers.command.clone(),
            sha: t.sha,
        };
        r.removed(&t.repo, t.pr, &t.branch, &why).await;
    }
    if !json {
        kept.iter().for_each(|k| outln!("{k}"));
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.is_empty() {
        outln!("nothing to clean up; routes reloaded");
    } else {
        for (what, items) in [
            ("expired preview", &report.expired),
            ("container", &report.containers),
            ("network", &report.networks),
            ("volume", &report.volumes),
            ("image", &report.images),
            ("worktree", &report.worktrees),
        ] {
            for i in items {
                outln!("removed {what} {i}");
            }
        }
        for s in &report.switched {
            outln!("finished switching {s} live (a crash had interrupted the switch)");
        }
        if let Some(p) = report.build_cache.as_ref().filter(|p| p.records > 0) {
            outln!(
                "pruned {} build cache records ({} MB) down to limits.build_cache",
                p.records,
                p.bytes / 1_000_000
            );
        }
    }
    Ok(Outcome::Done)
}

/// The previews of PRs that the reconcile pass must not expire: those whose PR carries
/// `limits.keep_label`, and those whose PR cannot be read (gc cannot tell whether they are
/// exempt; a note on stderr says so). With the lines to print for the ones kept past the ttl.
///
/// `limits.keep_label` is on the PR: a preview a forge asked for is expired only when its PR
/// can be read and does not carry it, as `serve`'s reconciler does. A preview that passes the
/// ttl between this check and the reconcile pass would be expired unread: so PRs are read from
/// a minute before the ttl on.
async fn kept_past_ttl(
    config: &Config,
    observed: &[Observed],
    reporters: &Reporters,
    now: time::OffsetDateTime,
) -> (HashSet<PreviewId>, Vec<String>) {
    let limits = &config.limits;
    let soon = limits.ttl.saturating_sub(Duration::from_secs(60));
    let mut keep = HashSet::new();
    let mut kept = Vec::new();
    for o in observed {
        if !cleanup::past_ttl(o, soon, now) {
            continue;
        }
        let past = cleanup::past_ttl(o, limits.ttl, now);
        let Some(ForgeTarget {
            forge,
            repo,
            pr: Some(pr),
            ..
        }) = o.forge_target()
        else {
            continue;
        };
        let labels = match reporters.get(forge) {
            Ok(r) => r
                .forge()
                .pull_request(&repo, pr)
                .await
                .map(|p| p.labels)
                .map_err(|e| e.to_string()),
            Err(why) => Err(why),
        };
        match labels {
            Ok(l) if !exempt_from_ttl(&l, limits) => continue,
            Ok(_) if !past => {}
            Ok(_) => kept.push(format!(
                "kept {} past limits.ttl: {repo}#{pr} carries the `{}` label",
                o.id, limits.keep_label
            )),
            Err(_) if !past => {}
            Err(why) => eprintln!(
                "note: kept {} past limits.ttl: cannot read {repo}#{pr} to look for its `{}` label ({why})",
                o.id, limits.keep_label
            ),
        }
        keep.insert(o.id.clone());
    }
    (keep, kept)
}
