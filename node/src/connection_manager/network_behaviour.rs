//! The connection manager as the swarm sees it: each connection's admission (pending and
//! established, either way), what the swarm reports, and the events it is polled for.
//! The decisions themselves are [`Behaviour`]'s methods in mod.rs.

use std::collections::HashMap;
use std::future::Future as _;
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, DialError, DialFailure, FromSwarm,
    ListenFailure, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};

use super::dial_queue::Blocked;
use super::handler::Handler;
use super::{Behaviour, Connected, Connection, Event, UNWANTED_WITHIN, ip_of};

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if self.pending_inbound.len() >= self.limits.max_pending_inbound as usize {
            return Err(self.deny(
                "max_pending_inbound",
                format!(
                    "{} inbound handshakes under way, max_pending_inbound is {}",
                    self.pending_inbound.len(),
                    self.limits.max_pending_inbound as usize
                ),
            ));
        }
        if let Some(ip) = ip_of(remote) {
            let count = self.inbound_ips.count(&ip);
            if !self.inbound_ips.is_exempt(&ip) && count >= self.limits.max_peers_per_ip {
                return Err(self.deny(
                    "per_ip",
                    format!(
                        "{count} inbound connections from {} already, max_peers_per_ip is {}",
                        self.inbound_ips.group(ip),
                        self.limits.max_peers_per_ip
                    ),
                ));
            }
            self.inbound_ips.add(id, ip);
        }
        self.pending_inbound.insert(id);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending_inbound.remove(&id);
        self.check_established(&peer)?;
        Ok(self.handler_for(&peer))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(peer) = peer {
            self.check_allowed(&peer)?;
            if self.scores.is_banned(&peer) {
                return Err(self.deny("banned", format!("peer {peer} is banned")));
            }
        }
        if !self.dials.is_ours_in_flight(id) {
            // Another behaviour's dial (a DHT query): bounded by the same cap, not queued.
            if self.dials.in_flight() >= self.dials.max_in_flight() {
                return Err(self.deny(
                    "dial_concurrency",
                    format!(
                        "{} dials in flight, max_concurrent_dials is {}",
                        self.dials.in_flight(),
                        self.dials.max_in_flight()
                    ),
                ));
            }
            self.dials.started(id);
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        _id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_established(&peer)?;
        Ok(self.handler_for(&peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                let inbound = e.endpoint.is_listener();
                if !inbound {
                    self.dials.ended(e.connection_id, Some(e.peer_id), true);
                }
                let wanted = self.wanted_on_arrival(&e.peer_id);
                let peer = self
                    .connected
                    .entry(e.peer_id)
                    .or_insert_with(|| Connected {
                        connections: HashMap::new(),
                        since: Instant::now(),
                        closing: false,
                    });
                // A connection that comes after a trim is a new one, not being closed.
                peer.closing = false;
                peer.connections.insert(
                    e.connection_id,
                    Connection {
                        inbound,
                        keep_alive: wanted,
                        since: Instant::now(),
                    },
                );
                self.update_gauges();
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            }) => {
                self.inbound_ips.remove(connection_id);
                if let Some(p) = self.connected.get_mut(&peer_id) {
                    // `cause` is set when the peer (or the network), not we, ended it.
                    if let Some(c) = p.connections.remove(&connection_id)
                        && !c.inbound
                        && cause.is_some()
                        && c.since.elapsed() < UNWANTED_WITHIN
                    {
                        self.dials.back_off(peer_id);
                    }
                    if p.connections.is_empty() {
                        self.connected.remove(&peer_id);
                    }
                }
                self.update_gauges();
            }
            FromSwarm::DialFailure(DialFailure {
                peer_id,
                error,
                connection_id,
            }) => {
                // Skipped or refused dials say nothing about the peer's reachability.
                let reachability = !matches!(
                    error,
                    DialError::DialPeerConditionFalse(_)
                        | DialError::Denied { .. }
                        | DialError::Aborted
                );
                let ours = self
                    .dials
                    .ended(connection_id, peer_id.filter(|_| reachability), false);
                if reachability {
                    self.metrics.dials_failed.inc();
                }
                if ours {
                    self.events
                        .push_back(ToSwarm::GenerateEvent(Event::DialFailed {
                            id: connection_id,
                            peer: peer_id,
                            error: crate::error::dial_error_text(error),
                            already_connected: matches!(
                                error,
                                DialError::DialPeerConditionFalse(_)
                            ),
                        }));
                }
                self.update_gauges();
            }
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.pending_inbound.remove(&connection_id);
                self.inbound_ips.remove(connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        if self.heartbeat.poll_tick(cx).is_ready() {
            self.heartbeat();
        }
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(event);
        }
        match self.dials.release() {
            Ok(opts) => {
                self.metrics.dials_started.inc();
                self.update_gauges();
                return Poll::Ready(ToSwarm::Dial { opts });
            }
            Err(Blocked::RateLimited(at) | Blocked::Idle(Some(at))) => {
                let mut timer = Box::pin(tokio::time::sleep_until(at.into()));
                if timer.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                } else {
                    self.dial_timer = Some(timer);
                }
            }
            Err(Blocked::Idle(None)) => self.dial_timer = None,
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
