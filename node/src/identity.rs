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

/// The key of the node `peer` is, when its peer id carries an ed25519 key (every guts
/// node's does): whom a private repository's allow list names. The id was proved by the
/// connection's handshake, so no one else can claim it.
pub(crate) fn key_of_peer(peer: &PeerId) -> Option<ed25519_dalek::VerifyingKey> {
    let multihash = peer.as_ref();
    // The identity multihash (code 0) holds the public key itself.
    if multihash.code() != 0 {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let bytes = key.try_into_ed25519().ok()?.to_bytes();
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()
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
        assert_eq!(key_of_peer(&peer_id_of(&identity).unwrap()), Some(owner));
        // A peer id that hashes its key carries none.
        assert_eq!(key_of_peer(&PeerId::random()), None);
    }
}
