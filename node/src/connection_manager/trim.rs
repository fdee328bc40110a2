//! Which peers to keep when there are too many: protected peers first, then by score,
//! then by how recently they were useful, then by age.

use std::cmp::Ordering;
use std::time::Instant;

use libp2p::PeerId;

/// What the manager knows of a connected peer when ranking it.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub peer: PeerId,
    pub protected: bool,
    pub score: f64,
    pub last_useful: Option<Instant>,
    pub connected_since: Instant,
}

/// Most valuable first.
pub(super) fn rank(peers: &mut [Candidate]) {
    peers.sort_by(|a, b| {
        b.protected
            .cmp(&a.protected)
            .then(b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal))
            // Some(recent) > Some(old) > None
            .then(b.last_useful.cmp(&a.last_useful))
            .then(a.connected_since.cmp(&b.connected_since))
    });
}

/// Peers to disconnect to bring `peers` down to `keep`, never a protected one nor one
/// younger than `grace_until` (connected after it).
pub(super) fn to_trim(mut peers: Vec<Candidate>, keep: usize, grace_until: Instant) -> Vec<PeerId> {
    rank(&mut peers);
    let excess = peers.len().saturating_sub(keep);
    peers
        .iter()
        .rev()
        .filter(|c| !c.protected && c.connected_since <= grace_until)
        .take(excess)
        .map(|c| c.peer)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cand(
        protected: bool,
        score: f64,
        useful_ago: Option<u64>,
        age: u64,
        now: Instant,
    ) -> Candidate {
        Candidate {
            peer: PeerId::random(),
            protected,
            score,
            last_useful: useful_ago.map(|s| now - Duration::from_secs(s)),
            connected_since: now - Duration::from_secs(age),
        }
    }

    #[test]
    fn keeps_protected_then_best_scored_then_useful_then_old() {
        let now = Instant::now();
        let protected = cand(true, -90.0, None, 100, now);
        let penalized = cand(false, -30.0, Some(1), 1000, now);
        let useful = cand(false, 0.0, Some(5), 100, now);
        let idle_old = cand(false, 0.0, None, 500, now);
        let idle_young = cand(false, 0.0, None, 200, now);
        let all = vec![
            penalized.clone(),
            idle_young.clone(),
            protected.clone(),
            useful.clone(),
            idle_old.clone(),
        ];
        let trimmed = to_trim(all.clone(), 2, now);
        assert_eq!(
            trimmed,
            vec![penalized.peer, idle_young.peer, idle_old.peer]
        );
        let trimmed = to_trim(all, 0, now);
        assert!(!trimmed.contains(&protected.peer));
        assert_eq!(trimmed.len(), 4);
    }

    #[test]
    fn young_connections_are_spared() {
        let now = Instant::now();
        let young = cand(false, 0.0, None, 1, now);
        let old = cand(false, 0.0, None, 100, now);
        let trimmed = to_trim(
            vec![young.clone(), old.clone()],
            0,
            now - Duration::from_secs(10),
        );
        assert_eq!(trimmed, vec![old.peer]);
    }
}
