//! Network settings: where the node listens, whom it dials first, how it finds peers and
//! whom it admits. One field each is a TOML key, a `guts node` flag and a `GUTS_*`
//! variable.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::config::error::{ConfigError, not_zero};
use crate::config::values::{
    parse_bool, parse_duration, parse_multiaddr, parse_on_off, parse_peer_id, text_list,
};

/// The longest circuit a relay may allow.
const MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(100 * 24 * 3600);

/// Default TCP and UDP (QUIC) port.
pub const DEFAULT_PORT: u16 = 9000;

/// How the node meets the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct NetSettings {
    /// Addresses to listen on (TCP and QUIC), repeatable; port 0 picks a free port.
    #[serde(with = "text_list")]
    #[arg(long = "listen", env = "GUTS_LISTEN", value_name = "MULTIADDR", value_delimiter = ',', value_parser = parse_multiaddr)]
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start, repeatable, with or without a trailing /p2p/<peer-id>.
    #[serde(with = "text_list")]
    #[arg(long = "bootstrap", env = "GUTS_BOOTSTRAP", value_name = "MULTIADDR", value_delimiter = ',', value_parser = parse_multiaddr)]
    pub bootstrap: Vec<Multiaddr>,
    /// An address other nodes can reach this node at (e.g. behind NAT or in docker),
    /// repeatable.
    #[serde(with = "text_list")]
    #[arg(long = "external-address", env = "GUTS_EXTERNAL_ADDRESS", value_name = "MULTIADDR", value_delimiter = ',', value_parser = parse_multiaddr)]
    pub external_addresses: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS: on or off.
    #[arg(long, env = "GUTS_MDNS", value_name = "on|off", action = clap::ArgAction::Set, value_parser = parse_on_off)]
    pub mdns: bool,
    /// Only peers announcing the same tag are kept when found through mDNS.
    #[arg(long, env = "GUTS_MDNS_SERVICE_TAG", value_name = "TAG")]
    pub mdns_service_tag: String,
    /// Kademlia mode: client, server or auto (server once an external address is
    /// confirmed).
    #[arg(long, env = "GUTS_DHT_MODE", value_name = "MODE")]
    pub dht_mode: DhtMode,
    /// Act as a circuit relay for other nodes.
    #[arg(long, env = "GUTS_RELAY_SERVER", value_name = "BOOL", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub relay_server: bool,
    /// As a relay, the bytes one circuit may carry (both directions together), e.g.
    /// 1GiB; 0: no limit. The built-in 128KiB carries hole punching and a few requests,
    /// not repositories: raise it on a relay meant to carry data for nodes that cannot
    /// punch through their NATs.
    #[arg(long, env = "GUTS_RELAY_CIRCUIT_BYTES", value_name = "SIZE")]
    pub relay_circuit_bytes: ByteSize,
    /// As a relay, how long one circuit may last, e.g. 2m (at most 100 days).
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "GUTS_RELAY_CIRCUIT_DURATION", value_name = "DURATION", value_parser = parse_duration)]
    pub relay_circuit_duration: Duration,
    /// Interval between pings on each connection, e.g. 30s.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "GUTS_PING_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Time allowed to establish a connection (transport, security and muxer handshakes).
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "GUTS_CONNECTION_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub connection_timeout: Duration,
    /// A connection no protocol uses is closed after this long.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "GUTS_IDLE_CONNECTION_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_connection_timeout: Duration,
    /// A private network's key file (IPFS swarm.key format; `guts swarm-key` makes one):
    /// only nodes holding the same key complete a connection. Private networks run over
    /// TCP only, so QUIC addresses are refused with it.
    #[arg(
        long,
        env = "GUTS_SWARM_KEY",
        value_name = "FILE",
        help_heading = "Private networks"
    )]
    pub swarm_key: Option<PathBuf>,
    /// Admit only this peer, repeatable: when any is named (here or in allow_peers_file),
    /// only those may connect, in either direction, however they were found.
    #[serde(with = "text_list")]
    #[arg(long = "allow-peer", env = "GUTS_ALLOW_PEERS", value_name = "PEERID", value_delimiter = ',', value_parser = parse_peer_id, help_heading = "Private networks")]
    pub allow_peers: Vec<PeerId>,
    /// A file of peer ids (one per line, `#` comments) admitted like allow_peers.
    #[arg(
        long,
        env = "GUTS_ALLOW_PEERS_FILE",
        value_name = "FILE",
        help_heading = "Private networks"
    )]
    pub allow_peers_file: Option<PathBuf>,
}

impl Default for NetSettings {
    fn default() -> Self {
        NetSettings {
            listen: default_listen_addrs(host_has_ipv6()),
            bootstrap: Vec::new(),
            external_addresses: Vec::new(),
            mdns: true,
            mdns_service_tag: "guts".to_owned(),
            dht_mode: DhtMode::Server,
            relay_server: false,
            relay_circuit_bytes: ByteSize::kib(128),
            relay_circuit_duration: Duration::from_secs(120),
            ping_interval: Duration::from_secs(30),
            // AutoNAT v2 servers give a dial-back 10 s in all: a dial to a NAT that drops
            // it silently must fail within that for the node to learn it is private.
            connection_timeout: Duration::from_secs(5),
            idle_connection_timeout: Duration::from_secs(60),
            swarm_key: None,
            allow_peers: Vec::new(),
            allow_peers_file: None,
        }
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DhtMode {
    /// Query the DHT but do not answer queries.
    Client,
    /// Query and answer (the default: nodes serve repositories).
    Server,
    /// Server once an external address is confirmed, client until then.
    Auto,
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

impl NetSettings {
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
                return Err(ConfigError::invalid(
                    "external_addresses",
                    addr,
                    "must not end in /p2p/<peer-id>: the node adds its own",
                ));
            }
        }
        check_tag(&self.mdns_service_tag)?;
        self.validate_private()?;
        // libp2p's relay panics on a duration past u32 seconds.
        if self.relay_circuit_duration > MAX_CIRCUIT_DURATION {
            return Err(ConfigError::invalid(
                "relay_circuit_duration",
                humantime::format_duration(self.relay_circuit_duration),
                "must be at most 100 days",
            ));
        }
        not_zero(&[
            ("relay_circuit_duration", self.relay_circuit_duration),
            ("ping_interval", self.ping_interval),
            ("connection_timeout", self.connection_timeout),
            ("idle_connection_timeout", self.idle_connection_timeout),
        ])
    }

    /// With a swarm key, the built-in listen addresses become TCP only (pnet cannot run
    /// over QUIC); addresses the user gave are left for [`Self::validate`] to judge.
    pub fn apply_private_defaults(&mut self) {
        if self.swarm_key.is_some() && self.listen == NetSettings::default().listen {
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
        let bad = |reason: &str| ConfigError::invalid("swarm_key", path.display(), reason);
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(&format!("cannot read it: {e}")))?;
        text.parse::<PreSharedKey>().map(Some).map_err(|e| {
            use libp2p::pnet::KeyParseError as K;
            bad(match e {
                K::InvalidKeyFile => {
                    "not a swarm key file: expected three lines, \
                    /key/swarm/psk/1.0.0/, /base16/ and 64 hex digits (`guts swarm-key` makes one)"
                }
                K::InvalidKeyType => "the first line must be /key/swarm/psk/1.0.0/",
                K::InvalidKeyEncoding => {
                    "the second line must be /base16/ (the only encoding supported)"
                }
                K::InvalidKeyLength => "the key must be 64 hex digits (32 bytes)",
                K::InvalidKeyChar(_) => "the key line holds a character that is not a hex digit",
            })
        })
    }

    /// The peers admitted, or `None` when any peer may connect.
    pub fn allowed_peers(&self) -> Result<Option<HashSet<PeerId>>, ConfigError> {
        let mut peers: HashSet<PeerId> = self.allow_peers.iter().copied().collect();
        if let Some(path) = &self.allow_peers_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(
                    "allow_peers_file",
                    path.display(),
                    format!("cannot read it: {e}"),
                )
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let peer = parse_peer_id(line).map_err(|reason| {
                    ConfigError::invalid(
                        "allow_peers_file",
                        format!("{}:{}", path.display(), n + 1),
                        reason,
                    )
                })?;
                peers.insert(peer);
            }
            if peers.is_empty() {
                return Err(ConfigError::invalid(
                    "allow_peers_file",
                    path.display(),
                    "names no peer: the node would refuse everyone",
                ));
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
    getrandom::fill(&mut bytes).map_err(|e| {
        ConfigError::invalid(
            "swarm_key",
            "(new)",
            format!("no randomness from the OS: {e}"),
        )
    })?;
    Ok(PreSharedKey::new(bytes).to_key_file())
}

/// Whether `addr` is a QUIC address.
pub(crate) fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
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
        _ => Err(ConfigError::invalid("listen", addr, EXPECTED)),
    }
}

/// An address we dial: host (`ip4`, `ip6`, `dns`, `dns4`, `dns6`) then `tcp/<port>` or
/// `udp/<port>/quic-v1`, optionally `/p2p/<peer-id>`, optionally followed by a relay
/// circuit to a further peer.
fn check_dialable_addr(field: &'static str, addr: &Multiaddr) -> Result<(), ConfigError> {
    const EXPECTED: &str = "expected /ip4|ip6|dns4|dns6/<host>/tcp/<port> or …/udp/<port>/quic-v1, optionally followed by /p2p/<peer-id>";
    let bad = |reason: &str| Err(ConfigError::invalid(field, addr, reason));
    let mut parts = addr.iter().peekable();
    match parts.next() {
        Some(Protocol::Ip4(_) | Protocol::Ip6(_) | Protocol::Dns(_) | Protocol::Dns4(_))
        | Some(Protocol::Dns6(_)) => {}
        _ => return bad(EXPECTED),
    }
    match parts.next() {
        Some(Protocol::Tcp(_)) => {}
        Some(Protocol::Udp(_)) => {
            if !matches!(parts.next(), Some(Protocol::QuicV1)) {
                return bad("UDP is only supported as QUIC: add /quic-v1 after the port");
            }
        }
        _ => return bad(EXPECTED),
    }
    if let Some(Protocol::P2p(_)) = parts.peek() {
        parts.next();
    }
    match parts.next() {
        None => Ok(()),
        // <relay>/p2p-circuit[/p2p/<target>]
        Some(Protocol::P2pCircuit) => match (parts.next(), parts.next()) {
            (None, _) | (Some(Protocol::P2p(_)), None) => Ok(()),
            _ => bad(EXPECTED),
        },
        Some(_) => bad(EXPECTED),
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
        Err(ConfigError::invalid(
            "mdns_service_tag",
            tag,
            "use 1 to 63 lowercase letters, digits, '-', '_' or '.'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_network_settings_round_trip_and_name_bad_values() {
        let peer = PeerId::random();
        let text = format!("swarm_key = \"/etc/guts/swarm.key\"\nallow_peers = [\"{peer}\"]\n");
        let config = Config::from_toml(&text).unwrap();
        assert_eq!(config.net.allow_peers, vec![peer]);
        assert_eq!(Config::from_toml(&config.to_toml()).unwrap(), config);
        let err = Config::from_toml("allow_peers = [\"friend\"]").unwrap_err();
        assert!(err.contains("\"friend\""), "{err}");
        // An allow-list and a bootstrap peer it does not admit contradict each other.
        let other = PeerId::random();
        let net = NetSettings {
            allow_peers: vec![peer],
            bootstrap: vec![addr(&format!("/ip4/10.0.0.1/tcp/9000/p2p/{other}"))],
            ..NetSettings::default()
        };
        let err = net.validate().unwrap_err().to_string();
        assert!(err.contains(&other.to_string()), "{err}");
        // With a key, only the built-in listen addresses lose QUIC.
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("swarm.key");
        std::fs::write(&key, new_swarm_key().unwrap()).unwrap();
        let mut net = NetSettings {
            swarm_key: Some(key.clone()),
            ..NetSettings::default()
        };
        net.apply_private_defaults();
        net.validate().unwrap();
        assert!(!net.listen.is_empty() && net.listen.iter().all(|a| !is_quic(a)));
        assert!(!net.mdns);
        let mut net = NetSettings {
            swarm_key: Some(key),
            listen: vec![addr("/ip4/0.0.0.0/udp/9000/quic-v1")],
            ..NetSettings::default()
        };
        net.apply_private_defaults();
        let err = net.validate().unwrap_err().to_string();
        assert!(err.contains("/ip4/0.0.0.0/udp/9000/quic-v1"), "{err}");
    }

    #[test]
    fn bootstrap_forms() {
        let peer = PeerId::random();
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
    fn zero_durations_are_refused() {
        let net = NetSettings {
            ping_interval: Duration::ZERO,
            ..NetSettings::default()
        };
        let err = net.validate().unwrap_err().to_string();
        assert!(err.contains("ping_interval"), "{err}");
    }

    #[test]
    fn parse_errors_name_the_value() {
        let err = parse_multiaddr("not-an-addr").unwrap_err();
        assert!(err.contains("not-an-addr"));
        let cmd = Config::add_flags(clap::Command::new("node"));
        let err = cmd
            .try_get_matches_from(["node", "--dht-mode", "sometimes"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'sometimes'") && err.contains("client, server, auto"),
            "{err}"
        );
    }
}
