//! A change: one signed action on one object, and the changes it follows.
//!
//! On disk and on the wire a change is the blob of its commit: a format byte, then the
//! postcard encoding of [`SignedChange`]. Format 1 is the only one so far. A release that
//! adds actions writes a change using one under a new format byte: a node that cannot
//! read it leaves it (and whatever follows it) out, naming the format, without blaming
//! the sender, and keeps the rest.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use guts_protocol::{ObjectId, RepositoryId};
use serde::{Deserialize, Serialize};

use crate::action::{Action, Kind};

/// A change's id: the id of its commit.
pub type ChangeId = ObjectId;

/// The format byte this build writes and reads.
pub const CHANGE_FORMAT: u8 = 1;
/// Largest change blob read.
pub const MAX_CHANGE_SIZE: usize = 64 * 1024;
/// Most parents one change names (the tips its author knew).
pub const MAX_PARENTS: usize = 64;
/// Latest timestamp accepted: the end of year 9999, in seconds.
pub const MAX_TIMESTAMP: u64 = 253_402_300_799;

/// What an author signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The repository the object belongs to.
    pub repository: RepositoryId,
    /// The object; `None` when this change opens it (the object's id is then this
    /// change's id).
    pub object: Option<ChangeId>,
    /// The changes of the same object this one follows: sorted, no repeats; empty exactly
    /// when it opens the object.
    pub parents: Vec<ChangeId>,
    /// Who made it.
    pub author: VerifyingKey,
    /// When, by the author's clock, in seconds since 1970: shown, never used to order.
    pub timestamp: u64,
    /// What it does.
    pub action: Action,
}

/// A change with its author's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedChange {
    /// What was signed.
    pub change: Change,
    /// The author's signature over it.
    pub signature: Signature,
}

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The blob is larger than any change.
    #[error("change of {size} bytes: at most {MAX_CHANGE_SIZE}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Written by a newer release.
    #[error("change format {found}: this build reads format {CHANGE_FORMAT}")]
    UnknownFormat {
        /// The format byte found.
        found: u8,
    },
    /// Not a change, or not in its one encoding.
    #[error("not a change: {0}")]
    Undecodable(String),
    /// Well-formed bytes, but not a change that may exist.
    #[error("malformed change by {author}: {reason}")]
    Malformed {
        /// The claimed author, hex.
        author: String,
        /// What is wrong.
        reason: String,
    },
    /// The signature is not the author's.
    #[error("change claiming {author} as author is not signed by that key")]
    BadSignature {
        /// The claimed author, hex.
        author: String,
    },
    /// The commit holding the change is not the one its content gives.
    #[error("commit {found} holds a change whose commit is {expected}")]
    WrongCommit {
        /// The commit read.
        found: ObjectId,
        /// The commit the change gives.
        expected: ObjectId,
    },
}

fn signing_bytes(change: &Change) -> Vec<u8> {
    postcard::to_allocvec(&("guts/change/v1", change)).expect("changes always encode")
}

impl Change {
    /// The object this change belongs to, given its own id.
    pub fn object_id(&self, own: ChangeId) -> ChangeId {
        self.object.unwrap_or(own)
    }

    /// The kind of object this change opens, if it opens one.
    pub fn opens(&self) -> Option<Kind> {
        self.action.opens()
    }

    /// Checks what a change must be on its own.
    pub fn check(&self) -> Result<(), ChangeError> {
        let bad = |reason: String| ChangeError::Malformed {
            author: hex::encode(self.author.as_bytes()),
            reason,
        };
        match (self.object, self.action.opens()) {
            (None, None) => return Err(bad(format!("{} opens no object", self.action.name()))),
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "{} names an object it would open",
                    self.action.name()
                )));
            }
            _ => {}
        }
        if self.object.is_none() != self.parents.is_empty() {
            return Err(bad(
                "a change has parents exactly when it does not open its object".into(),
            ));
        }
        if self.parents.len() > MAX_PARENTS {
            return Err(bad(format!(
                "{} parents: at most {MAX_PARENTS}",
                self.parents.len()
            )));
        }
        if self.parents.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("parents not sorted, or one named twice".into()));
        }
        if self.timestamp > MAX_TIMESTAMP {
            return Err(bad(format!(
                "timestamp {} is past year 9999",
                self.timestamp
            )));
        }
        self.action.check().map_err(bad)
    }
}

impl SignedChange {
    /// Signs `change` with `key`, which must be its author.
    pub fn sign(change: Change, key: &SigningKey) -> Result<Self, ChangeError> {
        if change.author != key.verifying_key() {
            return Err(ChangeError::BadSignature {
                author: hex::encode(change.author.as_bytes()),
            });
        }
        change.check()?;
        let signature = key.sign(&signing_bytes(&change));
        Ok(SignedChange { change, signature })
    }

    /// Checks shape and signature.
    pub fn verify(&self) -> Result<(), ChangeError> {
        self.change.check()?;
        self.change
            .author
            .verify(&signing_bytes(&self.change), &self.signature)
            .map_err(|_| ChangeError::BadSignature {
                author: hex::encode(self.change.author.as_bytes()),
            })
    }

    /// The blob's bytes: the format byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, vec![CHANGE_FORMAT]).expect("changes always encode")
    }

    /// Reads a blob written by [`Self::encode`] (not verified: see [`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, ChangeError> {
        if bytes.len() > MAX_CHANGE_SIZE {
            return Err(ChangeError::TooLarge { size: bytes.len() });
        }
        match bytes.first() {
            Some(&CHANGE_FORMAT) => {}
            Some(&found) => return Err(ChangeError::UnknownFormat { found }),
            None => return Err(ChangeError::Undecodable("empty blob".into())),
        }
        let change: SignedChange = postcard::from_bytes(&bytes[1..])
            .map_err(|e| ChangeError::Undecodable(e.to_string()))?;
        // One encoding per change, so one commit id per change: a re-encoded variant
        // would be the same signed action under another id.
        if change.encode() != bytes {
            return Err(ChangeError::Undecodable(
                "not in canonical encoding (trailing or non-minimal bytes)".into(),
            ));
        }
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn open(author: &SigningKey) -> Change {
        Change {
            repository: RepositoryId::derive(&[7; 32], &"p".parse().unwrap()),
            object: None,
            parents: vec![],
            author: author.verifying_key(),
            timestamp: 1_700_000_000,
            action: Action::OpenIssue {
                title: "crash on start".into(),
                body: "it crashes".into(),
                labels: vec![],
            },
        }
    }

    #[test]
    fn a_change_round_trips_and_verifies() {
        let k = key(1);
        let signed = SignedChange::sign(open(&k), &k).unwrap();
        let bytes = signed.encode();
        let back = SignedChange::decode(&bytes).unwrap();
        assert_eq!(back, signed);
        back.verify().unwrap();
    }

    #[test]
    fn a_change_signed_by_another_key_is_refused() {
        let (author, other) = (key(1), key(2));
        let mut signed = SignedChange::sign(open(&author), &author).unwrap();
        signed.signature = other.sign(&signing_bytes(&signed.change));
        assert!(matches!(
            signed.verify(),
            Err(ChangeError::BadSignature { .. })
        ));
        assert!(SignedChange::sign(open(&author), &other).is_err());
    }

    #[test]
    fn an_altered_change_no_longer_verifies() {
        let k = key(1);
        let mut signed = SignedChange::sign(open(&k), &k).unwrap();
        signed.change.timestamp += 1;
        assert!(matches!(
            signed.verify(),
            Err(ChangeError::BadSignature { .. })
        ));
    }

    #[test]
    fn unknown_formats_and_trailing_bytes_are_named() {
        let k = key(1);
        let mut bytes = SignedChange::sign(open(&k), &k).unwrap().encode();
        bytes.push(0);
        assert!(matches!(
            SignedChange::decode(&bytes),
            Err(ChangeError::Undecodable(_))
        ));
        bytes[0] = 9;
        let err = SignedChange::decode(&bytes).unwrap_err();
        assert_eq!(err, ChangeError::UnknownFormat { found: 9 });
        assert!(err.to_string().contains("format 9"));
        assert!(matches!(
            SignedChange::decode(&vec![1; MAX_CHANGE_SIZE + 1]),
            Err(ChangeError::TooLarge { .. })
        ));
    }

    #[test]
    fn shape_rules_hold() {
        let k = key(1);
        let mut c = open(&k);
        c.parents = vec![ObjectId([1; 20])];
        assert!(c.check().is_err(), "an opening change has no parents");
        let mut c = open(&k);
        c.object = Some(ObjectId([1; 20]));
        assert!(c.check().is_err(), "an opening change names no object");
        let mut c = open(&k);
        c.object = Some(ObjectId([1; 20]));
        c.parents = vec![ObjectId([3; 20]), ObjectId([2; 20])];
        c.action = Action::Comment {
            body: "hi".into(),
            reply_to: None,
        };
        assert!(c.check().is_err(), "parents must be sorted");
        c.parents.sort();
        c.check().unwrap();
        c.action = Action::Retitle {
            title: "x".repeat(300),
        };
        assert!(c.check().unwrap_err().to_string().contains("title of 300"));
    }
}
