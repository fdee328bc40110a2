//! How setting values are read from text (flags, variables, the file) and written back,
//! each error naming the value.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// Parses a multiaddr, with an error that names the value.
pub fn parse_multiaddr(s: &str) -> Result<Multiaddr, String> {
    s.trim()
        .parse::<Multiaddr>()
        .map_err(|e| format!("invalid multiaddr {s:?}: {e}"))
}

/// Parses a peer id, with an error that names the value.
pub fn parse_peer_id(s: &str) -> Result<PeerId, String> {
    s.trim()
        .parse::<PeerId>()
        .map_err(|e| format!("invalid peer id {s:?}: {e}"))
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
             another name; e.g. {}",
            guts_api::DEFAULT_API_ADDR
        )
    })
}

/// Parses the address of the git HTTP endpoint: `IP:PORT` or `localhost:PORT`; or `off`
/// (the default) for none.
pub fn parse_http_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s == "off" {
        return Ok(None);
    }
    let local = s
        .strip_prefix("localhost:")
        .and_then(|p| p.parse::<u16>().ok())
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
    local.or_else(|| s.parse().ok()).map(Some).ok_or_else(|| {
        format!(
            "invalid HTTP address {s:?}: expected IP:PORT (e.g. 0.0.0.0:8080, [::]:8080, \
             localhost:8080) or off"
        )
    })
}

/// Parses a duration such as `500ms`, `30s` or `5m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 500ms, 30s, 5m"))
}

/// Parses `on` or `off` (or true/false, yes/no, 1/0).
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

/// Parses `true` or `false` (or on/off, yes/no, 1/0).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    parse_on_off(s).map_err(|_| format!("expected true or false, got {s:?}"))
}

/// A value kept as a string in the config file.
pub trait TextValue: fmt::Display + Sized {
    /// Reads the value, with an error that names it.
    fn parse_text(s: &str) -> Result<Self, String>;
}

impl TextValue for Multiaddr {
    fn parse_text(s: &str) -> Result<Self, String> {
        parse_multiaddr(s)
    }
}

impl TextValue for PeerId {
    fn parse_text(s: &str) -> Result<Self, String> {
        parse_peer_id(s)
    }
}

impl TextValue for ipnet::IpNet {
    fn parse_text(s: &str) -> Result<Self, String> {
        parse_ip_net(s)
    }
}

/// Serde for lists of [`TextValue`]s as strings: the parsers' errors name the bad entry,
/// where the types' own serde would not (or has none).
pub mod text_list {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::config::values::TextValue;

    /// Writes each value as its display string.
    pub fn serialize<T: TextValue, S: Serializer>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(|v| v.to_string()))
    }

    /// Reads strings, each through [`TextValue::parse_text`].
    pub fn deserialize<'de, T: TextValue, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| T::parse_text(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Serde for the API address: a socket address, or `"off"`.
pub mod api_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the address, or `off`.
    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(a) => s.collect_str(a),
            None => s.serialize_str("off"),
        }
    }

    /// Reads what [`parse_api_addr`](crate::config::values::parse_api_addr) reads.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        crate::config::values::parse_api_addr(&String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

/// Serde for the git HTTP endpoint's address: a socket address, or `"off"`.
pub mod http_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer};

    pub use crate::config::values::api_addr::serialize;

    /// Reads what [`parse_http_addr`](crate::config::values::parse_http_addr) reads.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        crate::config::values::parse_http_addr(&String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
