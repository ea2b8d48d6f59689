//! `previewd down ID | --all`: removes previews. The PR of a preview a forge asked for is told,
//! as when the PR closes. With `--json`: `{"removed": [ID, ..], "not_told": [{"id", "repo",
//! "why"}, ..]}` once everything asked for is gone.

use super::{CliError, Outcome, Reporters};
use crate::config::Config;
use crate::forge::comment::Removal;
use crate::ids::PreviewId;
use crate::preview::manager::Manager;

/// Removes preview `id`, or every preview when `id` is `None` (`--all`).
pub async fn run(config: Config, id: Option<PreviewId>, json: bool) -> Result<Outcome, CliError> {
    let manager = Manager::connect(config.clone()).await?;
    let observed = manager.observed().await?;
    let ids: Vec<PreviewId> = match id {
        Some(id) => vec![id],
        None => observed.iter().map(|p| p.id.clone()).collect(),
    };
    let reporters = Reporters::from_config(&config);
    let mut not_told = Vec::new();
    for id in &ids {
        manager
            .down(id)
            .await
            .map_err(|source| CliError::Removing {
                id: id.clone(),
                source,
            })?;
        if !json {
            outln!("removed {id}");
        }
        let Some(t) = observed
            .iter()
            .find(|o| &o.id == id)
            .and_then(|o| o.forge_target())
        else {
            continue;
        };
        match reporters.get(t.forge) {
            Ok(r) => {
                r.removed(&t.repo, t.pr, &t.branch, &Removal::Operator)
                    .await
            }
            Err(why) if json => not_told.push(serde_json::json!({
                "id": id, "repo": t.repo.to_string(), "why": why.to_string(),
            })),
            Err(why) => eprintln!("note: {} was not told that {id} is gone ({why})", t.repo),
        }
    }
    if ids.is_empty() {
        manager.settle().await?;
    }
    if json {
        let out = serde_json::json!({ "removed": ids, "not_told": not_told });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else if ids.is_empty() {
        outln!("no previews");
    }
    Ok(Outcome::Done)
}
