//! Compose's lifecycle hooks, run through Docker's exec inside a service's container:
//! `post_start` after it starts (a failing hook, with its output, fails the deployment),
//! `pre_stop` before previewd stops it on purpose (within [`PRE_STOP_LIMIT`]; a failure is
//! logged, never fatal). The hooks travel on the container as a label (`labels::HOOKS`), so a
//! teardown or a wake after previewd restarted still runs them. An exec is never privileged.
//! Nothing here starts, stops or removes a container.

use std::time::Duration;

use bollard::Docker;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::labels::Member;
use crate::spec::runtime::{Hook, Runtime};

/// How long the `pre_stop` hooks of one container may take together before it is stopped
/// anyway (compose's default stop grace period).
pub const PRE_STOP_LIMIT: Duration = Duration::from_secs(10);

/// The lines of a hook's output a failure report keeps.
const TAIL: usize = 40;

/// A service's hooks, as the label holds them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Hooks {
    #[serde(default)]
    pub post_start: Vec<Hook>,
    #[serde(default)]
    pub pre_stop: Vec<Hook>,
}

impl Hooks {
    /// The label's value for `run`; `None` when it has no hooks.
    pub fn label(run: &Runtime) -> Option<String> {
        if run.post_start.is_empty() && run.pre_stop.is_empty() {
            return None;
        }
        serde_json::to_string(&Hooks {
            post_start: run.post_start.clone(),
            pre_stop: run.pre_stop.clone(),
        })
        .ok()
    }

    /// The hooks a member's label holds (none when it has no label, or one previewd cannot
    /// read: a label is previewd's own, never the repository's).
    pub fn of(m: &Member) -> Hooks {
        m.hooks
            .as_deref()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default()
    }
}

/// Why a hook failed, and the last lines it wrote.
#[derive(Debug)]
pub struct HookFailure {
    pub why: String,
    pub output: Vec<String>,
}

/// Runs `hook` in `container` and waits for it, at most `limit`.
pub async fn run(
    docker: &Docker,
    container: &str,
    hook: &Hook,
    limit: Duration,
) -> Result<(), HookFailure> {
    let cmd = hook.command.join(" ");
    let failed = |why: String, output: Vec<String>| HookFailure {
        why: format!("hook `{cmd}` {why}"),
        output,
    };
    let config = ExecConfig {
        cmd: Some(hook.command.clone()),
        user: hook.user.clone(),
        working_dir: hook.working_dir.clone(),
        env: (!hook.env.is_empty()).then(|| hook.env.clone()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        privileged: Some(false),
        ..Default::default()
    };
    let exec = docker
        .create_exec(container, config)
        .await
        .map_err(|e| failed(format!("could not be run: {e}"), Vec::new()))?;
    let mut text = String::new();
    let output = async {
        let started = docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(|e| e.to_string())?;
        if let StartExecResults::Attached { mut output, .. } = started {
            while let Some(chunk) = output.next().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                // Only the tail is kept: a hook may write without end.
                if text.len() > 64 * 1024 {
                    text.drain(..text.len() - 32 * 1024);
                }
            }
        }
        Ok::<(), String>(())
    };
    let ended = tokio::time::timeout(limit, output).await;
    let tail = || -> Vec<String> {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[lines.len().saturating_sub(TAIL)..].to_vec()
    };
    match ended {
        Err(_) => {
            return Err(failed(
                format!("did not end within {}s", limit.as_secs()),
                tail(),
            ));
        }
        Ok(Err(e)) => return Err(failed(format!("could not be run: {e}"), tail())),
        Ok(Ok(())) => {}
    }
    let code = docker
        .inspect_exec(&exec.id)
        .await
        .map_err(|e| failed(format!("could not be read back: {e}"), tail()))?
        .exit_code;
    match code {
        Some(0) => Ok(()),
        code => Err(failed(
            format!("exited with status {}", code.unwrap_or(-1)),
            tail(),
        )),
    }
}

/// Runs a running member's `pre_stop` hooks, in order, within [`PRE_STOP_LIMIT`] together;
/// a failure is logged and the stop goes on.
pub async fn pre_stop(docker: &Docker, m: &Member) {
    if m.hooks.is_none() || m.state != "running" {
        return;
    }
    let hooks = Hooks::of(m).pre_stop;
    let until = tokio::time::Instant::now() + PRE_STOP_LIMIT;
    for hook in &hooks {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if let Err(f) = run(docker, &m.container_id, hook, left).await {
            tracing::warn!(
                preview = %m.preview,
                service = %m.service,
                output = %f.output.join("\n"),
                "pre_stop {}; the container is stopped anyway",
                f.why
            );
            if left.is_zero() {
                break;
            }
        }
    }
}
