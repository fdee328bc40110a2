//! The libp2p side of the node: the transports and behaviours, the event loop that alone
//! owns the swarm, discovery, the DHT queries, status reports, and the [`Client`] through
//! which the rest of the node drives it.

/// The `NetworkBehaviour` hooks a wrapper around another behaviour (`self.inner`) passes
/// on unchanged, written once for the wrappers in this module: `pending_inbound` and
/// `established_outbound` name the hooks to generate inside an `impl NetworkBehaviour`.
macro_rules! pass_to_inner {
    (pending_inbound) => {
        fn handle_pending_inbound_connection(
            &mut self,
            connection_id: libp2p::swarm::ConnectionId,
            local_addr: &libp2p::Multiaddr,
            remote_addr: &libp2p::Multiaddr,
        ) -> Result<(), libp2p::swarm::ConnectionDenied> {
            self.inner
                .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
        }
    };
    (established_outbound) => {
        fn handle_established_outbound_connection(
            &mut self,
            connection_id: libp2p::swarm::ConnectionId,
            peer: libp2p::PeerId,
            addr: &libp2p::Multiaddr,
            role_override: libp2p::core::Endpoint,
            port_use: libp2p::core::transport::PortUse,
        ) -> Result<libp2p::swarm::THandler<Self>, libp2p::swarm::ConnectionDenied> {
            self.inner.handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
        }
    };
}

mod autonat_guard;
mod behaviour;
mod busy;
mod client;
mod dht;
mod discovery;
mod event_loop;
mod ip_rate;
mod kad_limit;
mod nat;
mod peers;
mod provider_store;
mod punch;
mod relay_use;
mod scope;
pub mod settings;
mod status;
mod swarm;

pub(crate) use client::{Client, Command, Event, RequestError, Topic};
pub(crate) use event_loop::EventLoop;
pub use peers::short_peer_id;
pub(crate) use swarm::build as build_swarm;
