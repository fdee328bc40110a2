//! The AutoNAT v2 server, dialling back only the host that asked.
//!
//! libp2p's v2 server dials whatever address a client names once it has paid in dial
//! data, and tells it whether something answered: a stranger could have the node probe
//! its own loopback, its LAN or a third party. This wrapper lets a dial-back through only
//! to an IP address (IPv6: its prefix group) that the client is connected from, as
//! AutoNAT v1 does by substituting the observed IP. Anything else (another IP, a DNS
//! name, a relayed address) fails as a dial error, which tells the client nothing about
//! the target.

use std::collections::HashMap;
use std::task::{Context, Poll};

use ipnet::IpNet;
use libp2p::PeerId;
use libp2p::autonat::v2::server;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};

use super::nat::is_relayed;
use crate::connection_manager::{ip_group, ip_of};

/// Why a dial-back was refused.
#[derive(Debug, thiserror::Error)]
#[error("AutoNAT dial-back to {addr} refused: not an address of the peer that asked")]
pub(crate) struct ForeignTarget {
    addr: String,
}

/// The v2 server with its dial-backs held to the asking host (see the module docs).
pub(crate) struct Guarded {
    inner: server::Behaviour,
    v6_prefix: u8,
    /// The IP group of each inbound connection, by peer: where dial-backs may go.
    from: HashMap<PeerId, HashMap<ConnectionId, IpNet>>,
    /// Dial-backs the server asked for, not yet through `handle_pending_outbound`.
    dial_backs: HashMap<ConnectionId, PeerId>,
}

impl Guarded {
    /// Wraps libp2p's v2 server; IPv6 addresses match by their first `v6_prefix` bits.
    pub(crate) fn new(v6_prefix: u8) -> Self {
        Guarded {
            inner: server::Behaviour::default(),
            v6_prefix,
            from: HashMap::new(),
            dial_backs: HashMap::new(),
        }
    }

    /// Whether `addr` is a direct address on a host `peer` is connected from.
    fn allowed(&self, peer: &PeerId, addr: &Multiaddr) -> bool {
        if is_relayed(addr) {
            return false;
        }
        let Some(ip) = ip_of(addr) else {
            return false;
        };
        let group = ip_group(ip, self.v6_prefix);
        self.from
            .get(peer)
            .is_some_and(|conns| conns.values().any(|g| *g == group))
    }
}

impl NetworkBehaviour for Guarded {
    type ConnectionHandler = <server::Behaviour as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = server::Event;

    pass_to_inner!(pending_inbound);

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let handler = self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )?;
        // Relayed connections have no IP of the peer's own: nothing to dial back.
        if let Some(ip) = ip_of(remote_addr)
            && !is_relayed(remote_addr)
        {
            self.from
                .entry(peer)
                .or_default()
                .insert(connection_id, ip_group(ip, self.v6_prefix));
        }
        Ok(handler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(peer) = self.dial_backs.remove(&connection_id)
            && let Some(bad) = addresses.iter().find(|a| !self.allowed(&peer, a))
        {
            tracing::debug!(%peer, addr = %bad, "AutoNAT dial-back refused");
            return Err(ConnectionDenied::new(ForeignTarget {
                addr: bad.to_string(),
            }));
        }
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    pass_to_inner!(established_outbound);

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match &event {
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => {
                if let Some(conns) = self.from.get_mut(peer_id) {
                    conns.remove(connection_id);
                    if conns.is_empty() {
                        self.from.remove(peer_id);
                    }
                }
            }
            FromSwarm::DialFailure(failure) => {
                self.dial_backs.remove(&failure.connection_id);
            }
            _ => {}
        }
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer, connection, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        let event = std::task::ready!(self.inner.poll(cx));
        if let ToSwarm::Dial { opts } = &event
            && let Some(peer) = opts.get_peer_id()
        {
            self.dial_backs.insert(opts.connection_id(), peer);
        }
        Poll::Ready(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded_with(peer: PeerId, remote: &str) -> Guarded {
        let mut guarded = Guarded::new(64);
        let local: Multiaddr = "/ip4/0.0.0.0/tcp/1".parse().unwrap();
        guarded
            .handle_established_inbound_connection(
                ConnectionId::new_unchecked(1),
                peer,
                &local,
                &remote.parse().unwrap(),
            )
            .unwrap();
        guarded
    }

    #[test]
    fn only_the_asking_host_is_dialled_back() {
        let peer = PeerId::random();
        let guarded = guarded_with(peer, "/ip4/203.0.113.5/tcp/4000");
        let ok = |a: &str| guarded.allowed(&peer, &a.parse().unwrap());
        assert!(ok("/ip4/203.0.113.5/tcp/9"), "its own IP, any port");
        assert!(ok("/ip4/203.0.113.5/udp/9/quic-v1"));
        assert!(!ok("/ip4/127.0.0.1/tcp/22"), "loopback");
        assert!(!ok("/ip4/192.168.1.1/tcp/80"), "the LAN");
        assert!(!ok("/ip4/198.51.100.1/tcp/80"), "a third party");
        assert!(!ok("/dns4/localhost/tcp/22"), "a name");
        assert!(!ok("/ip4/203.0.113.5/tcp/9/p2p-circuit"), "relayed");
        assert!(
            !guarded.allowed(
                &PeerId::random(),
                &"/ip4/203.0.113.5/tcp/9".parse().unwrap()
            ),
            "another peer on that host did not ask"
        );
    }

    #[test]
    fn ipv6_matches_by_prefix_group() {
        let peer = PeerId::random();
        let guarded = guarded_with(peer, "/ip6/2001:db8:1:2::5/tcp/4000");
        let ok = |a: &str| guarded.allowed(&peer, &a.parse().unwrap());
        assert!(ok("/ip6/2001:db8:1:2:abcd::9/tcp/9"), "same /64");
        assert!(!ok("/ip6/2001:db8:1:3::5/tcp/9"), "another /64");
        assert!(!ok("/ip6/::1/tcp/9"));
    }

    #[test]
    fn a_closed_connection_takes_its_host_with_it() {
        let peer = PeerId::random();
        let mut guarded = guarded_with(peer, "/ip4/203.0.113.5/tcp/4000");
        let endpoint = libp2p::core::ConnectedPoint::Listener {
            local_addr: "/ip4/0.0.0.0/tcp/1".parse().unwrap(),
            send_back_addr: "/ip4/203.0.113.5/tcp/4000".parse().unwrap(),
        };
        guarded.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: peer,
            connection_id: ConnectionId::new_unchecked(1),
            endpoint: &endpoint,
            cause: None,
            remaining_established: 0,
        }));
        assert!(guarded.from.is_empty(), "nothing kept for a gone peer");
        assert!(!guarded.allowed(&peer, &"/ip4/203.0.113.5/tcp/9".parse().unwrap()));
    }
}
