//! Network names and the protocol names derived from them.
//!
//! Every protocol a node speaks carries its network name, so nodes of two networks that
//! happen to meet (a shared LAN, a wrong bootstrap address) never exchange DHT records or
//! gossip: they do not even agree on a protocol to negotiate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{PROTOCOL_VERSION, SHARED_SYNC_VERSION};

/// Longest network name accepted; it appears in every protocol name.
pub const MAX_NETWORK_NAME_LEN: usize = 64;

/// The name of a Guts network, e.g. `guts` (the default) or `lab-1`.
///
/// Lowercase ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit, so
/// it is always a valid path segment of a libp2p protocol name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetworkName(String);

/// Why a string is not a valid [`NetworkName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkNameError {
    /// The name is empty.
    #[error("network name is empty")]
    Empty,
    /// The name is longer than [`MAX_NETWORK_NAME_LEN`].
    #[error(
        "network name {name:?} is {len} bytes long; at most {MAX_NETWORK_NAME_LEN} are allowed"
    )]
    TooLong {
        /// The offending name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a character outside `[a-z0-9._-]` or starts with a punctuation mark.
    #[error(
        "network name {name:?} has invalid character {ch:?}: use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit"
    )]
    InvalidChar {
        /// The offending name.
        name: String,
        /// The first character that is not allowed.
        ch: char,
    },
}

impl NetworkName {
    /// The default network, `guts`.
    pub fn default_network() -> Self {
        NetworkName("guts".to_owned())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Kademlia protocol name: `/guts/<network>/kad/1.0.0`.
    pub fn kad_protocol(&self) -> String {
        format!("/guts/{}/kad/{PROTOCOL_VERSION}", self.0)
    }

    /// Gossipsub protocol id prefix: `/guts/<network>/meshsub` (gossipsub appends its
    /// own version).
    pub fn gossipsub_protocol_prefix(&self) -> String {
        format!("/guts/{}/meshsub", self.0)
    }

    /// The identify `protocol_version` string: `/guts/<network>/1.0.0`. Peers announcing
    /// another value belong to another network (or an incompatible version).
    pub fn identify_protocol_version(&self) -> String {
        format!("/guts/{}/{PROTOCOL_VERSION}", self.0)
    }

    /// Sync protocol (request-response): `/guts/<network>/sync/1.0.0`.
    pub fn sync_protocol(&self) -> String {
        format!("/guts/{}/sync/{PROTOCOL_VERSION}", self.0)
    }

    /// The sync protocol with repositories that have maintainers:
    /// `/guts/<network>/sync/1.1.0`. Nodes speak both; a peer of an older release speaks
    /// only 1.0.0 and is answered "not found" for what it could not read.
    pub fn shared_sync_protocol(&self) -> String {
        format!("/guts/{}/sync/{SHARED_SYNC_VERSION}", self.0)
    }

    /// The sync protocol with collaborative objects: `/guts/<network>/sync/1.2.0`, which
    /// adds [`crate::wire::SyncRequest::GetChanges`] to 1.1.0.
    pub fn changes_sync_protocol(&self) -> String {
        format!("/guts/{}/sync/{}", self.0, crate::CHANGES_SYNC_VERSION)
    }

    /// The sync protocol with contributors' forks: `/guts/<network>/sync/1.3.0`, which
    /// adds [`crate::wire::SyncRequest::GetForks`] to 1.2.0.
    pub fn forks_sync_protocol(&self) -> String {
        format!("/guts/{}/sync/{}", self.0, crate::FORKS_SYNC_VERSION)
    }

    /// The sync protocol with private repositories: `/guts/<network>/sync/1.4.0`, which
    /// adds [`crate::wire::SyncResponse::StateV2`] and [`crate::wire::SyncRequest::Notify`]
    /// to 1.3.0.
    pub fn private_sync_protocol(&self) -> String {
        format!("/guts/{}/sync/{}", self.0, crate::PRIVATE_SYNC_VERSION)
    }

    /// The sync protocol with encrypted repositories: `/guts/<network>/sync/1.5.0`, whose
    /// states may name [`crate::identity::Visibility::Sealed`].
    pub fn sealed_sync_protocol(&self) -> String {
        format!("/guts/{}/sync/{}", self.0, crate::SEALED_SYNC_VERSION)
    }

    /// Pack protocol (libp2p stream): `/guts/<network>/pack/1.0.0`.
    pub fn pack_protocol(&self) -> String {
        format!("/guts/{}/pack/{PROTOCOL_VERSION}", self.0)
    }

    /// The gossipsub topic on which repository and commit announcements travel.
    pub fn announce_topic(&self) -> String {
        format!("guts/{}/announce/1", self.0)
    }

    /// The topic of announcements about repositories with maintainers (views and
    /// identity versions). Apart from [`Self::announce_topic`] because older releases
    /// reject what they cannot decode there, and would score the relaying peer down.
    pub fn shared_announce_topic(&self) -> String {
        format!("guts/{}/announce/2", self.0)
    }

    /// The topic of new changes to patches, issues and moderation: a topic of its own so
    /// that releases without them never see (and never score down) what they cannot read.
    pub fn changes_topic(&self) -> String {
        format!("guts/{}/changes/1", self.0)
    }
}

impl Default for NetworkName {
    fn default() -> Self {
        Self::default_network()
    }
}

impl FromStr for NetworkName {
    type Err = NetworkNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(first) = s.chars().next() else {
            return Err(NetworkNameError::Empty);
        };
        if s.len() > MAX_NETWORK_NAME_LEN {
            return Err(NetworkNameError::TooLong {
                name: s.to_owned(),
                len: s.len(),
            });
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        let bad = if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            Some(first)
        } else {
            s.chars().find(|c| !allowed(*c))
        };
        match bad {
            Some(ch) => Err(NetworkNameError::InvalidChar {
                name: s.to_owned(),
                ch,
            }),
            None => Ok(NetworkName(s.to_owned())),
        }
    }
}

impl TryFrom<String> for NetworkName {
    type Error = NetworkNameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<NetworkName> for String {
    fn from(n: NetworkName) -> String {
        n.0
    }
}

impl fmt::Display for NetworkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["guts", "lab-1", "a", "x.y_z", "0net"] {
            assert_eq!(ok.parse::<NetworkName>().unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_bad_names_and_names_the_value() {
        assert_eq!("".parse::<NetworkName>(), Err(NetworkNameError::Empty));
        let err = "Lab/1".parse::<NetworkName>().unwrap_err();
        assert_eq!(
            err,
            NetworkNameError::InvalidChar {
                name: "Lab/1".into(),
                ch: 'L'
            }
        );
        assert!(err.to_string().contains("\"Lab/1\""));
        let err = "lab/1".parse::<NetworkName>().unwrap_err();
        assert!(matches!(err, NetworkNameError::InvalidChar { ch: '/', .. }));
        let long = "a".repeat(MAX_NETWORK_NAME_LEN + 1);
        assert!(matches!(
            long.parse::<NetworkName>(),
            Err(NetworkNameError::TooLong { len: 65, .. })
        ));
    }

    #[test]
    fn protocol_names_carry_the_network() {
        let n: NetworkName = "lab".parse().unwrap();
        assert_eq!(n.kad_protocol(), "/guts/lab/kad/1.0.0");
        assert_eq!(n.identify_protocol_version(), "/guts/lab/1.0.0");
        assert_eq!(n.shared_sync_protocol(), "/guts/lab/sync/1.1.0");
        assert_ne!(
            n.kad_protocol(),
            NetworkName::default_network().kad_protocol()
        );
    }
}
