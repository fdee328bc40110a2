//! Who holds which repository, and how well each has served it: the ranking that picks
//! the holder to fetch from first.

use std::collections::HashMap;
use std::sync::Mutex;

use guts_protocol::RepositoryId;
use libp2p::PeerId;

/// What we know of a peer as a holder of a repository.
#[derive(Debug, Clone, Default)]
struct Stats {
    /// Smoothed throughput of its past transfers, bytes per second.
    throughput: Option<f64>,
    failures: u32,
}

/// Weight of the newest measurement in the smoothed throughput.
const SMOOTHING: f64 = 0.3;

/// Holders kept per repository: plenty to fetch from, and a bound on what announcements
/// and provider records (any peer can send them) make the node remember. A new holder
/// past it replaces the one that served worst.
pub(crate) const MAX_HOLDERS: usize = 64;

/// Known holders of each repository (in memory: re-learnt from announcements, answers and
/// the DHT after a restart).
pub(crate) struct Holders {
    local: PeerId,
    known: Mutex<HashMap<RepositoryId, HashMap<PeerId, Stats>>>,
}

impl Holders {
    /// Holders as seen by the node `local` (which is never its own holder).
    pub(crate) fn new(local: PeerId) -> Self {
        Holders {
            local,
            known: Mutex::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<RepositoryId, HashMap<PeerId, Stats>>> {
        // The map stays consistent whatever a panicking holder of the lock was doing.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers that `peer` holds `id`.
    pub(crate) fn note(&self, id: RepositoryId, peer: PeerId) {
        if peer == self.local {
            return;
        }
        slot(self.known().entry(id).or_default(), peer);
    }

    /// Known holders of `id`.
    pub(crate) fn of(&self, id: &RepositoryId) -> Vec<PeerId> {
        self.known()
            .get(id)
            .map(|h| h.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Orders holders best first: the preferred one, then fewest failures, then fastest
    /// (unmeasured peers after measured ones of any speed).
    pub(crate) fn rank(&self, id: &RepositoryId, peers: &mut [PeerId], prefer: Option<PeerId>) {
        let known = self.known();
        let stats = known.get(id);
        peers.sort_by_key(|p| {
            let s = stats.and_then(|h| h.get(p)).cloned().unwrap_or_default();
            (
                Some(*p) != prefer,
                s.failures,
                std::cmp::Reverse(s.throughput.map(|t| t as u64).unwrap_or(0)),
            )
        });
    }

    /// Records a transfer from `peer`: its throughput, or `None` for a failure.
    pub(crate) fn record(&self, id: &RepositoryId, peer: PeerId, throughput: Option<f64>) {
        let mut known = self.known();
        let s = slot(known.entry(*id).or_default(), peer);
        match throughput {
            Some(t) => {
                s.failures = 0;
                s.throughput = Some(
                    s.throughput
                        .map_or(t, |old| (1.0 - SMOOTHING) * old + SMOOTHING * t),
                );
            }
            None => s.failures = s.failures.saturating_add(1),
        }
    }
}

/// `peer`'s stats among `holders`, made room for if it is new and the list is full.
fn slot(holders: &mut HashMap<PeerId, Stats>, peer: PeerId) -> &mut Stats {
    if holders.len() >= MAX_HOLDERS && !holders.contains_key(&peer) {
        make_room(holders);
    }
    holders.entry(peer).or_default()
}

/// Forgets the holder that served worst: most failures, then slowest (unmeasured
/// counting as slowest). Linear in at most [`MAX_HOLDERS`].
fn make_room(holders: &mut HashMap<PeerId, Stats>) {
    let worst = holders
        .iter()
        .max_by(|(_, a), (_, b)| {
            a.failures.cmp(&b.failures).then(
                b.throughput
                    .unwrap_or(0.0)
                    .total_cmp(&a.throughput.unwrap_or(0.0)),
            )
        })
        .map(|(p, _)| *p);
    if let Some(worst) = worst {
        holders.remove(&worst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepositoryId {
        RepositoryId::from_bytes([3; 20])
    }

    #[test]
    fn the_node_is_never_its_own_holder() {
        let local = PeerId::random();
        let holders = Holders::new(local);
        let other = PeerId::random();
        holders.note(repo(), local);
        holders.note(repo(), other);
        assert_eq!(holders.of(&repo()), vec![other]);
        assert!(holders.of(&RepositoryId::from_bytes([4; 20])).is_empty());
    }

    #[test]
    fn preferred_then_reliable_then_fast() {
        let holders = Holders::new(PeerId::random());
        let (slow, fast, failing, unmeasured, preferred) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        holders.record(&repo(), slow, Some(1_000.0));
        holders.record(&repo(), fast, Some(1_000_000.0));
        holders.record(&repo(), failing, Some(10_000_000.0));
        holders.record(&repo(), failing, None);
        holders.record(&repo(), preferred, None);
        holders.record(&repo(), preferred, None);
        let mut peers = vec![unmeasured, failing, slow, preferred, fast];
        holders.rank(&repo(), &mut peers, Some(preferred));
        assert_eq!(peers, vec![preferred, fast, slow, unmeasured, failing]);
    }

    #[test]
    fn a_success_clears_failures_and_smooths_throughput() {
        let holders = Holders::new(PeerId::random());
        let (a, b) = (PeerId::random(), PeerId::random());
        holders.record(&repo(), a, None);
        holders.record(&repo(), a, Some(100.0));
        holders.record(&repo(), a, Some(200.0));
        // a: no failures left, throughput 0.7*100 + 0.3*200 = 130; b: 120.
        holders.record(&repo(), b, Some(120.0));
        let mut peers = vec![b, a];
        holders.rank(&repo(), &mut peers, None);
        assert_eq!(peers, vec![a, b]);
        holders.record(&repo(), b, Some(150.0));
        // b: 0.7*120 + 0.3*150 = 129 < 130.
        let mut peers = vec![b, a];
        holders.rank(&repo(), &mut peers, None);
        assert_eq!(peers, vec![a, b]);
    }

    #[test]
    fn holders_are_capped_and_the_worst_makes_room() {
        let holders = Holders::new(PeerId::random());
        let good = PeerId::random();
        holders.record(&repo(), good, Some(1_000_000.0));
        let failing = PeerId::random();
        holders.record(&repo(), failing, None);
        for _ in 0..10 * MAX_HOLDERS {
            holders.note(repo(), PeerId::random());
        }
        let known = holders.of(&repo());
        assert_eq!(known.len(), MAX_HOLDERS);
        assert!(known.contains(&good), "a holder that served well stays");
        assert!(!known.contains(&failing), "the failing one went first");
    }
}
