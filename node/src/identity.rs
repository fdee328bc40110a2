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

/// The peer id of the node whose identity key is `owner`: a repository owner's own node
/// (the owner key is the node's identity key). `None` for a key libp2p refuses.
pub(crate) fn peer_of_owner(owner: &ed25519_dalek::VerifyingKey) -> Option<PeerId> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(owner.as_bytes()).ok()?;
    Some(libp2p::identity::PublicKey::from(key).to_peer_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_key_names_its_node() {
        let dir = tempfile::tempdir().unwrap();
        let identity =
            guts_storage::Identity::load_or_create(&dir.path().join("identity")).unwrap();
        let owner = identity.verifying_key();
        assert_eq!(peer_of_owner(&owner), Some(peer_id_of(&identity).unwrap()));
    }
}
