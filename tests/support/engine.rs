//! A controllable fake `PreviewEngine`: in `auto` mode every deploy succeeds at once; in
//! `manual` mode a deploy waits until the test finishes it (`finish`) or it is cancelled.
//! Every call is logged, and the number of deploys running at once is tracked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use previewd::engine::{
    BoxFuture, DeployFailure, DeployRequest, Deployed, EngineError, Phase, PreviewEngine,
    PreviewKey, PreviewState, PreviewStatus, ServiceHealth, Timings,
};
use previewd::ids::{CommitSha, PreviewId};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Deploy {
        key: PreviewKey,
        sha: Option<String>,
    },
    Cancelled {
        key: PreviewKey,
        sha: Option<String>,
    },
    Deployed {
        key: PreviewKey,
        sha: Option<String>,
    },
    Failed {
        key: PreviewKey,
    },
    Remove {
        key: PreviewKey,
    },
    Status {
        key: PreviewKey,
    },
}

pub enum Outcome {
    Ready,
    Fail(&'static str),
}

#[derive(Default)]
struct Inner {
    manual: bool,
    calls: Vec<Call>,
    running: usize,
    max_running: usize,
    waiting: HashMap<PreviewKey, Vec<oneshot::Sender<Outcome>>>,
    previews: HashMap<PreviewKey, PreviewState>,
    /// What a push deploy (no sha) finds as the branch head.
    branch_heads: HashMap<String, String>,
    /// Set by `set_lean`: calls are counted in `lean_counts`, not logged, and no preview is
    /// kept, so a long load test's fake does not grow with every deploy.
    lean: bool,
    lean_counts: LeanCounts,
    /// Set by `fail_wakes`: the next wakes fail for this reason.
    wake_failure: Option<&'static str>,
}

/// What a lean fake engine keeps: deploys per branch (with the last commit asked for), and
/// the number of other calls by kind.
#[derive(Debug, Clone, Default)]
pub struct LeanCounts {
    pub deploys: HashMap<String, (usize, Option<String>)>,
    pub deployed: usize,
    pub other: Vec<String>,
}

impl Inner {
    fn log(&mut self, call: Call) {
        if !self.lean {
            self.calls.push(call);
            return;
        }
        match call {
            Call::Deploy { key, sha } => {
                let e = self.lean_counts.deploys.entry(key.branch).or_default();
                e.0 += 1;
                e.1 = sha;
            }
            Call::Deployed { .. } => self.lean_counts.deployed += 1,
            other => self.lean_counts.other.push(format!("{other:?}")),
        }
    }
}

#[derive(Clone, Default)]
pub struct FakeEngine {
    inner: Arc<Mutex<Inner>>,
}

fn id_for(key: &PreviewKey) -> PreviewId {
    let mut h: u64 = 1469598103934665603;
    for b in key.repo.bytes().chain(key.branch.bytes()) {
        h = (h ^ b as u64).wrapping_mul(1099511628211);
    }
    let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let s: String = (0..10)
        .map(|i| alphabet[((h >> (i * 6)) % 36) as usize] as char)
        .collect();
    PreviewId::parse(&s).expect("valid id")
}

impl FakeEngine {
    pub fn auto() -> FakeEngine {
        FakeEngine::default()
    }

    pub fn manual() -> FakeEngine {
        let e = FakeEngine::default();
        e.lock().manual = true;
        e
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts calls instead of logging them, and keeps no preview (see `LeanCounts`).
    pub fn set_lean(&self) {
        self.lock().lean = true;
    }

    pub fn lean_counts(&self) -> LeanCounts {
        self.lock().lean_counts.clone()
    }

    pub fn deployed_count(&self) -> usize {
        self.lock().lean_counts.deployed
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn max_running(&self) -> usize {
        self.lock().max_running
    }

    pub fn running(&self) -> usize {
        self.lock().running
    }

    pub fn set_branch_head(&self, branch: &str, sha: &str) {
        self.lock()
            .branch_heads
            .insert(branch.to_owned(), sha.to_owned());
    }

    /// Finishes the oldest waiting deploy of `branch`; `false` if none waits.
    pub fn finish(&self, branch: &str, outcome: Outcome) -> bool {
        let mut inner = self.lock();
        let key = inner.waiting.keys().find(|k| k.branch == branch).cloned();
        let Some(key) = key else { return false };
        let list = inner.waiting.get_mut(&key).expect("listed");
        // Deploys that were cancelled no longer listen.
        list.retain(|tx| !tx.is_closed());
        if list.is_empty() {
            return false;
        }
        let tx = list.remove(0);
        drop(inner);
        tx.send(outcome).is_ok()
    }

    pub fn waiting(&self, branch: &str) -> usize {
        self.lock()
            .waiting
            .iter()
            .filter(|(k, _)| k.branch == branch)
            .map(|(_, v)| v.iter().filter(|s| !s.is_closed()).count())
            .sum()
    }

    /// Wakes fail from now on, for `reason` (the web service's health check).
    pub fn fail_wakes(&self, reason: &'static str) {
        self.lock().wake_failure = Some(reason);
    }

    /// The status of the preview on `branch`, if there is one.
    pub fn status_of(&self, branch: &str) -> Option<previewd::engine::PreviewStatus> {
        let inner = self.lock();
        let p = inner.previews.iter().find(|(k, _)| k.branch == branch);
        p.map(|(_, p)| p.status)
    }

    pub fn has_preview(&self, branch: &str) -> bool {
        self.lock().previews.keys().any(|k| k.branch == branch)
    }

    fn state(&self, key: &PreviewKey, sha: Option<CommitSha>, pr: Option<u64>) -> PreviewState {
        let id = id_for(key);
        PreviewState {
            url: format!("http://{id}.localhost:8000"),
            id,
            key: key.clone(),
            sha,
            pr,
            status: PreviewStatus::Running,
            created: None,
            egress: None,
            asleep: None,
            visited: None,
            ready_in: None,
            access: None,
            password: None,
            services: vec![ServiceHealth {
                name: "web".into(),
                route: Some("/".into()),
                url: None,
                state: "running".into(),
                healthy: true,
                status: Some(200),
                latency_ms: Some(12),
            }],
        }
    }
}

impl PreviewEngine for FakeEngine {
    fn deploy(
        &self,
        req: DeployRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Deployed, DeployFailure>> {
        Box::pin(async move {
            let key = req.key.clone();
            let sha = req
                .sha
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .or_else(|| self.lock().branch_heads.get(&key.branch).cloned());
            let rx = {
                let mut inner = self.lock();
                inner.log(Call::Deploy {
                    key: key.clone(),
                    sha: sha.clone(),
                });
                inner.running += 1;
                inner.max_running = inner.max_running.max(inner.running);
                if inner.manual {
                    let (tx, rx) = oneshot::channel();
                    inner.waiting.entry(key.clone()).or_default().push(tx);
                    Some(rx)
                } else {
                    None
                }
            };
            let outcome = match rx {
                None => Some(Outcome::Ready),
                Some(rx) => tokio::select! {
                    o = rx => o.ok(),
                    _ = cancel.cancelled() => None,
                },
            };
            let mut inner = self.lock();
            inner.running -= 1;
            let failure = |reason: &str, cancelled: bool| DeployFailure {
                phase: Phase::Build,
                service: Some("web".into()),
                reason: reason.into(),
                log_tail: vec!["step 1/3".into(), "error: ```boom```".into()],
                cancelled,
            };
            match outcome {
                None => {
                    inner.log(Call::Cancelled { key, sha });
                    Err(failure("cancelled", true))
                }
                Some(Outcome::Fail(reason)) => {
                    inner.log(Call::Failed { key });
                    Err(failure(reason, false))
                }
                Some(Outcome::Ready) => {
                    inner.log(Call::Deployed {
                        key: key.clone(),
                        sha: sha.clone(),
                    });
                    let sha = sha.and_then(|s| CommitSha::parse(&s).ok());
                    let state = self.state(&key, sha, req.pr);
                    if !inner.lean {
                        inner.previews.insert(key, state.clone());
                    }
                    Ok(Deployed {
                        state,
                        timings: Timings {
                            phases: vec![
                                (Phase::Build, Duration::from_millis(1500)),
                                (Phase::Health, Duration::from_millis(300)),
                            ],
                            total: Duration::from_millis(1800),
                        },
                        downtime: Vec::new(),
                    })
                }
            }
        })
    }

    fn remove(&self, key: PreviewKey) -> BoxFuture<'_, Result<Option<PreviewId>, EngineError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.log(Call::Remove { key: key.clone() });
            Ok(inner.previews.remove(&key).map(|p| p.id))
        })
    }

    fn status(&self, key: PreviewKey) -> BoxFuture<'_, Result<Option<PreviewState>, EngineError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.log(Call::Status { key: key.clone() });
            Ok(inner.previews.get(&key).cloned())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<PreviewState>, EngineError>> {
        Box::pin(async move { Ok(self.lock().previews.values().cloned().collect()) })
    }

    fn sleep(&self, id: PreviewId) -> BoxFuture<'_, Result<bool, EngineError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            let Some(p) = inner.previews.values_mut().find(|p| p.id == id) else {
                return Ok(false);
            };
            if p.status != PreviewStatus::Running {
                return Ok(false);
            }
            p.status = PreviewStatus::Sleeping;
            p.asleep = Some(previewd::clock::rfc3339(time::OffsetDateTime::now_utc()));
            Ok(true)
        })
    }

    fn wake(
        &self,
        id: PreviewId,
        _answering: Option<oneshot::Sender<()>>,
    ) -> BoxFuture<'_, Result<bool, DeployFailure>> {
        Box::pin(async move {
            let mut inner = self.lock();
            let failure = inner.wake_failure;
            let Some(p) = inner.previews.values_mut().find(|p| p.id == id) else {
                return Ok(false);
            };
            if p.status != PreviewStatus::Sleeping {
                return Ok(false);
            }
            p.asleep = None;
            match failure {
                None => {
                    p.status = PreviewStatus::Running;
                    Ok(true)
                }
                Some(reason) => {
                    p.status = PreviewStatus::Failed;
                    Err(DeployFailure {
                        phase: Phase::Health,
                        service: Some("web".into()),
                        reason: reason.into(),
                        log_tail: vec!["listening on :8080".into(), "panic: no database".into()],
                        cancelled: false,
                    })
                }
            }
        })
    }
}
