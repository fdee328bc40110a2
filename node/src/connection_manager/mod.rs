//! The connection manager: which connections the node keeps.
//!
//! It is the first behaviour in the composed [`crate::behaviour::Behaviour`], so its
//! decisions come before any other protocol sees a connection.
//!
//! Protected peers (bootstrap peers, peers added with `guts connect`) are kept connected
//! however idle their connections are; other connections close after the idle timeout
//! unless a protocol (e.g. a gossipsub mesh) still wants them.

mod handler;

use std::collections::{HashMap, HashSet, VecDeque};
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};

use handler::Handler;

/// Keeps protected peers' connections alive.
#[derive(Default)]
pub struct Behaviour {
    protected: HashSet<PeerId>,
    connections: HashMap<PeerId, HashSet<ConnectionId>>,
    pending: VecDeque<ToSwarm<(), bool>>,
}

impl Behaviour {
    /// Marks `peer` as protected: its connections are kept alive.
    pub fn protect(&mut self, peer: PeerId) {
        if self.protected.insert(peer) {
            self.notify(peer, true);
        }
    }

    /// Removes the protection of `peer`.
    pub fn unprotect(&mut self, peer: &PeerId) {
        if self.protected.remove(peer) {
            self.notify(*peer, false);
        }
    }

    /// Whether `peer` is protected.
    pub fn is_protected(&self, peer: &PeerId) -> bool {
        self.protected.contains(peer)
    }

    fn notify(&mut self, peer: PeerId, keep_alive: bool) {
        for id in self.connections.get(&peer).into_iter().flatten() {
            self.pending.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(*id),
                event: keep_alive,
            });
        }
    }

    fn new_handler(&mut self, peer: PeerId, id: ConnectionId) -> Handler {
        self.connections.entry(peer).or_default().insert(id);
        Handler::new(self.protected.contains(&peer))
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = ();

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.new_handler(peer, id))
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.new_handler(peer, id))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(closed) = event
            && let Some(ids) = self.connections.get_mut(&closed.peer_id)
        {
            ids.remove(&closed.connection_id);
            if ids.is_empty() {
                self.connections.remove(&closed.peer_id);
            }
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

    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<ToSwarm<(), THandlerInEvent<Self>>> {
        match self.pending.pop_front() {
            Some(ev) => Poll::Ready(ev),
            None => Poll::Pending,
        }
    }
}
