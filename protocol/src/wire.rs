//! Messages on the wire: postcard, behind a version byte, size-checked before decoding.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::forks::ForkSeen;
use crate::identity::SignedVersion;
use crate::ids::{ObjectId, RepositoryId};
use crate::refs::{MAX_REFS, SignedHeader, SignedRefs};
use crate::repository::{SharedState, SharedStateV2};

/// Version byte that starts every encoded message.
pub const WIRE_VERSION: u8 = 1;

/// Largest sync request.
pub const MAX_REQUEST_SIZE: usize = 16 * 1024;
/// Largest sync response (a snapshot of up to [`crate::refs::MAX_REFS`] refs).
pub const MAX_RESPONSE_SIZE: usize = 32 * 1024 * 1024;

/// Largest pack request (wants and haves of up to [`MAX_REFS`] objects each).
pub const MAX_PACK_REQUEST_SIZE: usize = 2 * MAX_REFS * 24 + 1024;
/// Largest header before a pack.
pub const MAX_PACK_HEADER_SIZE: usize = 4 * 1024;
/// Largest announcement; far below gossipsub's 64 KiB transmit limit.
pub const MAX_ANNOUNCEMENT_SIZE: usize = 4 * 1024;

/// A request on the pack protocol (a libp2p stream): the objects reachable from
/// `wants` and not from `haves`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRequest {
    /// Which repository.
    pub repository: RepositoryId,
    /// Ref targets the requester lacks.
    pub wants: Vec<ObjectId>,
    /// Ref targets the requester has (their history is not sent).
    pub haves: Vec<ObjectId>,
}

/// The answer on the pack protocol; `Pack` is followed by the packfile's bytes until
/// the stream ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackResponse {
    /// A pack follows.
    Pack {
        /// Objects in it.
        objects: u32,
    },
    /// This node does not hold the repository.
    NotFound,
    /// Too many requests from you: slow down.
    RateLimited,
    /// Too many transfers under way: try another holder or later.
    Busy,
    /// The request cannot be served (e.g. a want this node does not have).
    Refused(String),
}

/// Gossip on the announce topic: the owner's signed header, which verifies on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Announcement {
    /// A repository was created (sequence 1).
    NewRepository(SignedHeader),
    /// Its refs moved.
    NewCommit(SignedHeader),
}

impl Announcement {
    /// The signed header either way.
    pub fn header(&self) -> &SignedHeader {
        match self {
            Announcement::NewRepository(h) | Announcement::NewCommit(h) => h,
        }
    }

    /// The announcement of `snapshot`.
    pub fn of(snapshot: &SignedRefs) -> Self {
        if snapshot.sequence() == 1 {
            Announcement::NewRepository(snapshot.signed.clone())
        } else {
            Announcement::NewCommit(snapshot.signed.clone())
        }
    }
}

/// A request on the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The latest signed refs of a repository.
    GetRefs {
        /// Which repository.
        repository: RepositoryId,
    },
    /// The repositories the peer holds, so a node that replicates everything can find
    /// those announced before it joined.
    ListRepositories,
    /// The tips of every collaborative object of a repository (sync 1.2.0 only).
    GetChanges {
        /// Which repository.
        repository: RepositoryId,
    },
    /// Contributors' forks of a repository newer than those the requester names (sync
    /// 1.3.0 only).
    GetForks {
        /// Which repository.
        repository: RepositoryId,
        /// Forks the requester holds (at most [`MAX_KNOWN_FORKS`]): only newer ones of
        /// these keys are sent.
        known: Vec<ForkSeen>,
    },
    /// The sender holds something new of a private repository the receiver may see (sync
    /// 1.4.0 only): private repositories are never announced on gossip, so their holders
    /// tell each allowed peer directly.
    Notify {
        /// Which repository.
        repository: RepositoryId,
    },
}

/// Most forks a [`SyncRequest::GetForks`] names as held (about 11 KiB).
pub const MAX_KNOWN_FORKS: usize = 256;

/// One tip of a collaborative object: enough to decide whether to fetch it before
/// fetching (a blocked author's tip is not asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeTip {
    /// The change (its commit).
    pub change: ObjectId,
    /// The object it belongs to.
    pub object: ObjectId,
    /// Its author.
    pub author: ed25519_dalek::VerifyingKey,
}

/// Most tips in one [`SyncResponse::Changes`] (about 7 MB).
pub const MAX_CHANGE_TIPS: usize = 100_000;
/// Most tips in one [`ChangesAnnouncement`].
pub const MAX_ANNOUNCED_TIPS: usize = 64;
/// Largest announcement on the changes topic.
pub const MAX_CHANGES_ANNOUNCEMENT_SIZE: usize = 8 * 1024;

/// Gossip on the changes topic: new tips of a repository's collaborative objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesAnnouncement {
    /// The repository.
    pub repository: RepositoryId,
    /// The new tips (at most [`MAX_ANNOUNCED_TIPS`]).
    pub tips: Vec<ChangeTip>,
}

/// Most repository ids in one [`SyncResponse::Repositories`] (about 1.4 MB).
pub const MAX_LISTED_REPOSITORIES: usize = 65_536;

/// An answer on the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The owner's latest snapshot this node holds.
    Refs(Box<SignedRefs>),
    /// This node does not hold the repository.
    NotFound,
    /// The repositories this node holds a verified snapshot of (at most
    /// [`MAX_LISTED_REPOSITORIES`]).
    Repositories(Vec<RepositoryId>),
    /// Too many requests from you: slow down.
    RateLimited,
    /// The repository has maintainers: its identity versions and views (sync 1.1.0
    /// only; a 1.0.0 peer is told [`SyncResponse::NotFound`]).
    State(Box<SharedState>),
    /// The tips of the repository's collaborative objects (sync 1.2.0 only; at most
    /// [`MAX_CHANGE_TIPS`]).
    Changes(Vec<ChangeTip>),
    /// Contributors' forks (sync 1.3.0 only; at most [`crate::forks::MAX_FORKS`]).
    Forks(Vec<SignedRefs>),
    /// A repository whose identity is or was private: [`SyncResponse::State`] with each
    /// version's visibility (sync 1.4.0 only, and only to a peer the repository's current
    /// version lets see it).
    StateV2(Box<SharedStateV2>),
    /// A [`SyncRequest::Notify`] was heard.
    Noted,
}

/// Gossip on the topic of repositories with maintainers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SharedAnnouncement {
    /// A maintainer's view moved: its signed header.
    View(Box<SignedHeader>),
    /// An identity version, or new signatures on one (a proposal, or its acceptance).
    Version(SignedVersion),
}

impl SharedAnnouncement {
    /// The repository it is about.
    pub fn repository(&self) -> RepositoryId {
        match self {
            SharedAnnouncement::View(h) => h.repository(),
            SharedAnnouncement::Version(v) => v.doc.repository,
        }
    }
}

/// Largest announcement on the shared topic: a version of
/// [`crate::identity::MAX_MAINTAINERS`] maintainers with as many signatures.
pub const MAX_SHARED_ANNOUNCEMENT_SIZE: usize = 16 * 1024;

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
/// decoded; trailing bytes are an error, and so is any encoding but the one [`encode`]
/// gives (postcard reads over-long varints too, so one message could be sent as many
/// byte strings, each with its own gossipsub message id).
pub fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8], max: usize) -> Result<T, WireError> {
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
    // Re-encoded against the input as it goes, with no copy: linear in the message,
    // which `max` already bounds, and stopped at the first byte that differs.
    let same = postcard::serialize_with_flavor(&msg, SameAs { rest: body }).unwrap_or(false);
    if !same {
        return Err(WireError::Undecodable(
            "not in canonical form (an over-long number?)".into(),
        ));
    }
    Ok(msg)
}

/// A postcard output that compares what is encoded with `rest`, byte by byte; it ends
/// `true` when the encoding is exactly `rest`.
struct SameAs<'a> {
    rest: &'a [u8],
}

impl postcard::ser_flavors::Flavor for SameAs<'_> {
    type Output = bool;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match self.rest.strip_prefix(data) {
            Some(rest) => {
                self.rest = rest;
                Ok(())
            }
            // Any error stops the encoder; `decode` takes it as "not canonical".
            None => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn finalize(self) -> postcard::Result<bool> {
        Ok(self.rest.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_small_whatever_the_number_of_refs() {
        use crate::ids::RefName;
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let refs: crate::refs::Refs = (0..5000)
            .map(|i| {
                (
                    format!("refs/heads/branch-{i}").parse::<RefName>().unwrap(),
                    ObjectId([1; 20]),
                )
            })
            .collect();
        let s = SignedRefs::sign(&key, "big".parse().unwrap(), 7, None, refs).unwrap();
        let bytes = encode(&Announcement::of(&s));
        assert!(bytes.len() < 400, "{} bytes", bytes.len());
        let back: Announcement = decode(&bytes, MAX_ANNOUNCEMENT_SIZE).unwrap();
        back.header().verify().unwrap();
        assert!(matches!(back, Announcement::NewCommit(_)));
        assert!(
            encode(&s).len() > MAX_ANNOUNCEMENT_SIZE,
            "the snapshot itself is large"
        );
    }

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

    #[test]
    fn only_the_canonical_encoding_is_read() {
        // 300 as a varint is [0xac, 0x02]; [0xac, 0x82, 0x00] reads as 300 too.
        let canonical = encode(&300u32);
        assert_eq!(canonical, [WIRE_VERSION, 0xac, 0x02]);
        assert_eq!(decode::<u32>(&canonical, 10).unwrap(), 300);
        assert!(matches!(
            decode::<u32>(&[WIRE_VERSION, 0xac, 0x82, 0x00], 10),
            Err(WireError::Undecodable(_))
        ));
        // A request's enum tag padded the same way.
        let request = SyncRequest::GetRefs {
            repository: crate::RepositoryId::from_bytes([7; 20]),
        };
        let bytes = encode(&request);
        let mut padded = vec![WIRE_VERSION, bytes[1] | 0x80, 0x00];
        padded.extend_from_slice(&bytes[2..]);
        assert!(decode::<SyncRequest>(&padded, 100).is_err());
        assert_eq!(decode::<SyncRequest>(&bytes, 100).unwrap(), request);
    }
}
