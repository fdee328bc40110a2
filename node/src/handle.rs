//! [`NodeHandle`]: what embedders, the control API and tests drive a running node with.

use std::path::PathBuf;
use std::time::Duration;

use guts_api::{PeerReport, RepoDetail, RepoSummary, StatusReport, SyncOutcome, SyncProgress};
use guts_protocol::{RepoName, RepositoryId, SignedRefs};
use guts_storage::{Pushed, RefUpdate, Repositories, StorageError};

use crate::store::Store;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

use crate::author::Author;
use crate::error::NodeError;
use crate::network::{Client, Command};
use crate::sync::{Engine, SyncError};

/// A cheap, cloneable way to drive a running node.
#[derive(Clone)]
pub struct NodeHandle {
    peer_id: PeerId,
    client: Client,
    engine: Engine,
    author: Author,
    store: Store,
    data_dir: PathBuf,
    connect_timeout: Duration,
}

impl NodeHandle {
    pub(crate) fn new(
        peer_id: PeerId,
        client: Client,
        engine: Engine,
        author: Author,
        store: Store,
        data_dir: PathBuf,
        connect_timeout: Duration,
    ) -> Self {
        NodeHandle {
            peer_id,
            client,
            engine,
            author,
            store,
            data_dir,
            connect_timeout,
        }
    }

    /// Runs a read of the store on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Repositories) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, NodeError> {
        Ok(self.store.run(read).await??)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's status.
    pub async fn status(&self) -> Result<StatusReport, NodeError> {
        let mut report: StatusReport = self.client.ask(Command::Status).await?;
        report.equivocations = self.engine.ledger().reports();
        Ok(report)
    }

    /// Brings the gauges `/metrics` shows up to date.
    pub async fn refresh_metrics(&self) -> Result<(), NodeError> {
        self.client.ask(Command::RefreshGauges).await
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerReport>, NodeError> {
        self.client.ask(Command::Peers).await
    }

    /// The peers in the Kademlia routing table.
    pub async fn routing_table(&self) -> Result<Vec<PeerId>, NodeError> {
        self.client.ask(Command::RoutingTable).await
    }

    /// Dials `addr` (with or without `/p2p/<peer-id>`) and waits until the peer is
    /// connected and identified as a node of our network. The peer is then protected:
    /// kept connected however idle.
    pub async fn connect(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        let wait = self.client.ask(|reply| Command::Connect {
            addr: addr.clone(),
            reply,
        });
        match tokio::time::timeout(self.connect_timeout, wait).await {
            Ok(result) => result?,
            Err(_) => Err(NodeError::Dial {
                addr,
                reason: format!("no answer within {}s", self.connect_timeout.as_secs()),
            }),
        }
    }

    /// Imports the local git repository at `path` as a repository owned by this node
    /// (a new snapshot if it was imported before and changed), then announces it.
    pub async fn import(
        &self,
        path: PathBuf,
        name: Option<RepoName>,
    ) -> Result<(RepoSummary, bool), NodeError> {
        let imported = self.author.import(path, name).await?;
        let summary = self.summary(imported.snapshot.repository()).await?;
        Ok((summary, imported.changed))
    }

    /// Creates an empty repository owned by this node.
    pub async fn init_repo(&self, name: RepoName) -> Result<RepoSummary, NodeError> {
        let snapshot = self.author.init(name).await?;
        self.summary(snapshot.repository()).await
    }

    /// A staging area for a push to `id` (this node must own it).
    pub async fn push_area(&self, id: RepositoryId) -> Result<PathBuf, NodeError> {
        self.author.push_area(id).await
    }

    /// Applies a push whose objects are in `area`.
    pub async fn push(
        &self,
        id: RepositoryId,
        area: PathBuf,
        updates: Vec<RefUpdate>,
    ) -> Result<Pushed, NodeError> {
        self.author.push(id, area, updates).await
    }

    /// Follows `id`: this node fetches it and keeps it up to date from now on.
    pub async fn follow(&self, id: RepositoryId) -> Result<bool, NodeError> {
        let added = self.read(move |repos| repos.follow(&id)).await?;
        self.engine.trigger(id, None);
        Ok(added)
    }

    /// Stops following `id`: the node no longer keeps it up to date, and keeps (and
    /// serves) the copy it holds. Returns false if it was not followed.
    pub async fn unfollow(&self, id: RepositoryId) -> Result<bool, NodeError> {
        self.read(move |repos| repos.unfollow(&id)).await
    }

    /// Deletes this node's copy of `id` and stops following and providing it. A
    /// repository this node owns is removed only with `force`. Returns false if the
    /// node neither held nor followed it.
    pub async fn remove(&self, id: RepositoryId, force: bool) -> Result<bool, NodeError> {
        let owned = self.summary(id).await?.owned;
        if owned && !force {
            return Err(NodeError::RemoveOwned(id));
        }
        let (unfollowed, removed) = self
            .read(move |repos| Ok((repos.unfollow(&id)?, repos.remove(&id)?)))
            .await?;
        self.client.stop_providing(id);
        Ok(unfollowed || removed)
    }

    /// Brings `id` up to date now, trying `prefer` first; progress goes to `progress`.
    pub async fn sync(
        &self,
        id: RepositoryId,
        prefer: Option<PeerId>,
        progress: Option<mpsc::UnboundedSender<SyncProgress>>,
    ) -> Result<SyncOutcome, SyncError> {
        self.engine.sync(id, prefer, progress).await
    }

    /// Every repository this node holds or follows.
    pub async fn repositories(&self) -> Result<Vec<RepoSummary>, NodeError> {
        let ids = self
            .read(|repos| {
                let mut ids = repos.list()?;
                for id in repos.followed()? {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                Ok(ids)
            })
            .await?;
        let mut out = Vec::new();
        for id in ids {
            out.push(self.summary(id).await?);
        }
        Ok(out)
    }

    /// One repository in detail, or `None` if this node neither holds nor follows it.
    pub async fn repository(&self, id: RepositoryId) -> Result<Option<RepoDetail>, NodeError> {
        let snapshot = self.snapshot(id).await?;
        let summary = self.summary(id).await?;
        if snapshot.is_none() && !summary.followed {
            return Ok(None);
        }
        Ok(Some(RepoDetail {
            refs: snapshot
                .map(|s| {
                    s.refs
                        .iter()
                        .map(|(n, t)| (n.to_string(), t.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            holders: self
                .engine
                .holders(&id)
                .iter()
                .map(|p| p.to_string())
                .collect(),
            summary,
        }))
    }

    async fn snapshot(&self, id: RepositoryId) -> Result<Option<SignedRefs>, NodeError> {
        self.read(move |repos| repos.signed_refs(&id)).await
    }

    async fn summary(&self, id: RepositoryId) -> Result<RepoSummary, NodeError> {
        let (snapshot, followed) = self
            .read(move |repos| Ok((repos.signed_refs(&id)?, repos.is_followed(&id)?)))
            .await?;
        let own_key = self.author.owner_key();
        Ok(RepoSummary {
            id: id.to_string(),
            url: format!("guts://{id}"),
            name: snapshot.as_ref().map(|s| s.signed.header.name.to_string()),
            owner: snapshot
                .as_ref()
                .map(|s| hex_key(s.signed.signer.as_bytes())),
            owned: snapshot
                .as_ref()
                .is_some_and(|s| s.signed.signer.as_bytes() == own_key.as_bytes()),
            followed,
            sequence: snapshot.as_ref().map_or(0, |s| s.sequence()),
            ref_count: snapshot.as_ref().map_or(0, |s| s.refs.len()),
            head: snapshot
                .as_ref()
                .and_then(|s| s.signed.header.head.as_ref().map(|h| h.to_string())),
            path: self.store.repos().path(&id).display().to_string(),
        })
    }

    /// The node's data dir.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }
}

fn hex_key(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
