//! Preparing a deployment: fetching the source, settling the preview's identity (its key, its
//! id, the generation this attempt builds, whether a live one exists) and checking out the
//! worktree it builds from. Never creates a Docker object, and never leaves a worktree of a
//! fresh preview behind when the wait for it is abandoned.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{Manager, Mode, UpRequest, fail};
use crate::engine::{DeployFailure, Phase, PreviewKey};
use crate::ids::{CommitSha, PreviewId};
use crate::preview::docker::labels::Member;
use crate::preview::source::{self, Fetched, Origin, SourceError};

/// Everything known once the source is fetched and the preview's identity settled.
pub(super) struct Prepared {
    pub(super) key: PreviewKey,
    pub(super) id: PreviewId,
    pub(super) generation: u64,
    pub(super) worktree: PathBuf,
    /// The worktree is previewd's own (not a user's folder), so it may be removed.
    pub(super) owned_worktree: bool,
    pub(super) sha: Option<CommitSha>,
    /// No live generation existed: a failure removes the whole preview.
    pub(super) fresh: bool,
    pub(super) old: Vec<Member>,
    /// Marks the preview busy from the moment its id is known until the attempt is over.
    _busy: BusyGuard,
}

/// The preview a key deploys to, and this attempt's generation of it.
struct Slot {
    id: PreviewId,
    generation: u64,
    fresh: bool,
    old: Vec<Member>,
}

/// A worktree being checked out. A deployment superseded meanwhile drops the future that waits
/// for it, but the checkout (a blocking task) still finishes: the worktree of a fresh preview,
/// which nothing else will use or remove, is then removed once it is there.
struct Checkout {
    task: Option<tokio::task::JoinHandle<Result<PathBuf, SourceError>>>,
    /// The instance directory and id whose worktree goes if the wait is abandoned.
    abandoned: Option<(PathBuf, PreviewId)>,
}

impl Checkout {
    async fn wait(&mut self) -> Result<Result<PathBuf, SourceError>, tokio::task::JoinError> {
        let Some(task) = self.task.as_mut() else {
            return Ok(Err(SourceError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other("checkout awaited twice"),
            }));
        };
        let done = task.await;
        self.task = None;
        done
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let (Some(task), Some((dir, id))) = (self.task.take(), self.abandoned.take()) else {
            return;
        };
        // Outside a runtime (shutting down) the next reconcile removes it instead.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = task.await;
                let _ =
                    tokio::task::spawn_blocking(move || source::remove_worktree(&dir, &id)).await;
            });
        }
    }
}

/// Marks a preview busy for as long as it lives. The marks are counted: a deployment and the
/// retirement of the generation an earlier one replaced may hold the same preview at once.
pub(super) struct BusyGuard {
    set: Arc<Mutex<HashMap<PreviewId, usize>>>,
    id: PreviewId,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock()
            && let Some(n) = s.get_mut(&self.id)
        {
            *n -= 1;
            if *n == 0 {
                s.remove(&self.id);
            }
        }
    }
}

fn fetch_err(e: SourceError) -> DeployFailure {
    fail(Phase::Fetch, None, e.to_string())
}

impl Manager {
    /// Fetches the source, settles which preview and generation this is (busy from then on)
    /// and checks out the worktree the attempt builds from.
    pub(super) async fn prepare(&self, req: &UpRequest) -> Result<Prepared, DeployFailure> {
        let origin = Origin::classify(&req.repo).map_err(fetch_err)?;
        let (branch, sha, fetched) = self.fetch(req, &origin).await?;
        let key = PreviewKey {
            forge: req.forge.clone(),
            repo: req.key_repo.clone().unwrap_or_else(|| origin.key()),
            branch,
        };
        let Slot {
            id,
            generation,
            fresh,
            old,
        } = self.slot(&key).await?;
        let busy = self.mark_busy(&id);
        let (worktree, owned_worktree) = self.worktree(req, &origin, fetched, &id, fresh).await?;
        Ok(Prepared {
            key,
            id,
            generation,
            worktree,
            owned_worktree,
            sha,
            fresh,
            old,
            _busy: busy,
        })
    }

    /// Fetches a git source (previews only; dev mode and plain folders use the files as they
    /// are): the key's branch, the commit and what was fetched.
    async fn fetch(
        &self,
        req: &UpRequest,
        origin: &Origin,
    ) -> Result<(String, Option<CommitSha>, Option<Fetched>), DeployFailure> {
        let instance_dir = self.config.instance_dir();
        Ok(match (&req.mode, origin) {
            (Mode::Dev { .. }, _) | (_, Origin::Folder(_)) => {
                (req.branch.clone().unwrap_or_default(), None, None)
            }
            (Mode::Preview, Origin::Git(url)) => {
                let (dir, url, branch, sha, pr) = (
                    instance_dir.clone(),
                    url.clone(),
                    req.branch.clone(),
                    req.sha.clone(),
                    req.pr,
                );
                let token = self.git_token(req, &url).await?;
                let f = tokio::task::spawn_blocking(move || {
                    source::fetch(
                        &dir,
                        &url,
                        branch.as_deref(),
                        sha.as_ref(),
                        pr,
                        token.as_ref(),
                    )
                })
                .await
                .map_err(|e| fail(Phase::Fetch, None, e.to_string()))?
                .map_err(fetch_err)?;
                let key_branch = req.key_branch.clone().unwrap_or_else(|| f.branch.clone());
                (key_branch, Some(f.sha.clone()), Some(f))
            }
        })
    }

    /// The preview `key` already has, with the next generation number, or a new id (within
    /// `limits.max_previews`) at generation 1.
    async fn slot(&self, key: &PreviewKey) -> Result<Slot, DeployFailure> {
        let observed = self
            .observed()
            .await
            .map_err(|e| fail(Phase::Fetch, None, e.to_string()))?;
        let existing = observed
            .iter()
            .find(|p| p.any().is_some_and(|m| m.is_for(key)));
        let (id, generation, fresh, old) = match existing {
            Some(p) => (
                p.id.clone(),
                p.max_generation() + 1,
                p.live().is_none(),
                p.live_members().to_vec(),
            ),
            None => {
                if observed.len() >= self.config.limits.max_previews {
                    return Err(fail(
                        Phase::Fetch,
                        None,
                        format!(
                            "this host already runs {} previews (limits.max_previews); remove one with `previewd down ID`",
                            observed.len()
                        ),
                    ));
                }
                let taken: HashSet<&PreviewId> = observed.iter().map(|p| &p.id).collect();
                let mut id = PreviewId::generate();
                while taken.contains(&id) {
                    id = PreviewId::generate();
                }
                (id, 1, true, Vec::new())
            }
        };
        Ok(Slot {
            id,
            generation,
            fresh,
            old,
        })
    }

    /// Marks `id` busy until the guard is dropped, so the reconciler leaves it alone.
    pub(super) fn mark_busy(&self, id: &PreviewId) -> BusyGuard {
        if let Ok(mut s) = self.busy.lock() {
            *s.entry(id.clone()).or_default() += 1;
        }
        BusyGuard {
            set: self.busy.clone(),
            id: id.clone(),
        }
    }

    /// The folder the attempt builds from, and whether it is previewd's own: the dev worktree,
    /// the plain folder, or a checkout of what was fetched.
    async fn worktree(
        &self,
        req: &UpRequest,
        origin: &Origin,
        fetched: Option<Fetched>,
        id: &PreviewId,
        fresh: bool,
    ) -> Result<(PathBuf, bool), DeployFailure> {
        let instance_dir = self.config.instance_dir();
        Ok(match (&req.mode, origin, fetched) {
            (Mode::Dev { worktree }, _, _) => (
                worktree.canonicalize().map_err(|e| {
                    fail(
                        Phase::Fetch,
                        None,
                        format!("--worktree {}: {e}", worktree.display()),
                    )
                })?,
                false,
            ),
            (_, Origin::Folder(p), _) => (p.clone(), false),
            (_, _, Some(f)) => {
                let (dir, id2) = (instance_dir.clone(), id.clone());
                let mut checkout = Checkout {
                    task: Some(tokio::task::spawn_blocking(move || {
                        source::checkout(&dir, &f, &id2)
                    })),
                    abandoned: fresh.then(|| (instance_dir, id.clone())),
                };
                let wt = checkout
                    .wait()
                    .await
                    .map_err(|e| fail(Phase::Fetch, None, e.to_string()))?
                    .map_err(fetch_err)?;
                (wt, true)
            }
            (_, Origin::Git(_), None) => {
                return Err(fail(Phase::Fetch, None, "nothing was fetched"));
            }
        })
    }

    /// The token for fetching `url`, as the forge side decides it (never for a URL that is
    /// not the forge's own).
    async fn git_token(
        &self,
        req: &UpRequest,
        url: &str,
    ) -> Result<Option<secrecy::SecretString>, DeployFailure> {
        match &self.git {
            Some(git) => git
                .git_token(url, req.key_repo.as_deref())
                .await
                .map_err(|reason| fail(Phase::Fetch, None, reason)),
            None => Ok(None),
        }
    }
}
