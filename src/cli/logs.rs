//! `previewd logs ID [SERVICE]`: the last lines of a preview's logs, each prefixed with its
//! service when there are several.

use super::{CliError, Outcome};
use crate::config::Config;
use crate::ids::PreviewId;
use crate::preview::manager::Manager;

pub async fn run(
    config: Config,
    id: &PreviewId,
    service: Option<&str>,
    tail: usize,
) -> Result<Outcome, CliError> {
    let manager = Manager::connect(config).await?;
    let logs = manager.logs(id, service, tail).await?;
    let many = logs.len() > 1;
    for (svc, lines) in logs {
        for l in lines {
            if many {
                println!("{svc} | {l}");
            } else {
                println!("{l}");
            }
        }
    }
    Ok(Outcome::Done)
}
