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
    /// The seeding policy file is unusable (at start: the node does not start; on a
    /// reload: the policy in effect stays).
    #[error("seeding policy: {0}")]
    Policy(#[from] crate::seeding::PolicyError),
    /// Building the transport or a protocol failed.
    #[error("cannot set up the node: {0}")]
    Setup(String),
    /// A task doing work off the event loop (disk reads, signing) panicked or was
    /// cancelled.
    #[error(transparent)]
    Task(#[from] crate::store::TaskFailed),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why (e.g. address already in use).
        reason: String,
    },
    /// The git HTTP endpoint could not be started.
    #[error("cannot serve git over HTTP on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
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
    /// A request names a bad value (a label, a key, a state); the message names it.
    #[error("{0}")]
    BadRequest(String),
    /// What a request names is not here.
    #[error("{0}")]
    NotFound(String),
    /// This node's key may not do what was asked.
    #[error("{0}")]
    NotAllowed(String),
    /// Removing a repository this node owns was asked for without saying so.
    #[error(
        "guts://{0} is owned by this node: removing it deletes the only copy this node \
         signs from (other nodes may still hold it); add --force to remove it anyway"
    )]
    RemoveOwned(guts_protocol::RepositoryId),
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

/// Why a handshake failed, with a hint when a swarm key is the likely cause: pnet gives
/// no clear sign, the side without the key just reads noise. A node in a private network
/// asks whether the peer holds the same key; a node in an open one that reads garbled
/// frames says the peer may be in a private network.
pub(crate) fn with_private_network_hint(reason: String, private: bool) -> String {
    let lower = reason.to_ascii_lowercase();
    let garbled = [
        "handshake",
        "timeout",
        "reset by peer",
        "frame length",
        "unexpected eof",
    ];
    if !garbled.iter().any(|s| lower.contains(s)) {
        reason
    } else if private {
        format!(
            "{reason} (this node is in a private network: does the peer hold the same swarm key?)"
        )
    } else {
        format!(
            "{reason} (if the peer is in a private network, only nodes given its swarm key \
             with --swarm-key can connect to it)"
        )
    }
}

/// An error and its sources in one line, without the repetitions libp2p's nest.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbled_handshake_names_the_swarm_key_on_either_side() {
        let garbled = "Handshake failed: Maximum frame length exceeded".to_owned();
        let keyed = with_private_network_hint(garbled.clone(), true);
        assert!(
            keyed.contains("does the peer hold the same swarm key"),
            "{keyed}"
        );
        let keyless = with_private_network_hint(garbled, false);
        assert!(keyless.contains("--swarm-key"), "{keyless}");
        let refused = "Connection refused (os error 111)".to_owned();
        assert_eq!(with_private_network_hint(refused.clone(), false), refused);
        assert_eq!(with_private_network_hint(refused.clone(), true), refused);
    }

    #[test]
    fn an_error_chain_keeps_the_reason_its_sources_give() {
        #[derive(Debug, thiserror::Error)]
        #[error("Failed to get Reservation.")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("reservation refused: resource limit exceeded")]
        struct Inner;
        let io = std::io::Error::other(Outer(Inner));
        let text = error_chain(&io);
        assert!(
            text.contains("Failed to get Reservation") && text.contains("resource limit exceeded"),
            "{text}"
        );
    }
}
