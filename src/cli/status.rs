//! `previewd status ID`: one preview, with a health check of each service through the gateway.

use super::{CliError, Outcome, mode_of, print_state};
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
    print_state(&state, &mode_of(&p), json)?;
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
