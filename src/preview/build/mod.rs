//! Building a service's image through the Engine API from a tar of its context. A service whose
//! context (after `.dockerignore`), Dockerfile, build args, target, labels and platform hash to
//! the same value as an image already on the host reuses that image without calling the
//! builder (unless the file asks for `no_cache` or `pull`): the hash is in the image's tag, so
//! the cache survives restarts and is shared between previews. A compose file's other build
//! options go to the Engine API as they are, `shm_size` clamped to the memory limit, and
//! `cache_from` never names an image previewd built.
//!
//! Builds use BuildKit (`buildkit`); a daemon that refuses it gets the classic builder
//! (`classic`), and the build log says which one ran. BuildKit leaves no step images or
//! containers in Docker's stores: a cancelled build leaves at most build cache, which the
//! cache limit bounds. The classic builder commits an image per step: every step image carries
//! the instance label (`dockerfile::label_stages`), so what a failed or cancelled classic build
//! leaves can be pruned ([`prune_leftovers`]). A prune must
//! not take the step a running build has just committed (untagged until its next step starts
//! from it), nor an image a build tags meanwhile: builds hold a shared `flock` on the
//! instance's `builds.lock` and a prune runs only when it gets the lock alone, in this process
//! or any other of the instance.
//!
//! Beside it: `context` packs the build context, `dockerfile` stamps the label, `trace` reads
//! BuildKit's progress, `prune` holds the lock and removes leftovers, `cache` bounds
//! BuildKit's cache, `cgroup` caps the steps' processes.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, BuilderVersion, TagImageOptions};

use super::docker::{self, DockerError, labels};
use crate::config::Config;
use crate::config::egress::Mode;
use crate::engine::PreviewKey;
use crate::ids::PreviewId;
use crate::spec::BuildSpec;
use buildkit::Outcome;

mod buildkit;
pub use buildkit::settled;
pub mod cache;
mod cgroup;
mod classic;
mod prune;
pub use prune::prune_leftovers;
mod reasons;
mod session;
use prune::shared_lock;
pub mod context;
pub mod dockerfile;
mod trace;

/// How many log lines a failure report carries.
pub const TAIL: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot pack the build context: {0}")]
    Context(String),
    #[error("cannot lock `{path}`: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the build failed: {reason}")]
    Failed { reason: String, tail: Vec<String> },
    #[error("the build's limits cannot be applied: {0}")]
    Limits(String),
    #[error("the build took longer than {0:?} (limits.build_timeout)")]
    Timeout(std::time::Duration, Vec<String>),
    #[error(transparent)]
    Docker(#[from] DockerError),
}

impl BuildError {
    pub fn tail(&self) -> Vec<String> {
        match self {
            BuildError::Failed { tail, .. } | BuildError::Timeout(_, tail) => tail.clone(),
            _ => Vec::new(),
        }
    }
}

/// The image a service runs, and whether the builder was skipped.
#[derive(Debug, Clone)]
pub struct Built {
    pub tag: String,
    pub reused: bool,
}

/// What one build is of: the preview and service it is for, and its key, whose repository
/// (and fork) decides which builds share its cache mounts.
pub struct Target<'a> {
    pub id: &'a PreviewId,
    pub service: &'a str,
    pub key: &'a PreviewKey,
    /// What the build's `RUN` steps may reach: `none` builds without a network.
    pub egress: Mode,
}

/// The prefix of the cache mount ids of builds of `key`'s repository in this instance. A fork's
/// pull request (its key's branch is `owner/name:branch`) gets the fork's own: its author must
/// not be able to plant files in the cache that the base repository's previews read.
pub fn cache_namespace(config: &Config, key: &PreviewKey) -> String {
    use sha2::Digest;
    let fork = key.branch.rsplit_once(':').map_or("", |(fork, _)| fork);
    let mut h = sha2::Sha256::new();
    // The same owner/name on two forges is two repositories.
    h.update(key.forge.as_bytes());
    h.update(b"\0");
    h.update(key.repo.as_bytes());
    h.update(b"\0");
    h.update(fork.as_bytes());
    format!("{}-{}-", config.instance, &hex::encode(h.finalize())[..16])
}

/// Builds (or reuses) the image of a service, streaming each log line to `on_line`.
pub async fn build(
    docker: &Docker,
    config: &Config,
    target: Target<'_>,
    worktree: &Path,
    spec: &BuildSpec,
    on_line: &(dyn Fn(&str) + Send + Sync),
) -> Result<Built, BuildError> {
    let (id, service) = (target.id, target.service);
    let wt = worktree.to_path_buf();
    let bs = spec.clone();
    let instance = config.instance.to_string();
    let namespace = cache_namespace(config, target.key);
    let (ctx, read) = tokio::task::spawn_blocking(move || {
        let read = std::sync::OnceLock::new();
        let edit = |d: &[u8]| {
            let _ = read.set(Read {
                syntax: dockerfile::syntax(d),
                secret_ids: dockerfile::secret_ids(d),
                newer: dockerfile::newer_engine_features(d),
            });
            dockerfile::label_and_namespace(d, labels::INSTANCE, &instance, &namespace)
        };
        let ctx = context::pack(&wt, &bs, &edit)?;
        Ok::<_, context::ContextError>((ctx, read.into_inner().unwrap_or_default()))
    })
    .await
    .map_err(|e| BuildError::Context(e.to_string()))?
    .map_err(|e| BuildError::Context(e.to_string()))?;
    // Only the secrets the operator gave this repository, and never to a fork's pull request.
    let key = target.key;
    let fork = key.branch.contains(':');
    let secrets = config
        .build_secrets
        .for_build(&key.forge, &key.repo, fork, &read.secret_ids)
        .map_err(|reason| BuildError::Failed {
            reason,
            tail: Vec::new(),
        })?;
    let tag = labels::image_tag(&config.instance, id, service, &ctx.hash);
    // Held while this build looks for, tags or commits images: see `prune_leftovers`.
    let _building = shared_lock(config).await?;
    let options = &spec.options;
    for image in &options.cache_from {
        // An image previewd built holds some branch's code: its cache is not another's.
        if docker::built_by_previewd(docker, image).await == Some(true) {
            return Err(BuildError::Failed {
                reason: format!(
                    "build.cache_from: {image} was built by previewd for a preview; name an \
                     image of your registry"
                ),
                tail: Vec::new(),
            });
        }
    }
    // `no_cache` and `pull` ask for a build from scratch, or on fresh base images.
    let reuse = !(options.no_cache || options.pull);
    if let Some(existing) = find_by_hash(docker, config, &ctx.hash)
        .await?
        .filter(|_| reuse)
    {
        let (repo, t) = tag.rsplit_once(':').unwrap_or((&tag, "latest"));
        let opts = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(t.to_owned()),
        };
        docker
            .tag_image(&existing, Some(opts))
            .await
            .map_err(DockerError::from)?;
        on_line(&format!(
            "unchanged (content {}), reusing image",
            &ctx.hash[..12]
        ));
        return Ok(Built { tag, reused: true });
    }

    let tar = bytes::Bytes::from(ctx.tar);
    let mut log = Log {
        tail: VecDeque::with_capacity(TAIL),
        on_line,
        masked: secrets.values().cloned().collect(),
    };
    // Secret mounts need a session that serves them (see `session`); held until the build ends.
    let session = match secrets.is_empty() {
        true => None,
        false => Some(
            session::open(docker, secrets)
                .await
                .map_err(|e| BuildError::Failed {
                    reason: format!("cannot give the build its secrets: {e}"),
                    tail: Vec::new(),
                })?,
        ),
    };
    let limit = config.limits.build_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let opts = BuildImageOptions {
        dockerfile: ctx.dockerfile.clone(),
        t: Some(tag.clone()),
        buildargs: Some(spec.args.clone().into_iter().collect()),
        target: spec.target.clone().unwrap_or_default(),
        // BuildKit sets labels on the image it exports without adding a step (the Dockerfile's
        // stamp labels it too: the stamp is there for the classic fallback, which shares the
        // context and its hash). BuildKit through the Engine API ignores `memory` and the CPU
        // options (measured): they are only set for the classic builder below.
        labels: Some(image_labels(config, options)),
        version: BuilderVersion::BuilderBuildKit,
        networkmode: network_mode(target.egress),
        nocache: options.no_cache,
        pull: options.pull.then(|| "1".to_owned()),
        cachefrom: (!options.cache_from.is_empty()).then(|| options.cache_from.clone()),
        // Memory-backed: never more than a container may use.
        shmsize: options
            .shm_size
            .map(|s| i32::try_from(s.min(config.limits.memory)).unwrap_or(i32::MAX)),
        platform: options.platform.clone().unwrap_or_default(),
        ..Default::default()
    };
    cgroup::apply(&config.limits.builds)
        .await
        .map_err(BuildError::Limits)?;
    let watch = cgroup::watch(&config.limits.builds);
    log.push("building with BuildKit");
    let first = {
        let mut push = |l: &str| log.push(l);
        let session = session.as_ref().map(|s| s.id.clone());
        let buildkit = buildkit::build(docker, &opts, session, tar.clone(), &mut push);
        tokio::time::timeout_at(deadline, buildkit).await
    };
    let ended = match first {
        Err(_) => Ended::TimedOut,
        Ok(Ok(Outcome::Built)) => Ended::Built,
        Ok(Ok(Outcome::Failed(reason))) => Ended::Failed(reason),
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(Outcome::Refused(why))) => {
            log.push(&format!(
                "this Docker engine does not build with BuildKit ({}): building with the classic builder",
                first_line(&why)
            ));
            // No `labels` option unless the file has some: the classic builder turns it into
            // a step of its own at the end (a container created and committed, ~1 s here) and
            // the Dockerfile carries the instance label from each `FROM` on; the tag names the
            // preview, the service and the content.
            let classic = BuildImageOptions {
                labels: (!options.labels.is_empty()).then(|| image_labels(config, options)),
                version: BuilderVersion::BuilderV1,
                rm: true,
                // The legacy builder otherwise leaves a failed step's container behind.
                forcerm: true,
                memory: i32::try_from(config.limits.memory).ok(),
                // The same CPU share as the containers: a build is untrusted code too.
                cpuperiod: Some(100_000),
                cpuquota: i32::try_from((config.limits.cpus * 100_000.0) as i64).ok(),
                ..opts
            };
            classic::build(docker, config, classic, tar, &mut log, deadline).await
        }
    };
    if !matches!(ended, Ended::Built)
        && let Some(note) = watch.as_ref().and_then(cgroup::Watch::note)
    {
        log.push(&note);
    }
    let tail: Vec<String> = log.tail.into_iter().collect();
    match ended {
        Ended::Built => Ok(Built { tag, reused: false }),
        Ended::Failed(reason) => Err(BuildError::Failed {
            reason: first_line(
                &reasons::frontend_unavailable(read.syntax.as_deref(), &reason)
                    .or_else(|| reasons::needs_newer_engine(&read.newer, &reason))
                    .unwrap_or(reason),
            ),
            tail,
        }),
        Ended::TimedOut => Err(BuildError::Timeout(limit, tail)),
    }
}

/// The built image's labels: the file's, then previewd's own (which win).
fn image_labels(config: &Config, options: &crate::spec::BuildOptions) -> HashMap<String, String> {
    let mut all: HashMap<String, String> = options.labels.clone().into_iter().collect();
    all.insert(labels::INSTANCE.to_owned(), config.instance.to_string());
    all
}

/// What the edit of the Dockerfile read in it on the way.
#[derive(Default)]
struct Read {
    /// The `# syntax=` directive's image.
    syntax: Option<String>,
    /// The ids of its secret mounts.
    secret_ids: Vec<String>,
    /// What only a newer engine's frontend parses (`dockerfile::newer_engine_features`).
    newer: Vec<String>,
}

/// How a build (with either builder) ended.
enum Ended {
    Built,
    Failed(String),
    TimedOut,
}

/// The build log: every line goes to the caller, the last `TAIL` are kept for a failure report.
/// The build's secrets are masked in every line (a step that prints one shows `********`).
struct Log<'a> {
    tail: VecDeque<String>,
    on_line: &'a (dyn Fn(&str) + Send + Sync),
    masked: Vec<secrecy::SecretString>,
}

impl Log<'_> {
    fn push(&mut self, text: &str) {
        use secrecy::ExposeSecret;
        let mut text = text.to_owned();
        for secret in &self.masked {
            text = text.replace(secret.expose_secret(), "********");
        }
        for l in text.lines().map(docker::printable) {
            if l.trim().is_empty() {
                continue;
            }
            if self.tail.len() == TAIL {
                self.tail.pop_front();
            }
            (self.on_line)(&l);
            self.tail.push_back(l);
        }
    }
}

/// Docker's network mode for a build's steps. `none` is Docker's own: no interface but
/// loopback. `public` cannot be narrowed further on Docker 20.10: BuildKit runs steps on the
/// default bridge, shared with every other container, and refuses other networks (see
/// docs/security-model.md); such builds reach what `all` does.
fn network_mode(egress: Mode) -> Option<String> {
    (egress == Mode::None).then(|| "none".to_owned())
}

fn first_line(s: &str) -> String {
    docker::printable(s.lines().next().unwrap_or(""))
        .chars()
        .take(300)
        .collect()
}

async fn find_by_hash(
    docker: &Docker,
    config: &Config,
    hash: &str,
) -> Result<Option<String>, DockerError> {
    let filters = HashMap::from([
        (
            "label".to_owned(),
            vec![format!("{}={}", labels::INSTANCE, config.instance)],
        ),
        (
            "reference".to_owned(),
            vec![labels::image_pattern(&config.instance, hash)],
        ),
    ]);
    Ok(docker::image_ids(docker, filters).await?.into_iter().next())
}

#[cfg(test)]
mod namespace_tests {
    use super::cache_namespace;
    use crate::config::Config;
    use crate::engine::PreviewKey;

    #[test]
    fn branches_share_a_cache_namespace_and_a_fork_has_its_own() {
        let config = Config::from_parts(None, std::path::Path::new("t"), &[]).expect("defaults");
        let ns = |branch: Option<&str>, fork: Option<&str>| {
            let key =
                PreviewKey::pull_request_head("github", "o/app", fork, branch.unwrap_or("main"));
            cache_namespace(&config, &key)
        };
        assert_eq!(ns(Some("main"), None), ns(Some("feature"), None));
        assert_ne!(ns(Some("main"), None), ns(Some("main"), Some("evil/app")));
        assert_eq!(
            ns(Some("a"), Some("evil/app")),
            ns(Some("b"), Some("evil/app"))
        );
        assert_ne!(ns(None, Some("evil/app")), ns(None, Some("other/app")));
        let other = PreviewKey::pull_request_head("github", "o/other", None, "main");
        assert_ne!(ns(None, None), cache_namespace(&config, &other));
        let same_on_gitea = PreviewKey::pull_request_head("gitea", "o/app", None, "main");
        assert_ne!(ns(None, None), cache_namespace(&config, &same_on_gitea));
    }
}
