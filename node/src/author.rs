//! What the node's owner does to its own repositories: import, init, push (through a
//! staging area), each signed with the node's key, then provided and announced; and the
//! repack that keeps a repository at one pack.

use std::path::PathBuf;

use ed25519_dalek::{SigningKey, VerifyingKey};
use guts_protocol::wire::Announcement;
use guts_protocol::{RepoName, RepositoryId, SignedRefs};
use guts_storage::{Imported, Pushed, RefUpdate, Repositories, StorageError};

use crate::store::Store;

use crate::error::NodeError;
use crate::network::Client;

/// Above this many packs a repository is repacked into one (in the background).
const REPACK_ABOVE: usize = 4;

/// Signs and publishes the owner's changes.
#[derive(Clone)]
pub(crate) struct Author {
    store: Store,
    key: SigningKey,
    client: Client,
}

impl Author {
    pub(crate) fn new(store: Store, key: SigningKey, client: Client) -> Self {
        Author { store, key, client }
    }

    /// The public key that owns this node's repositories.
    pub(crate) fn owner_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Runs `work` on the store and the key on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Repositories, &SigningKey) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, NodeError> {
        let key = self.key.clone();
        Ok(self.store.run(move |repos| work(repos, &key)).await??)
    }

    /// Tells the network about a new snapshot of ours.
    fn publish(&self, snapshot: &SignedRefs) {
        let id = snapshot.repository();
        repack_if_needed(&self.store, id);
        self.client.provide(id);
        self.client.announce(Announcement::of(snapshot));
    }

    /// Imports the local git repository at `path` as a repository owned by this node
    /// (a new snapshot if it was imported before and changed), then announces it.
    pub(crate) async fn import(
        &self,
        path: PathBuf,
        name: Option<RepoName>,
    ) -> Result<Imported, NodeError> {
        let imported = self
            .blocking(move |repos, key| repos.import(&path, name, key))
            .await?;
        if imported.changed {
            self.publish(&imported.snapshot);
        }
        Ok(imported)
    }

    /// Creates an empty repository owned by this node, then provides and announces it.
    pub(crate) async fn init(&self, name: RepoName) -> Result<SignedRefs, NodeError> {
        let snapshot = self
            .blocking(move |repos, key| repos.init(name, key))
            .await?;
        self.publish(&snapshot);
        Ok(snapshot)
    }

    /// A staging area for a push to `id` (refused unless this node owns it).
    pub(crate) async fn push_area(&self, id: RepositoryId) -> Result<PathBuf, NodeError> {
        self.blocking(move |repos, key| repos.create_staging(&id, key))
            .await
    }

    /// Applies a push from `area`; a new snapshot is provided and announced.
    pub(crate) async fn push(
        &self,
        id: RepositoryId,
        area: PathBuf,
        updates: Vec<RefUpdate>,
    ) -> Result<Pushed, NodeError> {
        let pushed = self
            .blocking(move |repos, key| repos.push(&id, &area, &updates, key))
            .await?;
        if pushed.changed {
            self.publish(&pushed.snapshot);
        }
        Ok(pushed)
    }
}

/// Repacks `id` in the background once its packs pile up, so full fetches from this
/// node can send one stored pack as it is.
pub(crate) fn repack_if_needed(store: &Store, id: RepositoryId) {
    store.spawn(move |repos| {
        if repos.pack_count(&id).is_ok_and(|n| n > REPACK_ABOVE)
            && let Err(e) = repos.repack(&id)
        {
            tracing::warn!(repository = %id, "repack failed: {e}");
        }
    });
}
