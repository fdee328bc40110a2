//! Outbound dials: a queue released by a token bucket and a cap on dials in flight, and
//! exponential backoff for peers that fail to connect.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use libp2p::PeerId;
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::DialOpts;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);

struct Backoff {
    failures: u32,
    until: Instant,
}

/// Dials the node decided on, waiting for their turn.
pub(super) struct DialQueue {
    queue: VecDeque<(Option<PeerId>, DialOpts)>,
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    max_in_flight: usize,
    /// Every outbound dial in flight, ours or another behaviour's.
    in_flight: HashSet<ConnectionId>,
    /// Dials this queue released (so their failures are reported back).
    ours: HashSet<ConnectionId>,
    backoff: HashMap<PeerId, Backoff>,
    /// Most dials ever in flight at once.
    pub peak_in_flight: usize,
}

/// Why the queue cannot release a dial now.
pub(super) enum Blocked {
    /// Nothing is waiting, or everything waiting is in backoff or over the cap: nothing
    /// to do until a dial ends or a backoff expires.
    Idle(Option<Instant>),
    /// The rate limit allows the next dial at this time.
    RateLimited(Instant),
}

impl DialQueue {
    pub fn new(per_second: u32, max_in_flight: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        DialQueue {
            queue: VecDeque::new(),
            // A burst of one second's worth: at most `per_second` dials in any second.
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(rate)),
            clock: DefaultClock::default(),
            max_in_flight: max_in_flight.max(1) as usize,
            in_flight: HashSet::new(),
            ours: HashSet::new(),
            backoff: HashMap::new(),
            peak_in_flight: 0,
        }
    }

    pub fn push(&mut self, opts: DialOpts) -> ConnectionId {
        let id = opts.connection_id();
        self.queue.push_back((opts.get_peer_id(), opts));
        id
    }

    pub fn is_queued(&self, peer: &PeerId) -> bool {
        self.queue.iter().any(|(p, _)| p.as_ref() == Some(peer))
    }

    /// Drops queued dials to `peer` (e.g. it was banned); returns their ids.
    pub fn remove_peer(&mut self, peer: &PeerId) -> Vec<ConnectionId> {
        let mut removed = Vec::new();
        self.queue.retain(|(p, opts)| {
            let keep = p.as_ref() != Some(peer);
            if !keep {
                removed.push(opts.connection_id());
            }
            keep
        });
        removed
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Whether `id` is a dial this queue released and that has not ended.
    pub fn is_ours_in_flight(&self, id: ConnectionId) -> bool {
        self.ours.contains(&id)
    }

    /// Consecutive failed dials to `peer` (0 if none, or it connected since).
    pub fn failures(&self, peer: &PeerId) -> u32 {
        self.backoff.get(peer).map_or(0, |b| b.failures)
    }

    pub fn in_backoff(&self, peer: &PeerId) -> bool {
        self.backoff
            .get(peer)
            .is_some_and(|b| b.until > Instant::now())
    }

    /// The next dial allowed now, if any.
    pub fn release(&mut self) -> Result<DialOpts, Blocked> {
        let now = Instant::now();
        if self.in_flight.len() >= self.max_in_flight {
            return Err(Blocked::Idle(None));
        }
        let ready = self.queue.iter().position(|(peer, _)| match peer {
            Some(p) => self.backoff.get(p).is_none_or(|b| b.until <= now),
            None => true,
        });
        let Some(index) = ready else {
            let next = self
                .queue
                .iter()
                .filter_map(|(p, _)| p.and_then(|p| self.backoff.get(&p)).map(|b| b.until))
                .min();
            return Err(Blocked::Idle(next));
        };
        if let Err(not_until) = self.limiter.check() {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(Blocked::RateLimited(now + wait));
        }
        let (_, opts) = self.queue.remove(index).expect("index from position");
        let id = opts.connection_id();
        self.ours.insert(id);
        self.started(id);
        Ok(opts)
    }

    /// A dial (ours or another behaviour's) is now in flight.
    pub fn started(&mut self, id: ConnectionId) {
        self.in_flight.insert(id);
        self.peak_in_flight = self.peak_in_flight.max(self.in_flight.len());
    }

    /// A dial ended. Returns whether it was one this queue released.
    pub fn ended(&mut self, id: ConnectionId, peer: Option<PeerId>, ok: bool) -> bool {
        self.in_flight.remove(&id);
        match peer {
            Some(peer) if ok => {
                self.backoff.remove(&peer);
            }
            Some(peer) => self.back_off(peer),
            None => {}
        }
        self.ours.remove(&id)
    }

    /// Delays dials to `peer`, twice as long as last time.
    pub fn back_off(&mut self, peer: PeerId) {
        let now = Instant::now();
        let b = self.backoff.entry(peer).or_insert(Backoff {
            failures: 0,
            until: now,
        });
        b.failures = b.failures.saturating_add(1);
        let delay = FIRST_BACKOFF
            .saturating_mul(1 << (b.failures - 1).min(16))
            .min(MAX_BACKOFF);
        b.until = now + delay;
    }

    #[cfg(test)]
    pub fn expire_backoff_for_test(&mut self, peer: &PeerId) {
        if let Some(b) = self.backoff.get_mut(peer) {
            b.until = Instant::now();
        }
    }

    /// Forgets backoffs that expired long ago.
    pub fn prune(&mut self) {
        let now = Instant::now();
        self.backoff.retain(|_, b| b.until + MAX_BACKOFF > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::Multiaddr;

    fn dial(peer: PeerId) -> DialOpts {
        DialOpts::peer_id(peer)
            .addresses(vec!["/ip4/127.0.0.1/tcp/1".parse::<Multiaddr>().unwrap()])
            .build()
    }

    #[test]
    fn releases_no_more_than_the_cap_in_flight() {
        let mut q = DialQueue::new(1000, 2);
        for _ in 0..5 {
            q.push(dial(PeerId::random()));
        }
        let a = q.release().ok().unwrap().connection_id();
        let _b = q.release().ok().unwrap();
        assert!(matches!(q.release(), Err(Blocked::Idle(None))));
        assert_eq!(q.in_flight(), 2);
        assert!(q.ended(a, None, true));
        assert!(q.release().is_ok());
        assert_eq!(q.peak_in_flight, 2);
        assert_eq!(q.queued(), 2);
    }

    #[test]
    fn releases_no_faster_than_the_rate() {
        let mut q = DialQueue::new(3, 100);
        for _ in 0..10 {
            q.push(dial(PeerId::random()));
        }
        let mut released = 0;
        while q.release().is_ok() {
            released += 1;
        }
        assert_eq!(released, 3, "one second's burst");
        assert!(matches!(q.release(), Err(Blocked::RateLimited(_))));
    }

    #[test]
    fn failing_peers_back_off_exponentially() {
        let mut q = DialQueue::new(1000, 10);
        let peer = PeerId::random();
        let id = q.push(dial(peer));
        assert_eq!(q.release().ok().unwrap().connection_id(), id);
        q.ended(id, Some(peer), false);
        assert!(q.in_backoff(&peer));
        let first = q.backoff[&peer].until;
        q.push(dial(peer));
        assert!(
            matches!(q.release(), Err(Blocked::Idle(Some(_)))),
            "waits out the backoff"
        );
        q.ended(ConnectionId::new_unchecked(999), Some(peer), false);
        assert!(
            q.backoff[&peer].until > first,
            "second failure waits longer"
        );
        q.ended(ConnectionId::new_unchecked(998), Some(peer), true);
        assert!(!q.in_backoff(&peer));
    }
}
