use std::net::SocketAddr;

use libp2p::Multiaddr;

use crate::config::ConfigError;

/// Errors from starting or driving a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data dir or identity is unusable.
    #[error(transparent)]
    Storage(#[from] guts_storage::StorageError),
    /// Building the transport or a protocol failed.
    #[error("cannot set up the node: {0}")]
    Setup(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why (e.g. address already in use).
        reason: String,
    },
    /// The control API could not be started.
    #[error("cannot start the control API on {addr}: {source}")]
    Api {
        /// The API address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A dial (e.g. from `guts connect`) failed.
    #[error("cannot connect to {addr}: {reason}")]
    Dial {
        /// The address dialled.
        addr: Multiaddr,
        /// Why it failed.
        reason: String,
    },
    /// The node's event loop has stopped.
    #[error("the node has stopped")]
    Stopped,
}
