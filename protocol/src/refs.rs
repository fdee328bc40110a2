//! Signed refs: one key's snapshot of a repository's branches and tags.
//!
//! In a single-owner repository the owner's snapshot is the repository; with several
//! maintainers each signs one of these, its *view* (see [`crate::views`]), and the
//! canonical refs are computed from them ([`crate::canonical`]).
//!
//! The owner signs a small header: repository, name, sequence number, HEAD, and a digest
//! of the refs. A snapshot is that signed header plus the refs; an announcement is the
//! signed header alone, so it stays small however many refs there are and verifies with
//! the very same signature. Replicas pass the owner's snapshot on unchanged.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{ObjectId, RefName, RepoName, RepositoryId};

/// Most refs in one snapshot.
pub const MAX_REFS: usize = 100_000;

/// The refs of a snapshot, in canonical (sorted) order.
pub type Refs = BTreeMap<RefName, ObjectId>;

/// What the owner signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefsHeader {
    /// The repository; must equal `RepositoryId::derive(signer, name)`.
    pub repository: RepositoryId,
    /// The repository's name.
    pub name: RepoName,
    /// Grows by at least one with every snapshot; nodes refuse anything not newer than
    /// what they hold.
    pub sequence: u64,
    /// The branch a clone checks out, if any; must be one of the refs.
    pub head: Option<RefName>,
    /// SHA-256 of the canonical encoding of the refs.
    pub refs_digest: [u8; 32],
}

/// A header with its owner's signature: what an announcement carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHeader {
    /// What was signed.
    pub header: RefsHeader,
    /// The owner's public key.
    pub signer: VerifyingKey,
    /// Signature over the header's canonical encoding.
    pub signature: Signature,
}

/// A complete snapshot: the signed header and the refs it commits to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRefs {
    /// The signed header.
    pub signed: SignedHeader,
    /// Branch and tag targets.
    pub refs: Refs,
}

/// Why a snapshot or announcement does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefsError {
    /// The signer does not own the repository (id and key/name disagree).
    #[error("signer {signer} does not own repository {repository}")]
    NotOwner {
        /// The repository.
        repository: RepositoryId,
        /// The key that signed, hex.
        signer: String,
    },
    /// The signature does not match the header.
    #[error("bad signature on refs of {0}")]
    BadSignature(RepositoryId),
    /// The refs are not the ones the header commits to.
    #[error("refs of {0} do not match the signed digest")]
    DigestMismatch(RepositoryId),
    /// HEAD names a ref the snapshot does not have.
    #[error("HEAD of {repository} is {head}, which is not among its refs")]
    HeadMissing {
        /// The repository.
        repository: RepositoryId,
        /// The missing ref.
        head: RefName,
    },
    /// More refs than [`MAX_REFS`].
    #[error("{count} refs; at most {MAX_REFS} are accepted")]
    TooManyRefs {
        /// How many.
        count: usize,
    },
}

/// SHA-256 of the canonical encoding of `refs`.
pub fn refs_digest(refs: &Refs) -> [u8; 32] {
    let bytes = postcard::to_allocvec(refs).expect("refs always encode");
    Sha256::digest(&bytes).into()
}

impl RefsHeader {
    fn signing_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(&("guts/signed-refs/v1", self)).expect("header always encodes")
    }
}

impl SignedHeader {
    /// Checks that the signer owns the repository and signed this header.
    pub fn verify(&self) -> Result<(), RefsError> {
        let h = &self.header;
        if RepositoryId::derive(self.signer.as_bytes(), &h.name) != h.repository {
            return Err(RefsError::NotOwner {
                repository: h.repository,
                signer: hex_key(&self.signer),
            });
        }
        self.verify_signature()
    }

    /// Checks only that the signer signed this header; whether the signer may publish
    /// for the repository is the caller's to judge (a view: see [`crate::views`]).
    pub fn verify_signature(&self) -> Result<(), RefsError> {
        let h = &self.header;
        self.signer
            .verify_strict(&h.signing_bytes(), &self.signature)
            .map_err(|_| RefsError::BadSignature(h.repository))
    }

    /// SHA-256 of what was signed: tells two different headers of one sequence apart.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.header.signing_bytes()).into()
    }

    /// The repository.
    pub fn repository(&self) -> RepositoryId {
        self.header.repository
    }

    /// The sequence number.
    pub fn sequence(&self) -> u64 {
        self.header.sequence
    }
}

impl SignedRefs {
    /// Signs a snapshot of `refs` for the repository `name` owned by `key`.
    pub fn sign(
        key: &SigningKey,
        name: RepoName,
        sequence: u64,
        head: Option<RefName>,
        refs: Refs,
    ) -> Result<Self, RefsError> {
        let repository = RepositoryId::derive(key.verifying_key().as_bytes(), &name);
        Self::sign_view(key, repository, name, sequence, head, refs)
    }

    /// Checks ownership, signature, digest, HEAD and size. Whether the sequence is newer
    /// and the objects are present is for the receiving node to check.
    pub fn verify(&self) -> Result<(), RefsError> {
        self.check_digest()?;
        self.signed.verify()
    }

    /// Checks signature, digest, HEAD and size, but not ownership: a maintainer's view,
    /// whose signer [`crate::views::Views`] judges against the identity.
    pub fn verify_view(&self) -> Result<(), RefsError> {
        self.check_digest()?;
        self.signed.verify_signature()
    }

    fn check_digest(&self) -> Result<(), RefsError> {
        self.check_contents()?;
        if refs_digest(&self.refs) != self.signed.header.refs_digest {
            return Err(RefsError::DigestMismatch(self.repository()));
        }
        Ok(())
    }

    /// Signs `refs` as `key`'s view of `repository` (named `name`), which `key` need not
    /// have created.
    pub fn sign_view(
        key: &SigningKey,
        repository: RepositoryId,
        name: RepoName,
        sequence: u64,
        head: Option<RefName>,
        refs: Refs,
    ) -> Result<Self, RefsError> {
        let header = RefsHeader {
            repository,
            name,
            sequence,
            head,
            refs_digest: refs_digest(&refs),
        };
        let signature = key.sign(&header.signing_bytes());
        let view = SignedRefs {
            signed: SignedHeader {
                header,
                signer: key.verifying_key(),
                signature,
            },
            refs,
        };
        view.check_contents()?;
        Ok(view)
    }

    fn check_contents(&self) -> Result<(), RefsError> {
        if self.refs.len() > MAX_REFS {
            return Err(RefsError::TooManyRefs {
                count: self.refs.len(),
            });
        }
        if let Some(head) = &self.signed.header.head
            && !self.refs.contains_key(head)
        {
            return Err(RefsError::HeadMissing {
                repository: self.repository(),
                head: head.clone(),
            });
        }
        Ok(())
    }

    /// The repository.
    pub fn repository(&self) -> RepositoryId {
        self.signed.header.repository
    }

    /// The sequence number.
    pub fn sequence(&self) -> u64 {
        self.signed.header.sequence
    }
}

fn hex_key(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn refs() -> Refs {
        let mut r = Refs::new();
        r.insert("refs/heads/main".parse().unwrap(), ObjectId([1; 20]));
        r.insert("refs/tags/v1".parse().unwrap(), ObjectId([2; 20]));
        r
    }

    fn snapshot() -> SignedRefs {
        SignedRefs::sign(
            &key(1),
            "demo".parse().unwrap(),
            1,
            Some("refs/heads/main".parse().unwrap()),
            refs(),
        )
        .unwrap()
    }

    #[test]
    fn a_signed_snapshot_verifies_and_round_trips() {
        let s = snapshot();
        s.verify().unwrap();
        let bytes = postcard::to_allocvec(&s).unwrap();
        let back: SignedRefs = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, s);
        back.verify().unwrap();
        back.signed.verify().unwrap();
    }

    #[test]
    fn tampering_is_caught() {
        let mut s = snapshot();
        s.refs
            .insert("refs/heads/evil".parse().unwrap(), ObjectId([9; 20]));
        assert_eq!(s.verify(), Err(RefsError::DigestMismatch(s.repository())));

        let mut s = snapshot();
        s.signed.header.sequence = 99;
        assert_eq!(s.verify(), Err(RefsError::BadSignature(s.repository())));

        // Another key signs a snapshot claiming the same repository.
        let mut forged =
            SignedRefs::sign(&key(2), "demo".parse().unwrap(), 5, None, refs()).unwrap();
        forged.signed.header.repository = snapshot().repository();
        assert!(matches!(forged.verify(), Err(RefsError::NotOwner { .. })));
    }

    #[test]
    fn head_must_be_a_ref() {
        let err = SignedRefs::sign(
            &key(1),
            "demo".parse().unwrap(),
            1,
            Some("refs/heads/gone".parse().unwrap()),
            refs(),
        )
        .unwrap_err();
        assert!(matches!(err, RefsError::HeadMissing { .. }));
    }
}
