use std::net::SocketAddr;

use libp2p::Multiaddr;
use libp2p::swarm::DialError;

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
    /// A task doing work off the event loop (disk reads, signing) panicked or was
    /// cancelled.
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
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
    /// The control API's token file could not be written.
    #[error("cannot write the control API's token: {0}")]
    ApiToken(#[from] guts_api::auth::AuthError),
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

/// A transport error in one line.
pub(crate) fn transport_error_text(e: &libp2p::TransportError<std::io::Error>) -> String {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(a) => {
            format!("address {a} is not supported by any transport")
        }
        libp2p::TransportError::Other(io) => io.to_string(),
    }
}

/// A dial error in one line (libp2p's own Display nests the per-address errors).
pub(crate) fn dial_error_text(e: &DialError) -> String {
    match e {
        DialError::Transport(errors) => errors
            .iter()
            .map(|(addr, err)| format!("{addr}: {}", error_chain(err)))
            .collect::<Vec<_>>()
            .join("; "),
        other => error_chain(other),
    }
}

/// A failed handshake in a private network is most often a peer without the same swarm
/// key (pnet gives no clearer sign: the other side just sees noise); say so.
pub(crate) fn with_private_network_hint(reason: String) -> String {
    let lower = reason.to_ascii_lowercase();
    let garbled = [
        "handshake",
        "timeout",
        "reset by peer",
        "frame length",
        "unexpected eof",
    ];
    if garbled.iter().any(|s| lower.contains(s)) {
        format!(
            "{reason} (this node is in a private network: does the peer hold the same swarm key?)"
        )
    } else {
        reason
    }
}

/// An error and its sources in one line. libp2p nests errors and spreads some over
/// several lines ("Multiple dial errors occurred:\n - ..."); keep only what says something.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        for line in err.to_string().lines() {
            let line = line
                .trim()
                .trim_start_matches("- ")
                .trim_end_matches(':')
                .trim();
            if line.is_empty()
                || line == "Multiple dial errors occurred"
                || parts.iter().any(|p| p.contains(line))
            {
                continue;
            }
            parts.push(line.to_owned());
        }
        next = err.source();
    }
    parts.join(": ")
}
