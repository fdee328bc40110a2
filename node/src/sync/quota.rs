//! The disk quota for replicas: what this node keeps of other owners' repositories, in
//! all (`max_storage`) and per owner key (`max_storage_per_owner`), so that keys, which
//! cost nothing, cannot fill the disk nor crowd out other owners. The node's own
//! repositories do not count.

use std::collections::HashMap;
use std::sync::Mutex;

use guts_protocol::RepositoryId;
use guts_storage::{Repositories, StorageError};
use tokio::sync::watch;

/// An owner's public key.
type Owner = [u8; 32];

/// Bytes used by replicas, per repository, and the limits (0: none).
pub(crate) struct Quota {
    max_total: u64,
    max_per_owner: u64,
    own: Owner,
    used: Mutex<HashMap<RepositoryId, (Owner, u64)>>,
    /// True once every repository held at start has been measured.
    loaded: watch::Sender<bool>,
}

impl Quota {
    /// The quota with nothing measured yet: [`Self::room`] waits for [`Self::load`].
    pub(crate) fn new(own: Owner, max_total: u64, max_per_owner: u64) -> Quota {
        Quota {
            max_total,
            max_per_owner,
            own,
            used: Mutex::default(),
            loaded: watch::Sender::new(false),
        }
    }

    /// Measures what the replicas in `repos` use now (reads every repository directory
    /// once, so a node with many runs it after start rather than before). Blocking.
    pub(crate) fn load(&self, repos: &Repositories) {
        if self.limited() {
            match repos.list() {
                Ok(ids) => {
                    for id in ids {
                        if let Err(e) = self.measure(repos, &id) {
                            tracing::warn!(repository = %id, "cannot measure its disk usage: {e}");
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot list repositories to measure them: {e}"),
            }
        }
        self.loaded.send_replace(true);
    }

    fn limited(&self) -> bool {
        self.max_total > 0 || self.max_per_owner > 0
    }

    /// Bytes a fetch of a repository of `owner` may still bring, or `None` if unlimited.
    /// Waits for the measurements of [`Self::load`] first.
    pub(crate) async fn room(&self, owner: &Owner) -> Option<u64> {
        if *owner == self.own || !self.limited() {
            return None;
        }
        // The sender lives in `self`, so the wait ends when `load` does.
        let _ = self.loaded.subscribe().wait_for(|loaded| *loaded).await;
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let total: u64 = used.values().map(|(_, n)| n).sum();
        let mine: u64 = used
            .values()
            .filter(|(o, _)| o == owner)
            .map(|(_, n)| n)
            .sum();
        let left = |max: u64, used: u64| (max > 0).then(|| max.saturating_sub(used));
        match (left(self.max_total, total), left(self.max_per_owner, mine)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records what `id` takes on disk now (after a fetch or a repack).
    pub(crate) fn measure(
        &self,
        repos: &Repositories,
        id: &RepositoryId,
    ) -> Result<(), StorageError> {
        // A repository with maintainers counts against its creator, fixed by its id.
        let owner = match repos.held(id)? {
            Some(guts_storage::Held::Owner(snapshot)) => *snapshot.signed.signer.as_bytes(),
            Some(guts_storage::Held::Shared(state)) => {
                *state.identity.genesis().maintainers[0].as_bytes()
            }
            None => return Ok(()),
        };
        if owner == self.own {
            return Ok(());
        }
        let size = repos.disk_usage(id)?;
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*id, (owner, size));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(total: u64, per_owner: u64) -> Quota {
        let q = Quota::new([0; 32], total, per_owner);
        *q.used.lock().unwrap() = HashMap::from([
            (RepositoryId::from_bytes([1; 20]), ([1; 32], 600)),
            (RepositoryId::from_bytes([2; 20]), ([1; 32], 300)),
            (RepositoryId::from_bytes([3; 20]), ([2; 32], 50)),
        ]);
        q.loaded.send_replace(true);
        q
    }

    #[tokio::test]
    async fn room_waits_for_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let repos = Repositories::new(dir.path());
        let q = std::sync::Arc::new(Quota::new([0; 32], 1000, 0));
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.room(&[1; 32]).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no answer before the load");
        assert_eq!(q.room(&[0; 32]).await, None, "own repositories never wait");
        q.load(&repos);
        assert_eq!(waiting.await.unwrap(), Some(1000));
    }

    #[tokio::test]
    async fn room_is_the_tighter_of_the_total_and_the_owners_share() {
        let q = quota(2000, 1000);
        assert_eq!(
            q.room(&[1; 32]).await,
            Some(100),
            "owner 1 used 900 of 1000"
        );
        assert_eq!(q.room(&[2; 32]).await, Some(950));
        assert_eq!(
            q.room(&[3; 32]).await,
            Some(1000),
            "a new owner gets its share"
        );
        assert_eq!(
            quota(1000, 1000).room(&[3; 32]).await,
            Some(50),
            "the total binds"
        );
        assert_eq!(quota(0, 0).room(&[1; 32]).await, None, "no limits");
        assert_eq!(quota(0, 700).room(&[2; 32]).await, Some(650));
        assert_eq!(q.room(&[0; 32]).await, None, "this node's own repositories");
    }
}
