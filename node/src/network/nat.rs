//! Reachability from outside: what AutoNAT (v2) found about this node's addresses, and the
//! relay reservations that make a node behind NAT reachable anyway.
//!
//! libp2p confirms addresses (AutoNAT), keeps circuits (relay client) and upgrades relayed
//! connections (DCUtR); this module is the bookkeeping none of them does: whether the node
//! is public or private, which relays to reserve a slot on, and asking again, with backoff,
//! when a reservation fails or ends, instead of giving up (or ending the node).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use guts_api::ReservationReport;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Relays a private node reserves a slot on when it chooses them itself: two, so one relay
/// going away does not leave the node unreachable.
pub(crate) const AUTO_RELAYS: usize = 2;

/// Where reservations are carried out: the swarm's listeners.
pub(crate) trait Listeners {
    /// Starts listening on `addr` (through a relay).
    fn listen(&mut self, addr: &Multiaddr) -> Result<ListenerId, String>;
    /// Stops a listener.
    fn stop(&mut self, id: ListenerId);
}

/// Whether others can dial this node directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reachability {
    /// Nothing tested yet (no AutoNAT server in reach).
    Unknown,
    /// At least one address was confirmed reachable (by AutoNAT or by hand).
    Public,
    /// Every address tested was unreachable: behind NAT or a firewall.
    Private,
}

impl std::fmt::Display for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Due(Instant),
    /// Listening through the relay: the reservation was asked for.
    Requested(ListenerId),
    /// The relay accepted: reachable through it.
    Active(ListenerId),
}

#[derive(Debug)]
struct Reservation {
    /// `<relay address>/p2p/<relay>/p2p-circuit`.
    addr: Multiaddr,
    relay: Option<PeerId>,
    /// Chosen by the node (not configured with `--listen`): dropped once the node is public.
    automatic: bool,
    state: State,
    backoff: Duration,
    last_error: Option<String>,
}

/// How the node can be reached, and its relay reservations.
#[derive(Debug)]
pub(crate) struct Nat {
    /// Addresses found reachable: by AutoNAT, or configured as external.
    reachable: HashSet<Multiaddr>,
    /// Addresses AutoNAT found unreachable.
    unreachable: HashSet<Multiaddr>,
    /// AutoNAT v1 found the node unreachable (it names no address).
    private: bool,
    /// Connected peers that offer relaying, with the address this node reached each at.
    relays: HashMap<PeerId, Multiaddr>,
    reservations: Vec<Reservation>,
    /// Whether to reserve slots on relays of the node's own choosing when private.
    auto_relay: bool,
    /// Relays whose circuits carry data (as their last reservation or circuit said).
    carrying: HashMap<PeerId, bool>,
}

/// Least a relay's circuits must allow for repositories to go through them: below, a
/// transfer would be cut off midway, costing the relay for nothing.
const CARRIES_BYTES: u64 = 64 << 20;
const CARRIES_DURATION: Duration = Duration::from_secs(600);

impl Nat {
    /// `configured`: the `--listen` addresses through relays; `external`: addresses set by
    /// hand, taken as reachable.
    pub fn new(configured: &[Multiaddr], external: &[Multiaddr], auto_relay: bool) -> Self {
        let now = Instant::now();
        Nat {
            reachable: external
                .iter()
                .filter(|a| !is_relayed(a))
                .cloned()
                .collect(),
            unreachable: HashSet::new(),
            private: false,
            relays: HashMap::new(),
            reservations: configured
                .iter()
                .map(|addr| Reservation {
                    addr: addr.clone(),
                    relay: relay_of(addr),
                    automatic: false,
                    state: State::Due(now),
                    backoff: FIRST_BACKOFF,
                    last_error: None,
                })
                .collect(),
            auto_relay,
            carrying: HashMap::new(),
        }
    }

    /// What `relay` said its circuits allow: `limit` is its bytes and duration, if it
    /// set any (libp2p reports 0 bytes for no limit).
    pub fn on_relay_limit(
        &mut self,
        relay: PeerId,
        limit: Option<(Option<u64>, Option<Duration>)>,
    ) {
        let carries = limit.is_none_or(|(bytes, duration)| {
            bytes.is_none_or(|b| b == 0 || b >= CARRIES_BYTES)
                && duration.is_none_or(|d| d >= CARRIES_DURATION)
        });
        self.carrying.insert(relay, carries);
    }

    /// Whether circuits through `relay` carry repositories.
    pub fn carries_data(&self, relay: &PeerId) -> bool {
        self.carrying.get(relay).copied().unwrap_or(false)
    }

    pub fn reachability(&self) -> Reachability {
        if !self.reachable.is_empty() {
            Reachability::Public
        } else if !self.unreachable.is_empty() || self.private {
            Reachability::Private
        } else {
            Reachability::Unknown
        }
    }

    /// An AutoNAT probe of `addr` came back.
    pub fn on_probe(&mut self, addr: Multiaddr, reachable: bool) {
        if is_relayed(&addr) {
            return;
        }
        if reachable {
            self.unreachable.remove(&addr);
            self.reachable.insert(addr);
        } else {
            self.reachable.remove(&addr);
            self.unreachable.insert(addr);
        }
    }

    /// AutoNAT v1 found no address reachable.
    pub fn on_private(&mut self) {
        self.private = true;
    }

    /// The swarm dropped an external address (it expired).
    pub fn on_external_expired(&mut self, addr: &Multiaddr) {
        self.reachable.remove(addr);
    }

    /// A connected peer offers relaying; `addr` is where this node reached it.
    pub fn on_relay_found(&mut self, peer: PeerId, addr: Multiaddr) {
        if !is_relayed(&addr) {
            self.relays.insert(peer, addr);
        }
    }

    /// The last connection to `peer` closed.
    pub fn on_disconnected(&mut self, peer: &PeerId) {
        self.relays.remove(peer);
    }

    /// When the next reservation is due, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.reservations
            .iter()
            .filter_map(|r| match r.state {
                State::Due(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Brings reservations in line: chooses relays when private (and drops the ones it
    /// chose once public), and asks for every reservation whose time has come.
    pub fn plan(&mut self, listeners: &mut dyn Listeners) {
        let now = Instant::now();
        match self.reachability() {
            Reachability::Public => self.reservations.retain(|r| match r.state {
                _ if !r.automatic => true,
                // libp2p's relay client (0.22) panics, taking the event loop down, when
                // a relay answers a reservation whose listener closed while waiting: one
                // asked for is let go once answered (a node that flapped private, then
                // public within a millisecond, lost its event loop that way).
                State::Requested(_) => true,
                State::Active(id) => {
                    listeners.stop(id);
                    false
                }
                State::Due(_) => false,
            }),
            Reachability::Private if self.auto_relay => {
                let chosen: HashSet<PeerId> =
                    self.reservations.iter().filter_map(|r| r.relay).collect();
                let wanted = AUTO_RELAYS
                    .saturating_sub(self.reservations.iter().filter(|r| r.automatic).count());
                let mut fresh: Vec<(&PeerId, &Multiaddr)> = self
                    .relays
                    .iter()
                    .filter(|(p, _)| !chosen.contains(p))
                    .collect();
                fresh.sort();
                for (peer, addr) in fresh.into_iter().take(wanted) {
                    let addr = addr
                        .clone()
                        .with_p2p(*peer)
                        .unwrap_or_else(|a| a)
                        .with(Protocol::P2pCircuit);
                    tracing::info!(%peer, "behind NAT: reserving a slot on relay {addr}");
                    self.reservations.push(Reservation {
                        addr,
                        relay: Some(*peer),
                        automatic: true,
                        state: State::Due(now),
                        backoff: FIRST_BACKOFF,
                        last_error: None,
                    });
                }
            }
            _ => {}
        }
        for r in &mut self.reservations {
            if !matches!(r.state, State::Due(at) if at <= now) {
                continue;
            }
            match listeners.listen(&r.addr) {
                Ok(id) => r.state = State::Requested(id),
                Err(error) => r.retry_later(error),
            }
        }
    }

    /// A listener reported an address: true when it is a reservation's (now active).
    pub fn on_listen_addr(&mut self, listener: ListenerId) -> bool {
        for r in &mut self.reservations {
            if matches!(r.state, State::Requested(id) | State::Active(id) if id == listener) {
                tracing::info!(addr = %r.addr, "relay reservation accepted");
                r.state = State::Active(listener);
                r.backoff = FIRST_BACKOFF;
                r.last_error = None;
                return true;
            }
        }
        false
    }

    /// A listener closed: a reservation's is asked for again later (an automatic one
    /// whose relay is gone is dropped, to be replaced by another relay).
    pub fn on_listener_closed(&mut self, listener: ListenerId, error: Option<String>) {
        let relays = &self.relays;
        self.reservations.retain_mut(|r| {
            if !matches!(r.state, State::Requested(id) | State::Active(id) if id == listener) {
                return true;
            }
            let error = error.clone().unwrap_or_else(|| "the relay ended it".to_owned());
            if r.automatic && !r.relay.is_some_and(|p| relays.contains_key(&p)) {
                tracing::info!(addr = %r.addr, "relay reservation ended: {error}; choosing another relay");
                return false;
            }
            r.retry_later(error);
            true
        });
    }

    /// Each reservation and how it is doing.
    pub fn reports(&self) -> Vec<ReservationReport> {
        let now = Instant::now();
        self.reservations
            .iter()
            .map(|r| ReservationReport {
                address: r.addr.to_string(),
                automatic: r.automatic,
                state: match (r.state, &r.last_error) {
                    (State::Active(_), _) => "active".to_owned(),
                    (State::Requested(_), _) => "requested".to_owned(),
                    (State::Due(at), error) => format!(
                        "{}retrying in {}s",
                        error.as_ref().map(|e| format!("{e}; ")).unwrap_or_default(),
                        at.saturating_duration_since(now).as_secs()
                    ),
                },
            })
            .collect()
    }
}

impl Reservation {
    fn retry_later(&mut self, error: String) {
        tracing::warn!(
            addr = %self.addr,
            "relay reservation failed: {error}; retrying in {}s",
            self.backoff.as_secs()
        );
        self.state = State::Due(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.last_error = Some(error);
    }
}

/// Whether `addr` goes through a relay.
pub(crate) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Whether a connection goes through a relay. An inbound circuit's remote address is
/// only `/p2p/<peer>`: its local address (the circuit this node listens on) tells.
pub(crate) fn is_relayed_connection(endpoint: &libp2p::core::ConnectedPoint) -> bool {
    match endpoint {
        libp2p::core::ConnectedPoint::Dialer { address, .. } => is_relayed(address),
        libp2p::core::ConnectedPoint::Listener {
            local_addr,
            send_back_addr,
        } => is_relayed(local_addr) || is_relayed(send_back_addr),
    }
}

/// The relay of a `<relay>/p2p/<id>/p2p-circuit` address.
pub(super) fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut relay = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(peer) => relay = Some(peer),
            Protocol::P2pCircuit => return relay,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    /// Listens succeed with fresh ids; the addresses asked for are recorded.
    struct Swarm {
        listened: Vec<Multiaddr>,
        ids: Vec<ListenerId>,
        closed: Vec<ListenerId>,
        fail: bool,
    }

    impl Swarm {
        fn new() -> Self {
            Swarm {
                listened: Vec::new(),
                ids: Vec::new(),
                closed: Vec::new(),
                fail: false,
            }
        }

        fn plan(&mut self, nat: &mut Nat) {
            nat.plan(self);
        }
    }

    impl Listeners for Swarm {
        fn listen(&mut self, addr: &Multiaddr) -> Result<ListenerId, String> {
            self.listened.push(addr.clone());
            if self.fail {
                Err("no route".into())
            } else {
                let id = ListenerId::next();
                self.ids.push(id);
                Ok(id)
            }
        }

        fn stop(&mut self, id: ListenerId) {
            self.closed.push(id);
        }
    }

    #[test]
    fn reachability_follows_the_probes() {
        let mut nat = Nat::new(&[], &[], true);
        assert_eq!(nat.reachability(), Reachability::Unknown);
        nat.on_probe(addr("/ip4/198.18.0.1/tcp/9000"), false);
        assert_eq!(nat.reachability(), Reachability::Private);
        nat.on_probe(addr("/ip4/198.18.0.1/udp/9000/quic-v1"), true);
        assert_eq!(nat.reachability(), Reachability::Public);
        nat.on_external_expired(&addr("/ip4/198.18.0.1/udp/9000/quic-v1"));
        assert_eq!(nat.reachability(), Reachability::Private);
        // Hand-set external addresses count as reachable.
        let nat = Nat::new(&[], &[addr("/ip4/198.18.0.1/tcp/9000")], true);
        assert_eq!(nat.reachability(), Reachability::Public);
    }

    #[test]
    fn a_private_node_reserves_on_two_relays_and_drops_them_once_public() {
        let mut nat = Nat::new(&[], &[], true);
        let mut swarm = Swarm::new();
        let relays: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for (i, r) in relays.iter().enumerate() {
            nat.on_relay_found(*r, addr(&format!("/ip4/198.18.0.{}/tcp/9000", i + 1)));
        }
        // Not known to be private: nothing reserved.
        swarm.plan(&mut nat);
        assert!(swarm.listened.is_empty());
        nat.on_probe(addr("/ip4/10.0.0.2/tcp/9000"), false);
        swarm.plan(&mut nat);
        assert_eq!(swarm.listened.len(), AUTO_RELAYS);
        assert!(swarm.listened.iter().all(is_relayed));
        assert!(
            swarm.listened.iter().all(|a| relay_of(a).is_some()),
            "{:?}",
            swarm.listened
        );
        // Planning again asks for nothing more.
        swarm.plan(&mut nat);
        assert_eq!(swarm.listened.len(), AUTO_RELAYS);
        // Public before the relays answered: each reservation is let go once answered
        // (libp2p's relay client panics on an answer for a listener closed meanwhile).
        nat.on_probe(addr("/ip4/198.18.0.9/tcp/9000"), true);
        swarm.plan(&mut nat);
        assert!(swarm.closed.is_empty());
        for id in swarm.ids.clone() {
            assert!(nat.on_listen_addr(id));
            swarm.plan(&mut nat);
        }
        assert_eq!(swarm.closed, swarm.ids);
        assert!(nat.reports().is_empty());
    }

    #[test]
    fn a_configured_reservation_that_fails_is_retried_with_backoff() {
        let relay = PeerId::random();
        let circuit = addr(&format!("/ip4/198.18.0.1/tcp/9000/p2p/{relay}/p2p-circuit"));
        let mut nat = Nat::new(std::slice::from_ref(&circuit), &[], false);
        let mut swarm = Swarm::new();
        swarm.plan(&mut nat);
        assert_eq!(swarm.listened, std::slice::from_ref(&circuit));
        let id = match nat.reservations[0].state {
            State::Requested(id) => id,
            other => panic!("{other:?}"),
        };
        nat.on_listener_closed(id, Some("Failed to get Reservation".into()));
        let report = &nat.reports()[0];
        assert!(
            report
                .state
                .starts_with("Failed to get Reservation; retrying in"),
            "{report:?}"
        );
        assert!(!report.automatic);
        // Not due yet: nothing asked.
        swarm.plan(&mut nat);
        assert_eq!(swarm.listened.len(), 1);
        assert_eq!(nat.reservations[0].backoff, FIRST_BACKOFF * 2);
        // A listen that cannot even start counts as a failure too.
        nat.reservations[0].state = State::Due(Instant::now());
        swarm.fail = true;
        swarm.plan(&mut nat);
        assert_eq!(nat.reservations[0].backoff, FIRST_BACKOFF * 4);
        assert_eq!(nat.reservations[0].relay, Some(relay));
    }

    #[test]
    fn an_accepted_reservation_is_active_until_its_listener_closes() {
        let relay = PeerId::random();
        let circuit = addr(&format!("/ip4/198.18.0.1/tcp/9000/p2p/{relay}/p2p-circuit"));
        let mut nat = Nat::new(&[circuit], &[], false);
        let mut swarm = Swarm::new();
        swarm.plan(&mut nat);
        let State::Requested(id) = nat.reservations[0].state else {
            panic!()
        };
        assert!(nat.on_listen_addr(id));
        assert!(!nat.on_listen_addr(ListenerId::next()));
        assert_eq!(nat.reports()[0].state, "active");
        nat.on_listener_closed(id, None);
        assert!(
            nat.reports()[0]
                .state
                .starts_with("the relay ended it; retrying in")
        );
    }
}
