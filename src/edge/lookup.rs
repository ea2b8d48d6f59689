//! Which repository a preview belongs to and the access mode it was deployed with, from its
//! containers' labels (the forge and repository a preview id stands for never change for the
//! life of the id, so a found answer is kept; the mode is read again after [`MODE_TTL`], as a
//! new deployment may change it). Docker is asked only for an id not seen before or whose mode
//! is stale, at most once a second; nothing here decides access.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::AccessMode;
use crate::engine::BoxFuture;
use crate::forge::{ForgeKind, Repo};
use crate::ids::{Instance, PreviewId};

/// A preview's forge and repository; `None` for one no forge asked for (`previewd up`).
pub type Owner = Option<(ForgeKind, Repo)>;

/// What the edge knows of a preview: whose it is, and its `dev.previewd.access` label (the
/// least it may be protected with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub owner: Owner,
    pub access: Option<AccessMode>,
}

impl From<Owner> for Found {
    fn from(owner: Owner) -> Found {
        Found {
            owner,
            access: None,
        }
    }
}

/// Answers "whose preview is this, and how protected?".
pub trait Lookup: Send + Sync + 'static {
    /// `None`: no such preview; an owner of `None`: a preview of no forge repository.
    fn find(&self, id: &PreviewId) -> BoxFuture<'_, Option<Found>>;
}

/// The lookup from Docker labels, cached.
pub struct DockerLookup {
    docker: bollard::Docker,
    instance: Instance,
    known: Mutex<(Known, Option<Instant>)>,
}

/// Each preview seen at the last listing, and when.
type Known = HashMap<PreviewId, (Found, Instant)>;

const MIN_REFRESH: Duration = Duration::from_secs(1);
/// How long a preview's access label is trusted before Docker is asked again: a redeployment
/// under a tighter `.previewd.yml` takes effect within it.
pub const MODE_TTL: Duration = Duration::from_secs(10);

impl DockerLookup {
    pub fn new(docker: bollard::Docker, instance: Instance) -> DockerLookup {
        DockerLookup {
            docker,
            instance,
            known: Mutex::new((HashMap::new(), None)),
        }
    }

    fn cached(&self, id: &PreviewId) -> (Option<Found>, bool) {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = known.1.is_some_and(|t| t.elapsed() < MIN_REFRESH);
        let hit = known.0.get(id);
        // A stale mode is still the answer when Docker was asked a moment ago.
        let stale = hit.is_some_and(|(_, at)| at.elapsed() >= MODE_TTL);
        match hit {
            Some((f, _)) if !stale || fresh => (Some(f.clone()), true),
            _ => (None, fresh),
        }
    }
}

impl Lookup for DockerLookup {
    fn find(&self, id: &PreviewId) -> BoxFuture<'_, Option<Found>> {
        let id = id.clone();
        Box::pin(async move {
            let (hit, fresh) = self.cached(&id);
            if hit.is_some() || fresh {
                return hit;
            }
            let members = match crate::preview::docker::members(&self.docker, &self.instance).await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list previews to check access");
                    return None;
                }
            };
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            // Ids now absent are gone: forgotten, so a stale mode never outlives its preview.
            known.0.clear();
            for m in members {
                let owner = ForgeKind::parse(&m.forge).zip(Repo::parse(&m.repo));
                let e = known.0.entry(m.preview).or_insert((
                    Found {
                        owner,
                        access: None,
                    },
                    now,
                ));
                // Generations side by side (an update): the tightest label counts.
                e.0.access = e.0.access.max(m.access);
            }
            known.1 = Some(now);
            known.0.get(&id).map(|(f, _)| f.clone())
        })
    }
}
