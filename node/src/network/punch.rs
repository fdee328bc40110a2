//! Hole punching, tried again: the bookkeeping of who is reached only through a relay, what
//! was tried, and when to try again.
//!
//! libp2p's DCUtR makes one round of at most three attempts per relayed connection and
//! then gives up for good; the side that dialled the circuit is not even told. Routers
//! that answer unsolicited packets (a TCP reset, an ICMP error, each leaving a conntrack
//! entry that makes the router pick another port) or a busy moment defeat one round that a
//! later one wins. A fresh circuit starts a fresh round, so the side that dialled the
//! circuit dials another one, with backoff, while the peer stays relayed-only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use guts_api::HolePunchReport;
use libp2p::PeerId;

/// How long a round may take before the next is due: DCUtR's three attempts, each at most
/// its 10 s timeout, usually far less.
const FIRST_RETRY: Duration = Duration::from_secs(10);
/// The longest wait between rounds. Above 30 s, so the UDP conntrack entries a rejecting
/// router left for the last round's packets have expired.
const MAX_RETRY: Duration = Duration::from_secs(240);
/// Rounds after which the pair counts as one that cannot punch (or one failed round, on
/// the side DCUtR tells): data goes through a relay that carries it, or through another
/// holder (and then no more rounds start: see `EventLoop::punch_again`).
const ROUNDS_BEFORE_FALLBACK: u32 = 2;

/// What is known of hole punching towards one peer.
#[derive(Debug, Clone)]
struct Punch {
    /// Rounds started (each relayed connection is one).
    rounds: u32,
    /// Why the last round failed, when this side was told.
    last_error: Option<String>,
    /// Whether this side was told the current round failed.
    round_failed: bool,
    /// When this side dials another circuit, if it is the side that can.
    next: Option<Instant>,
    /// The wait before the round after next.
    wait: Duration,
    /// Whether a round succeeded: a direct connection came of it.
    punched: bool,
}

/// Hole punching towards every peer reached through a relay.
#[derive(Debug, Default)]
pub(crate) struct Punches {
    peers: HashMap<PeerId, Punch>,
}

impl Punches {
    /// A relayed connection to `peer` came up and no direct one exists: a round starts
    /// (DCUtR's, on that connection). `dialled`: this side dialled the circuit, so it is
    /// the one that can start the next round.
    pub(crate) fn relayed(&mut self, peer: PeerId, dialled: bool, now: Instant) {
        let punch = self.peers.entry(peer).or_insert(Punch {
            rounds: 0,
            last_error: None,
            round_failed: false,
            next: None,
            wait: FIRST_RETRY,
            punched: false,
        });
        punch.rounds += 1;
        punch.punched = false;
        punch.round_failed = false;
        punch.next = dialled.then(|| now + punch.wait);
        punch.wait = (punch.wait * 2).min(MAX_RETRY);
    }

    /// A round towards `peer` failed, as DCUtR reported it.
    pub(crate) fn failed(&mut self, peer: &PeerId, error: String) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.last_error = Some(error);
            p.round_failed = true;
        }
    }

    /// A direct connection to `peer` came up (punched, or dialled).
    pub(crate) fn direct(&mut self, peer: &PeerId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.punched = true;
            p.next = None;
            p.wait = FIRST_RETRY;
        }
    }

    /// The fresh circuit for `peer`'s next round could not be dialled: tried again after
    /// the current wait, without counting a round.
    pub(crate) fn dial_failed(&mut self, peer: &PeerId, error: String, now: Instant) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.last_error = Some(error);
            p.next = Some(now + p.wait);
        }
    }

    /// `peer` is gone: nothing is kept of it.
    pub(crate) fn disconnected(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// The peers whose next round is due at `now`: this side dials each a fresh circuit.
    /// Each is taken off until that circuit comes up (and schedules the next).
    pub(crate) fn due(&mut self, now: Instant) -> Vec<PeerId> {
        let mut due = Vec::new();
        for (peer, p) in &mut self.peers {
            if !p.punched && p.next.is_some_and(|at| at <= now) {
                p.next = None;
                due.push(*peer);
            }
        }
        due
    }

    /// Whether enough rounds towards `peer` failed that data may take another path.
    pub(crate) fn given_up(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| !p.punched && (p.round_failed || p.rounds >= ROUNDS_BEFORE_FALLBACK))
    }

    /// What `guts peers` shows of hole punching towards `peer`.
    pub(crate) fn report(&self, peer: &PeerId, now: Instant) -> Option<HolePunchReport> {
        let p = self.peers.get(peer)?;
        Some(HolePunchReport {
            rounds: p.rounds,
            punched: p.punched,
            last_error: p.last_error.clone(),
            next_round_secs: p.next.map(|at| at.saturating_duration_since(now).as_secs()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_side_that_dialled_tries_again_with_backoff_until_a_round_succeeds() {
        let mut punches = Punches::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        punches.relayed(peer, true, t0);
        assert!(
            punches
                .due(t0 + FIRST_RETRY - Duration::from_millis(1))
                .is_empty()
        );
        assert_eq!(punches.due(t0 + FIRST_RETRY), vec![peer]);
        // Taken off until the new circuit is up.
        assert!(punches.due(t0 + MAX_RETRY * 10).is_empty());
        assert!(!punches.given_up(&peer));
        let t1 = t0 + FIRST_RETRY;
        punches.relayed(peer, true, t1);
        assert!(
            punches.given_up(&peer),
            "two rounds without a direct connection"
        );
        punches.failed(&peer, "AttemptsExceeded(3)".into());
        assert!(punches.due(t1 + FIRST_RETRY).is_empty(), "the wait doubled");
        assert_eq!(punches.due(t1 + FIRST_RETRY * 2), vec![peer]);
        let report = punches.report(&peer, t1).unwrap();
        assert_eq!(report.rounds, 2);
        assert_eq!(report.last_error.as_deref(), Some("AttemptsExceeded(3)"));
        // The waits stop growing at the longest.
        let mut at = t1;
        for _ in 0..10 {
            punches.relayed(peer, true, at);
            at += MAX_RETRY;
        }
        assert_eq!(punches.due(at), vec![peer]);
        // A direct connection ends the rounds.
        punches.relayed(peer, true, at);
        punches.direct(&peer);
        assert!(punches.due(at + MAX_RETRY * 2).is_empty());
        assert!(!punches.given_up(&peer));
        assert!(punches.report(&peer, at).unwrap().punched);
        punches.disconnected(&peer);
        assert!(punches.report(&peer, at).is_none());
    }

    #[test]
    fn the_side_that_was_dialled_waits_for_the_other() {
        let mut punches = Punches::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        punches.relayed(peer, false, t0);
        assert!(punches.due(t0 + MAX_RETRY * 2).is_empty());
        assert_eq!(punches.report(&peer, t0).unwrap().next_round_secs, None);
        // DCUtR tells this side (it started the round) when the round fails.
        assert!(!punches.given_up(&peer));
        punches.failed(&peer, "AttemptsExceeded(3)".into());
        assert!(punches.given_up(&peer));
    }
}
