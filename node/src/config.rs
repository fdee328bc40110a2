//! Node configuration: built-in defaults, a TOML file, and validation.
//!
//! The command line and environment are the binary's business; it layers them over a
//! [`Config`] loaded here, then calls [`Config::validate`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use guts_protocol::NetworkName;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// Default TCP and UDP (QUIC) port.
pub const DEFAULT_PORT: u16 = 9000;
/// Default control API address: loopback only.
pub const DEFAULT_API: &str = guts_api::DEFAULT_API_ADDR;

/// Everything a node needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the identity (and later the repositories) live.
    pub data_dir: PathBuf,
    /// Network name; carried in every protocol name so networks never mix.
    pub network: NetworkName,
    /// Addresses to listen on (TCP and QUIC).
    #[serde(with = "multiaddrs")]
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start, with or without a trailing `/p2p/<peer-id>`.
    #[serde(with = "multiaddrs")]
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses other nodes can reach this node at (e.g. behind NAT or in docker).
    #[serde(with = "multiaddrs")]
    pub external_addresses: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Only peers announcing the same tag are kept when found through mDNS.
    pub mdns_service_tag: String,
    /// Kademlia mode.
    pub dht_mode: DhtMode,
    /// Act as a circuit relay for other nodes.
    pub relay_server: bool,
    /// Treat `data_dir` as shared by several nodes (the replicas of a scaled compose
    /// service): each takes the first `node-N` subdirectory no running node holds.
    pub data_slots: bool,
    /// Interval between pings on each connection.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Time allowed to establish a connection (transport, security and muxer handshakes).
    #[serde(with = "humantime_serde")]
    pub connection_timeout: Duration,
    /// A connection no protocol uses is closed after this long.
    #[serde(with = "humantime_serde")]
    pub idle_connection_timeout: Duration,
    /// Interval of the one-line status log.
    #[serde(with = "humantime_serde")]
    pub status_interval: Duration,
    /// Local control API address, or `None` for no API (`"off"` in the file).
    #[serde(with = "api_addr")]
    pub api: Option<SocketAddr>,
    /// Log output format (used by the binary).
    pub log_format: LogFormat,
    /// A private network's key file (the swarm.key of IPFS private networks): only
    /// nodes holding the same key complete a connection. Private networks run over TCP
    /// only, so QUIC addresses are refused with it.
    pub swarm_key: Option<PathBuf>,
    /// When not empty (with `allow_peers_file`), only these peers may connect, in
    /// either direction, however they were found.
    #[serde(with = "peer_ids")]
    pub allow_peers: Vec<PeerId>,
    /// A file of peer ids (one per line, `#` comments) admitted like `allow_peers`.
    pub allow_peers_file: Option<PathBuf>,

    /// Hard cap on established connections (all peers, both directions).
    pub max_connections: u32,
    /// Hard cap on inbound connections still in their handshake.
    pub max_pending_inbound: u32,
    /// Hard cap on connections to one peer.
    pub max_connections_per_peer: u32,
    /// Inbound connections accepted from one IP address (loopback and
    /// `per_ip_allow` are exempt).
    pub max_peers_per_ip: u32,
    /// Addresses (`10.0.0.5`) or networks (`10.0.0.0/8`) exempt from `max_peers_per_ip`.
    #[serde(with = "ip_nets")]
    pub per_ip_allow: Vec<ipnet::IpNet>,
    /// IPv6 addresses sharing this many leading bits count as one IP wherever IPs are
    /// counted (a host usually holds a whole /64 and picks addresses in it at will).
    pub ipv6_prefix: u8,
    /// Below this many connected peers the node dials peers it learned of.
    pub low_watermark: u32,
    /// Above this many connected peers the node trims down to `low_watermark`.
    pub high_watermark: u32,
    /// Interval of the connection manager's heartbeat (trimming, dialling, decay).
    #[serde(with = "humantime_serde")]
    pub trim_interval: Duration,
    /// New connections are not trimmed until they are this old.
    #[serde(with = "humantime_serde")]
    pub trim_grace_period: Duration,
    /// Outbound dials the node starts per second (dials over it wait in a queue).
    pub dials_per_second: u32,
    /// Outbound dials in progress at once.
    pub max_concurrent_dials: u32,
    /// Kademlia queries this node runs at once (more wait in a queue).
    pub max_concurrent_dht_queries: u32,
    /// Requests a peer may make per second on each protocol (bursts of twice that).
    pub requests_per_second_per_peer: u32,
    /// A peer whose score falls to this is disconnected and banned.
    pub ban_threshold: f64,
    /// How long a banned peer is refused.
    #[serde(with = "humantime_serde")]
    pub ban_duration: Duration,
    /// Penalties halve over this time.
    #[serde(with = "humantime_serde")]
    pub score_half_life: Duration,

    /// Which repositories this node keeps copies of.
    pub replicate: Replicate,
    /// How often followed repositories are checked against their holders, so a node
    /// that missed announcements (offline, partitioned) catches up.
    #[serde(with = "humantime_serde")]
    pub anti_entropy_interval: Duration,
    /// A pack transfer that sends nothing for this long is abandoned for another holder.
    #[serde(with = "humantime_serde")]
    pub transfer_stall_timeout: Duration,
    /// Largest pack this node accepts in one fetch.
    pub max_pack_size: bytesize::ByteSize,
    /// Slowest a pack transfer may move, per second of waiting on the peer, once its
    /// first `transfer_stall_timeout` has passed (both directions); 0 turns it off.
    pub min_transfer_rate: bytesize::ByteSize,
    /// Packs this node sends at once (more requests are answered "busy").
    pub max_concurrent_transfers: u32,
    /// Disk other owners' repositories may take on this node, in all; 0: no limit.
    pub max_storage: bytesize::ByteSize,
    /// Disk one owner's repositories may take on this node; 0: a quarter of
    /// `max_storage` (no limit if that is 0 too).
    pub max_storage_per_owner: bytesize::ByteSize,
    /// Pack streams one peer may have open to this node at once (more are closed).
    pub max_streams_per_peer: u32,
    /// With `replicate = all`: repositories adopted from announcements or peers' lists
    /// per hour (a burst of this many, refilling over the hour).
    pub max_adoptions_per_hour: u32,
    /// With `replicate = all`: no more adoptions once this many repositories are
    /// followed (explicit follows still work).
    pub max_followed: u32,
    /// Announcements accepted per owner key per minute; more are ignored (not relayed).
    pub owner_announcements_per_minute: u32,
    /// Deepest nesting of trees a repository may have (git's `core.maxTreeDepth`).
    pub max_tree_depth: u32,
    /// Most objects one received pack may announce.
    pub max_pack_objects: u32,
    /// Largest object (or delta) a received pack may hold, inflated.
    pub max_object_size: bytesize::ByteSize,
    /// How many times its wire bytes a received pack may inflate to (past 1 GiB).
    pub max_inflation_ratio: u64,
}

/// Which repositories a node replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Replicate {
    /// Those it owns or follows (`guts repo follow`).
    Followed,
    /// Every repository it hears announced.
    All,
}

impl FromStr for Replicate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "followed" => Ok(Replicate::Followed),
            "all" => Ok(Replicate::All),
            _ => Err(format!(
                "invalid replicate mode {s:?}: expected followed or all"
            )),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            network: NetworkName::default_network(),
            listen: default_listen_addrs(host_has_ipv6()),
            bootstrap: Vec::new(),
            external_addresses: Vec::new(),
            mdns: true,
            mdns_service_tag: "guts".to_owned(),
            dht_mode: DhtMode::Server,
            relay_server: false,
            data_slots: false,
            ping_interval: Duration::from_secs(30),
            // AutoNAT v2 servers give a dial-back 10 s in all: a dial to a NAT that drops
            // it silently must fail within that for the node to learn it is private.
            connection_timeout: Duration::from_secs(5),
            idle_connection_timeout: Duration::from_secs(60),
            status_interval: Duration::from_secs(30),
            api: Some(DEFAULT_API.parse().expect("valid default API address")),
            log_format: LogFormat::Text,
            swarm_key: None,
            allow_peers: Vec::new(),
            allow_peers_file: None,
            max_connections: 160,
            max_pending_inbound: 64,
            max_connections_per_peer: 2,
            max_peers_per_ip: 3,
            per_ip_allow: Vec::new(),
            ipv6_prefix: 64,
            low_watermark: 32,
            high_watermark: 128,
            trim_interval: Duration::from_secs(10),
            trim_grace_period: Duration::from_secs(20),
            dials_per_second: 5,
            max_concurrent_dials: 10,
            max_concurrent_dht_queries: 16,
            requests_per_second_per_peer: 20,
            ban_threshold: -100.0,
            ban_duration: Duration::from_secs(3600),
            score_half_life: Duration::from_secs(600),
            replicate: Replicate::Followed,
            anti_entropy_interval: Duration::from_secs(60),
            transfer_stall_timeout: Duration::from_secs(30),
            max_pack_size: bytesize::ByteSize::gib(4),
            min_transfer_rate: bytesize::ByteSize::kib(16),
            max_adoptions_per_hour: 600,
            max_streams_per_peer: 8,
            max_storage: bytesize::ByteSize::b(0),
            max_storage_per_owner: bytesize::ByteSize::b(0),
            max_followed: 10_000,
            owner_announcements_per_minute: 60,
            max_tree_depth: guts_storage::Limits::default().max_tree_depth as u32,
            max_pack_objects: guts_storage::Limits::default().max_pack_objects,
            max_object_size: bytesize::ByteSize::b(guts_storage::Limits::default().max_object_size),
            max_inflation_ratio: guts_storage::Limits::default().max_inflation_ratio,
            max_concurrent_transfers: 8,
        }
    }
}

pub use guts_api::default_data_dir;

/// The default listen addresses: TCP and QUIC on port 9000, IPv4 and (if present) IPv6.
pub fn default_listen_addrs(ipv6: bool) -> Vec<Multiaddr> {
    let mut addrs = vec![
        format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}"),
        format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1"),
    ];
    if ipv6 {
        addrs.push(format!("/ip6/::/tcp/{DEFAULT_PORT}"));
        addrs.push(format!("/ip6/::/udp/{DEFAULT_PORT}/quic-v1"));
    }
    addrs
        .iter()
        .map(|a| a.parse().expect("valid default multiaddr"))
        .collect()
}

/// Whether this host can bind IPv6 sockets (containers often cannot).
fn host_has_ipv6() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

/// Kademlia DHT mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DhtMode {
    /// Query the DHT but do not answer queries.
    Client,
    /// Query and answer (the default: nodes serve repositories).
    Server,
    /// Server once an external address is confirmed, client until then.
    Auto,
}

impl FromStr for DhtMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "client" => Ok(DhtMode::Client),
            "server" => Ok(DhtMode::Server),
            "auto" => Ok(DhtMode::Auto),
            _ => Err(format!(
                "invalid DHT mode {s:?}: expected client, server or auto"
            )),
        }
    }
}

impl fmt::Display for DhtMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DhtMode::Client => "client",
            DhtMode::Server => "server",
            DhtMode::Auto => "auto",
        })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("invalid log format {s:?}: expected text or json")),
        }
    }
}

/// A configuration that cannot be used. Every variant names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for a [`Config`].
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Values that are each fine but contradict each other.
    #[error("inconsistent settings: {0}")]
    Inconsistent(String),
    /// A value is out of range or of the wrong form.
    #[error("invalid {field} value {value:?}: {reason}")]
    Invalid {
        /// The setting, as named in the config file.
        field: &'static str,
        /// The offending value.
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },
}

impl Config {
    /// The storage quota per owner in effect (see `max_storage_per_owner`).
    pub fn storage_per_owner(&self) -> u64 {
        match self.max_storage_per_owner.as_u64() {
            0 => self.max_storage.as_u64() / 4,
            n => n,
        }
    }

    /// The limits storage checks every repository's data against.
    pub fn storage_limits(&self) -> guts_storage::Limits {
        guts_storage::Limits {
            max_tree_depth: self.max_tree_depth as usize,
            max_pack_objects: self.max_pack_objects,
            max_object_size: self.max_object_size.as_u64(),
            max_inflation_ratio: self.max_inflation_ratio,
        }
    }
}

impl Config {
    /// Reads a TOML config file; keys it omits keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; keys it omits keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// The config as TOML, as `--print-config` shows it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Checks values that parse but cannot work, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for addr in &self.listen {
            check_listen_addr(addr)?;
        }
        for addr in &self.bootstrap {
            check_dialable_addr("bootstrap", addr)?;
        }
        for addr in &self.external_addresses {
            check_dialable_addr("external_addresses", addr)?;
            if addr.iter().any(|p| matches!(p, Protocol::P2p(_))) {
                return Err(invalid(
                    "external_addresses",
                    addr,
                    "must not end in /p2p/<peer-id>: the node adds its own",
                ));
            }
        }
        check_tag(&self.mdns_service_tag)?;
        if !(16..=128).contains(&self.ipv6_prefix) {
            return Err(ConfigError::Invalid {
                field: "ipv6_prefix",
                value: self.ipv6_prefix.to_string(),
                reason: "must be from 16 to 128 (the bits of an IPv6 address that count as \
                         one IP)"
                    .to_owned(),
            });
        }
        self.validate_limits()?;
        self.validate_private()?;
        for (field, value) in [
            ("ping_interval", self.ping_interval),
            ("connection_timeout", self.connection_timeout),
            ("idle_connection_timeout", self.idle_connection_timeout),
            ("status_interval", self.status_interval),
            ("trim_interval", self.trim_interval),
            ("ban_duration", self.ban_duration),
            ("score_half_life", self.score_half_life),
            ("anti_entropy_interval", self.anti_entropy_interval),
            ("transfer_stall_timeout", self.transfer_stall_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid {
                    field,
                    value: humantime::format_duration(value).to_string(),
                    reason: "must be greater than zero".into(),
                });
            }
        }
        Ok(())
    }
}

impl Config {
    /// With a swarm key, the built-in listen addresses become TCP only (pnet cannot run
    /// over QUIC); addresses the user gave are left for [`Self::validate`] to judge.
    pub fn apply_private_defaults(&mut self) {
        if self.swarm_key.is_some() && self.listen == Config::default().listen {
            self.listen.retain(|a| !is_quic(a));
        }
        // mDNS answers carry the peer id and addresses in the clear, to anyone on the
        // LAN: nothing of a private node may be learned without its key.
        if self.swarm_key.is_some() {
            self.mdns = false;
        }
    }

    /// The private network's key, if `swarm_key` names one.
    pub fn swarm_psk(&self) -> Result<Option<PreSharedKey>, ConfigError> {
        let Some(path) = &self.swarm_key else {
            return Ok(None);
        };
        let bad = |reason: String| ConfigError::Invalid {
            field: "swarm_key",
            value: path.display().to_string(),
            reason,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        text.parse::<PreSharedKey>().map(Some).map_err(|e| {
            use libp2p::pnet::KeyParseError as K;
            bad(match e {
                K::InvalidKeyFile => "not a swarm key file: expected three lines, \
                    /key/swarm/psk/1.0.0/, /base16/ and 64 hex digits (`guts swarm-key` makes one)"
                    .into(),
                K::InvalidKeyType => "the first line must be /key/swarm/psk/1.0.0/".into(),
                K::InvalidKeyEncoding => {
                    "the second line must be /base16/ (the only encoding supported)".into()
                }
                K::InvalidKeyLength => "the key must be 64 hex digits (32 bytes)".into(),
                K::InvalidKeyChar(_) => {
                    "the key line holds a character that is not a hex digit".into()
                }
            })
        })
    }

    /// The peers admitted, or `None` when any peer may connect.
    pub fn allowed_peers(&self) -> Result<Option<std::collections::HashSet<PeerId>>, ConfigError> {
        let mut peers: std::collections::HashSet<PeerId> =
            self.allow_peers.iter().copied().collect();
        if let Some(path) = &self.allow_peers_file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                field: "allow_peers_file",
                value: path.display().to_string(),
                reason: format!("cannot read it: {e}"),
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let peer = parse_peer_id(line).map_err(|reason| ConfigError::Invalid {
                    field: "allow_peers_file",
                    value: format!("{}:{}", path.display(), n + 1),
                    reason,
                })?;
                peers.insert(peer);
            }
            if peers.is_empty() {
                return Err(ConfigError::Invalid {
                    field: "allow_peers_file",
                    value: path.display().to_string(),
                    reason: "names no peer: the node would refuse everyone".into(),
                });
            }
        }
        Ok((!peers.is_empty()).then_some(peers))
    }

    fn validate_private(&self) -> Result<(), ConfigError> {
        if self.swarm_psk()?.is_some() {
            let fields = [
                ("listen", &self.listen),
                ("bootstrap", &self.bootstrap),
                ("external_addresses", &self.external_addresses),
            ];
            for (field, addrs) in fields {
                if let Some(addr) = addrs.iter().find(|a| is_quic(a)) {
                    return Err(ConfigError::Inconsistent(format!(
                        "{field} has the QUIC address {addr}, but swarm_key makes this a private \
                         network, which runs over TCP only: use a /tcp/ address"
                    )));
                }
            }
        }
        if let Some(allowed) = self.allowed_peers()? {
            for addr in &self.bootstrap {
                if let Some(Protocol::P2p(peer)) =
                    addr.iter().find(|p| matches!(p, Protocol::P2p(_)))
                    && !allowed.contains(&peer)
                {
                    return Err(ConfigError::Inconsistent(format!(
                        "bootstrap address {addr} names peer {peer}, which allow_peers does not admit"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A new random private network key, as the text of a swarm.key file.
pub fn new_swarm_key() -> Result<String, ConfigError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ConfigError::Invalid {
        field: "swarm_key",
        value: "(new)".into(),
        reason: format!("no randomness from the OS: {e}"),
    })?;
    Ok(PreSharedKey::new(bytes).to_key_file())
}

fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
}

/// Parses a peer id, with an error that names the value.
pub fn parse_peer_id(s: &str) -> Result<PeerId, String> {
    s.trim()
        .parse::<PeerId>()
        .map_err(|e| format!("invalid peer id {s:?}: {e}"))
}

impl Config {
    /// The connection limits must be positive and ordered
    /// `low_watermark <= high_watermark <= max_connections`.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("max_connections", self.max_connections),
            ("max_pending_inbound", self.max_pending_inbound),
            ("max_connections_per_peer", self.max_connections_per_peer),
            ("max_peers_per_ip", self.max_peers_per_ip),
            ("high_watermark", self.high_watermark),
            ("dials_per_second", self.dials_per_second),
            ("max_concurrent_dials", self.max_concurrent_dials),
            (
                "max_concurrent_dht_queries",
                self.max_concurrent_dht_queries,
            ),
            (
                "requests_per_second_per_peer",
                self.requests_per_second_per_peer,
            ),
            ("max_concurrent_transfers", self.max_concurrent_transfers),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    field,
                    value: "0".into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.low_watermark > self.high_watermark {
            return Err(ConfigError::Inconsistent(format!(
                "low_watermark ({}) is above high_watermark ({}): the node would trim below the count it then dials back up to",
                self.low_watermark, self.high_watermark
            )));
        }
        if self.high_watermark > self.max_connections {
            return Err(ConfigError::Inconsistent(format!(
                "high_watermark ({}) is above max_connections ({}): the node could never reach it",
                self.high_watermark, self.max_connections
            )));
        }
        if self.max_pack_size.as_u64() < 1024 {
            return Err(ConfigError::Invalid {
                field: "max_pack_size",
                value: self.max_pack_size.to_string(),
                reason: "must be at least 1 KiB".into(),
            });
        }
        for (field, value) in [
            ("max_tree_depth", self.max_tree_depth),
            ("max_pack_objects", self.max_pack_objects),
            ("max_adoptions_per_hour", self.max_adoptions_per_hour),
            ("max_streams_per_peer", self.max_streams_per_peer),
            (
                "owner_announcements_per_minute",
                self.owner_announcements_per_minute,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    field,
                    value: value.to_string(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.max_object_size.as_u64() < 1024 {
            return Err(ConfigError::Invalid {
                field: "max_object_size",
                value: self.max_object_size.to_string(),
                reason: "must be at least 1 KiB".into(),
            });
        }
        if !(self.ban_threshold < 0.0 && self.ban_threshold.is_finite()) {
            return Err(ConfigError::Invalid {
                field: "ban_threshold",
                value: self.ban_threshold.to_string(),
                reason: "must be a negative number (scores start at 0 and fall with penalties)"
                    .into(),
            });
        }
        Ok(())
    }
}

fn invalid(field: &'static str, addr: &Multiaddr, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: addr.to_string(),
        reason: reason.to_owned(),
    }
}

/// A listen address: `/ip4|ip6/<ip>/tcp/<port>` or `/ip4|ip6/<ip>/udp/<port>/quic-v1`, or a
/// relay circuit (`…/p2p/<relay>/p2p-circuit`) to be reachable through a relay.
fn check_listen_addr(addr: &Multiaddr) -> Result<(), ConfigError> {
    const EXPECTED: &str = "expected /ip4/<ip>/tcp/<port>, /ip4/<ip>/udp/<port>/quic-v1 (or /ip6/…), or <relay-address>/p2p-circuit";
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return check_dialable_addr("listen", addr);
    }
    let parts: Vec<_> = addr.iter().collect();
    match parts.as_slice() {
        [Protocol::Ip4(_) | Protocol::Ip6(_), Protocol::Tcp(_)]
        | [
            Protocol::Ip4(_) | Protocol::Ip6(_),
            Protocol::Udp(_),
            Protocol::QuicV1,
        ] => Ok(()),
        _ => Err(invalid("listen", addr, EXPECTED)),
    }
}

/// An address we dial: host (`ip4`, `ip6`, `dns`, `dns4`, `dns6`) then `tcp/<port>` or
/// `udp/<port>/quic-v1`, optionally `/p2p/<peer-id>`, optionally followed by a relay
/// circuit to a further peer.
fn check_dialable_addr(field: &'static str, addr: &Multiaddr) -> Result<(), ConfigError> {
    const EXPECTED: &str = "expected /ip4|ip6|dns4|dns6/<host>/tcp/<port> or …/udp/<port>/quic-v1, optionally followed by /p2p/<peer-id>";
    let mut parts = addr.iter().peekable();
    match parts.next() {
        Some(Protocol::Ip4(_) | Protocol::Ip6(_) | Protocol::Dns(_) | Protocol::Dns4(_))
        | Some(Protocol::Dns6(_)) => {}
        _ => return Err(invalid(field, addr, EXPECTED)),
    }
    match parts.next() {
        Some(Protocol::Tcp(_)) => {}
        Some(Protocol::Udp(_)) => {
            if !matches!(parts.next(), Some(Protocol::QuicV1)) {
                return Err(invalid(
                    field,
                    addr,
                    "UDP is only supported as QUIC: add /quic-v1 after the port",
                ));
            }
        }
        _ => return Err(invalid(field, addr, EXPECTED)),
    }
    if let Some(Protocol::P2p(_)) = parts.peek() {
        parts.next();
    }
    match parts.next() {
        None => Ok(()),
        // <relay>/p2p-circuit[/p2p/<target>]
        Some(Protocol::P2pCircuit) => match (parts.next(), parts.next()) {
            (None, _) | (Some(Protocol::P2p(_)), None) => Ok(()),
            _ => Err(invalid(field, addr, EXPECTED)),
        },
        Some(_) => Err(invalid(field, addr, EXPECTED)),
    }
}

fn check_tag(tag: &str) -> Result<(), ConfigError> {
    let ok = !tag.is_empty()
        && tag.len() <= 63
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field: "mdns_service_tag",
            value: tag.to_owned(),
            reason: "use 1 to 63 lowercase letters, digits, '-', '_' or '.'".into(),
        })
    }
}

/// Parses a multiaddr, with an error that names the value.
pub fn parse_multiaddr(s: &str) -> Result<Multiaddr, String> {
    s.trim()
        .parse::<Multiaddr>()
        .map_err(|e| format!("invalid multiaddr {s:?}: {e}"))
}

/// Parses a control API address to listen on: `IP:PORT`, `localhost:PORT` or the URL form
/// `http://IP:PORT`; or `off` for no API.
pub fn parse_api_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s == "off" {
        return Ok(None);
    }
    let addr: guts_api::ApiAddress = s.parse().map_err(|e| format!("{e}, or off"))?;
    addr.socket_addr().map(Some).ok_or_else(|| {
        format!(
            "invalid API address {s:?}: the node listens on an IP address or localhost, not on \
             another name; e.g. {DEFAULT_API}"
        )
    })
}

/// Serde for the API address: a socket address, or `"off"`.
mod api_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(a) => s.collect_str(a),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        super::parse_api_addr(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Parses an IP address or network: `10.0.0.5` or `10.0.0.0/8`.
pub fn parse_ip_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            format!("invalid IP address or network {s:?}: expected e.g. 10.0.0.5 or 10.0.0.0/8")
        })
}

/// Serde for lists of IP networks, accepting plain addresses too.
mod ip_nets {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(nets: &[ipnet::IpNet], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(nets.iter().map(|n| n.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| super::parse_ip_net(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Serde for lists of peer ids as strings, with errors that name the bad value.
mod peer_ids {
    use libp2p::PeerId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(peers: &[PeerId], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(peers.iter().map(|p| p.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PeerId>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| super::parse_peer_id(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Serde for lists of multiaddrs as strings, with errors that name the bad value.
mod multiaddrs {
    use libp2p::Multiaddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addrs: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(addrs.iter().map(|a| a.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| super::parse_multiaddr(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(Config::from_toml(&config.to_toml()).unwrap(), config);
        assert_eq!(config.api.unwrap().to_string(), DEFAULT_API);
        assert!(config.api.unwrap().ip().is_loopback());
    }

    #[test]
    fn private_network_settings_round_trip_and_name_bad_values() {
        let peer = PeerId::random();
        let text = format!("swarm_key = \"/etc/guts/swarm.key\"\nallow_peers = [\"{peer}\"]\n");
        let config = Config::from_toml(&text).unwrap();
        assert_eq!(config.allow_peers, vec![peer]);
        assert_eq!(Config::from_toml(&config.to_toml()).unwrap(), config);
        let err = Config::from_toml("allow_peers = [\"friend\"]").unwrap_err();
        assert!(err.contains("\"friend\""), "{err}");
        // An allow-list and a bootstrap peer it does not admit contradict each other.
        let other = PeerId::random();
        let config = Config {
            allow_peers: vec![peer],
            bootstrap: vec![addr(&format!("/ip4/10.0.0.1/tcp/9000/p2p/{other}"))],
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(&other.to_string()), "{err}");
        // With a key, only the built-in listen addresses lose QUIC.
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("swarm.key");
        std::fs::write(&key, new_swarm_key().unwrap()).unwrap();
        let mut config = Config {
            swarm_key: Some(key.clone()),
            ..Config::default()
        };
        config.apply_private_defaults();
        config.validate().unwrap();
        assert!(!config.listen.is_empty() && config.listen.iter().all(|a| !is_quic(a)));
        let mut config = Config {
            swarm_key: Some(key),
            listen: vec![addr("/ip4/0.0.0.0/udp/9000/quic-v1")],
            ..Config::default()
        };
        config.apply_private_defaults();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("/ip4/0.0.0.0/udp/9000/quic-v1"), "{err}");
    }

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let config = Config::from_toml(
            "network = \"lab\"\nbootstrap = [\"/dns4/boot/tcp/9000\"]\nping_interval = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(config.network.as_str(), "lab");
        assert_eq!(config.ping_interval, Duration::from_secs(5));
        assert_eq!(
            config.connection_timeout,
            Config::default().connection_timeout
        );
    }

    #[test]
    fn file_errors_name_the_bad_value() {
        let err = Config::from_toml("bootstrap = [\"/ip4/1.2.3/tcp/1\"]").unwrap_err();
        assert!(err.contains("/ip4/1.2.3/tcp/1"), "{err}");
        let err = Config::from_toml("network = \"Bad Name\"").unwrap_err();
        assert!(err.contains("Bad Name"), "{err}");
        let err = Config::from_toml("dht_mode = \"sometimes\"").unwrap_err();
        assert!(err.contains("sometimes"), "{err}");
        let err = Config::from_toml("listn = []").unwrap_err();
        assert!(err.contains("listn"), "{err}");
        let err = Config::from_toml("ping_interval = \"soon\"").unwrap_err();
        assert!(err.contains("ping_interval"), "{err}");
    }

    #[test]
    fn bootstrap_forms() {
        let peer = libp2p::PeerId::random();
        for ok in [
            "/ip4/10.0.0.1/tcp/9000".to_owned(),
            "/dns4/boot/tcp/9000".to_owned(),
            "/dns6/boot.example/udp/9000/quic-v1".to_owned(),
            format!("/ip6/::1/tcp/9000/p2p/{peer}"),
            format!("/ip4/10.0.0.1/udp/9000/quic-v1/p2p/{peer}"),
            format!("/ip4/10.0.0.1/tcp/9000/p2p/{peer}/p2p-circuit/p2p/{peer}"),
        ] {
            check_dialable_addr("bootstrap", &addr(&ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "/ip4/10.0.0.1",
            "/ip4/10.0.0.1/udp/9000",
            "/tcp/9000",
            "/ip4/10.0.0.1/tcp/9000/ws",
        ] {
            let err = check_dialable_addr("bootstrap", &addr(bad)).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn listen_forms() {
        for ok in ["/ip4/0.0.0.0/tcp/0", "/ip6/::/udp/9000/quic-v1"] {
            check_listen_addr(&addr(ok)).unwrap();
        }
        let with_peer = format!("/ip4/0.0.0.0/tcp/1/p2p/{}", PeerId::random());
        for bad in [
            "/dns4/x/tcp/1",
            "/ip4/0.0.0.0/udp/1",
            "/ip4/0.0.0.0/udp/1/quic",
            "/ip4/0.0.0.0",
            with_peer.as_str(),
        ] {
            // Every case is a well-formed multiaddr: the refusal is check_listen_addr's.
            let a: Multiaddr = bad.parse().unwrap_or_else(|e| panic!("{bad}: {e}"));
            let err = check_listen_addr(&a).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("expected"), "{err}");
        }
    }

    #[test]
    fn api_off_survives_a_round_trip() {
        let config = Config {
            api: None,
            ..Config::default()
        };
        assert!(config.to_toml().contains("api = \"off\""));
        assert_eq!(Config::from_toml(&config.to_toml()).unwrap().api, None);
        let err = Config::from_toml("api = \"localhost\"").unwrap_err();
        assert!(err.contains("localhost"), "{err}");
    }

    #[test]
    fn contradictory_limits_are_refused_naming_both_values() {
        let config = Config {
            low_watermark: 50,
            high_watermark: 20,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("low_watermark (50)") && err.contains("high_watermark (20)"),
            "{err}"
        );
        // The CHORUS defaults: MaxConnections 50 with HighWatermark 128.
        let config = Config {
            max_connections: 50,
            high_watermark: 128,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("high_watermark (128)") && err.contains("max_connections (50)"),
            "{err}"
        );
        let config = Config {
            max_peers_per_ip: 0,
            ..Config::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("max_peers_per_ip")
        );
        let config = Config {
            ban_threshold: 5.0,
            ..Config::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("ban_threshold")
        );
        let err = Config::from_toml("per_ip_allow = [\"10.0.0.0/33\"]").unwrap_err();
        assert!(
            err.contains("per_ip_allow") || err.contains("10.0.0.0/33"),
            "{err}"
        );
    }

    #[test]
    fn zero_durations_are_refused() {
        let config = Config {
            ping_interval: Duration::ZERO,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("ping_interval"), "{err}");
    }

    #[test]
    fn parse_errors_name_the_value() {
        let err = parse_multiaddr("not-an-addr").unwrap_err();
        assert!(err.contains("not-an-addr"));
        assert_eq!(
            "sometimes".parse::<DhtMode>().unwrap_err(),
            "invalid DHT mode \"sometimes\": expected client, server or auto"
        );
    }
}
