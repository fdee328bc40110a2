//! Peer scores: penalties fall on misbehaving peers and fade with time; a peer whose score
//! reaches the ban threshold is banned for a while.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::DefaultClock;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use libp2p::PeerId;

/// Something a peer did wrong. Components report these through
/// [`super::Behaviour::penalize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Penalty {
    /// It sent more requests than its per-protocol rate allows.
    RateLimited,
    /// It sent a message that does not decode.
    Undecodable,
    /// It sent a message over the size limit.
    Oversized,
    /// It broke a protocol's rules (wrong message, wrong order).
    ProtocolViolation,
    /// It relayed an announcement that does not verify.
    InvalidAnnouncement,
    /// It served data that fails verification (a bad pack, a bad signature).
    BadData,
    /// It served a snapshot older than one we hold: a rollback attempt, or a peer far
    /// behind. Light, so an honest laggard recovers as scores decay.
    Stale,
    /// It moved a transfer slower than the minimum rate (a trickle that holds a slot).
    /// Light too: a slow link is no crime, but it falls behind faster holders.
    TooSlow,
}

impl Penalty {
    /// Every penalty, for reports.
    pub const ALL: [Penalty; 8] = [
        Penalty::RateLimited,
        Penalty::Undecodable,
        Penalty::Oversized,
        Penalty::ProtocolViolation,
        Penalty::InvalidAnnouncement,
        Penalty::BadData,
        Penalty::Stale,
        Penalty::TooSlow,
    ];

    /// How much the score falls.
    pub fn weight(self) -> f64 {
        match self {
            Penalty::RateLimited => 5.0,
            Penalty::Undecodable => 20.0,
            Penalty::Oversized => 40.0,
            Penalty::ProtocolViolation => 50.0,
            Penalty::InvalidAnnouncement => 25.0,
            Penalty::BadData => 100.0,
            Penalty::Stale => 5.0,
            Penalty::TooSlow => 5.0,
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Penalty::RateLimited => "rate_limited",
            Penalty::Undecodable => "undecodable",
            Penalty::Oversized => "oversized",
            Penalty::ProtocolViolation => "protocol_violation",
            Penalty::InvalidAnnouncement => "invalid_announcement",
            Penalty::BadData => "bad_data",
            Penalty::Stale => "stale",
            Penalty::TooSlow => "too_slow",
        }
    }
}

struct Score {
    value: f64,
    updated: Instant,
}

type RequestLimiter =
    RateLimiter<(PeerId, &'static str), HashMapStateStore<(PeerId, &'static str)>, DefaultClock>;

pub(super) struct Scores {
    scores: HashMap<PeerId, Score>,
    bans: HashMap<PeerId, Instant>,
    requests: RequestLimiter,
    threshold: f64,
    ban_duration: Duration,
    half_life: Duration,
}

impl Scores {
    pub fn new(
        threshold: f64,
        ban_duration: Duration,
        half_life: Duration,
        requests_per_second: u32,
    ) -> Self {
        let rate = NonZeroU32::new(requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 > 0"));
        Scores {
            scores: HashMap::new(),
            bans: HashMap::new(),
            requests: RateLimiter::hashmap(Quota::per_second(rate).allow_burst(burst)),
            threshold,
            ban_duration,
            half_life,
        }
    }

    /// The peer's current score (0 for a peer never penalized).
    pub fn score(&self, peer: &PeerId) -> f64 {
        self.scores
            .get(peer)
            .map(|s| decayed(s.value, s.updated.elapsed(), self.half_life))
            .unwrap_or(0.0)
    }

    /// Lowers the score; returns when the ban ends if this penalty bans the peer.
    pub fn penalize(&mut self, peer: PeerId, penalty: Penalty) -> Option<Instant> {
        if self.is_banned(&peer) {
            return None;
        }
        let now = Instant::now();
        let value = self.score(&peer) - penalty.weight();
        if value <= self.threshold {
            // A ban wipes the slate: the peer starts from zero when it ends.
            self.scores.remove(&peer);
            let until = now + self.ban_duration;
            self.bans.insert(peer, until);
            return Some(until);
        }
        self.scores.insert(
            peer,
            Score {
                value,
                updated: now,
            },
        );
        None
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.bans
            .get(peer)
            .is_some_and(|until| *until > Instant::now())
    }

    pub fn banned_count(&self) -> usize {
        let now = Instant::now();
        self.bans.values().filter(|until| **until > now).count()
    }

    /// Whether `peer` may make one more request on `protocol` now.
    pub fn allow_request(&self, peer: PeerId, protocol: &'static str) -> bool {
        self.requests.check_key(&(peer, protocol)).is_ok()
    }

    /// Applies decay, ends expired bans and forgets what no longer matters. Returns the
    /// peers whose ban ended.
    pub fn heartbeat(&mut self) -> Vec<PeerId> {
        let now = Instant::now();
        let half_life = self.half_life;
        self.scores.retain(|_, s| {
            s.value = decayed(s.value, now.duration_since(s.updated), half_life);
            s.updated = now;
            s.value.abs() >= 0.5
        });
        let mut ended = Vec::new();
        self.bans.retain(|peer, until| {
            let active = *until > now;
            if !active {
                ended.push(*peer);
            }
            active
        });
        self.requests.retain_recent();
        ended
    }
}

fn decayed(value: f64, age: Duration, half_life: Duration) -> f64 {
    value * 0.5f64.powf(age.as_secs_f64() / half_life.as_secs_f64().max(f64::EPSILON))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The penalty table of docs/configuration.md is what operators tune their ban
    /// threshold by: every penalty is in it, under its metric label, with the weight the
    /// code applies.
    #[test]
    fn the_docs_list_every_penalty_with_its_weight() {
        let readme = include_str!("../../../docs/configuration.md");
        let table: HashMap<&str, f64> = readme
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.trim().split('|').map(str::trim).collect();
                let label = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let score: f64 = cells.get(2)?.strip_prefix('-')?.parse().ok()?;
                Penalty::ALL
                    .iter()
                    .any(|p| p.label() == label)
                    .then_some((label, score))
            })
            .collect();
        for penalty in Penalty::ALL {
            assert_eq!(
                table.get(penalty.label()),
                Some(&penalty.weight()),
                "docs/configuration.md's weight for {}",
                penalty.label()
            );
        }
        assert_eq!(table.len(), Penalty::ALL.len());
    }

    #[test]
    fn penalties_add_up_to_a_ban_that_resets_the_score() {
        // Two protocol violations (-50 each, a hair of decay between them) cross -99.
        let mut s = Scores::new(-99.0, Duration::from_secs(60), Duration::from_secs(600), 10);
        let peer = PeerId::random();
        assert_eq!(s.penalize(peer, Penalty::ProtocolViolation), None);
        assert!(s.score(&peer) < -49.0);
        assert!(s.penalize(peer, Penalty::ProtocolViolation).is_some());
        assert!(s.is_banned(&peer));
        assert_eq!(s.score(&peer), 0.0);
        assert_eq!(s.penalize(peer, Penalty::BadData), None, "no double ban");
        assert_eq!(s.banned_count(), 1);
    }

    #[test]
    fn the_heartbeat_ends_only_expired_bans_and_keeps_live_scores() {
        let long = Duration::from_secs(3600);
        let mut s = Scores::new(-99.0, long, long, 10);
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        assert_eq!(s.banned_count(), 0);
        assert!(s.penalize(a, Penalty::BadData).is_some());
        assert!(s.penalize(b, Penalty::BadData).is_some());
        assert_eq!(s.penalize(c, Penalty::Stale), None);
        assert_eq!(s.banned_count(), 2);
        // Nothing has expired: no ban ends, and a small live score is kept.
        assert!(s.heartbeat().is_empty());
        assert!(s.is_banned(&a) && s.is_banned(&b));
        assert_eq!(s.banned_count(), 2);
        assert!((s.score(&c) + 5.0).abs() < 0.01, "{}", s.score(&c));

        // A ban of no length is over at once: the heartbeat names the peer, and it starts
        // again from a clean score.
        let mut s = Scores::new(-99.0, Duration::ZERO, long, 10);
        assert!(s.penalize(a, Penalty::BadData).is_some());
        assert!(!s.is_banned(&a));
        assert_eq!(s.banned_count(), 0);
        assert_eq!(s.heartbeat(), vec![a]);
        assert!(s.heartbeat().is_empty(), "named once");
        assert_eq!(s.penalize(a, Penalty::Stale), None);
        assert!((s.score(&a) + 5.0).abs() < 0.01);
    }

    #[test]
    fn every_penalty_has_its_own_metric_label() {
        let labels: std::collections::HashSet<_> = Penalty::ALL.iter().map(|p| p.label()).collect();
        assert_eq!(labels.len(), Penalty::ALL.len(), "{labels:?}");
        for label in labels {
            assert!(
                !label.is_empty() && label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label:?} is no Prometheus label value of ours"
            );
        }
    }

    #[test]
    fn scores_decay_by_half_life() {
        assert!(
            (decayed(-100.0, Duration::from_secs(600), Duration::from_secs(600)) + 50.0).abs()
                < 1e-9
        );
        assert!((decayed(-100.0, Duration::ZERO, Duration::from_secs(600)) + 100.0).abs() < 1e-9);
    }

    #[test]
    fn request_rate_is_per_peer_and_protocol() {
        let s = Scores::new(-100.0, Duration::from_secs(60), Duration::from_secs(600), 2);
        let (a, b) = (PeerId::random(), PeerId::random());
        let allowed = (0..10).filter(|_| s.allow_request(a, "kad")).count();
        assert_eq!(allowed, 4, "burst of twice the rate");
        assert!(
            s.allow_request(a, "sync"),
            "another protocol has its own budget"
        );
        assert!(s.allow_request(b, "kad"), "another peer has its own budget");
    }
}
