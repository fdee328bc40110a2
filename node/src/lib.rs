//! The Guts node: a libp2p swarm (TCP+Noise+yamux, QUIC, Kademlia, gossipsub, mDNS,
//! identify, ping, relay) driven by one event loop, replication of signed git
//! repositories, and a local HTTP control API.
//!
//! Start one with [`Node::start`]; drive it with a [`NodeHandle`].
//!
//! - [`network`](crate::network) owns the swarm: behaviours, event loop, discovery, DHT.
//! - `connection_manager` decides which connections are accepted, dialled and kept.
//! - [`wire`] frames the node's protocols and prices a peer's bad bytes.
//! - `sync` replicates: the engine, holders, pack fetching, and answering peers.
//! - `author` signs the owner's imports, inits and pushes.
//! - [`api`] serves the control API over a [`NodeHandle`].

pub mod api;
pub mod config;
pub mod logs;
pub mod wire;

mod author;
mod collab;
mod connection_manager;
mod error;
mod handle;
mod http;
mod identity;
mod maintainers;
mod metrics;
mod mirrors;
mod network;
mod node;
mod publish;
pub mod seeding;
mod store;
mod sync;

pub use config::{Config, ConfigError, DhtMode, LogFormat, Replicate};
pub use connection_manager::Penalty;
pub use error::NodeError;
pub use handle::NodeHandle;
pub use identity::peer_id_of;
pub use libp2p::{Multiaddr, PeerId};
pub use network::short_peer_id;
pub use node::Node;
pub use store::TaskFailed;
pub use sync::{FetchError, SyncError};
