//! Which repository a preview belongs to, from its containers' labels (the forge and
//! repository a preview id stands for never change for the life of the id, so a found answer
//! is kept). Docker is asked only for an id not seen before, at most once a second; nothing
//! here decides access.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::BoxFuture;
use crate::forge::{ForgeKind, Repo};
use crate::ids::{Instance, PreviewId};

/// A preview's forge and repository; `None` for one no forge asked for (`previewd up`).
pub type Owner = Option<(ForgeKind, Repo)>;

/// Answers "whose preview is this?".
pub trait Lookup: Send + Sync + 'static {
    /// `None`: no such preview; `Some(None)`: a preview of no forge repository.
    fn owner(&self, id: &PreviewId) -> BoxFuture<'_, Option<Owner>>;
}

/// The lookup from Docker labels, cached.
pub struct DockerLookup {
    docker: bollard::Docker,
    instance: Instance,
    known: Mutex<(HashMap<PreviewId, Owner>, Option<Instant>)>,
}

/// A bound on the cache; past it the cache starts over (ids are never reused).
const MAX_KNOWN: usize = 10_000;
const MIN_REFRESH: Duration = Duration::from_secs(1);

impl DockerLookup {
    pub fn new(docker: bollard::Docker, instance: Instance) -> DockerLookup {
        DockerLookup {
            docker,
            instance,
            known: Mutex::new((HashMap::new(), None)),
        }
    }

    fn cached(&self, id: &PreviewId) -> (Option<Owner>, bool) {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = known.1.is_some_and(|t| t.elapsed() < MIN_REFRESH);
        (known.0.get(id).cloned(), fresh)
    }
}

impl Lookup for DockerLookup {
    fn owner(&self, id: &PreviewId) -> BoxFuture<'_, Option<Owner>> {
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
            if known.0.len() > MAX_KNOWN {
                known.0.clear();
            }
            for m in members {
                let owner = ForgeKind::parse(&m.forge).zip(Repo::parse(&m.repo));
                known.0.insert(m.preview, owner);
            }
            known.1 = Some(Instant::now());
            known.0.get(&id).cloned()
        })
    }
}
