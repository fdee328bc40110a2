//! Messages on the wire: postcard, behind a version byte, size-checked before decoding.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ids::RepositoryId;
use crate::refs::SignedRefs;

/// Version byte that starts every encoded message.
pub const WIRE_VERSION: u8 = 1;

/// Largest sync request.
pub const MAX_REQUEST_SIZE: usize = 16 * 1024;
/// Largest sync response (a snapshot of up to [`crate::refs::MAX_REFS`] refs).
pub const MAX_RESPONSE_SIZE: usize = 32 * 1024 * 1024;

/// A request on the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The latest signed refs of a repository.
    GetRefs {
        /// Which repository.
        repository: RepositoryId,
    },
}

/// An answer on the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The owner's latest snapshot this node holds.
    Refs(Box<SignedRefs>),
    /// This node does not hold the repository.
    NotFound,
    /// Too many requests from you: slow down.
    RateLimited,
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than the message type allows.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Written by an incompatible version.
    #[error("message has wire version {0}, this node speaks {WIRE_VERSION}")]
    Version(u8),
    /// Not a valid encoding of the expected type.
    #[error("undecodable message: {0}")]
    Undecodable(String),
}

/// Encodes `msg` behind the version byte.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let out = vec![WIRE_VERSION];
    postcard::to_extend(msg, out).expect("messages always encode")
}

/// Decodes a message of at most `max` bytes. The length is checked before anything is
/// decoded; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::Oversized {
            len: bytes.len(),
            max,
        });
    }
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| WireError::Undecodable("empty message".into()))?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let (msg, rest) =
        postcard::take_from_bytes(body).map_err(|e| WireError::Undecodable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Undecodable(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let req = SyncRequest::GetRefs {
            repository: RepositoryId::from_bytes([3; 20]),
        };
        let bytes = encode(&req);
        assert_eq!(bytes[0], WIRE_VERSION);
        assert_eq!(
            decode::<SyncRequest>(&bytes, MAX_REQUEST_SIZE).unwrap(),
            req
        );
        assert!(matches!(
            decode::<SyncRequest>(&bytes, 3),
            Err(WireError::Oversized { .. })
        ));
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert_eq!(
            decode::<SyncRequest>(&wrong, 100),
            Err(WireError::Version(9))
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode::<SyncRequest>(&long, 100),
            Err(WireError::Undecodable(_))
        ));
        assert!(matches!(
            decode::<SyncRequest>(&[WIRE_VERSION, 200], 100),
            Err(WireError::Undecodable(_))
        ));
        assert!(matches!(
            decode::<SyncRequest>(&[], 100),
            Err(WireError::Undecodable(_))
        ));
    }
}
