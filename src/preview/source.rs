//! Where a preview's files come from: git2 fetches into one bare clone per repository, and each
//! preview gets its own git worktree of it; a plain folder is used as it is. Everything here
//! is blocking (libgit2), so callers run it on `spawn_blocking`. Paths under `data_dir` are made
//! only from hashes and validated ids, never from a repository's or branch's name, so a hostile
//! name cannot escape the data directory.

use std::path::{Path, PathBuf};

use git2::{FetchOptions, Oid, RemoteCallbacks, Repository, build::RepoBuilder};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::ids::{CommitSha, PreviewId};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0} is neither a git URL, a git repository nor a folder")]
    NotFound(String),
    #[error("invalid branch name {0:?}")]
    BadBranch(String),
    #[error("branch {branch:?} does not exist in {repo}")]
    UnknownBranch { repo: String, branch: String },
    #[error("commit {sha} is not on branch {branch:?} of {repo}")]
    UnknownCommit {
        repo: String,
        branch: String,
        sha: String,
    },
    #[error("git: {context}: {message}")]
    Git { context: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn git(context: impl Into<String>) -> impl FnOnce(git2::Error) -> SourceError {
    let context = context.into();
    move |e| SourceError::Git {
        context,
        message: e.message().to_owned(),
    }
}

/// What `--repo` (or a forge event) points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A URL or the path of a local git repository: fetched into previewd's own clone.
    Git(String),
    /// A plain folder, used as it is (no commit, no worktree).
    Folder(PathBuf),
}

impl Origin {
    pub fn classify(repo: &str) -> Result<Origin, SourceError> {
        if repo.contains("://") || repo.starts_with("git@") {
            return Ok(Origin::Git(repo.to_owned()));
        }
        let path = Path::new(repo);
        let canon = path
            .canonicalize()
            .map_err(|_| SourceError::NotFound(repo.to_owned()))?;
        if !canon.is_dir() {
            return Err(SourceError::NotFound(repo.to_owned()));
        }
        if Repository::open(&canon)
            .is_ok_and(|r| r.workdir() == Some(canon.as_path()) || r.is_bare())
        {
            Ok(Origin::Git(canon.display().to_string()))
        } else {
            Ok(Origin::Folder(canon))
        }
    }

    /// The repository part of the preview's key.
    pub fn key(&self) -> String {
        match self {
            Origin::Git(url) => url.clone(),
            Origin::Folder(p) => p.display().to_string(),
        }
    }
}

/// The result of fetching: the commit the branch points at, in previewd's clone.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub clone: PathBuf,
    pub branch: String,
    pub sha: CommitSha,
}

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..8])
}

/// Where the clone of `url` lives: named by a hash of the URL, never by the URL itself.
pub fn clone_dir(instance_dir: &Path, url: &str) -> PathBuf {
    instance_dir
        .join("repos")
        .join(format!("{}.git", short_hash(url)))
}

pub fn worktrees_dir(instance_dir: &Path) -> PathBuf {
    instance_dir.join("worktrees")
}

pub fn worktree_dir(instance_dir: &Path, id: &PreviewId) -> PathBuf {
    worktrees_dir(instance_dir).join(id.as_str())
}

fn callbacks(token: Option<&SecretString>) -> RemoteCallbacks<'_> {
    let mut cb = RemoteCallbacks::new();
    let mut tries = 0;
    cb.credentials(move |_url, _user, _allowed| {
        // libgit2 calls this again after every refusal; a bad token would loop forever.
        tries += 1;
        match token {
            Some(t) if tries == 1 => {
                git2::Cred::userpass_plaintext("x-access-token", t.expose_secret())
            }
            _ => Err(git2::Error::from_str(
                "authentication failed (no usable credentials)",
            )),
        }
    });
    cb
}

fn fetch_options(token: Option<&SecretString>) -> FetchOptions<'_> {
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks(token));
    fo
}

/// Clones `url` (once) and fetches `branch` (default: the remote's default branch). When `sha`
/// is given it must be reachable after the fetch (a PR's head, possibly from a fork via
/// `refs/pull/<pr>/head`).
pub fn fetch(
    instance_dir: &Path,
    url: &str,
    branch: Option<&str>,
    sha: Option<&CommitSha>,
    pr: Option<u64>,
    token: Option<&SecretString>,
) -> Result<Fetched, SourceError> {
    let dir = clone_dir(instance_dir, url);
    let repo = match Repository::open_bare(&dir) {
        Ok(r) => r,
        Err(_) => {
            if dir.exists() {
                // A clone left half-made by a crash: start again.
                std::fs::remove_dir_all(&dir).map_err(|source| SourceError::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
            RepoBuilder::new()
                .bare(true)
                .fetch_options(fetch_options(token))
                .clone(url, &dir)
                .map_err(git(format!("cloning {url}")))?
        }
    };
    let mut remote = repo
        .find_remote("origin")
        .map_err(git("finding remote origin"))?;
    let branch = match branch {
        Some(b) => b.to_owned(),
        None => {
            remote
                .connect_auth(git2::Direction::Fetch, Some(callbacks(token)), None)
                .map_err(git(format!("connecting to {url}")))?;
            let head = remote
                .default_branch()
                .map_err(git("reading the default branch"))?;
            let _ = remote.disconnect();
            let head = head.as_str().unwrap_or_default().to_owned();
            head.strip_prefix("refs/heads/").unwrap_or(&head).to_owned()
        }
    };
    if !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        return Err(SourceError::BadBranch(branch));
    }
    let local = format!("refs/previewd/heads/{branch}");
    let mut specs = vec![format!("+refs/heads/{branch}:{local}")];
    if let Some(pr) = pr {
        specs.push(format!("+refs/pull/{pr}/head:refs/previewd/pull/{pr}"));
    }
    let mut result = remote.fetch(&specs, Some(&mut fetch_options(token)), None);
    if result.is_err() && specs.len() > 1 {
        // Not every forge has refs/pull/*: try the branch alone.
        specs.truncate(1);
        result = remote.fetch(&specs, Some(&mut fetch_options(token)), None);
    }
    result.map_err(git(format!("fetching {branch} from {url}")))?;
    let head = repo
        .find_reference(&local)
        .map_err(|_| SourceError::UnknownBranch {
            repo: url.to_owned(),
            branch: branch.clone(),
        })?
        .peel_to_commit()
        .map_err(git("reading the branch head"))?
        .id();
    let oid = match sha {
        None => head,
        Some(s) => {
            let oid = Oid::from_str(s.as_str()).map_err(git("parsing the commit"))?;
            if repo.find_commit(oid).is_err() {
                return Err(SourceError::UnknownCommit {
                    repo: url.to_owned(),
                    branch,
                    sha: s.to_string(),
                });
            }
            oid
        }
    };
    let sha = CommitSha::parse(&oid.to_string()).map_err(|e| SourceError::Git {
        context: "reading the commit id".into(),
        message: e.to_string(),
    })?;
    Ok(Fetched {
        clone: dir,
        branch,
        sha,
    })
}

/// Checks `sha` out into the preview's worktree, creating the worktree on first use.
pub fn checkout(
    instance_dir: &Path,
    fetched: &Fetched,
    id: &PreviewId,
) -> Result<PathBuf, SourceError> {
    let repo = Repository::open_bare(&fetched.clone).map_err(git("opening the clone"))?;
    let path = worktree_dir(instance_dir, id);
    let oid = Oid::from_str(fetched.sha.as_str()).map_err(git("parsing the commit"))?;
    let wt_repo = match Repository::open(&path) {
        Ok(r) => r,
        Err(_) => {
            // Forget a worktree whose folder is gone, then add it afresh.
            forget_worktree(&repo, id);
            if path.exists() {
                std::fs::remove_dir_all(&path).map_err(|source| SourceError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
            let parent = worktrees_dir(instance_dir);
            std::fs::create_dir_all(&parent).map_err(|source| SourceError::Io {
                path: parent,
                source,
            })?;
            let commit = repo.find_commit(oid).map_err(git("finding the commit"))?;
            let branch = repo
                .branch(id.as_str(), &commit, true)
                .map_err(git("creating the worktree branch"))?;
            let mut opts = git2::WorktreeAddOptions::new();
            opts.reference(Some(branch.get()));
            let wt = repo
                .worktree(id.as_str(), &path, Some(&opts))
                .map_err(git("adding the worktree"))?;
            Repository::open_from_worktree(&wt).map_err(git("opening the worktree"))?
        }
    };
    wt_repo
        .set_head_detached(oid)
        .map_err(git("moving the worktree to the commit"))?;
    let mut co = git2::build::CheckoutBuilder::new();
    co.force().remove_untracked(true);
    wt_repo
        .checkout_head(Some(&mut co))
        .map_err(git("checking out the commit"))?;
    Ok(path)
}

/// Drops the clone's record of a preview's worktree and its branch (best effort: what is
/// already gone is fine).
fn forget_worktree(repo: &Repository, id: &PreviewId) {
    if let Ok(wt) = repo.find_worktree(id.as_str()) {
        let mut opts = git2::WorktreePruneOptions::new();
        opts.valid(true).working_tree(true);
        let _ = wt.prune(Some(&mut opts));
    }
    if let Ok(mut b) = repo.find_branch(id.as_str(), git2::BranchType::Local) {
        let _ = b.delete();
    }
}

/// Removes a preview's worktree and its bookkeeping in the clone it came from.
pub fn remove_worktree(instance_dir: &Path, id: &PreviewId) -> Result<(), SourceError> {
    let path = worktree_dir(instance_dir, id);
    if let Ok(wt_repo) = Repository::open(&path)
        && let Some(common) = wt_repo.commondir().canonicalize().ok()
        && let Ok(repo) = Repository::open_bare(&common)
    {
        forget_worktree(&repo, id);
    }
    if path.exists() {
        std::fs::remove_dir_all(&path).map_err(|source| SourceError::Io { path, source })?;
    }
    Ok(())
}

/// Whether `branch` still exists at `url`, asked of the remote itself (`git ls-remote`), so it
/// works for any forge. Errors (the remote unreachable) are not a "no".
pub fn branch_exists(
    url: &str,
    branch: &str,
    token: Option<&SecretString>,
) -> Result<bool, SourceError> {
    let mut remote = git2::Remote::create_detached(url).map_err(git(format!("opening {url}")))?;
    remote
        .connect_auth(git2::Direction::Fetch, Some(callbacks(token)), None)
        .map_err(git(format!("connecting to {url}")))?;
    let wanted = format!("refs/heads/{branch}");
    let found = remote
        .list()
        .map_err(git(format!("listing {url}")))?
        .iter()
        .any(|h| h.name() == wanted);
    let _ = remote.disconnect();
    Ok(found)
}

/// The origin URL of every clone under `repos_dir`: the repositories previewd serves, which
/// the reconciler compares with the forge after a restart.
pub fn cloned_urls(repos_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(repos_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let repo = Repository::open_bare(e.path()).ok()?;
            let remote = repo.find_remote("origin").ok()?;
            remote.url().ok().map(str::to_owned)
        })
        .collect()
}
