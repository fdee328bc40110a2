//! The disk quota for replicas: what this node keeps of other owners' repositories, in
//! all (`max_storage`) and per owner key (`max_storage_per_owner`), so that keys, which
//! cost nothing, cannot fill the disk nor crowd out other owners. The node's own
//! repositories do not count.

use std::collections::HashMap;
use std::sync::Mutex;

use guts_protocol::RepositoryId;
use guts_storage::{Repositories, StorageError};

/// An owner's public key.
type Owner = [u8; 32];

/// Bytes used by replicas, per repository, and the limits (0: none).
pub(crate) struct Quota {
    max_total: u64,
    max_per_owner: u64,
    own: Owner,
    used: Mutex<HashMap<RepositoryId, (Owner, u64)>>,
}

impl Quota {
    /// Measures what the replicas in `repos` use now. Blocking (reads every repository
    /// directory once).
    pub(crate) fn load(
        repos: &Repositories,
        own: Owner,
        max_total: u64,
        max_per_owner: u64,
    ) -> Result<Quota, StorageError> {
        let quota = Quota {
            max_total,
            max_per_owner,
            own,
            used: Mutex::default(),
        };
        if max_total > 0 || max_per_owner > 0 {
            for id in repos.list()? {
                quota.measure(repos, &id)?;
            }
        }
        Ok(quota)
    }

    /// Bytes a fetch of a repository of `owner` may still bring, or `None` if unlimited.
    pub(crate) fn room(&self, owner: &Owner) -> Option<u64> {
        if *owner == self.own || (self.max_total == 0 && self.max_per_owner == 0) {
            return None;
        }
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
        let Some(snapshot) = repos.signed_refs(id)? else {
            return Ok(());
        };
        let owner = *snapshot.signed.signer.as_bytes();
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
        Quota {
            max_total: total,
            max_per_owner: per_owner,
            own: [0; 32],
            used: Mutex::new(HashMap::from([
                (RepositoryId::from_bytes([1; 20]), ([1; 32], 600)),
                (RepositoryId::from_bytes([2; 20]), ([1; 32], 300)),
                (RepositoryId::from_bytes([3; 20]), ([2; 32], 50)),
            ])),
        }
    }

    #[test]
    fn room_is_the_tighter_of_the_total_and_the_owners_share() {
        let q = quota(2000, 1000);
        assert_eq!(q.room(&[1; 32]), Some(100), "owner 1 used 900 of 1000");
        assert_eq!(q.room(&[2; 32]), Some(950));
        assert_eq!(q.room(&[3; 32]), Some(1000), "a new owner gets its share");
        assert_eq!(
            quota(1000, 1000).room(&[3; 32]),
            Some(50),
            "the total binds"
        );
        assert_eq!(quota(0, 0).room(&[1; 32]), None, "no limits");
        assert_eq!(quota(0, 700).room(&[2; 32]), Some(650));
        assert_eq!(q.room(&[0; 32]), None, "this node's own repositories");
    }
}
