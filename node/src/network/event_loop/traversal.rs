//! NAT traversal in the event loop: hole punching rounds started again while a peer stays
//! relayed-only (see [`super::super::punch`]), and a QUIC connection to each relay so
//! this node learns the address its NAT gives QUIC too (identify reports an observed
//! address only for the transport it came over; DCUtR punches with those alone).

use std::time::Instant;

use libp2p::core::ConnectedPoint;
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, dcutr, identify, relay};

use super::EventLoop;
use crate::connection_manager::inbound_ips::ip_of;
use crate::network::nat;
use crate::network::settings::is_quic;

impl EventLoop {
    /// Hole punching bookkeeping for a connection that came up and stays.
    pub(super) fn punch_on_established(&mut self, peer: PeerId, endpoint: &ConnectedPoint) {
        if nat::is_relayed_connection(endpoint) {
            self.punches
                .relayed(peer, endpoint.is_dialer(), Instant::now());
            self.release_to_relay(&peer);
        } else {
            self.punches.direct(&peer);
        }
    }

    /// Whether packs for `peer`, reached only through a relay, may go through it: hole
    /// punching gave up and the relay carries data.
    pub(super) fn relay_fallback(&self, peer: &PeerId) -> bool {
        self.punches.given_up(peer)
            && self
                .peers
                .relay_of(peer)
                .is_some_and(|relay| self.nat.carries_data(&relay))
    }

    /// Lets fetches waiting for a direct connection to `peer` go through its relay, once
    /// they may.
    fn release_to_relay(&mut self, peer: &PeerId) {
        if self.relay_fallback(peer) {
            let relay = self.peers.relay_of(peer);
            tracing::info!(%peer, ?relay, "hole punching gave up: data goes through the relay");
            for waiter in self.direct_waiters.remove(peer).into_iter().flatten() {
                let _ = waiter.send(relay);
            }
        }
    }

    pub(super) fn on_relay_client(&mut self, event: relay::client::Event) {
        use relay::client::Event as E;
        let (relay, limit) = match &event {
            E::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                limit,
            } => {
                tracing::info!(relay = %relay_peer_id, renewal, ?limit, "relay reservation accepted");
                (*relay_peer_id, limit)
            }
            E::OutboundCircuitEstablished {
                relay_peer_id,
                limit,
            } => {
                tracing::debug!(relay = %relay_peer_id, ?limit, "circuit established");
                (*relay_peer_id, limit)
            }
            E::InboundCircuitEstablished { src_peer_id, limit } => {
                // The relay is not named: the limit is the reservation's, already noted.
                tracing::debug!(peer = %src_peer_id, ?limit, "inbound circuit established");
                return;
            }
        };
        let limit = limit.as_ref().map(|l| (l.data_in_bytes(), l.duration()));
        self.nat.on_relay_limit(relay, limit);
    }

    /// Whether `id` is a circuit dialled to start another hole punching round: it stays,
    /// and the older circuit goes.
    pub(super) fn is_punch_redial(&mut self, id: ConnectionId) -> bool {
        self.punch_redials.remove(&id)
    }

    pub(super) fn on_dcutr(&mut self, event: dcutr::Event) {
        let dcutr::Event {
            remote_peer_id,
            result,
        } = event;
        match result {
            Ok(id) => {
                tracing::info!(peer = %remote_peer_id, ?id, "hole punched: direct connection");
            }
            Err(e) => {
                let error = crate::error::error_chain(&e);
                tracing::info!(peer = %remote_peer_id, "hole punching failed: {error}");
                self.punches.failed(&remote_peer_id, error);
                self.release_to_relay(&remote_peer_id);
            }
        }
    }

    /// Dials a fresh circuit to each peer whose next hole punching round is due. Not for
    /// a peer whose data goes through its relay: the fresh circuit replaces the old one,
    /// and would cut a transfer under way on it.
    pub(super) fn punch_again(&mut self) {
        let now = Instant::now();
        for peer in self.punches.due(now) {
            if !self.peers.relayed_only(&peer) || self.relay_fallback(&peer) {
                continue;
            }
            let Some(circuit) = self.peers.dialled_circuit(&peer) else {
                continue;
            };
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![circuit.clone()])
                .condition(PeerCondition::Always)
                .build();
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    tracing::info!(%peer, "hole punching again over a fresh circuit: {circuit}");
                    self.punch_redials.insert(id);
                }
                Err(e) => {
                    let error = crate::error::dial_error_text(&e);
                    tracing::info!(%peer, "cannot dial a fresh circuit: {error}");
                    self.punches.dial_failed(&peer, error, now);
                }
            }
        }
    }

    /// A circuit dialled for another round did not come up: the round waits its turn.
    pub(super) fn punch_redial_failed(&mut self, id: ConnectionId, peer: Option<PeerId>) {
        if self.punch_redials.remove(&id)
            && let Some(peer) = peer
        {
            self.punches
                .dial_failed(&peer, "the fresh circuit failed".into(), Instant::now());
        }
    }

    /// On meeting a relay over TCP only, while this node listens on QUIC: dials it over
    /// QUIC as well (its address at the IP this node already reached), so identify on that
    /// connection tells this node its QUIC address as seen from outside.
    pub(super) fn observe_over_quic(&mut self, peer: PeerId, info: &identify::Info) {
        if !info.protocols.contains(&relay::HOP_PROTOCOL_NAME) || !self.listens_on_quic() {
            return;
        }
        let Some(reached) = self.peers.dialled_address(&peer) else {
            return;
        };
        if nat::is_relayed(&reached) || self.peers.has_quic(&peer) {
            return;
        }
        let Some(ip) = ip_of(&reached) else {
            return;
        };
        let quic: Vec<Multiaddr> = info
            .listen_addrs
            .iter()
            .filter(|a| is_quic(a) && !nat::is_relayed(a) && ip_of(a) == Some(ip))
            .cloned()
            .collect();
        if quic.is_empty() {
            return;
        }
        tracing::debug!(%peer, ?quic, "dialling a relay over QUIC to learn this node's QUIC address");
        let opts = DialOpts::peer_id(peer)
            .addresses(quic)
            .condition(PeerCondition::Always)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, "no QUIC connection to the relay: {}", crate::error::dial_error_text(&e));
        }
    }

    fn listens_on_quic(&self) -> bool {
        self.swarm.listeners().any(is_quic)
    }
}
