//! The node's control API as its clients see it: the JSON bodies of every endpoint, the
//! default address and data dir, the credential ([`auth`]), and with the `client` feature
//! the client itself ([`client`]). Its own crate so the CLI and `git-remote-guts` need
//! neither libp2p nor an HTTP server to speak to a node.

mod address;
pub mod auth;
#[cfg(feature = "client")]
pub mod client;
pub mod collab;
pub mod mirrors;
pub mod seeding;
pub mod settings;
pub mod terminal;

pub use address::{ApiAddress, ApiAddressError};

/// Where a node's control API listens unless told otherwise.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:9080";

/// The default data dir: the platform data dir (`~/.local/share/guts` on Linux), or
/// `./guts-data` where there is no home directory (e.g. a bare container).
pub fn default_data_dir() -> std::path::PathBuf {
    dirs::data_dir()
        .map(|d| d.join("guts"))
        .unwrap_or_else(|| std::path::PathBuf::from("guts-data"))
}

use serde::{Deserialize, Serialize};

/// `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// This node's peer id.
    pub peer_id: String,
    /// Network name.
    pub network: String,
    /// Guts version.
    pub version: String,
    /// This node's public key (hex): what a maintainer adds to a repository's identity
    /// to make this node's key a maintainer.
    #[serde(default)]
    pub key: String,
    /// Addresses the node listens on, as bound (port 0 resolved).
    pub listen_addresses: Vec<String>,
    /// Addresses other nodes are told to reach this node at.
    pub external_addresses: Vec<String>,
    /// Number of connected peers.
    pub connected_peers: usize,
    /// Number of peers in the Kademlia routing table.
    pub routing_table_size: usize,
    /// Peers in this node's gossip mesh for announcements (0: announcements go nowhere).
    pub gossip_mesh_peers: usize,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Kademlia mode in effect (`client` or `server`).
    pub dht_mode: String,
    /// Whether mDNS discovery is on.
    pub mdns: bool,
    /// Whether the node is a circuit relay for others.
    pub relay_server: bool,
    /// What the relay server carries for others, when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayUseReport>,
    /// Which repositories the node keeps: `followed` (those it owns or follows) or
    /// `all` (every one it hears of).
    #[serde(default)]
    pub replicate: String,
    /// Whether a swarm key makes this a private network.
    #[serde(default)]
    pub private_network: bool,
    /// How many peers the allow-list admits; `None` when any peer may connect.
    #[serde(default)]
    pub allowed_peers: Option<usize>,
    /// Repositories whose owner signed two different snapshots with one sequence.
    #[serde(default)]
    pub equivocations: Vec<EquivocationReport>,
    /// Repositories still to be checked after a crash (in the background: the node
    /// answers meanwhile, and a write to one not reached yet checks it first).
    #[serde(default)]
    pub recovering: usize,
    /// Gossiped announcements since start, by verdict (`accepted`, `old`, `rejected`...),
    /// as the `guts_announcements_total` metric counts them: a node that never receives
    /// one hears of new commits only through anti-entropy.
    #[serde(default)]
    pub announcements: std::collections::BTreeMap<String, u64>,
    /// Each configured bootstrap address and how it is doing.
    pub bootstrap: Vec<BootstrapReport>,
    /// Whether others can dial this node directly, as AutoNAT found: `public`, `private`
    /// (behind NAT or a firewall) or `unknown` (nothing tested yet).
    #[serde(default)]
    pub reachability: String,
    /// Relay reservations: listening through relays, configured or (when private)
    /// chosen by the node.
    #[serde(default)]
    pub reservations: Vec<ReservationReport>,
    /// The connection manager's limits.
    pub limits: LimitsReport,
    /// Connection and dial counts.
    pub connections: ConnectionsReport,
    /// Pack transfers since start.
    pub transfers: TransfersReport,
}

/// An owner key seen signing two different snapshots with the same sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EquivocationReport {
    /// The repository.
    pub repository: String,
    /// The sequence signed twice.
    pub sequence: u64,
    /// The peer that offered the second version.
    pub peer: String,
    /// With maintainers: the maintainer's key (hex) that signed two views.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

/// Pack transfers since the node started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransfersReport {
    /// Packs fetched, verified and applied.
    pub fetched_packs: u64,
    /// Objects in them.
    pub fetched_objects: u64,
    /// Their bytes on the wire.
    pub fetched_bytes: u64,
    /// Packs sent to peers.
    pub served_packs: u64,
    /// Their bytes.
    pub served_bytes: u64,
}

/// The connection manager's limits, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsReport {
    /// Established connections, all peers.
    pub max_connections: u32,
    /// Inbound connections in their handshake.
    pub max_pending_inbound: u32,
    /// Connections to one peer.
    pub max_connections_per_peer: u32,
    /// Inbound connections from one IP.
    pub max_peers_per_ip: u32,
    /// Below it the node dials more peers.
    pub low_watermark: u32,
    /// Above it the node trims to the low watermark.
    pub high_watermark: u32,
    /// Dials started per second.
    pub dials_per_second: u32,
    /// Dials in flight at once.
    pub max_concurrent_dials: u32,
    /// DHT queries in flight at once.
    pub max_concurrent_dht_queries: u32,
    /// Requests per peer per second on each protocol.
    pub requests_per_second_per_peer: u32,
}

/// Current connection counts and totals since start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionsReport {
    /// Established inbound connections.
    pub inbound: usize,
    /// Established outbound connections.
    pub outbound: usize,
    /// Inbound connections in their handshake.
    pub pending_inbound: usize,
    /// Outbound dials under way.
    pub dials_in_flight: usize,
    /// The most dials ever under way at once.
    pub dials_in_flight_peak: usize,
    /// Dials waiting for the rate limit or a free slot.
    pub dials_queued: usize,
    /// Dials released from the queue since start.
    pub dials_started: u64,
    /// Dials that failed since start.
    pub dials_failed: u64,
    /// Peers disconnected above the high watermark since start.
    pub trimmed: u64,
    /// Peers banned now.
    pub banned_peers: usize,
    /// Connections refused since start, by reason.
    pub denied: std::collections::BTreeMap<String, u64>,
    /// Penalties given since start, by reason.
    pub penalties: std::collections::BTreeMap<String, u64>,
    /// DHT queries in flight.
    pub dht_queries: usize,
    /// DHT queries waiting for a slot.
    pub dht_queries_queued: usize,
}

/// A relay reservation: this node listening through a relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationReport {
    /// `<relay address>/p2p/<relay>/p2p-circuit`.
    pub address: String,
    /// Chosen by the node because it is private, not configured with `--listen`.
    pub automatic: bool,
    /// `requested`, `active`, or `<why it failed>; retrying in <time>`.
    pub state: String,
}

/// One configured bootstrap address, or one address a configured DNS name resolved to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapReport {
    /// The address as configured.
    pub address: String,
    /// The peer behind it, once known.
    pub peer_id: Option<String>,
    /// For an address: `connected`, `dialing`, `retrying in <time>` or `other network:
    /// <protocol version>`. For a DNS name: `resolving`, `resolved to <n> address(es); ...`
    /// or `not resolved: <why>; ...`.
    pub state: String,
    /// For an address a configured DNS name resolved to: that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_from: Option<String>,
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The peer dialled us.
    Inbound,
    /// We dialled the peer.
    Outbound,
}

/// One connected peer in `GET /api/v1/peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    /// The peer's id.
    pub peer_id: String,
    /// Remote address of each open connection.
    pub addresses: Vec<String>,
    /// Whether every open connection goes through a relay (no direct one yet).
    #[serde(default)]
    pub relayed: bool,
    /// Direction of the oldest open connection.
    pub direction: Direction,
    /// Number of open connections.
    pub connections: usize,
    /// The peer's agent version, once identified.
    pub agent_version: Option<String>,
    /// The peer's protocol family version, once identified.
    pub protocol_version: Option<String>,
    /// Protocols the peer supports, once identified.
    pub protocols: Vec<String>,
    /// Addresses the peer says it can be reached at (its listen and external
    /// addresses), once identified: what this node's DHT tells others about it.
    #[serde(default)]
    pub listen_addresses: Vec<String>,
    /// When the peer connected (seconds since the Unix epoch).
    pub connected_since_unix: u64,
    /// How long it has been connected, in seconds.
    pub connected_secs: u64,
    /// Round-trip time of the last ping, in milliseconds.
    pub last_ping_rtt_ms: Option<f64>,
    /// Whether the connection manager keeps this peer whatever happens.
    pub protected: bool,
    /// Its score: 0 when well behaved, lower after penalties.
    pub score: f64,
    /// Hole punching towards it, once it was reached through a relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hole_punch: Option<HolePunchReport>,
}

/// What a relay server carries for others, since the node started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayUseReport {
    /// Bytes one circuit may carry (0: no limit).
    pub circuit_bytes: u64,
    /// Seconds one circuit may last.
    pub circuit_secs: u64,
    /// Reservations held now.
    pub reservations: u64,
    /// Reservations accepted (renewals too), and refused (over a limit).
    pub reservations_accepted: u64,
    pub reservations_denied: u64,
    /// Circuits open now.
    pub circuits: u64,
    /// Circuits accepted, and refused (over a limit, or no reservation at the other end).
    pub circuits_accepted: u64,
    pub circuits_denied: u64,
    /// Circuits the relay cut at its byte or time limit.
    pub circuits_cut: u64,
}

/// Hole punching towards a peer reached through a relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolePunchReport {
    /// Rounds started: one per relayed connection, each of up to three attempts.
    pub rounds: u32,
    /// Whether a round succeeded: the peer is reached directly.
    pub punched: bool,
    /// Why the last round failed, when this side was told (the side that holds the relay
    /// reservation is; the other only sees no direct connection come).
    pub last_error: Option<String>,
    /// When this side starts the next round (dials a fresh circuit), in seconds.
    pub next_round_secs: Option<u64>,
}

/// `POST /api/v1/connect` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectRequest {
    /// Multiaddr to dial, with or without `/p2p/<peer-id>`.
    pub address: String,
}

/// `POST /api/v1/connect` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectResponse {
    /// The peer now connected.
    pub peer_id: String,
}

/// Body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, naming the bad value.
    pub error: String,
}

/// How a sync ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SyncOutcome {
    /// No holder had anything newer.
    UpToDate {
        /// The sequence held.
        sequence: u64,
    },
    /// A newer snapshot was fetched, verified and applied.
    Updated {
        /// Its sequence.
        sequence: u64,
        /// The peer that served it.
        from: String,
        /// Objects received.
        objects: u64,
        /// Pack bytes received.
        bytes: u64,
        /// Time the fetch took.
        millis: u64,
        /// The relay the objects came through, when hole punching failed and the relay
        /// carries data; none when they came directly.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<String>,
    },
}

/// Progress of a sync, streamed as JSON lines by `POST /api/v1/repos/<id>/sync`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SyncProgress {
    /// Holders asked for their refs.
    Holders {
        /// How many.
        asked: usize,
    },
    /// The newest snapshot on offer.
    Refs {
        /// Its sequence.
        sequence: u64,
    },
    /// Objects and bytes received so far.
    Receiving {
        /// Objects indexed.
        objects: u64,
        /// Objects the holder announced.
        total: u64,
        /// Bytes received.
        bytes: u64,
    },
    /// Finished.
    Done(SyncOutcome),
    /// Failed.
    Failed {
        /// Why.
        error: String,
    },
}

/// A repository this node holds or follows, in `GET /api/v1/repos`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoSummary {
    /// Its id.
    pub id: String,
    /// `guts://<id>`.
    pub url: String,
    /// Its name, once a snapshot is held.
    pub name: Option<String>,
    /// The owner's public key (hex), once a snapshot is held.
    pub owner: Option<String>,
    /// Whether this node's key owns it.
    pub owned: bool,
    /// Whether this node follows it.
    pub followed: bool,
    /// Sequence of the snapshot held (0: none yet).
    pub sequence: u64,
    /// Number of branches and tags.
    pub ref_count: usize,
    /// The branch a clone checks out.
    pub head: Option<String>,
    /// The bare repository on this node's disk.
    pub path: String,
}

/// One repository in detail, `GET /api/v1/repos/<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: RepoSummary,
    /// Branch and tag targets.
    pub refs: std::collections::BTreeMap<String, String>,
    /// Peers known to hold it.
    pub holders: Vec<String>,
    /// For a repository with maintainers: who they are, the version in effect, what is
    /// pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintainers: Option<MaintainersReport>,
    /// For a repository with maintainers: for each ref any maintainer's view has, where
    /// each maintainer (key, hex) has it (`None`: not in its view).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub positions:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, Option<String>>>,
    /// Contributors' forks held here, by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forks: Vec<ForkReport>,
    /// Whether the maintainers turned contributions off (an authoritative mirror).
    #[serde(default)]
    pub contributions_off: bool,
}

impl RepoDetail {
    /// What a push lists: with maintainers, the pusher's own view (what the push moves; the
    /// canonical refs while it has none); for a key that maintains nothing, its fork; else
    /// the owner's refs.
    pub fn refs_for_push(&self) -> Vec<(String, String)> {
        let me = self
            .maintainers
            .as_ref()
            .and_then(|m| m.maintainers.iter().find(|m| m.you));
        let fork = self.forks.iter().find(|f| f.you);
        match me {
            None if fork.is_some() => fork
                .map(|f| f.refs.iter().map(|(n, t)| (n.clone(), t.clone())).collect())
                .unwrap_or_default(),
            Some(me) if me.view_sequence.is_some() => self
                .positions
                .iter()
                .filter_map(|(name, at)| {
                    at.get(&me.key)
                        .cloned()
                        .flatten()
                        .map(|target| (name.clone(), target))
                })
                .collect(),
            _ => self
                .refs
                .iter()
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect(),
        }
    }
}

/// A contributor's fork: its own signed refs of a repository it does not maintain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForkReport {
    /// The contributor's key, hex.
    pub key: String,
    /// The sequence of the fork held.
    pub sequence: u64,
    /// Its refs and their targets (fetched as `refs/forks/<key>/...`).
    pub refs: std::collections::BTreeMap<String, String>,
    /// Whether it is this node's key.
    pub you: bool,
}

/// The identity of a repository with maintainers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintainersReport {
    /// The identity version in effect (1: the creator alone).
    pub version: u64,
    /// Its hash, hex.
    pub version_id: String,
    /// How many maintainers must agree on a branch, or on a next version.
    pub threshold: u16,
    /// The maintainers and their views.
    pub maintainers: Vec<MaintainerReport>,
    /// Proposed next versions waiting for signatures.
    pub pending: Vec<ProposalReport>,
    /// Whether the repository is private: only its maintainers and `allowed` may see it.
    #[serde(default)]
    pub private: bool,
    /// The keys a private repository allows besides its maintainers (hex); of an
    /// encrypted one, the keys that read it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    /// Whether it is encrypted: seeders keep and serve it without reading it.
    #[serde(default)]
    pub encrypted: bool,
    /// The keys that seed an encrypted repository without reading it (hex).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeders: Vec<String>,
}

/// One maintainer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintainerReport {
    /// Public key, hex.
    pub key: String,
    /// Sequence of its view held here (`None`: no view yet).
    pub view_sequence: Option<u64>,
    /// Whether it is this node's key.
    pub you: bool,
}

/// An identity version: proposed, or taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalReport {
    /// Its hash, hex: what `accept` names.
    pub id: String,
    /// Its version number.
    pub version: u64,
    /// The maintainers it names (keys, hex).
    pub maintainers: Vec<String>,
    /// The threshold it sets.
    pub threshold: u16,
    /// Maintainers of the version before it who signed it (keys, hex).
    pub signed_by: Vec<String>,
    /// Signatures it needs in all: the threshold of the version before it.
    pub needs: u16,
    /// Whether it is in effect now.
    pub in_effect: bool,
}

/// `POST /api/v1/repos/<id>/maintainers`: propose the next identity version, signed by
/// this node's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProposeRequest {
    /// Every maintainer of the new version (keys, hex), this node's included if it stays.
    pub maintainers: Vec<String>,
    /// The new threshold.
    pub threshold: u16,
    /// Who may see the repository from then on (none: as now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<VisibilityBody>,
}

/// A repository's visibility in a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisibilityBody {
    /// Anyone.
    Public,
    /// The maintainers and these keys (hex).
    Private {
        /// The keys allowed besides the maintainers.
        allow: Vec<String>,
    },
    /// Private and encrypted: the maintainers and `readers` hold its key, `seeders`
    /// keep and serve it without it (hex keys).
    Encrypted {
        /// The keys that read it besides the maintainers.
        readers: Vec<String>,
        /// The keys that keep and serve it without reading it.
        #[serde(default)]
        seeders: Vec<String>,
    },
}

/// `POST /api/v1/repos/<id>/maintainers/accept`: sign a pending proposal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptRequest {
    /// The proposal's id (hex), as `pending` lists it.
    pub version: String,
}

/// `POST /api/v1/repos/import`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRequest {
    /// A local git repository, as the node sees the path.
    pub path: String,
    /// Its name in Guts (default: the directory name).
    pub name: Option<String>,
}

/// Answer to an import.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportResponse {
    /// The repository now.
    pub repository: RepoSummary,
    /// Whether a new snapshot was signed (false: nothing changed since the last import).
    pub changed: bool,
}

/// `POST /api/v1/repos/init`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitRequest {
    /// The new repository's name.
    pub name: String,
    /// Keys (hex) a private repository allows besides this node's: `Some` makes it
    /// private from the start (never announced, listed or provided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<Vec<String>>,
    /// Keys (hex) that keep and serve the repository without reading it: with `private`,
    /// makes it encrypted (`private` names its readers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeders: Option<Vec<String>>,
}

/// `POST /api/v1/repos/<id>/push-area` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushAreaResponse {
    /// A bare repository to push objects into (it borrows the repository's objects).
    pub path: String,
}

/// One ref a push moves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushUpdate {
    /// The ref, e.g. `refs/heads/main`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// Its new target (40 hex digits), or `None` to delete it.
    pub new: Option<String>,
    /// Whether it may move to a target that does not descend from the old one.
    pub force: bool,
}

/// `POST /api/v1/repos/<id>/push`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushRequest {
    /// The push area the objects were pushed into.
    pub area: String,
    /// The refs to move.
    pub updates: Vec<PushUpdate>,
}

/// What happened to one pushed ref.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushResult {
    /// The ref.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// Why it was refused, if it was.
    pub error: Option<String>,
}

/// `POST /api/v1/repos/<id>/push` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushResponse {
    /// The sequence now held.
    pub sequence: u64,
    /// Whether a new snapshot was signed and announced.
    pub changed: bool,
    /// Each ref.
    pub results: Vec<PushResult>,
    /// Whether the repository has maintainers: what was signed is this node's view, and
    /// the branches move once the threshold of views agree.
    #[serde(default)]
    pub view: bool,
    /// Whether this node's key does not maintain the repository: what was signed is its
    /// fork, which never moves the branches.
    #[serde(default)]
    pub fork: bool,
}

/// `POST /api/v1/repos/<id>/sync` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncRequestBody {
    /// A peer to try first.
    pub prefer: Option<String>,
}
