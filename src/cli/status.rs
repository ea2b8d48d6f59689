//! `previewd status ID`: one preview, with a health check of each service through the gateway.

use super::{CliError, Outcome, mode_of, print_state, to_json};
use crate::config::Config;
use crate::engine::PreviewStatus;
use crate::ids::PreviewId;
use crate::preview::manager::Manager;

/// `NotRunning` (exit 3, after printing it) when the preview is not `running` (or `sleeping`:
/// its URL works, the visit wakes it).
pub async fn run(config: Config, id: &PreviewId, json: bool) -> Result<Outcome, CliError> {
    let manager = Manager::connect(config).await?;
    let p = manager.get(id).await?;
    let state = manager.state_with_health(&p).await;
    let access = crate::access::status_json(state.access, state.password.as_ref());
    match access {
        // Who may see it, and in `password` mode with what (readers of the PR see it too).
        Some(a) if json => {
            let mut v = to_json(&state, &mode_of(&p));
            v["access"] = a;
            outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        a => {
            print_state(&state, &mode_of(&p), json)?;
            if let Some(a) = a.filter(|a| a["password"].is_string()) {
                outln!(
                    "  access: user {}, password {}",
                    a["user"].as_str().unwrap_or_default(),
                    a["password"].as_str().unwrap_or_default()
                );
            }
        }
    }
    Ok(
        if matches!(
            state.status,
            PreviewStatus::Running | PreviewStatus::Sleeping
        ) {
            Outcome::Done
        } else {
            Outcome::NotRunning
        },
    )
}
