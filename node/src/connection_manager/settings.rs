//! The connection manager's settings: one field each is a TOML key, a `guts node` flag and
//! a `GUTS_*` variable.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::error::{ConfigError, at_least_one, not_zero};
use crate::config::values::{parse_duration, parse_ip_net, text_list};

/// The limits the connection manager enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
#[command(next_help_heading = "Connection limits")]
pub struct Limits {
    /// Hard cap on established connections (all peers, both directions).
    #[arg(long, env = "GUTS_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: u32,
    /// Hard cap on inbound connections still in their handshake.
    #[arg(long, env = "GUTS_MAX_PENDING_INBOUND", value_name = "N")]
    pub max_pending_inbound: u32,
    /// Hard cap on connections to one peer.
    #[arg(long, env = "GUTS_MAX_CONNECTIONS_PER_PEER", value_name = "N")]
    pub max_connections_per_peer: u32,
    /// Inbound connections accepted from one IP address (loopback and `per_ip_allow` are
    /// exempt).
    #[arg(long, env = "GUTS_MAX_PEERS_PER_IP", value_name = "N")]
    pub max_peers_per_ip: u32,
    /// An address (`10.0.0.5`) or network (`10.0.0.0/8`) exempt from `max_peers_per_ip`,
    /// repeatable.
    #[serde(with = "text_list")]
    #[arg(long = "per-ip-allow", env = "GUTS_PER_IP_ALLOW", value_name = "IP|CIDR", value_delimiter = ',', value_parser = parse_ip_net)]
    pub per_ip_allow: Vec<ipnet::IpNet>,
    /// IPv6 addresses sharing this many leading bits count as one IP wherever IPs are
    /// counted (a host usually holds a whole /64 and picks addresses in it at will).
    #[arg(long, env = "GUTS_IPV6_PREFIX", value_name = "BITS")]
    pub ipv6_prefix: u8,
    /// Below this many connected peers the node dials peers it learned of.
    #[arg(long, env = "GUTS_LOW_WATERMARK", value_name = "N")]
    pub low_watermark: u32,
    /// Above this many connected peers the node trims down to the low watermark.
    #[arg(long, env = "GUTS_HIGH_WATERMARK", value_name = "N")]
    pub high_watermark: u32,
    /// Interval of the connection manager's heartbeat (trimming, dialling, decay).
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "GUTS_TRIM_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub trim_interval: Duration,
    /// New connections are not trimmed until they are this old.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "GUTS_TRIM_GRACE_PERIOD", value_name = "DURATION", value_parser = parse_duration)]
    pub trim_grace_period: Duration,
    /// Outbound dials the node starts per second (dials over it wait in a queue).
    #[arg(long, env = "GUTS_DIALS_PER_SECOND", value_name = "N")]
    pub dials_per_second: u32,
    /// Outbound dials in progress at once.
    #[arg(long, env = "GUTS_MAX_CONCURRENT_DIALS", value_name = "N")]
    pub max_concurrent_dials: u32,
    /// Kademlia queries this node runs at once (more wait in a queue).
    #[arg(long, env = "GUTS_MAX_CONCURRENT_DHT_QUERIES", value_name = "N")]
    pub max_concurrent_dht_queries: u32,
    /// Requests a peer may make per second on each protocol (bursts of twice that).
    #[arg(long, env = "GUTS_REQUESTS_PER_SECOND_PER_PEER", value_name = "N")]
    pub requests_per_second_per_peer: u32,
    /// A peer whose score falls to this is disconnected and banned.
    #[arg(
        long,
        env = "GUTS_BAN_THRESHOLD",
        value_name = "SCORE",
        allow_negative_numbers = true
    )]
    pub ban_threshold: f64,
    /// How long a banned peer is refused.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "GUTS_BAN_DURATION", value_name = "DURATION", value_parser = parse_duration)]
    pub ban_duration: Duration,
    /// Penalties halve over this time.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "GUTS_SCORE_HALF_LIFE", value_name = "DURATION", value_parser = parse_duration)]
    pub score_half_life: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 160,
            max_pending_inbound: 64,
            // One per transport (TCP, QUIC: each tells a node behind NAT its address
            // for that transport), and one more: a relay client's reservation dials its
            // own, and hole punching adds a direct one beside a circuit.
            max_connections_per_peer: 3,
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
        }
    }
}

impl Limits {
    /// Positive, and ordered `low_watermark <= high_watermark <= max_connections`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least_one(&[
            ("max_connections", self.max_connections.into()),
            ("max_pending_inbound", self.max_pending_inbound.into()),
            (
                "max_connections_per_peer",
                self.max_connections_per_peer.into(),
            ),
            ("max_peers_per_ip", self.max_peers_per_ip.into()),
            ("high_watermark", self.high_watermark.into()),
            ("dials_per_second", self.dials_per_second.into()),
            ("max_concurrent_dials", self.max_concurrent_dials.into()),
            (
                "max_concurrent_dht_queries",
                self.max_concurrent_dht_queries.into(),
            ),
            (
                "requests_per_second_per_peer",
                self.requests_per_second_per_peer.into(),
            ),
        ])?;
        if !(16..=128).contains(&self.ipv6_prefix) {
            return Err(ConfigError::invalid(
                "ipv6_prefix",
                self.ipv6_prefix,
                "must be from 16 to 128 (the bits of an IPv6 address that count as one IP)",
            ));
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
        if !(self.ban_threshold < 0.0 && self.ban_threshold.is_finite()) {
            return Err(ConfigError::invalid(
                "ban_threshold",
                self.ban_threshold,
                "must be a negative number (scores start at 0 and fall with penalties)",
            ));
        }
        not_zero(&[
            ("trim_interval", self.trim_interval),
            ("ban_duration", self.ban_duration),
            ("score_half_life", self.score_half_life),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contradictory_limits_are_refused_naming_both_values() {
        let limits = Limits {
            low_watermark: 50,
            high_watermark: 20,
            ..Limits::default()
        };
        let err = limits.validate().unwrap_err().to_string();
        assert!(
            err.contains("low_watermark (50)") && err.contains("high_watermark (20)"),
            "{err}"
        );
        // The CHORUS defaults: MaxConnections 50 with HighWatermark 128.
        let limits = Limits {
            max_connections: 50,
            high_watermark: 128,
            ..Limits::default()
        };
        let err = limits.validate().unwrap_err().to_string();
        assert!(
            err.contains("high_watermark (128)") && err.contains("max_connections (50)"),
            "{err}"
        );
        let limits = Limits {
            max_peers_per_ip: 0,
            ..Limits::default()
        };
        let err = limits.validate().unwrap_err().to_string();
        assert!(err.contains("max_peers_per_ip"), "{err}");
        let limits = Limits {
            ban_threshold: 5.0,
            ..Limits::default()
        };
        let err = limits.validate().unwrap_err().to_string();
        assert!(err.contains("ban_threshold"), "{err}");
        for prefix in [15, 129] {
            let limits = Limits {
                ipv6_prefix: prefix,
                ..Limits::default()
            };
            let err = limits.validate().unwrap_err().to_string();
            assert!(err.contains("ipv6_prefix"), "{err}");
        }
        let err = crate::config::Config::from_toml("per_ip_allow = [\"10.0.0.0/33\"]").unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }
}
