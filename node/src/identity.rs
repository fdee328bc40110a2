//! The node identity as libp2p sees it.

use libp2p::PeerId;
use libp2p::identity::Keypair;

use crate::error::NodeError;

/// The libp2p keypair for a stored identity.
pub(crate) fn keypair(identity: &guts_storage::Identity) -> Result<Keypair, NodeError> {
    let mut secret = identity.secret_bytes();
    Keypair::ed25519_from_bytes(&mut secret)
        .map_err(|e| NodeError::Setup(format!("identity key: {e}")))
}

/// The peer id of a stored identity.
pub fn peer_id_of(identity: &guts_storage::Identity) -> Result<PeerId, NodeError> {
    Ok(keypair(identity)?.public().to_peer_id())
}
