//! [`NodeHandle`]: what embedders, the control API and tests drive a running node with.

use std::path::PathBuf;
use std::time::Duration;

use guts_api::collab::{ChangeRequest, ChangeResponse, IssueReport, PatchReport};
use guts_api::{
    PeerReport, ProposalReport, RepoDetail, RepoSummary, StatusReport, SyncOutcome, SyncProgress,
};
use guts_protocol::{Canonical, RepoName, RepositoryId, SignedVersion, VersionId};
use guts_storage::{Held, Pushed, RefUpdate, Repositories, StorageError};

use crate::store::Store;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

use crate::author::Author;
use crate::collab::Collab;
use crate::error::NodeError;
use crate::maintainers;
use crate::network::{Client, Command};
use crate::sync::{Engine, SyncError};

/// A cheap, cloneable way to drive a running node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) peer_id: PeerId,
    pub(crate) client: Client,
    pub(crate) engine: Engine,
    pub(crate) author: Author,
    pub(crate) collab: Collab,
    pub(crate) store: Store,
    pub(crate) data_dir: PathBuf,
    /// The repositories mirrored from an upstream.
    pub(crate) mirrors: crate::mirrors::list::Mirrors,
    /// How long `connect` waits.
    pub(crate) connect_timeout: Duration,
}

impl NodeHandle {
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
        report.recovering = self.read(|repos| Ok(repos.recovering())).await?;
        report.key = maintainers::hex_key(&self.author.owner_key());
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
        self.import_from(guts_storage::ImportSource::Local(path), name)
            .await
    }

    /// [`Self::import`] from a local repository, a bundle file or a URL git fetches from.
    pub async fn import_from(
        &self,
        source: guts_storage::ImportSource,
        name: Option<RepoName>,
    ) -> Result<(RepoSummary, bool), NodeError> {
        let imported = self.author.import(source, name).await?;
        let summary = self.summary(imported.snapshot.repository()).await?;
        Ok((summary, imported.changed))
    }

    /// Creates an empty repository owned by this node.
    pub async fn init_repo(&self, name: RepoName) -> Result<RepoSummary, NodeError> {
        self.init_repo_with(name, None).await
    }

    /// [`Self::init_repo`] with a visibility: a private or encrypted one is never
    /// announced.
    pub async fn init_repo_with(
        &self,
        name: RepoName,
        visibility: Option<guts_protocol::Visibility>,
    ) -> Result<RepoSummary, NodeError> {
        let id = self.author.init(name, visibility).await?;
        self.summary(id).await
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
        let held = self.canonical(id).await?;
        let summary = self.summary(id).await?;
        if held.is_none() && !summary.followed {
            return Ok(None);
        }
        let me = self.author.owner_key();
        let (refs, maintainers, positions) = match &held {
            Some((held, canonical)) => {
                let refs = canonical
                    .refs
                    .iter()
                    .map(|(n, t)| (n.to_string(), t.to_string()))
                    .collect();
                match held {
                    Held::Shared(state) => (
                        refs,
                        Some(maintainers::report(state, &me)),
                        maintainers::positions(state),
                    ),
                    Held::Owner(_) => (refs, None, Default::default()),
                }
            }
            None => Default::default(),
        };
        let blocked = self.engine.change_policy().blocked.clone();
        let (forks, contributions_off) = self
            .read(move |repos| {
                Ok(match repos.held(&id)? {
                    Some(held) => (
                        repos.forks(&id)?,
                        repos.contributions_closed(&id, &held.into_state().identity)?,
                    ),
                    None => Default::default(),
                })
            })
            .await?;
        let forks = forks
            .iter()
            .filter(|f| !blocked.contains(f.signed.signer.as_bytes()))
            .map(|f| guts_api::ForkReport {
                key: hex::encode(f.signed.signer.as_bytes()),
                sequence: f.sequence(),
                refs: f
                    .refs
                    .iter()
                    .map(|(n, t)| (n.to_string(), t.to_string()))
                    .collect(),
                you: f.signed.signer == me,
            })
            .collect();
        Ok(Some(RepoDetail {
            forks,
            contributions_off,
            refs,
            holders: self
                .engine
                .holders(&id)
                .iter()
                .map(|p| p.to_string())
                .collect(),
            summary,
            maintainers,
            positions,
        }))
    }

    /// What is held of `id`, with its canonical refs: of an encrypted repository this
    /// node reads, the real refs it opened (a seeder sees only the sealed form's).
    async fn canonical(&self, id: RepositoryId) -> Result<Option<(Held, Canonical)>, NodeError> {
        self.read(move |repos| {
            let held = repos.canonical(&id)?;
            Ok(match (held, repos.opened_refs(&id)?) {
                (Some((held, _)), Some((refs, head))) => Some((held, Canonical { refs, head })),
                (held, _) => held,
            })
        })
        .await
    }

    async fn summary(&self, id: RepositoryId) -> Result<RepoSummary, NodeError> {
        let held = self.canonical(id).await?;
        let (followed, opened) = self
            .read(move |repos| {
                let opened = repos.opened_refs(&id)?.map(|_| repos.opened_path(&id));
                Ok((repos.is_followed(&id)?, opened))
            })
            .await?;
        let own_key = self.author.owner_key();
        let mut summary = RepoSummary {
            id: id.to_string(),
            url: format!("guts://{id}"),
            name: None,
            owner: None,
            owned: false,
            followed,
            sequence: 0,
            ref_count: 0,
            head: None,
            // git reads an encrypted repository's opened form.
            path: opened
                .unwrap_or_else(|| self.store.repos().path(&id))
                .display()
                .to_string(),
        };
        if let Some((held, canonical)) = held {
            summary.ref_count = canonical.refs.len();
            summary.head = canonical.head.map(|h| h.to_string());
            match held {
                Held::Owner(s) => {
                    summary.name = Some(s.signed.header.name.to_string());
                    summary.owner = Some(hex_key(s.signed.signer.as_bytes()));
                    summary.owned = s.signed.signer == own_key;
                    summary.sequence = s.sequence();
                }
                Held::Shared(state) => {
                    let genesis = state.identity.genesis();
                    summary.name = Some(genesis.name.to_string());
                    summary.owner = Some(hex_key(genesis.maintainers[0].as_bytes()));
                    summary.owned = state.identity.current().is_maintainer(&own_key);
                    summary.sequence = state.revision();
                }
            }
        }
        Ok(summary)
    }

    /// Proposes that `maintainers` with `threshold` maintain `id` from its next identity
    /// version on, signed by this node's key.
    pub async fn propose(
        &self,
        id: RepositoryId,
        maintainers: Vec<ed25519_dalek::VerifyingKey>,
        threshold: u16,
    ) -> Result<ProposalReport, NodeError> {
        self.propose_with(id, maintainers, threshold, None).await
    }

    /// [`Self::propose`] with the next version's visibility (`None`: as now).
    pub async fn propose_with(
        &self,
        id: RepositoryId,
        maintainers: Vec<ed25519_dalek::VerifyingKey>,
        threshold: u16,
        visibility: Option<guts_protocol::Visibility>,
    ) -> Result<ProposalReport, NodeError> {
        let version = self
            .author
            .propose(id, maintainers, threshold, visibility)
            .await?;
        self.proposal_report(id, version).await
    }

    /// Signs the pending proposal `version` of `id` with this node's key.
    pub async fn accept(
        &self,
        id: RepositoryId,
        version: VersionId,
    ) -> Result<ProposalReport, NodeError> {
        let version = self.author.accept(id, version).await?;
        self.proposal_report(id, version).await
    }

    async fn proposal_report(
        &self,
        id: RepositoryId,
        version: SignedVersion,
    ) -> Result<ProposalReport, NodeError> {
        let held = self.read(move |repos| repos.held(&id)).await?;
        let state = held
            .ok_or(StorageError::UnknownRepository(id))?
            .into_state();
        Ok(maintainers::proposal(&state.identity, &version))
    }

    /// A push area for a patch's commits to `id` (anyone may contribute).
    pub async fn contribution_area(&self, id: RepositoryId) -> Result<PathBuf, NodeError> {
        self.collab.area(id).await
    }

    /// Makes a change to a patch or an issue of `id` (or opens one), signed with this
    /// node's key, and announces it.
    pub async fn change(
        &self,
        id: RepositoryId,
        request: ChangeRequest,
    ) -> Result<ChangeResponse, NodeError> {
        self.collab.change(id, request).await
    }

    /// What happened to the patches and issues of `repository` (every one held when
    /// `None`) since `since` (seconds since the epoch), oldest first.
    pub async fn events(
        &self,
        repository: Option<RepositoryId>,
        since: u64,
    ) -> Result<Vec<guts_api::collab::EventReport>, NodeError> {
        self.collab
            .events(repository.into_iter().collect(), since)
            .await
    }

    /// The issues of `id`, newest first.
    pub async fn issues(&self, id: RepositoryId) -> Result<Vec<IssueReport>, NodeError> {
        self.collab.issues(id).await
    }

    /// One issue of `id`, by id or unique prefix.
    pub async fn issue(&self, id: RepositoryId, which: String) -> Result<IssueReport, NodeError> {
        self.collab.issue(id, which).await
    }

    /// The patches of `id`, newest first.
    pub async fn patches(&self, id: RepositoryId) -> Result<Vec<PatchReport>, NodeError> {
        self.collab.patches(id).await
    }

    /// One patch of `id`, by id or unique prefix.
    pub async fn patch(&self, id: RepositoryId, which: String) -> Result<PatchReport, NodeError> {
        self.collab.patch(id, which).await
    }

    /// The node's data dir.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }
}

fn hex_key(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
