//! The bootstrap list: each address dialled with backoff until reached, and again after
//! its peer goes away.

use std::time::{Duration, Instant};

use guts_api::BootstrapReport;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, kad};

use crate::connection_manager;
use crate::metrics::{Metrics, Outcome};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
enum State {
    Due(Instant),
    Dialing(ConnectionId),
    Connected,
    /// The peer speaks another network's protocols: retrying cannot help.
    OtherNetwork(String),
}

#[derive(Debug)]
struct Entry {
    /// As configured, including any `/p2p/<id>`.
    addr: Multiaddr,
    peer: Option<PeerId>,
    state: State,
    backoff: Duration,
}

/// The bootstrap list and the state of each address in it.
#[derive(Debug)]
pub(crate) struct Bootstrap {
    entries: Vec<Entry>,
}

impl Bootstrap {
    pub fn new(addrs: &[Multiaddr]) -> Self {
        let now = Instant::now();
        Bootstrap {
            entries: addrs
                .iter()
                .map(|addr| Entry {
                    addr: addr.clone(),
                    peer: peer_of(addr),
                    state: State::Due(now),
                    backoff: FIRST_BACKOFF,
                })
                .collect(),
        }
    }

    /// When the next dial is due, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| match e.state {
                State::Due(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Whether `peer` is (or was reached through) a bootstrap address.
    pub fn is_bootstrap_peer(&self, peer: &PeerId) -> bool {
        self.entries.iter().any(|e| e.peer.as_ref() == Some(peer))
    }

    /// Queues a dial for every entry whose time has come.
    pub fn dial_due(&mut self, manager: &mut connection_manager::Behaviour) {
        let now = Instant::now();
        for entry in &mut self.entries {
            if !matches!(entry.state, State::Due(at) if at <= now) {
                continue;
            }
            if let Some(peer) = entry.peer
                && manager.is_connected(&peer)
            {
                entry.state = State::Connected;
                continue;
            }
            let opts = match entry.peer {
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![entry.addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id()
                    .address(entry.addr.clone())
                    .build(),
            };
            tracing::debug!(addr = %entry.addr, "dialling bootstrap peer");
            let id = manager.dial(opts);
            entry.state = State::Dialing(id);
        }
    }

    /// A connection came up; returns true when it reached a bootstrap peer.
    pub fn on_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        kad: &mut kad::Behaviour<kad::store::MemoryStore>,
        metrics: &Metrics,
    ) -> bool {
        let mut is_bootstrap = false;
        for entry in &mut self.entries {
            let ours = entry.state == State::Dialing(id);
            if ours || entry.peer == Some(peer) {
                if ours {
                    metrics
                        .bootstrap_dials
                        .get_or_create(&Outcome {
                            outcome: "connected",
                        })
                        .inc();
                    tracing::info!(addr = %entry.addr, %peer, "connected to bootstrap peer");
                }
                if !matches!(entry.state, State::OtherNetwork(_)) {
                    entry.state = State::Connected;
                    entry.backoff = FIRST_BACKOFF;
                }
                entry.peer = Some(peer);
                // We reached it at this address, so the DHT can use it.
                kad.add_address(&peer, without_peer_id(&entry.addr));
                is_bootstrap = true;
            }
        }
        is_bootstrap
    }

    /// A dial failed.
    pub fn on_dial_failed(&mut self, id: ConnectionId, error: &str, metrics: &Metrics) {
        for entry in &mut self.entries {
            if entry.state == State::Dialing(id) {
                metrics
                    .bootstrap_dials
                    .get_or_create(&Outcome { outcome: "failed" })
                    .inc();
                entry.retry_later(error);
            }
        }
    }

    /// A dial was skipped or refused because the peer is already connected (`connected`
    /// names it) or being dialled.
    pub fn on_dial_skipped(&mut self, id: ConnectionId, connected: Option<PeerId>) {
        for entry in &mut self.entries {
            if entry.state == State::Dialing(id) {
                entry.state = match connected {
                    Some(peer) => {
                        tracing::info!(addr = %entry.addr, %peer, "bootstrap peer already connected");
                        entry.peer = Some(peer);
                        entry.backoff = FIRST_BACKOFF;
                        State::Connected
                    }
                    None => State::Due(Instant::now() + entry.backoff),
                };
            }
        }
    }

    /// The last connection to `peer` closed: dial it again after a pause.
    pub fn on_disconnected(&mut self, peer: &PeerId) {
        for entry in &mut self.entries {
            if entry.peer.as_ref() == Some(peer) && entry.state == State::Connected {
                entry.state = State::Due(Instant::now() + entry.backoff);
            }
        }
    }

    /// `peer` turned out to speak another network's protocols.
    pub fn on_other_network(&mut self, peer: &PeerId, their_version: &str) {
        for entry in &mut self.entries {
            if entry.peer.as_ref() == Some(peer) && !matches!(entry.state, State::OtherNetwork(_)) {
                tracing::warn!(
                    addr = %entry.addr,
                    "bootstrap peer {peer} is on another network (it speaks {their_version:?}); not dialling it again"
                );
                entry.state = State::OtherNetwork(their_version.to_owned());
            }
        }
    }

    pub fn reports(&self) -> Vec<BootstrapReport> {
        let now = Instant::now();
        self.entries
            .iter()
            .map(|e| BootstrapReport {
                address: e.addr.to_string(),
                peer_id: e.peer.map(|p| p.to_string()),
                state: match &e.state {
                    State::Connected => "connected".to_owned(),
                    State::Dialing(_) => "dialing".to_owned(),
                    State::Due(at) => format!(
                        "retrying in {}s",
                        at.saturating_duration_since(now).as_secs()
                    ),
                    State::OtherNetwork(v) => format!("other network: {v}"),
                },
            })
            .collect()
    }
}

impl Entry {
    fn retry_later(&mut self, error: &str) {
        tracing::warn!(
            addr = %self.addr,
            "bootstrap peer unreachable: {error}; retrying in {}s",
            self.backoff.as_secs()
        );
        self.state = State::Due(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// The peer id at the end of `addr`, if any.
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// `addr` without a trailing `/p2p/<id>`.
pub(crate) fn without_peer_id(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if let Some(Protocol::P2p(_)) = addr.iter().last() {
        addr.pop();
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<Multiaddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let mut b = Bootstrap::new(&addrs(&["/ip4/10.0.0.1/tcp/1"]));
        let e = &mut b.entries[0];
        for _ in 0..10 {
            e.retry_later("test");
        }
        assert_eq!(e.backoff, MAX_BACKOFF);
        assert!(matches!(e.state, State::Due(_)));
    }

    #[test]
    fn peer_id_suffix_is_understood() {
        let peer = PeerId::random();
        let addr: Multiaddr = format!("/ip4/10.0.0.1/tcp/1/p2p/{peer}").parse().unwrap();
        assert_eq!(peer_of(&addr), Some(peer));
        assert_eq!(
            without_peer_id(&addr),
            "/ip4/10.0.0.1/tcp/1".parse::<Multiaddr>().unwrap()
        );
    }
}
