//! Peers that turned our requests away as over their rate, left alone for a while.
//!
//! A peer answers `RateLimited` past its per-peer request rate and counts each such
//! request against the asker's score: a node that kept asking (sync retries of many
//! repositories at once) was banned for an hour by an honest peer. Requests to a peer
//! in its pause are answered `RateLimited` here, without crossing the wire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// The first pause after a peer says it is busy.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause: it doubles while the peer stays busy.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// Peers remembered before those whose pause is long over are dropped.
const REMEMBERED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Pause {
    until: Instant,
    length: Duration,
}

/// Which peers are paused, and for how long each pause lasts.
#[derive(Debug, Default)]
pub(crate) struct BusyPeers {
    peers: HashMap<PeerId, Pause>,
}

impl BusyPeers {
    /// Whether `peer` is in a pause at `now`.
    pub(crate) fn paused(&self, peer: &PeerId, now: Instant) -> bool {
        self.peers.get(peer).is_some_and(|p| now < p.until)
    }

    /// `peer` answered `RateLimited` at `now`. Answers to requests sent before the pause
    /// began change nothing; busy again soon after a pause, the next is twice as long.
    pub(crate) fn limited(&mut self, peer: PeerId, now: Instant) {
        if self.peers.len() >= REMEMBERED {
            self.peers.retain(|_, p| now < p.until + p.length * 2);
        }
        let length = match self.peers.get(&peer) {
            Some(p) if now < p.until => return,
            Some(p) if now < p.until + p.length * 2 => (p.length * 2).min(MAX_PAUSE),
            _ => FIRST_PAUSE,
        };
        self.peers.insert(
            peer,
            Pause {
                until: now + length,
                length,
            },
        );
    }

    /// `peer` answered something else: its pauses start over.
    pub(crate) fn answered(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_while_a_peer_stays_busy_and_end_when_it_answers() {
        let mut busy = BusyPeers::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert!(!busy.paused(&peer, t0));
        busy.limited(peer, t0);
        assert!(busy.paused(&peer, t0 + Duration::from_millis(999)));
        assert!(!busy.paused(&peer, t0 + FIRST_PAUSE));
        // Answers to requests already in flight do not lengthen the pause.
        busy.limited(peer, t0 + Duration::from_millis(500));
        assert!(!busy.paused(&peer, t0 + FIRST_PAUSE));
        // Busy again right after: 2 s, then 4 s, up to the cap.
        let t1 = t0 + FIRST_PAUSE;
        busy.limited(peer, t1);
        assert!(busy.paused(&peer, t1 + Duration::from_millis(1999)));
        assert!(!busy.paused(&peer, t1 + Duration::from_secs(2)));
        let mut at = t1 + Duration::from_secs(2);
        for _ in 0..10 {
            busy.limited(peer, at);
            at += busy.peers[&peer].length;
        }
        assert_eq!(busy.peers[&peer].length, MAX_PAUSE);
        // Long after, a busy answer starts over at the first pause.
        let later = at + MAX_PAUSE * 3;
        busy.limited(peer, later);
        assert_eq!(busy.peers[&peer].length, FIRST_PAUSE);
        busy.answered(&peer);
        assert!(!busy.paused(&peer, later));
    }

    #[test]
    fn the_remembered_peers_are_bounded() {
        let mut busy = BusyPeers::default();
        let t0 = Instant::now();
        for _ in 0..REMEMBERED {
            busy.limited(PeerId::random(), t0);
        }
        busy.limited(PeerId::random(), t0 + MAX_PAUSE);
        assert_eq!(busy.peers.len(), 1);
    }
}
