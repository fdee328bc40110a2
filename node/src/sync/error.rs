//! Why a sync, or a fetch from one holder, failed; and what the holder pays for it.

use std::io;
use std::time::Duration;

use guts_protocol::RepositoryId;
use guts_protocol::wire::PackResponse;
use guts_storage::StorageError;
use libp2p::PeerId;

use crate::connection_manager::Penalty;
use crate::wire::penalty_for;

/// Why a fetch from one holder failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No stream to the holder could be opened.
    #[error("cannot open a stream: {0}")]
    Open(String),
    /// The holder declined (not found, busy, rate-limited, refused).
    #[error("the holder answered {0:?}")]
    Declined(PackResponse),
    /// The holder's answer header was bad.
    #[error("bad answer header: {0}")]
    BadHeader(io::Error),
    /// Nothing arrived for this long.
    #[error("no data for {0:?}")]
    Stalled(Duration),
    /// The transfer moved less than the minimum rate.
    #[error(
        "too slow: {bytes} bytes in {secs}s of waiting, under the minimum of {min_rate} bytes/s (min_transfer_rate)"
    )]
    TooSlow {
        /// Bytes moved.
        bytes: u64,
        /// Seconds spent waiting on the peer.
        secs: u64,
        /// The floor, bytes per second.
        min_rate: u64,
    },
    /// The pack would take this node over its storage quota for the owner (no fault of
    /// the holder).
    #[error(
        "the pack would take more than the {0} bytes left of the storage quota (max_storage, max_storage_per_owner)"
    )]
    OverQuota(u64),
    /// The pack went over this node's size limit (bytes): cut there. The limit is this
    /// node's choice, so an honest holder of a large repository is not at fault.
    #[error("pack larger than the {0}-byte limit (max_pack_size)")]
    Oversized(u64),
    /// The holder is reached only through relays, and no direct connection came in time:
    /// relays cut circuits long before a pack is through (no fault of the holder).
    #[error(
        "reached only through a relay, and no direct connection came within {0:?} (packs go through a relay only once hole punching gave up and the relay carries data)"
    )]
    RelayedOnly(Duration),
    /// The stream broke.
    #[error("transfer failed: {0}")]
    Io(io::Error),
    /// Storage refused the data (it does not verify) or could not keep it.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The task indexing the pack failed.
    #[error(transparent)]
    Task(#[from] crate::store::TaskFailed),
    /// The holder gave no list of changes to fetch from.
    #[error("no changes listed: {0}")]
    NoTips(String),
    /// The holder gave no forks to fetch from.
    #[error("no forks listed: {0}")]
    NoForks(String),
}

impl FetchError {
    /// The penalty the holder deserves, if the failure is its fault.
    pub(crate) fn penalty(&self) -> Option<Penalty> {
        match self {
            FetchError::BadHeader(e) => penalty_for(e),
            FetchError::TooSlow { .. } => Some(Penalty::TooSlow),
            FetchError::Storage(e) if e.is_peer_fault() => Some(Penalty::BadData),
            FetchError::Open(_)
            | FetchError::Declined(_)
            | FetchError::OverQuota(_)
            | FetchError::Oversized(_)
            | FetchError::Stalled(_)
            | FetchError::RelayedOnly(_)
            | FetchError::Io(_)
            | FetchError::Storage(_)
            | FetchError::Task(_)
            | FetchError::NoTips(_)
            | FetchError::NoForks(_) => None,
        }
    }
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No peer is known to hold the repository.
    #[error(
        "no holder of {0} found (it is not announced nor provided in the DHT by any reachable peer)"
    )]
    NoHolders(RepositoryId),
    /// Holders were found but none answered with the repository's refs: the sync cannot
    /// tell whether anything newer exists.
    #[error("no holder of {repository} answered with its refs: {}", list(tried))]
    NoRefs {
        /// The repository.
        repository: RepositoryId,
        /// Each holder asked and why it gave no refs.
        tried: Vec<(PeerId, String)>,
    },
    /// Holders were found but none could serve a newer snapshot.
    #[error("no holder of {repository} could serve it: {}", list(failures))]
    AllFailed {
        /// The repository.
        repository: RepositoryId,
        /// Each holder tried and why it failed.
        failures: Vec<(PeerId, FetchError)>,
    },
    /// This node's seeding policy blocks the repository, or a key that created or
    /// maintains it.
    #[error(
        "{0} is blocked by this node's seeding policy (guts policy shows it; guts unblock lifts it)"
    )]
    Blocked(RepositoryId),
    /// Local storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A task doing the sync's disk work failed.
    #[error(transparent)]
    Task(#[from] crate::store::TaskFailed),
}

impl SyncError {
    /// Whether every holder that had the snapshot was only busy: one of them, or a node
    /// that has just fetched it from them, will serve it in a moment.
    pub(crate) fn only_busy(&self) -> bool {
        matches!(self, SyncError::AllFailed { failures, .. }
            if failures.iter().all(|(_, e)| matches!(e, FetchError::Declined(PackResponse::Busy))))
    }
}

fn list(failures: &[(PeerId, impl std::fmt::Display)]) -> String {
    failures
        .iter()
        .map(|(peer, e)| format!("{peer}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use guts_protocol::wire::WireError;

    #[test]
    fn only_the_holders_faults_cost_it() {
        let bad_pack = FetchError::Storage(StorageError::BadPack("truncated".into()));
        assert_eq!(bad_pack.penalty(), Some(Penalty::BadData));
        let disk = FetchError::Storage(StorageError::Write {
            path: "/data/repos/x".into(),
            source: io::Error::other("disk full"),
        });
        assert_eq!(disk.penalty(), None);
        let oversized_header = FetchError::BadHeader(io::Error::new(
            io::ErrorKind::InvalidData,
            WireError::Oversized { len: 9, max: 1 },
        ));
        assert_eq!(oversized_header.penalty(), Some(Penalty::Oversized));
        assert_eq!(
            FetchError::Oversized(1).penalty(),
            None,
            "a repository larger than this node's limit is no holder's fault"
        );
        assert_eq!(FetchError::Stalled(Duration::from_secs(1)).penalty(), None);
        assert_eq!(
            FetchError::RelayedOnly(Duration::from_secs(1)).penalty(),
            None,
            "a holder behind NAT did nothing wrong"
        );
        assert_eq!(
            FetchError::Declined(PackResponse::Busy).penalty(),
            None,
            "a busy holder did nothing wrong"
        );
    }

    #[test]
    fn all_failed_names_every_holder() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let e = SyncError::AllFailed {
            repository: RepositoryId::from_bytes([7; 20]),
            failures: vec![
                (a, FetchError::Declined(PackResponse::Busy)),
                (b, FetchError::Oversized(10)),
            ],
        };
        assert!(!e.only_busy(), "one holder refused for another reason");
        let text = e.to_string();
        assert!(
            text.contains(&format!("{a}: the holder answered Busy")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{b}: pack larger than the 10-byte limit")),
            "{text}"
        );
    }
}
