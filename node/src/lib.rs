//! The Guts node: a libp2p swarm (TCP+Noise+yamux, QUIC, Kademlia, gossipsub, mDNS,
//! identify, ping, relay) driven by one event loop, with a local HTTP control API.
//!
//! Start one with [`Node::start`]; drive it with a [`NodeHandle`].

pub mod api;
pub mod config;

mod behaviour;
mod connection_manager;
mod discovery;
mod error;
mod event_loop;
mod handle;
mod identity;
mod metrics;
mod peers;
mod swarm;
pub mod sync;

pub use config::{Config, ConfigError, DhtMode, LogFormat, Replicate};
pub use connection_manager::Penalty;
pub use error::NodeError;
pub use event_loop::short_peer_id;
pub use handle::{Node, NodeHandle};
pub use identity::peer_id_of;
pub use libp2p::{Multiaddr, PeerId};
