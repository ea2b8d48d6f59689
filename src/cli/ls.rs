//! `previewd ls`: every preview of the instance, a table or a JSON array.

use super::{CliError, Outcome, mode_of, to_json};
use crate::config::Config;
use crate::engine::PreviewState;
use crate::preview::manager::Manager;

pub async fn run(config: Config, json: bool) -> Result<Outcome, CliError> {
    let manager = Manager::connect(config).await?;
    let observed = manager.observed().await?;
    // A preview's named volumes, by preview id: its data, removed with it.
    let mut volumes: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, l) in
        crate::preview::docker::volumes::volumes(manager.docker(), &manager.config().instance)
            .await?
    {
        if let Some(id) = l.get(crate::preview::labels::PREVIEW) {
            volumes.entry(id.clone()).or_default().push(name);
        }
    }
    let states: Vec<(PreviewState, String)> = observed
        .iter()
        .map(|p| (manager.state(p, &Default::default()), mode_of(p)))
        .collect();
    if json {
        let all: Vec<_> = states
            .iter()
            .map(|(s, m)| {
                let mut j = to_json(s, m);
                j["volumes"] =
                    serde_json::json!(volumes.get(s.id.as_str()).cloned().unwrap_or_default());
                j
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&all)?);
    } else if states.is_empty() {
        outln!("no previews");
    } else {
        outln!("{:<12} {:<9} {:<40} REPO@BRANCH", "ID", "STATUS", "URL");
        let paint = super::paint::Paint::stdout();
        for (s, _) in &states {
            outln!(
                "{:<12} {} {:<40} {}{}",
                s.id,
                paint.status(s.status, 9),
                s.url,
                s.key.repo,
                if s.key.branch.is_empty() {
                    String::new()
                } else {
                    format!("@{}", s.key.branch)
                }
            );
            if let Some(v) = volumes.get(s.id.as_str()) {
                outln!("{:<12} volumes: {}", "", v.join(", "));
            }
        }
    }
    Ok(Outcome::Done)
}
