//! What the node's owner does to its own repositories: import, init, push (through a
//! staging area), each signed with the node's key, then provided and announced; and the
//! repack that keeps a repository at one pack.

use std::path::PathBuf;

use ed25519_dalek::{SigningKey, VerifyingKey};
use guts_protocol::wire::{Announcement, SharedAnnouncement};
use guts_protocol::{RepoName, RepositoryId, SignedRefs, SignedVersion, VersionId};
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

    /// Tells the network about a new view or identity version of a repository with
    /// maintainers (on its own topic: see [`SharedAnnouncement`]; a private one's allowed
    /// peers alone, directly).
    async fn publish_shared(&self, id: RepositoryId, announcement: SharedAnnouncement) {
        repack_if_needed(&self.store, id);
        let local = crate::identity::peer_of_owner(&self.key.verifying_key())
            .expect("the node's own key makes a peer id");
        crate::publish::publish(
            &self.store,
            &self.client,
            local,
            id,
            crate::publish::News::Shared(announcement),
        )
        .await;
    }

    /// Proposes the next identity version of `id` (`maintainers`, `threshold`, and
    /// `visibility` if it changes), signed by this node's key, and announces it (to a
    /// private repository's allowed peers alone): in effect at once if that signature is
    /// enough.
    pub(crate) async fn propose(
        &self,
        id: RepositoryId,
        maintainers: Vec<VerifyingKey>,
        threshold: u16,
        visibility: Option<guts_protocol::Visibility>,
    ) -> Result<SignedVersion, NodeError> {
        let version = self
            .blocking(move |repos, key| {
                repos.propose_with(&id, maintainers, threshold, visibility, key)
            })
            .await?;
        self.publish_shared(id, SharedAnnouncement::Version(version.clone()))
            .await;
        Ok(version)
    }

    /// Signs the pending proposal `version` of `id` with this node's key, and announces it.
    pub(crate) async fn accept(
        &self,
        id: RepositoryId,
        version: VersionId,
    ) -> Result<SignedVersion, NodeError> {
        let signed = self
            .blocking(move |repos, key| repos.sign_version(&id, &version, key))
            .await?;
        self.publish_shared(id, SharedAnnouncement::Version(signed.clone()))
            .await;
        Ok(signed)
    }

    /// Imports `source` (a local repository, a bundle, a URL) as a repository owned by
    /// this node (a new snapshot if it was imported before and changed), then announces
    /// it.
    pub(crate) async fn import(
        &self,
        source: guts_storage::ImportSource,
        name: Option<RepoName>,
    ) -> Result<Imported, NodeError> {
        let imported = self
            .blocking(move |repos, key| repos.import_from(&source, name, key))
            .await?;
        if imported.changed {
            self.publish(&imported.snapshot);
        }
        Ok(imported)
    }

    /// Brings mirror `name` up to date from `upstream` and signs what changed, then
    /// provides and announces it.
    pub(crate) async fn import_mirror(
        &self,
        upstream: String,
        name: RepoName,
    ) -> Result<Imported, NodeError> {
        let imported = self
            .blocking(move |repos, key| repos.import_mirror(&upstream, name, key))
            .await?;
        if imported.changed {
            self.publish(&imported.snapshot);
        }
        Ok(imported)
    }

    /// Creates an empty repository owned by this node, then provides and announces it
    /// (a private one: tells its allowed peers alone).
    pub(crate) async fn init(
        &self,
        name: RepoName,
        visibility: Option<guts_protocol::Visibility>,
    ) -> Result<RepositoryId, NodeError> {
        let Some(visibility) = visibility.filter(|v| *v != guts_protocol::Visibility::Public)
        else {
            let snapshot = self
                .blocking(move |repos, key| repos.init(name, key))
                .await?;
            self.publish(&snapshot);
            return Ok(snapshot.repository());
        };
        // Private from the first moment anyone could hear of it: its second version is
        // signed before anything is published.
        let version = self
            .blocking(move |repos, key| {
                let id = repos.init(name, key)?.repository();
                repos.propose_with(&id, vec![key.verifying_key()], 1, Some(visibility), key)
            })
            .await?;
        let id = version.doc.repository;
        self.publish_shared(id, SharedAnnouncement::Version(version))
            .await;
        Ok(id)
    }

    /// A staging area for a push to `id`: to its refs if this node's key maintains it,
    /// else to the key's fork (refused while contributions are off).
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
        if pushed.changed && (pushed.shared || pushed.fork) {
            self.publish_shared(
                id,
                SharedAnnouncement::View(Box::new(pushed.snapshot.signed.clone())),
            )
            .await;
        } else if pushed.changed {
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
