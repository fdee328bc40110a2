//! The connection manager: which connections the node accepts, dials and keeps.
//!
//! libp2p's `connection_limits` only caps counts; per-IP limits, watermarks with trimming,
//! dial rate limiting, scores and bans are ours. This behaviour comes first in the node's
//! (`network/behaviour.rs`), so it decides before any protocol sees a connection:
//!
//! - **Allow-list** (`allow_peers`): when set, any other peer is refused as soon as its
//!   identity is known (after the Noise handshake, before any protocol runs), and never
//!   dialled.
//! - **Caps**: established connections, pending inbound, per peer; inbound connections
//!   per remote IP, counted from the pending stage (loopback and an allow-list exempt).
//! - **Watermarks**: on each heartbeat, above the high watermark the least valuable
//!   unprotected peers are disconnected down to the low watermark; below the low
//!   watermark it asks the event loop for peers to dial ([`Event::NeedPeers`]). Between
//!   the watermarks connections are kept however idle (as go-libp2p's connection manager
//!   does); only connections beyond the high watermark, awaiting the next trim, close
//!   after the idle timeout. A peer we dialled that closes on us soon after is backed
//!   off, so a node below its low watermark does not keep redialling a busy peer.
//! - **Dials** the node decides on wait in a queue released by a token bucket and a cap
//!   on dials in flight; peers that fail to connect back off exponentially. Dials other
//!   behaviours make (Kademlia queries) count toward the cap and are refused beyond it.
//! - **Scores**: components report [`Penalty`]s; at the threshold the peer is disconnected
//!   and banned for a while. Scores decay; a per-peer, per-protocol token bucket turns
//!   request floods into penalties.

mod dial_queue;
mod handler;
pub(crate) mod inbound_ips;
mod network_behaviour;
mod scores;
pub mod settings;
mod trim;

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::task::Waker;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::core::Multiaddr;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{CloseConnection, ConnectionDenied, ConnectionId, NotifyHandler, ToSwarm};

use crate::metrics::{Direction, ManagerMetrics, Reason};
use dial_queue::DialQueue;
use handler::Handler;
use inbound_ips::InboundIps;
pub(crate) use inbound_ips::{ip_group, ip_of};
pub use scores::Penalty;
use scores::Scores;
pub use settings::Limits;
use trim::Candidate;

/// Why a peer is protected (kept connected, never trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protection {
    /// It is on the bootstrap list.
    Bootstrap,
    /// A user asked for it (`guts connect`).
    Explicit,
    /// A transfer from it is under way.
    Syncing,
}

/// Every reason a connection may be refused, as metric labels.
pub const DENIAL_REASONS: [&str; 7] = [
    "not_allowed",
    "per_ip",
    "max_connections",
    "max_pending_inbound",
    "max_per_peer",
    "banned",
    "dial_concurrency",
];

/// What the manager tells the event loop.
#[derive(Debug)]
pub enum Event {
    /// Fewer peers than the low watermark: dial up to this many more.
    NeedPeers(usize),
    /// A dial from [`Behaviour::dial`] failed, possibly before it started.
    DialFailed {
        id: ConnectionId,
        peer: Option<PeerId>,
        error: String,
        /// The dial was skipped because the peer is already connected.
        already_connected: bool,
    },
    /// A peer was banned after this penalty.
    Banned {
        peer: PeerId,
        penalty: Penalty,
        ban: Duration,
    },
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Denied {
    /// Metric label of the reason.
    pub reason: &'static str,
    /// The limit and the value that hit it.
    pub detail: String,
}

struct Connection {
    inbound: bool,
    keep_alive: bool,
    since: Instant,
}

/// A connection we dialled that the peer closes sooner than this tells us it does not
/// want us; we back off from it.
const UNWANTED_WITHIN: Duration = Duration::from_secs(120);

struct Connected {
    connections: HashMap<ConnectionId, Connection>,
    since: Instant,
    /// Trimmed, its connections closing: no longer counted, so a heartbeat that comes
    /// before the swarm has closed them does not trim (and count) it again.
    closing: bool,
}

/// Counts for `guts status`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub inbound: usize,
    pub outbound: usize,
    pub pending_inbound: usize,
    pub dials_in_flight: usize,
    pub dials_in_flight_peak: usize,
    pub dials_queued: usize,
    pub banned_peers: usize,
}

/// The connection manager behaviour.
pub struct Behaviour {
    limits: Limits,
    /// `Some`: only these peers may connect.
    allowed: Option<HashSet<PeerId>>,
    metrics: ManagerMetrics,
    connected: HashMap<PeerId, Connected>,
    pending_inbound: HashSet<ConnectionId>,
    inbound_ips: InboundIps,
    dials: DialQueue,
    scores: Scores,
    protected: HashMap<PeerId, HashSet<Protection>>,
    last_useful: HashMap<PeerId, Instant>,
    heartbeat: tokio::time::Interval,
    dial_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    events: VecDeque<ToSwarm<Event, bool>>,
    waker: Option<Waker>,
}

impl Behaviour {
    /// Must be called within a tokio runtime (the heartbeat is a tokio timer).
    pub fn new(limits: &Limits, allowed: Option<HashSet<PeerId>>, metrics: ManagerMetrics) -> Self {
        // Every label value starts at 0, so each series is exported before its first event.
        for direction in ["inbound", "outbound"] {
            let _ = metrics.connections.get_or_create(&Direction { direction });
        }
        for reason in DENIAL_REASONS {
            let _ = metrics.denied.get_or_create(&Reason { reason });
        }
        for penalty in Penalty::ALL {
            let _ = metrics.penalties.get_or_create(&Reason {
                reason: penalty.label(),
            });
        }
        let mut heartbeat = tokio::time::interval(limits.trim_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Behaviour {
            allowed,
            metrics,
            connected: HashMap::new(),
            pending_inbound: HashSet::new(),
            inbound_ips: InboundIps::new(limits.per_ip_allow.clone(), limits.ipv6_prefix),
            dials: DialQueue::new(limits.dials_per_second, limits.max_concurrent_dials),
            scores: Scores::new(
                limits.ban_threshold,
                limits.ban_duration,
                limits.score_half_life,
                limits.requests_per_second_per_peer,
            ),
            protected: HashMap::new(),
            last_useful: HashMap::new(),
            heartbeat,
            dial_timer: None,
            events: VecDeque::new(),
            waker: None,
            limits: limits.clone(),
        }
    }

    /// Protects `peer` for `why`: never trimmed, always kept alive, until every reason
    /// is withdrawn.
    pub fn protect(&mut self, peer: PeerId, why: Protection) {
        let reasons = self.protected.entry(peer).or_default();
        let was = !reasons.is_empty();
        reasons.insert(why);
        if !was {
            self.set_keep_alive(&peer, true);
        }
    }

    /// Withdraws one reason to protect `peer`.
    pub fn unprotect(&mut self, peer: &PeerId, why: Protection) {
        if let Some(reasons) = self.protected.get_mut(peer) {
            reasons.remove(&why);
            if reasons.is_empty() {
                self.protected.remove(peer);
                self.set_keep_alive(peer, false);
            }
        }
    }

    /// Withdraws every reason to protect `peer`.
    pub fn unprotect_all(&mut self, peer: &PeerId) {
        if self.protected.remove(peer).is_some() {
            self.set_keep_alive(peer, false);
        }
    }

    /// Whether `peer` is protected.
    pub fn is_protected(&self, peer: &PeerId) -> bool {
        self.protected.contains_key(peer)
    }

    /// Whether `peer` has an established connection.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.connected.contains_key(peer)
    }

    /// Number of connected peers (what the watermarks count).
    pub fn connected_peers(&self) -> usize {
        self.connected.len()
    }

    /// Queues a dial; it starts when the rate limit and the cap on dials in flight allow.
    /// Its failure, if any, comes back as [`Event::DialFailed`] with the returned id.
    pub fn dial(&mut self, opts: DialOpts) -> ConnectionId {
        let id = self.dials.push(opts);
        self.metrics.dials_queued.set(self.dials.queued() as i64);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        id
    }

    /// Queues dials to up to `n` of `candidates`, skipping peers connected, queued,
    /// banned or backing off, and preferring those that failed least (so peers that went
    /// away are not tried ahead of live ones).
    pub fn dial_candidates(&mut self, mut candidates: Vec<(PeerId, Vec<Multiaddr>)>, n: usize) {
        candidates.retain(|(peer, addrs)| {
            !addrs.is_empty()
                && self.is_allowed(peer)
                && !self.connected.contains_key(peer)
                && !self.dials.is_queued(peer)
                && !self.dials.in_backoff(peer)
                && !self.scores.is_banned(peer)
        });
        candidates.sort_by_key(|(peer, _)| self.dials.failures(peer));
        for (peer, addrs) in candidates.into_iter().take(n) {
            self.dial(
                DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            );
        }
    }

    /// Lowers `peer`'s score; bans and disconnects it at the threshold.
    pub fn penalize(&mut self, peer: PeerId, penalty: Penalty) {
        self.metrics
            .penalties
            .get_or_create(&Reason {
                reason: penalty.label(),
            })
            .inc();
        if let Some(until) = self.scores.penalize(peer, penalty) {
            self.metrics.bans.inc();
            self.metrics.banned.set(self.scores.banned_count() as i64);
            for id in self.dials.remove_peer(&peer) {
                self.events
                    .push_back(ToSwarm::GenerateEvent(Event::DialFailed {
                        id,
                        peer: Some(peer),
                        error: "the peer is banned".into(),
                        already_connected: false,
                    }));
            }
            self.events.push_back(ToSwarm::CloseConnection {
                peer_id: peer,
                connection: CloseConnection::All,
            });
            self.events.push_back(ToSwarm::GenerateEvent(Event::Banned {
                peer,
                penalty,
                ban: until.saturating_duration_since(Instant::now()),
            }));
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    /// Whether `peer` may make another request on `protocol` now. A request over the
    /// per-peer rate costs the peer a [`Penalty::RateLimited`].
    pub fn allow_request(&mut self, peer: PeerId, protocol: &'static str) -> bool {
        let ok = self.scores.allow_request(peer, protocol);
        if !ok {
            self.penalize(peer, Penalty::RateLimited);
        }
        ok
    }

    /// Whether `peer` is within its rate under `key`, without a penalty when it is not
    /// (for traffic an honest peer may burst, such as relayed announcements).
    pub fn within_rate(&mut self, peer: PeerId, key: &'static str) -> bool {
        self.scores.allow_request(peer, key)
    }

    /// `peer` just did something useful for us (served a request, relayed news).
    pub fn record_useful(&mut self, peer: PeerId) {
        self.last_useful.insert(peer, Instant::now());
    }

    /// `peer`'s score: 0 when well behaved, negative after penalties.
    pub fn score(&self, peer: &PeerId) -> f64 {
        self.scores.score(peer)
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Current counts.
    pub fn counts(&self) -> Counts {
        let (mut inbound, mut outbound) = (0, 0);
        for c in self.connected.values().flat_map(|p| p.connections.values()) {
            if c.inbound {
                inbound += 1;
            } else {
                outbound += 1;
            }
        }
        Counts {
            inbound,
            outbound,
            pending_inbound: self.pending_inbound.len(),
            dials_in_flight: self.dials.in_flight(),
            dials_in_flight_peak: self.dials.peak_in_flight,
            dials_queued: self.dials.queued(),
            banned_peers: self.scores.banned_count(),
        }
    }

    fn total_connections(&self) -> usize {
        self.connected.values().map(|p| p.connections.len()).sum()
    }

    fn deny(&self, reason: &'static str, detail: String) -> ConnectionDenied {
        self.metrics.denied.get_or_create(&Reason { reason }).inc();
        tracing::debug!("connection denied: {reason}: {detail}");
        ConnectionDenied::new(Denied { reason, detail })
    }

    /// How many peers the allow-list admits (`None`: no allow-list).
    pub fn allowed_count(&self) -> Option<usize> {
        self.allowed.as_ref().map(HashSet::len)
    }

    /// Whether the allow-list (if any) admits `peer`.
    pub fn is_allowed(&self, peer: &PeerId) -> bool {
        self.allowed.as_ref().is_none_or(|a| a.contains(peer))
    }

    fn check_allowed(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        if self.is_allowed(peer) {
            Ok(())
        } else {
            Err(self.deny(
                "not_allowed",
                format!("peer {peer} is not on this node's allow-list"),
            ))
        }
    }

    /// Checks that apply to every established connection, both directions.
    fn check_established(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        self.check_allowed(peer)?;
        if self.scores.is_banned(peer) {
            return Err(self.deny("banned", format!("peer {peer} is banned")));
        }
        let total = self.total_connections();
        if total >= self.limits.max_connections as usize {
            return Err(self.deny(
                "max_connections",
                format!(
                    "{total} connections open, max_connections is {}",
                    self.limits.max_connections as usize
                ),
            ));
        }
        let to_peer = self.connected.get(peer).map_or(0, |p| p.connections.len());
        if to_peer >= self.limits.max_connections_per_peer as usize {
            return Err(self.deny(
                "max_per_peer",
                format!(
                    "{to_peer} connections to {peer}, max_connections_per_peer is {}",
                    self.limits.max_connections_per_peer as usize
                ),
            ));
        }
        Ok(())
    }

    /// Whether a new connection to `peer` is kept alive: its peer is protected or the
    /// node is not above the high watermark. The heartbeat revisits this.
    fn wanted_on_arrival(&self, peer: &PeerId) -> bool {
        self.is_protected(peer) || self.connected.len() < self.limits.high_watermark as usize
    }

    fn handler_for(&self, peer: &PeerId) -> Handler {
        Handler::new(self.wanted_on_arrival(peer))
    }

    fn set_keep_alive(&mut self, peer: &PeerId, keep_alive: bool) {
        let Some(p) = self.connected.get_mut(peer) else {
            return;
        };
        for (id, c) in &mut p.connections {
            if c.keep_alive != keep_alive {
                c.keep_alive = keep_alive;
                self.events.push_back(ToSwarm::NotifyHandler {
                    peer_id: *peer,
                    handler: NotifyHandler::One(*id),
                    event: keep_alive,
                });
            }
        }
    }

    /// Trimming above the high watermark, keep-alive for the best peers, asking for
    /// peers below the low watermark, decay.
    fn heartbeat(&mut self) {
        let now = Instant::now();
        for peer in self.scores.heartbeat() {
            tracing::info!(%peer, "ban ended");
        }
        self.dials.prune();
        self.last_useful.retain(|peer, at| {
            self.connected.contains_key(peer) || now.duration_since(*at) < Duration::from_secs(3600)
        });

        let mut candidates: Vec<Candidate> = self
            .connected
            .iter()
            .filter(|(_, c)| !c.closing)
            .map(|(peer, c)| Candidate {
                peer: *peer,
                protected: self.is_protected(peer),
                score: self.scores.score(peer),
                last_useful: self.last_useful.get(peer).copied(),
                connected_since: c.since,
            })
            .collect();
        if candidates.len() > self.limits.high_watermark as usize {
            let grace_until = now
                .checked_sub(self.limits.trim_grace_period)
                .unwrap_or(now);
            let trimmed = trim::to_trim(
                candidates.clone(),
                self.limits.low_watermark as usize,
                grace_until,
            );
            tracing::info!(
                peers = candidates.len(),
                high_watermark = self.limits.high_watermark as usize,
                low_watermark = self.limits.low_watermark as usize,
                "above the high watermark: trimming {} peers",
                trimmed.len()
            );
            for peer in &trimmed {
                self.metrics.trimmed.inc();
                if let Some(c) = self.connected.get_mut(peer) {
                    c.closing = true;
                }
                self.events.push_back(ToSwarm::CloseConnection {
                    peer_id: *peer,
                    connection: CloseConnection::All,
                });
            }
            candidates.retain(|c| !trimmed.contains(&c.peer));
        }

        trim::rank(&mut candidates);
        for (i, c) in candidates.iter().enumerate() {
            let wanted = c.protected || i < self.limits.high_watermark as usize;
            self.set_keep_alive(&c.peer, wanted);
        }

        let coming = candidates.len() + self.dials.in_flight() + self.dials.queued();
        if coming < self.limits.low_watermark as usize {
            self.events
                .push_back(ToSwarm::GenerateEvent(Event::NeedPeers(
                    self.limits.low_watermark as usize - coming,
                )));
        }
        self.metrics.banned.set(self.scores.banned_count() as i64);
    }

    fn update_gauges(&self) {
        let counts = self.counts();
        self.metrics
            .connections
            .get_or_create(&crate::metrics::Direction {
                direction: "inbound",
            })
            .set(counts.inbound as i64);
        self.metrics
            .connections
            .get_or_create(&crate::metrics::Direction {
                direction: "outbound",
            })
            .set(counts.outbound as i64);
        self.metrics.dials_queued.set(counts.dials_queued as i64);
        self.metrics
            .dials_in_flight
            .set(counts.dials_in_flight as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::core::transport::PortUse;
    use libp2p::core::{ConnectedPoint, Endpoint};
    use libp2p::swarm::behaviour::ConnectionEstablished;
    use libp2p::swarm::{FromSwarm, NetworkBehaviour};

    fn manager(low: u32) -> Behaviour {
        let limits = Limits {
            low_watermark: low,
            trim_interval: Duration::from_millis(10),
            ..Limits::default()
        };
        Behaviour::new(&limits, None, ManagerMetrics::default())
    }

    fn addr() -> Vec<Multiaddr> {
        vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()]
    }

    #[tokio::test]
    async fn an_allow_list_refuses_everyone_else_before_any_protocol_and_never_dials_them() {
        let friend = PeerId::random();
        let stranger = PeerId::random();
        let mut m = Behaviour::new(
            &Limits::default(),
            Some([friend].into()),
            ManagerMetrics::default(),
        );
        let local: Multiaddr = "/ip4/127.0.0.1/tcp/9000".parse().unwrap();
        let remote: Multiaddr = "/ip4/10.0.0.9/tcp/4000".parse().unwrap();
        let denied = |r: Result<Handler, ConnectionDenied>| {
            r.err()
                .and_then(|d| d.downcast::<Denied>().ok())
                .map(|d| d.reason)
        };
        let (a, b) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        m.handle_pending_inbound_connection(a, &local, &remote)
            .unwrap();
        let inbound = m.handle_established_inbound_connection(a, stranger, &local, &remote);
        assert_eq!(denied(inbound), Some("not_allowed"));
        m.handle_pending_inbound_connection(b, &local, &remote)
            .unwrap();
        assert!(
            m.handle_established_inbound_connection(b, friend, &local, &remote)
                .is_ok()
        );
        let outbound = m.handle_established_outbound_connection(
            ConnectionId::new_unchecked(3),
            stranger,
            &remote,
            Endpoint::Dialer,
            PortUse::New,
        );
        assert_eq!(denied(outbound), Some("not_allowed"));
        let pending = m.handle_pending_outbound_connection(
            ConnectionId::new_unchecked(4),
            Some(stranger),
            &[],
            Endpoint::Dialer,
        );
        assert!(pending.is_err(), "a dial to a stranger does not even start");
        m.dial_candidates(vec![(stranger, addr()), (friend, addr())], 5);
        assert!(m.dials.is_queued(&friend) && !m.dials.is_queued(&stranger));
    }

    #[tokio::test]
    async fn a_heartbeat_before_trimmed_connections_close_does_not_trim_again() {
        let limits = Limits {
            low_watermark: 2,
            high_watermark: 4,
            trim_grace_period: Duration::ZERO,
            ..Limits::default()
        };
        let mut m = Behaviour::new(&limits, None, ManagerMetrics::default());
        let endpoint = ConnectedPoint::Listener {
            local_addr: "/ip4/127.0.0.1/tcp/9000".parse().unwrap(),
            send_back_addr: "/ip4/127.0.0.1/tcp/4000".parse().unwrap(),
        };
        for i in 0..6 {
            m.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id: PeerId::random(),
                connection_id: ConnectionId::new_unchecked(i),
                endpoint: &endpoint,
                failed_addresses: &[],
                other_established: 0,
            }));
        }
        let closes = |m: &Behaviour| {
            m.events
                .iter()
                .filter(|e| matches!(e, ToSwarm::CloseConnection { .. }))
                .count()
        };
        m.heartbeat();
        assert_eq!(
            closes(&m),
            4,
            "6 peers trimmed down to the low watermark of 2"
        );
        // The swarm has not closed them yet when the next heartbeat comes.
        m.heartbeat();
        assert_eq!(closes(&m), 4, "no second trim of the same or other peers");
        assert_eq!(m.metrics.trimmed.get(), 4);
    }

    #[tokio::test]
    async fn below_the_low_watermark_the_heartbeat_asks_for_peers() {
        let mut m = manager(3);
        m.heartbeat();
        let asked = m
            .events
            .iter()
            .any(|e| matches!(e, ToSwarm::GenerateEvent(Event::NeedPeers(3))));
        assert!(asked, "no NeedPeers(3) after a heartbeat with no peers");
        // Dials queued count as peers coming: no second request for them.
        m.events.clear();
        m.dial_candidates((0..3).map(|_| (PeerId::random(), addr())).collect(), 3);
        m.heartbeat();
        assert!(
            !m.events
                .iter()
                .any(|e| matches!(e, ToSwarm::GenerateEvent(Event::NeedPeers(_))))
        );
    }

    #[tokio::test]
    async fn fill_dials_skip_unusable_candidates_and_prefer_reliable_ones() {
        let mut m = manager(10);
        let (flaky, fresh, no_addr, banned, queued) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        m.dials.back_off(flaky);
        // Backoff expired, but the failure is remembered.
        m.dials.expire_backoff_for_test(&flaky);
        for _ in 0..3 {
            m.penalize(banned, Penalty::BadData);
        }
        m.dial(DialOpts::peer_id(queued).addresses(addr()).build());
        let before = m.dials.queued();
        m.dial_candidates(
            vec![
                (flaky, addr()),
                (no_addr, vec![]),
                (banned, addr()),
                (queued, addr()),
                (fresh, addr()),
            ],
            1,
        );
        assert_eq!(m.dials.queued(), before + 1, "one dial, as asked");
        assert!(
            m.dials.is_queued(&fresh),
            "the never-failed peer goes first"
        );
        assert!(!m.dials.is_queued(&flaky));
        m.dial_candidates(
            vec![(flaky, addr()), (no_addr, vec![]), (banned, addr())],
            5,
        );
        assert!(
            m.dials.is_queued(&flaky),
            "a failed peer out of backoff is still a candidate"
        );
        assert!(!m.dials.is_queued(&no_addr) && !m.dials.is_queued(&banned));
    }
}
