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

    /// How long `peer` still waits, from now.
    fn waits(q: &DialQueue, peer: &PeerId) -> Duration {
        q.backoff[peer]
            .until
            .saturating_duration_since(Instant::now())
    }

    #[test]
    fn backoff_starts_at_one_second_and_stops_at_five_minutes() {
        let mut q = DialQueue::new(1000, 10);
        let peer = PeerId::random();
        q.back_off(peer);
        let first = waits(&q, &peer);
        assert!(
            first > Duration::from_millis(900) && first <= FIRST_BACKOFF,
            "{first:?}"
        );
        q.back_off(peer);
        assert!(waits(&q, &peer) > Duration::from_millis(1900), "doubles");
        for _ in 0..30 {
            q.back_off(peer);
        }
        let last = waits(&q, &peer);
        assert!(
            last > Duration::from_secs(299) && last <= Duration::from_secs(300),
            "{last:?}"
        );
    }

    #[test]
    fn prune_forgets_only_backoffs_long_expired() {
        let mut q = DialQueue::new(1000, 10);
        let (old, recent) = (PeerId::random(), PeerId::random());
        q.back_off(old);
        q.back_off(recent);
        let long_ago = Instant::now().checked_sub(MAX_BACKOFF + Duration::from_secs(1));
        let Some(long_ago) = long_ago else {
            return; // a clock this young cannot express it
        };
        q.backoff.get_mut(&old).unwrap().until = long_ago;
        q.prune();
        assert_eq!((q.failures(&old), q.failures(&recent)), (0, 1));
    }

    #[test]
    fn a_banned_peer_leaves_the_queue_and_others_stay() {
        let mut q = DialQueue::new(1000, 10);
        let (banned, other) = (PeerId::random(), PeerId::random());
        let ids = [
            q.push(dial(banned)),
            q.push(dial(other)),
            q.push(dial(banned)),
        ];
        assert_eq!(q.remove_peer(&banned), vec![ids[0], ids[2]]);
        assert!(!q.is_queued(&banned) && q.is_queued(&other));
        assert_eq!(q.queued(), 1);
    }

    #[test]
    fn only_dials_the_queue_released_are_its_own() {
        let mut q = DialQueue::new(1000, 3);
        assert_eq!(q.max_in_flight(), 3);
        assert_eq!(DialQueue::new(1000, 0).max_in_flight(), 1, "never zero");
        let ours = q.push(dial(PeerId::random()));
        assert!(!q.is_ours_in_flight(ours), "queued, not in flight");
        q.release().ok().unwrap();
        let theirs = ConnectionId::new_unchecked(77);
        q.started(theirs);
        assert!(q.is_ours_in_flight(ours) && !q.is_ours_in_flight(theirs));
        assert_eq!(q.in_flight(), 2);
        assert!(!q.ended(theirs, None, true));
        assert!(q.ended(ours, None, true));
        assert!(!q.is_ours_in_flight(ours));
    }

    #[test]
    fn a_rate_limited_dial_is_due_in_the_future() {
        let mut q = DialQueue::new(1, 10);
        q.push(dial(PeerId::random()));
        q.push(dial(PeerId::random()));
        assert!(q.release().is_ok());
        let before = Instant::now();
        match q.release() {
            Err(Blocked::RateLimited(at)) => assert!(at > before, "{at:?} <= {before:?}"),
            _ => panic!("the second dial in a second is not rate limited"),
        }
    }
}
