//! Equivocation: an owner key that signed two different snapshots with the same sequence
//! (two machines sharing an identity, a restored backup). Both verify; no node can tell
//! which is right. Nodes keep what they hold, do not relay the other, and say so in the
//! log, `guts status` and `guts_equivocations_total`. The ledger also remembers the
//! newest sequence seen on the network, so the owner's node refuses to sign a sequence
//! someone has already signed with its key.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use guts_api::EquivocationReport;
use guts_protocol::RepositoryId;
use guts_protocol::refs::RefsHeader;
use libp2p::PeerId;
use prometheus_client::metrics::counter::Counter;

/// Repositories whose newest header is remembered; past it, only held ones are checked.
const MAX_REMEMBERED: usize = 100_000;
/// Equivocations kept for `guts status` (the newest).
const MAX_REPORTS: usize = 64;

/// What the node has seen of each repository's signed headers.
#[derive(Clone)]
pub(crate) struct Ledger {
    inner: Arc<Mutex<Inner>>,
    counter: Counter,
    max_remembered: usize,
    max_reports: usize,
}

#[derive(Default)]
struct Inner {
    /// The newest verified header seen per repository, from any peer.
    newest: HashMap<RepositoryId, RefsHeader>,
    reports: VecDeque<EquivocationReport>,
}

impl Ledger {
    pub(crate) fn new(counter: Counter) -> Self {
        Self::with_bounds(counter, MAX_REMEMBERED, MAX_REPORTS)
    }

    fn with_bounds(counter: Counter, max_remembered: usize, max_reports: usize) -> Self {
        Ledger {
            inner: Arc::default(),
            counter,
            max_remembered,
            max_reports,
        }
    }

    /// Records a verified header `peer` offered (in an announcement or a refs answer),
    /// beside `held`, this node's own header of the repository. Returns whether the two,
    /// or the offer and one seen earlier, have the same sequence and differ.
    pub(crate) fn observe(
        &self,
        offered: &RefsHeader,
        peer: PeerId,
        held: Option<&RefsHeader>,
    ) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = offered.repository;
        let mut conflict = held.is_some_and(|h| equivocates(h, offered));
        let full = inner.newest.len() >= self.max_remembered;
        match inner.newest.get_mut(&id) {
            Some(seen) => {
                conflict |= equivocates(seen, offered);
                if offered.sequence > seen.sequence {
                    *seen = offered.clone();
                }
            }
            None if !full || held.is_some() => {
                inner.newest.insert(id, offered.clone());
            }
            None => {}
        }
        if !conflict {
            return false;
        }
        let known = inner
            .reports
            .iter()
            .any(|r| r.repository == id.to_string() && r.sequence == offered.sequence);
        if !known {
            tracing::error!(
                repository = %id,
                sequence = offered.sequence,
                %peer,
                "equivocation: the owner of {id} signed two different snapshots with sequence {}; \
                 keeping the one this node saw first (two machines share the owner's identity, \
                 or a backup was restored)",
                offered.sequence
            );
            self.counter.inc();
            if inner.reports.len() >= self.max_reports {
                inner.reports.pop_front();
            }
            inner.reports.push_back(EquivocationReport {
                repository: id.to_string(),
                sequence: offered.sequence,
                peer: peer.to_string(),
                signer: None,
            });
        }
        true
    }

    /// Records that maintainer `signer` of `id` signed two different views with
    /// `sequence` (seen in what `peer` offered). Every node keeps the same one of the two
    /// (see [`guts_protocol::views`]), so this only tells the people involved.
    pub(crate) fn observe_view(
        &self,
        id: RepositoryId,
        signer: &ed25519_dalek::VerifyingKey,
        sequence: u64,
        peer: PeerId,
    ) {
        let signer = hex::encode(signer.as_bytes());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let known = inner.reports.iter().any(|r| {
            r.repository == id.to_string()
                && r.sequence == sequence
                && r.signer.as_deref() == Some(signer.as_str())
        });
        if known {
            return;
        }
        tracing::error!(
            repository = %id,
            sequence,
            %peer,
            "equivocation: maintainer {signer} of {id} signed two different views with sequence {sequence}; \
             every node keeps the one with the smaller digest"
        );
        self.counter.inc();
        if inner.reports.len() >= self.max_reports {
            inner.reports.pop_front();
        }
        inner.reports.push_back(EquivocationReport {
            repository: id.to_string(),
            sequence,
            peer: peer.to_string(),
            signer: Some(signer),
        });
    }

    /// The newest sequence of `id` seen on the network, if any.
    pub(crate) fn newest_seen(&self, id: &RepositoryId) -> Option<u64> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.newest.get(id).map(|h| h.sequence)
    }

    /// The equivocations found, oldest first.
    pub(crate) fn reports(&self) -> Vec<EquivocationReport> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.reports.iter().cloned().collect()
    }
}

fn equivocates(a: &RefsHeader, b: &RefsHeader) -> bool {
    a.repository == b.repository && a.sequence == b.sequence && a != b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header of repository `name` (one owner key for all).
    fn header_of(name: &str, sequence: u64, digest: u8) -> RefsHeader {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let name: guts_protocol::RepoName = name.parse().unwrap();
        RefsHeader {
            repository: RepositoryId::derive(key.verifying_key().as_bytes(), &name),
            name,
            sequence,
            head: None,
            refs_digest: [digest; 32],
        }
    }

    fn header(sequence: u64, digest: u8) -> RefsHeader {
        header_of("demo", sequence, digest)
    }

    #[test]
    fn the_same_sequence_with_other_refs_is_reported_once_and_counted() {
        let counter = Counter::default();
        let ledger = Ledger::new(counter.clone());
        let peer = PeerId::random();
        let held = header(3, 1);
        assert!(!ledger.observe(&header(4, 1), peer, Some(&held)), "newer");
        assert!(!ledger.observe(&held, peer, Some(&held)), "the same");
        assert!(!ledger.observe(&header(2, 9), peer, Some(&held)), "older");
        assert!(ledger.observe(&header(3, 2), peer, Some(&held)));
        assert!(ledger.observe(&header(3, 2), PeerId::random(), Some(&held)));
        assert_eq!(counter.get(), 1, "one equivocation, however often offered");
        let reports = ledger.reports();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].sequence, 3);
        assert_eq!(reports[0].peer, peer.to_string());
        // Two holders disagreeing about a repository this node does not hold yet.
        assert!(!ledger.observe(&header(5, 1), peer, None));
        assert!(ledger.observe(&header(5, 2), peer, None));
        assert_eq!(counter.get(), 2);
        assert_eq!(ledger.newest_seen(&held.repository), Some(5));
    }

    #[test]
    fn memory_is_bounded_but_held_repositories_are_always_checked() {
        let counter = Counter::default();
        let ledger = Ledger::with_bounds(counter.clone(), 2, 2);
        let peer = PeerId::random();
        for name in ["a", "b", "c"] {
            assert!(!ledger.observe(&header_of(name, 1, 1), peer, None));
        }
        let (a, c) = (header_of("a", 1, 1), header_of("c", 1, 1));
        assert_eq!(ledger.newest_seen(&a.repository), Some(1));
        assert_eq!(ledger.newest_seen(&c.repository), None, "past the bound");
        // A held repository is remembered even when full, and checked either way.
        assert!(!ledger.observe(&c, peer, Some(&c)));
        assert_eq!(ledger.newest_seen(&c.repository), Some(1));
        // Reports keep the newest few.
        for name in ["a", "b", "c"] {
            assert!(ledger.observe(&header_of(name, 1, 2), peer, None));
        }
        assert_eq!(counter.get(), 3);
        let kept: Vec<String> = ledger.reports().into_iter().map(|r| r.repository).collect();
        assert_eq!(
            kept,
            [
                header_of("b", 1, 1).repository.to_string(),
                c.repository.to_string()
            ]
        );
        // A newer header replaces the one remembered; an equal one changes nothing.
        assert!(!ledger.observe(&header_of("a", 2, 1), peer, None));
        assert_eq!(ledger.newest_seen(&a.repository), Some(2));
        assert!(ledger.observe(&header_of("a", 2, 9), peer, None));
    }
}
