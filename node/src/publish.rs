//! Telling the network about a repository: gossip and the DHT for a public one; for a
//! private one, never either (both reach anyone), but a notice to each peer it allows,
//! directly.

use guts_protocol::RepositoryId;
use guts_protocol::wire::{ChangesAnnouncement, SharedAnnouncement, SyncRequest};
use guts_storage::Held;
use libp2p::PeerId;

use crate::identity::peer_of_owner;
use crate::network::Client;
use crate::store::Store;

/// What there is to tell about a repository.
pub(crate) enum News {
    /// A view or identity version (the shared topic).
    Shared(SharedAnnouncement),
    /// New tips of patches and issues (the changes topic).
    Changes(ChangesAnnouncement),
    /// Nothing on gossip: only that this node holds it (the DHT; anti-entropy).
    Held,
}

/// The peers `id` allows besides this node (`local`), if it is private here.
async fn allowed_peers(store: &Store, id: RepositoryId, local: PeerId) -> Option<Vec<PeerId>> {
    store
        .run(move |repos| {
            if !repos.is_private(&id).ok()? {
                return None;
            }
            let Ok(Some(Held::Shared(state))) = repos.held(&id) else {
                return Some(Vec::new());
            };
            let current = state.identity.current();
            let allowed = current.visibility.allowed();
            let mut peers: Vec<PeerId> = current
                .maintainers
                .iter()
                .chain(&allowed)
                .filter_map(peer_of_owner)
                .filter(|p| *p != local)
                .collect();
            peers.sort();
            peers.dedup();
            Some(peers)
        })
        .await
        .ok()
        .flatten()
}

/// Tells the network `news` of `id` as its visibility allows.
pub(crate) async fn publish(
    store: &Store,
    client: &Client,
    local: PeerId,
    id: RepositoryId,
    news: News,
) {
    match allowed_peers(store, id, local).await {
        Some(peers) => {
            for peer in peers {
                let client = client.clone();
                tokio::spawn(async move {
                    // Only a peer this node can reach hears: one not connected and not
                    // in the routing table is looked up on the DHT by its peer id (which
                    // says nothing of the repository).
                    if !client.reach(peer).await {
                        tracing::debug!(repository = %id, %peer, "notice not delivered: the peer cannot be reached");
                        return;
                    }
                    if let Err(e) = client
                        .request(peer, SyncRequest::Notify { repository: id })
                        .await
                    {
                        tracing::debug!(repository = %id, %peer, "notice not delivered: {e:?}");
                    }
                });
            }
        }
        None => match news {
            News::Shared(a) => {
                client.provide(id);
                client.announce_shared(a);
            }
            News::Changes(a) => client.announce_changes(a),
            News::Held => client.provide(id),
        },
    }
}
