//! Starting a node and talking to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use guts_protocol::wire::{Announcement, SyncRequest, SyncResponse};
use guts_protocol::{RepoName, RepositoryId, SignedRefs};
use libp2p::{Multiaddr, PeerId};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::api::types::{
    PeerReport, RepoDetail, RepoSummary, StatusReport, SyncOutcome, SyncProgress,
};
use crate::config::Config;
use crate::connection_manager::Penalty;
use crate::error::NodeError;
use crate::event_loop::{Command, EventLoop};
use crate::metrics::Metrics;
use crate::sync::engine::{Engine, GetRefsError, SyncError};
use crate::{api, swarm};

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    handle: NodeHandle,
    event_loop: JoinHandle<()>,
    api: Option<api::Server>,
    /// Tells the sync engine's background tasks to stop.
    stop_engine: tokio::sync::watch::Sender<bool>,
}

/// A cheap, cloneable way to drive a running node.
#[derive(Clone)]
pub struct NodeHandle {
    peer_id: PeerId,
    net: Network,
    engine: Engine,
    data_dir: PathBuf,
    connect_timeout: Duration,
}

/// The event loop, as the rest of the node sees it: requests with answers, and notices.
#[derive(Clone)]
pub(crate) struct Network {
    commands: mpsc::Sender<Command>,
}

impl Node {
    /// Validates `config`, opens the data dir, binds every listen address and the control
    /// API, and starts the node. Returns once the listen addresses are known.
    pub async fn start(config: Config) -> Result<Node, NodeError> {
        config.validate()?;
        let data_dir = if config.data_slots {
            let dir = guts_storage::DataDir::claim_slot(&config.data_dir)?;
            tracing::info!(
                "data dir {} (a slot of the shared data dir)",
                dir.path().display()
            );
            dir
        } else {
            guts_storage::DataDir::open(&config.data_dir)?
        };
        let identity = data_dir.identity()?;
        let keypair = crate::identity::keypair(&identity)?;
        let peer_id = keypair.public().to_peer_id();
        if identity.was_created() {
            tracing::info!(
                "created a new identity in {}: peer id {peer_id}",
                data_dir.path().display()
            );
        }

        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let swarm = swarm::build(keypair, &config, &mut registry, metrics.manager.clone())?;
        let mut control = swarm.behaviour().stream.new_control();
        let incoming = control
            .accept(crate::sync::pack::protocol(&config.network))
            .map_err(|e| NodeError::Setup(format!("pack protocol: {e}")))?;
        let (tx, rx) = mpsc::channel(256);
        let net = Network { commands: tx };
        let engine = Engine::new(
            &config,
            metrics.transfers.clone(),
            data_dir.repositories(),
            net.clone(),
            control,
            identity.signing_key().clone(),
            peer_id,
        );
        let handle = NodeHandle {
            peer_id,
            net,
            engine: engine.clone(),
            data_dir: data_dir.path().to_owned(),
            // Dials may wait in the connection manager's queue before they start.
            connect_timeout: config.connection_timeout + Duration::from_secs(30),
        };

        let mut event_loop = EventLoop::new(
            swarm,
            config.clone(),
            rx,
            metrics,
            engine.clone(),
            handle.net.commands.clone(),
        );
        event_loop.start_listening().await?;
        let api = match config.api {
            Some(addr) => Some(api::Server::start(addr, handle.clone(), Arc::new(registry)).await?),
            None => None,
        };
        tracing::info!(
            network = %config.network,
            "guts node {} started: peer id {peer_id}",
            env!("CARGO_PKG_VERSION")
        );
        let event_loop = tokio::spawn(async move {
            // The data dir stays locked for as long as the node runs.
            let _data_dir = data_dir;
            event_loop.run().await;
        });
        let (stop_engine, stopped) = tokio::sync::watch::channel(false);
        engine
            .start(
                incoming,
                config.max_concurrent_transfers,
                config.anti_entropy_interval,
                stopped,
            )
            .await?;
        Ok(Node {
            handle,
            event_loop,
            api,
            stop_engine,
        })
    }

    /// A handle to drive the node.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.handle.peer_id
    }

    /// Where the control API listens, if it is on.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|a| a.local_addr())
    }

    /// Stops the API and the event loop, closing every connection and releasing the data
    /// dir.
    pub async fn shutdown(self) {
        if let Some(api) = self.api {
            api.shutdown().await;
        }
        let _ = self.stop_engine.send(true);
        let _ = self.handle.net.commands.send(Command::Shutdown).await;
        let _ = self.event_loop.await;
    }
}

impl Network {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Sends a notice without waiting (nothing to answer).
    fn tell(&self, command: Command) {
        let commands = self.commands.clone();
        tokio::spawn(async move {
            let _ = commands.send(command).await;
        });
    }

    pub(crate) fn penalize(&self, peer: PeerId, penalty: Penalty) {
        self.tell(Command::Penalize { peer, penalty });
    }

    pub(crate) async fn allow_request(&self, peer: PeerId, key: &'static str) -> bool {
        self.ask(|reply| Command::AllowRequest { peer, key, reply })
            .await
            .unwrap_or(false)
    }

    pub(crate) async fn get_refs(
        &self,
        peer: PeerId,
        repository: RepositoryId,
    ) -> Result<SyncResponse, GetRefsError> {
        self.ask(|reply| Command::SyncRequest {
            peer,
            request: SyncRequest::GetRefs { repository },
            reply,
        })
        .await
        .map_err(|e| GetRefsError::Failed(e.to_string()))?
    }

    /// The peers connected now.
    pub(crate) async fn connected_peers(&self) -> Vec<PeerId> {
        self.ask(Command::Peers)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.peer_id.parse().ok())
            .collect()
    }

    /// The repositories `peer` holds.
    pub(crate) async fn list_repositories(
        &self,
        peer: PeerId,
    ) -> Result<Vec<RepositoryId>, GetRefsError> {
        let response = self
            .ask(|reply| Command::SyncRequest {
                peer,
                request: SyncRequest::ListRepositories,
                reply,
            })
            .await
            .map_err(|e| GetRefsError::Failed(e.to_string()))??;
        match response {
            SyncResponse::Repositories(ids) => Ok(ids),
            other => Err(GetRefsError::Failed(format!(
                "answered a repository list request with {other:?}"
            ))),
        }
    }

    pub(crate) async fn find_providers(&self, repository: RepositoryId) -> Vec<PeerId> {
        self.ask(|reply| Command::FindProviders { repository, reply })
            .await
            .unwrap_or_default()
    }

    pub(crate) fn provide(&self, repository: RepositoryId) {
        self.tell(Command::Provide { repository });
    }

    pub(crate) fn announce(&self, announcement: Announcement) {
        self.tell(Command::Announce {
            announcement: Box::new(announcement),
        });
    }

    /// Protects `peer` while a transfer from it runs (the connection manager keeps it).
    pub(crate) fn set_syncing(&self, peer: PeerId, syncing: bool) {
        self.tell(Command::SetSyncing { peer, syncing });
    }

    pub(crate) fn record_useful(&self, peer: PeerId) {
        self.tell(Command::RecordUseful { peer });
    }
}

impl NodeHandle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's status.
    pub async fn status(&self) -> Result<StatusReport, NodeError> {
        self.net.ask(Command::Status).await
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerReport>, NodeError> {
        self.net.ask(Command::Peers).await
    }

    /// The peers in the Kademlia routing table.
    pub async fn routing_table(&self) -> Result<Vec<PeerId>, NodeError> {
        self.net.ask(Command::RoutingTable).await
    }

    /// Dials `addr` (with or without `/p2p/<peer-id>`) and waits until the peer is
    /// connected and identified as a node of our network. The peer is then protected:
    /// kept connected however idle.
    pub async fn connect(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        let wait = self.net.ask(|reply| Command::Connect {
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
        let imported = self.engine.import(path, name).await?;
        let summary = self.summary(imported.snapshot.repository()).await?;
        Ok((summary, imported.changed))
    }

    /// Creates an empty repository owned by this node.
    pub async fn init_repo(&self, name: RepoName) -> Result<RepoSummary, NodeError> {
        let snapshot = self.engine.init(name).await?;
        self.summary(snapshot.repository()).await
    }

    /// A staging area for a push to `id` (this node must own it).
    pub async fn push_area(&self, id: RepositoryId) -> Result<PathBuf, NodeError> {
        Ok(self.engine.push_area(id).await?)
    }

    /// Applies a push whose objects are in `area`.
    pub async fn push(
        &self,
        id: RepositoryId,
        area: PathBuf,
        updates: Vec<guts_storage::RefUpdate>,
    ) -> Result<guts_storage::Pushed, NodeError> {
        Ok(self.engine.push(id, area, updates).await?)
    }

    /// Follows `id`: this node fetches it and keeps it up to date from now on.
    pub async fn follow(&self, id: RepositoryId) -> Result<bool, NodeError> {
        let repos = self.engine.repos().clone();
        let added = tokio::task::spawn_blocking(move || repos.follow(&id))
            .await
            .map_err(|e| NodeError::Setup(e.to_string()))??;
        self.engine.trigger(id, None);
        Ok(added)
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
        let repos = self.engine.repos().clone();
        let ids = tokio::task::spawn_blocking(
            move || -> Result<Vec<RepositoryId>, guts_storage::StorageError> {
                let mut ids = repos.list()?;
                for id in repos.followed()? {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                Ok(ids)
            },
        )
        .await
        .map_err(|e| NodeError::Setup(e.to_string()))??;
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
        let repos = self.engine.repos().clone();
        Ok(tokio::task::spawn_blocking(move || repos.signed_refs(&id))
            .await
            .map_err(|e| NodeError::Setup(e.to_string()))??)
    }

    async fn summary(&self, id: RepositoryId) -> Result<RepoSummary, NodeError> {
        let repos = self.engine.repos().clone();
        let (snapshot, followed) = tokio::task::spawn_blocking(move || {
            Ok::<_, guts_storage::StorageError>((
                repos.signed_refs(&id)?,
                repos.followed()?.contains(&id),
            ))
        })
        .await
        .map_err(|e| NodeError::Setup(e.to_string()))??;
        let own_key = self.engine.owner_key();
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
            path: self.engine.repos().path(&id).display().to_string(),
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
