//! `previewd sleep ID` and `previewd wake ID`: what `serve` does to an idle preview and on its
//! next visit, by hand. Both work from Docker alone (the sleep mark, the gateway's routes),
//! so they need no `serve`; a visit to a sleeping preview does. Nothing here decides when.

use super::{CliError, Outcome};
use crate::config::Config;
use crate::ids::PreviewId;
use crate::preview::manager::{Manager, NotAsleep};

/// Puts preview `id` to sleep; exit 1 when it stays awake, with why.
pub async fn sleep(config: Config, id: &PreviewId) -> Result<Outcome, CliError> {
    let manager = Manager::connect(config).await?;
    match manager.sleep(id).await? {
        Ok(()) => {
            println!("{id} is asleep; its next visit wakes it");
            Ok(Outcome::Done)
        }
        Err(NotAsleep::Asleep) => {
            println!("{id} is asleep already");
            Ok(Outcome::Done)
        }
        Err(NotAsleep::NotRunning) => {
            eprintln!(
                "{id} is not running (building, being deployed, or failed): only a running preview sleeps"
            );
            Ok(Outcome::Failed)
        }
        Err(NotAsleep::KeptAwake(service)) => {
            eprintln!(
                "{id} stays awake: its service {service} has sleep: false in the repository's config"
            );
            Ok(Outcome::Failed)
        }
    }
}

/// Wakes preview `id` and returns once every public service answers.
pub async fn wake(config: Config, id: &PreviewId) -> Result<Outcome, CliError> {
    let manager = Manager::connect(config).await?;
    // Not found is the manager's own error; anything else is the wake's failure.
    manager.get(id).await?;
    match manager.wake(id, None).await {
        Ok(true) => {
            println!("{id} is awake");
            Ok(Outcome::Done)
        }
        Ok(false) => {
            println!("{id} was awake");
            Ok(Outcome::Done)
        }
        Err(f) => {
            eprintln!("{id} did not wake: {f}");
            for line in &f.log_tail {
                eprintln!("  {line}");
            }
            Ok(Outcome::Failed)
        }
    }
}
