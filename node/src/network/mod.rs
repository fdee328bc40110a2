//! The libp2p side of the node: the transports and behaviours, the event loop that alone
//! owns the swarm, discovery, the DHT queries, status reports, and the [`Client`] through
//! which the rest of the node drives it.

mod autonat_guard;
mod behaviour;
mod client;
mod dht;
mod discovery;
mod event_loop;
mod ip_rate;
mod kad_limit;
mod nat;
mod peers;
mod provider_store;
mod status;
mod swarm;

pub(crate) use client::{Client, Command, Event, RequestError};
pub(crate) use event_loop::EventLoop;
pub use peers::short_peer_id;
pub(crate) use swarm::build as build_swarm;
