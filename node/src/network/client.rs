//! How the rest of the node talks to the event loop: [`Command`]s in (with a oneshot reply
//! where there is an answer), [`Event`]s out (what peers asked or told us, for the sync
//! side to judge and answer). The loop owns the swarm; nothing else touches it.

use guts_api::{PeerReport, StatusReport};
use guts_protocol::RepositoryId;
use guts_protocol::wire::{
    Announcement, ChangesAnnouncement, SharedAnnouncement, SyncRequest, SyncResponse,
};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId, gossipsub};
use tokio::sync::{mpsc, oneshot};

use crate::connection_manager::Penalty;
use crate::error::NodeError;

/// Requests to the event loop.
pub(crate) enum Command {
    Status(oneshot::Sender<StatusReport>),
    /// Sets the gauges `/metrics` shows that are read off the swarm.
    RefreshGauges(oneshot::Sender<()>),
    Peers(oneshot::Sender<Vec<PeerReport>>),
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    /// Answered once `peer` has a direct (not relayed) connection, or has none at all
    /// (`None`), or data may go through the relay it is reached by (`Some(relay)`).
    AwaitDirect {
        peer: PeerId,
        reply: oneshot::Sender<Option<PeerId>>,
    },
    /// The relay `peer` is reached through, when every connection to it is relayed.
    RelayedVia {
        peer: PeerId,
        reply: oneshot::Sender<Option<PeerId>>,
    },
    RoutingTable(oneshot::Sender<Vec<PeerId>>),
    Connect {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NodeError>>,
    },
    AllowRequest {
        peer: PeerId,
        key: &'static str,
        reply: oneshot::Sender<bool>,
    },
    SyncRequest {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, RequestError>>,
    },
    /// The answer to an [`Event::InboundRequest`].
    Respond {
        channel: ResponseChannel<SyncResponse>,
        response: SyncResponse,
    },
    FindProviders {
        repository: RepositoryId,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    FindPeer {
        peer: PeerId,
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Provide {
        repository: RepositoryId,
    },
    StopProviding {
        repository: RepositoryId,
    },
    Announce {
        announcement: Box<Announcement>,
    },
    AnnounceShared {
        announcement: Box<SharedAnnouncement>,
    },
    AnnounceChanges {
        announcement: ChangesAnnouncement,
    },
    Penalize {
        peer: PeerId,
        penalty: Penalty,
    },
    SetSyncing {
        peer: PeerId,
        syncing: bool,
    },
    RecordUseful {
        peer: PeerId,
    },
    /// The verdict on an [`Event::Announcement`].
    Validated {
        message_id: gossipsub::MessageId,
        propagation_source: PeerId,
        acceptance: gossipsub::MessageAcceptance,
    },
    Shutdown,
}

/// The gossip topics a node takes announcements on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topic {
    /// Owners' snapshots.
    Refs,
    /// Views and identity versions of repositories with maintainers.
    Shared,
    /// New tips of patches and issues.
    Changes,
}

/// What the event loop hands out for others to decide on.
#[derive(Debug)]
pub(crate) enum Event {
    /// A peer asked for refs or a repository list (within its rate limit); answer with
    /// [`Client::respond`].
    InboundRequest {
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    },
    /// A gossiped announcement, not yet decoded; report the verdict with
    /// [`Client::validated`] (gossipsub waits for it before relaying).
    Announcement {
        propagation_source: PeerId,
        message_id: gossipsub::MessageId,
        /// The peer that published it, if the message says.
        publisher: Option<PeerId>,
        /// The topic it came on.
        topic: Topic,
        data: Vec<u8>,
    },
    /// A connection to `peer` came up; `first` when the node had no other peer (start,
    /// restart, a healed partition).
    PeerConnected { peer: PeerId, first: bool },
}

/// Why a sync request (GetRefs, ListRepositories) got no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RequestError {
    /// The peer misbehaved: an oversized or undecodable answer, or one that does not fit
    /// the request.
    #[error("{reason}")]
    Misbehaved { penalty: Penalty, reason: String },
    /// No answer: a timeout, a disconnection, an unsupported protocol.
    #[error("{0}")]
    Failed(String),
}

/// A cheap, cloneable handle on the event loop.
#[derive(Clone)]
pub(crate) struct Client {
    commands: mpsc::Sender<Command>,
}

impl Client {
    pub(crate) fn new(commands: mpsc::Sender<Command>) -> Self {
        Client { commands }
    }

    /// Sends a command and waits for its answer.
    pub(crate) async fn ask<T>(
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
        // Most notices fit at once; only a full queue needs a task to wait for room.
        if let Err(mpsc::error::TrySendError::Full(command)) = self.commands.try_send(command) {
            let commands = self.commands.clone();
            tokio::spawn(async move {
                let _ = commands.send(command).await;
            });
        }
    }

    /// Asks the event loop to stop.
    pub(crate) async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    pub(crate) fn penalize(&self, peer: PeerId, penalty: Penalty) {
        self.tell(Command::Penalize { peer, penalty });
    }

    /// Whether `peer` is within its rate for requests under `key`.
    pub(crate) async fn allow_request(&self, peer: PeerId, key: &'static str) -> bool {
        self.ask(|reply| Command::AllowRequest { peer, key, reply })
            .await
            .unwrap_or(false)
    }

    /// Sends `request` to `peer` and waits for its answer.
    pub(crate) async fn request(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<SyncResponse, RequestError> {
        self.ask(|reply| Command::SyncRequest {
            peer,
            request,
            reply,
        })
        .await
        .map_err(|e| RequestError::Failed(e.to_string()))?
    }

    /// `peer`'s signed refs of `repository`.
    pub(crate) async fn get_refs(
        &self,
        peer: PeerId,
        repository: RepositoryId,
    ) -> Result<SyncResponse, RequestError> {
        self.request(peer, SyncRequest::GetRefs { repository })
            .await
    }

    /// The tips of `repository`'s patches, issues and moderation at `peer` (a peer on
    /// sync 1.2.0; an older one fails without a word on the wire).
    pub(crate) async fn get_changes(
        &self,
        peer: PeerId,
        repository: RepositoryId,
    ) -> Result<Vec<guts_protocol::wire::ChangeTip>, RequestError> {
        match self
            .request(peer, SyncRequest::GetChanges { repository })
            .await?
        {
            SyncResponse::Changes(tips) => Ok(tips),
            SyncResponse::NotFound => Err(RequestError::Failed("does not hold it".into())),
            SyncResponse::RateLimited => Err(RequestError::Failed("busy (rate-limited)".into())),
            other => Err(RequestError::Misbehaved {
                penalty: Penalty::ProtocolViolation,
                reason: format!("answered a request for changes with {other:?}"),
            }),
        }
    }

    /// Forks of `repository` that `peer` holds, newer than those in `known`.
    pub(crate) async fn get_forks(
        &self,
        peer: PeerId,
        repository: RepositoryId,
        known: Vec<guts_protocol::forks::ForkSeen>,
    ) -> Result<Vec<guts_protocol::SignedRefs>, RequestError> {
        match self
            .request(peer, SyncRequest::GetForks { repository, known })
            .await?
        {
            SyncResponse::Forks(forks) if forks.len() <= guts_protocol::forks::MAX_FORKS => {
                Ok(forks)
            }
            SyncResponse::NotFound => Err(RequestError::Failed("does not hold it".into())),
            SyncResponse::RateLimited => Err(RequestError::Failed("busy (rate-limited)".into())),
            other => Err(RequestError::Misbehaved {
                penalty: Penalty::ProtocolViolation,
                reason: match other {
                    SyncResponse::Forks(f) => format!(
                        "answered with {} forks, more than {}",
                        f.len(),
                        guts_protocol::forks::MAX_FORKS
                    ),
                    other => format!("answered a request for forks with {other:?}"),
                },
            }),
        }
    }

    /// The repositories `peer` holds.
    pub(crate) async fn list_repositories(
        &self,
        peer: PeerId,
    ) -> Result<Vec<RepositoryId>, RequestError> {
        match self.request(peer, SyncRequest::ListRepositories).await? {
            SyncResponse::Repositories(ids) => Ok(ids),
            // Every request may be turned away by the peer's rate limit: no fault of its.
            SyncResponse::RateLimited => Err(RequestError::Failed("busy (rate-limited)".into())),
            other => Err(RequestError::Misbehaved {
                penalty: Penalty::ProtocolViolation,
                reason: format!("answered a repository list request with {other:?}"),
            }),
        }
    }

    /// Answers an inbound request.
    pub(crate) fn respond(&self, channel: ResponseChannel<SyncResponse>, response: SyncResponse) {
        self.tell(Command::Respond { channel, response });
    }

    /// The peers connected now.
    pub(crate) async fn connected_peers(&self) -> Vec<PeerId> {
        self.ask(Command::ConnectedPeers).await.unwrap_or_default()
    }

    /// Returns once `peer` has a direct connection (or no connection: a fetch dials it),
    /// or once data may go through the relay it is reached by: then that relay. Pending
    /// while only relayed connections lead to it and hole punching may still succeed.
    pub(crate) async fn await_direct(&self, peer: PeerId) -> Option<PeerId> {
        self.ask(|reply| Command::AwaitDirect { peer, reply })
            .await
            .ok()
            .flatten()
    }

    /// The relay `peer` is reached through now, when no direct connection leads to it.
    pub(crate) async fn relayed_via(&self, peer: PeerId) -> Option<PeerId> {
        self.ask(|reply| Command::RelayedVia { peer, reply })
            .await
            .ok()
            .flatten()
    }

    pub(crate) async fn find_providers(&self, repository: RepositoryId) -> Vec<PeerId> {
        self.ask(|reply| Command::FindProviders { repository, reply })
            .await
            .unwrap_or_default()
    }

    /// Whether `peer` is connected now, or could be reached: addresses of it found on
    /// the DHT, and a connection made to one of them.
    pub(crate) async fn reach(&self, peer: PeerId) -> bool {
        // Connected, or in the routing table (a request dials it there).
        if self.connected_peers().await.contains(&peer)
            || self
                .ask(Command::RoutingTable)
                .await
                .is_ok_and(|t| t.contains(&peer))
        {
            return true;
        }
        let addrs = self
            .ask(|reply| Command::FindPeer { peer, reply })
            .await
            .unwrap_or_default();
        for addr in addrs {
            let Ok(addr) = addr.with_p2p(peer) else {
                continue;
            };
            let connected = self
                .ask(|reply| Command::Connect { addr, reply })
                .await
                .is_ok_and(|r| r.is_ok());
            if connected {
                return true;
            }
        }
        false
    }

    pub(crate) fn provide(&self, repository: RepositoryId) {
        self.tell(Command::Provide { repository });
    }

    /// Stops renewing this node's provider record of `repository` (others' copies of it
    /// expire on their own).
    pub(crate) fn stop_providing(&self, repository: RepositoryId) {
        self.tell(Command::StopProviding { repository });
    }

    pub(crate) fn announce(&self, announcement: Announcement) {
        self.tell(Command::Announce {
            announcement: Box::new(announcement),
        });
    }

    /// Publishes news of a repository with maintainers on its own topic.
    pub(crate) fn announce_shared(&self, announcement: SharedAnnouncement) {
        self.tell(Command::AnnounceShared {
            announcement: Box::new(announcement),
        });
    }

    /// Publishes new tips of a repository's patches and issues.
    pub(crate) fn announce_changes(&self, announcement: ChangesAnnouncement) {
        self.tell(Command::AnnounceChanges { announcement });
    }

    /// Protects `peer` while a transfer from it runs (the connection manager keeps it).
    pub(crate) fn set_syncing(&self, peer: PeerId, syncing: bool) {
        self.tell(Command::SetSyncing { peer, syncing });
    }

    pub(crate) fn record_useful(&self, peer: PeerId) {
        self.tell(Command::RecordUseful { peer });
    }

    /// Reports the verdict on a gossiped announcement.
    pub(crate) fn validated(
        &self,
        message_id: gossipsub::MessageId,
        propagation_source: PeerId,
        acceptance: gossipsub::MessageAcceptance,
    ) {
        self.tell(Command::Validated {
            message_id,
            propagation_source,
            acceptance,
        });
    }
}
