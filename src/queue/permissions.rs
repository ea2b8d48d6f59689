//! The permission cache: a sender's permission on a repository, as the forge said it, trusted
//! for `permission_ttl` so that a burst of labels or commands by one person costs one forge
//! call. It only remembers what the forge answered: it never grants anything the forge did
//! not say, never keeps an entry past its ttl, and never caches a failed read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::forge::{Forge, ForgeResult, Permission, Repo};

pub(super) struct PermissionCache {
    forge: Arc<dyn Forge>,
    ttl: Duration,
    permissions: Mutex<HashMap<(String, String), (Permission, Instant)>>,
}

impl PermissionCache {
    pub(super) fn new(forge: Arc<dyn Forge>, ttl: Duration) -> PermissionCache {
        PermissionCache {
            forge,
            ttl,
            permissions: Mutex::new(HashMap::new()),
        }
    }

    pub(super) async fn permission(
        &self,
        repo: &Repo,
        user: &str,
        user_id: Option<u64>,
    ) -> ForgeResult<Permission> {
        let k = (repo.full_name(), user.to_owned());
        if let Some((p, at)) = self.lock().get(&k)
            && at.elapsed() < self.ttl
        {
            return Ok(*p);
        }
        let p = self.forge.permission(repo, user, user_id).await?;
        let mut cache = self.lock();
        cache.retain(|_, (_, at)| at.elapsed() < self.ttl);
        cache.insert(k, (p, Instant::now()));
        Ok(p)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (Permission, Instant)>> {
        self.permissions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
