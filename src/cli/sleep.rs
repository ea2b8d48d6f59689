//! `previewd sleep ID` and `previewd wake ID`: what `serve` does to an idle preview and on its
//! next visit, by hand. Both work from Docker alone (the sleep mark, the gateway's routes),
//! so they need no `serve`; a visit to a sleeping preview does. Nothing here decides when.
//! With `--json`, success prints `{"id", "status": "sleeping"|"running", "changed"}`
//! (`changed`: false when it already was so); a refusal or a failed wake prints nothing on
//! stdout, its reason on stderr, and exits 1.

use super::{CliError, Outcome};
use crate::config::Config;
use crate::engine::PreviewStatus;
use crate::ids::PreviewId;
use crate::preview::manager::{Manager, NotAsleep};

/// What a sleep or wake that went through prints: a line, or with `--json` one object.
fn done(
    id: &PreviewId,
    json: bool,
    status: PreviewStatus,
    changed: bool,
    line: &str,
) -> Result<Outcome, CliError> {
    if json {
        let out = serde_json::json!({ "id": id, "status": status, "changed": changed });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("{id} {line}");
    }
    Ok(Outcome::Done)
}

/// Puts preview `id` to sleep; exit 1 when it stays awake, with why.
pub async fn sleep(config: Config, id: &PreviewId, json: bool) -> Result<Outcome, CliError> {
    let manager = Manager::connect(config).await?;
    let asleep = PreviewStatus::Sleeping;
    match manager.sleep(id).await? {
        Ok(()) => done(id, json, asleep, true, "is asleep; its next visit wakes it"),
        Err(NotAsleep::Asleep) => done(id, json, asleep, false, "is asleep already"),
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
pub async fn wake(config: Config, id: &PreviewId, json: bool) -> Result<Outcome, CliError> {
    let manager = Manager::connect(config).await?;
    // Not found is the manager's own error; anything else is the wake's failure.
    manager.get(id).await?;
    let running = PreviewStatus::Running;
    match manager.wake(id, None).await {
        Ok(true) => done(id, json, running, true, "is awake"),
        Ok(false) => done(id, json, running, false, "was awake"),
        Err(f) => {
            eprintln!("{id} did not wake: {f}");
            for line in &f.log_tail {
                eprintln!("  {line}");
            }
            Ok(Outcome::Failed)
        }
    }
}
