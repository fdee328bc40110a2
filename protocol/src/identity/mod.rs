//! A repository's identity: who maintains it and how many of them must agree.
//!
//! The identity is a hash-linked history of versions. Version 1 (genesis) is implied by the
//! repository id: its one maintainer is the key the id derives from, its threshold 1, so
//! every repository created before maintainers existed has exactly this history and needs
//! nothing new on disk or on the wire. Each later version names its predecessor's hash and
//! takes effect only with the signatures of at least the predecessor's threshold of the
//! predecessor's maintainers.
//!
//! Two valid successors of one version (possible when the threshold is at most half) are
//! resolved by a rule every node computes alike from the set it holds, whatever order it
//! came in: the successor signed by more of the predecessor's maintainers wins; on a tie,
//! the smaller version hash. Signatures only accumulate, so the answer moves only when new
//! signatures arrive, and then the same way on every node that holds them.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{RepoName, RepositoryId};

/// Most maintainers one version may name.
pub const MAX_MAINTAINERS: usize = 32;
/// Most versions (taken effect, competing or pending) a node keeps for one repository.
pub const MAX_VERSIONS: usize = 1024;
/// Most successors one version may have (competing or pending proposals).
pub const MAX_SUCCESSORS: usize = 32;

/// The hash of an identity version: what links versions and what maintainers sign.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VersionId(pub [u8; 32]);

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for VersionId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hex::decode(s.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(VersionId)
            .ok_or_else(|| format!("invalid identity version {s:?}: expected 64 hex digits"))
    }
}

impl fmt::Debug for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VersionId({})", &hex::encode(self.0)[..12])
    }
}

/// One version of a repository's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityDoc {
    /// The repository; fixed by genesis, the same in every version.
    pub repository: RepositoryId,
    /// The repository's name; fixed by genesis too.
    pub name: RepoName,
    /// 1 for genesis, one more than its predecessor's otherwise.
    pub version: u64,
    /// The predecessor's hash; `None` only for genesis.
    pub previous: Option<VersionId>,
    /// Who maintains the repository from this version on: sorted by key bytes, no repeats.
    pub maintainers: Vec<VerifyingKey>,
    /// How many maintainers must agree: on a branch for it to move, on a next version for
    /// it to take effect.
    pub threshold: u16,
    /// Who may learn that the repository exists. Not part of format 1's encoding, in
    /// which every version is public and which releases before private repositories read:
    /// a private version is hashed as format 2 and travels and is stored only in forms
    /// that carry it (see [`crate::repository::SharedStateV2`]).
    #[serde(skip)]
    pub visibility: Visibility,
}

/// Most keys a private repository's allow list names.
pub const MAX_ALLOWED: usize = 256;

/// Who may learn that a repository exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Visibility {
    /// Anyone: it is announced, listed, provided and served to every peer.
    #[default]
    Public,
    /// Its maintainers and the keys in `allow` (sorted by bytes, no repeats): to anyone
    /// else a node answers as it does for a repository it does not hold.
    Private {
        /// The keys allowed besides the maintainers.
        allow: Vec<VerifyingKey>,
    },
    /// Private, and encrypted (see [`crate::sealed`]): its maintainers and `readers` hold
    /// its key; `seeders` keep and serve its ciphertext without it. To anyone else a node
    /// answers as for a repository it does not hold. Chosen when the repository is made
    /// (its second version) and kept by every version after.
    Sealed {
        /// The keys that read it besides the maintainers (sorted by bytes, no repeats).
        readers: Vec<VerifyingKey>,
        /// The keys that keep and serve it without reading it (sorted, no repeats).
        seeders: Vec<VerifyingKey>,
    },
}

impl Visibility {
    /// A private visibility allowing `keys` (any order, repeats dropped).
    pub fn private(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Visibility::Private {
            allow: sorted(keys),
        }
    }

    /// An encrypted visibility (any order, repeats dropped).
    pub fn sealed(
        readers: impl IntoIterator<Item = VerifyingKey>,
        seeders: impl IntoIterator<Item = VerifyingKey>,
    ) -> Self {
        Visibility::Sealed {
            readers: sorted(readers),
            seeders: sorted(seeders),
        }
    }

    /// Every key allowed besides the maintainers: whom news of it is sent to.
    pub fn allowed(&self) -> Vec<VerifyingKey> {
        match self {
            Visibility::Public => Vec::new(),
            Visibility::Private { allow } => allow.clone(),
            Visibility::Sealed { readers, seeders } => {
                sorted(readers.iter().chain(seeders).copied())
            }
        }
    }
}

fn sorted(keys: impl IntoIterator<Item = VerifyingKey>) -> Vec<VerifyingKey> {
    let mut keys: Vec<VerifyingKey> = keys.into_iter().collect();
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    keys.dedup();
    keys
}

fn names(keys: &[VerifyingKey], key: &VerifyingKey) -> bool {
    keys.binary_search_by(|k| k.as_bytes().cmp(key.as_bytes()))
        .is_ok()
}

/// Why an identity version is not valid, or not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The version's fields do not fit together.
    #[error("identity version {version} of {repository} is malformed: {reason}")]
    Malformed {
        /// The repository it claims.
        repository: RepositoryId,
        /// The version number it claims.
        version: u64,
        /// What is wrong.
        reason: String,
    },
    /// The version belongs to another repository (or names it differently).
    #[error("identity version is for {found}, not {expected}")]
    WrongRepository {
        /// The repository this history is of.
        expected: RepositoryId,
        /// The one the version names.
        found: RepositoryId,
    },
    /// The predecessor is not known here (yet): the version cannot be judged.
    #[error(
        "identity version {version} of {repository} follows {previous:?}, which this node does not hold"
    )]
    UnknownPrevious {
        /// The repository.
        repository: RepositoryId,
        /// The version number.
        version: u64,
        /// The predecessor it names.
        previous: VersionId,
    },
    /// No signature on it comes from a maintainer of its predecessor.
    #[error("identity version {version} of {repository} carries no valid signature of a maintainer of version {}", version - 1)]
    Unsigned {
        /// The repository.
        repository: RepositoryId,
        /// The version number.
        version: u64,
    },
    /// The history is full.
    #[error(
        "{repository} already has {count} identity versions after one; at most {limit} are kept"
    )]
    TooMany {
        /// The repository.
        repository: RepositoryId,
        /// How many there are.
        count: usize,
        /// The limit reached.
        limit: usize,
    },
    /// No such version is held.
    #[error("{repository} has no identity version {id}")]
    UnknownVersion {
        /// The repository.
        repository: RepositoryId,
        /// The hash asked for.
        id: VersionId,
    },
    /// The key may not sign this version (it is not a maintainer of its predecessor).
    #[error("key {key} is not a maintainer of version {version} of {repository}")]
    NotMaintainer {
        /// The repository.
        repository: RepositoryId,
        /// The predecessor's version number.
        version: u64,
        /// The key, hex.
        key: String,
    },
}

impl IdentityDoc {
    /// The implied first version of the repository `name` created by `owner`.
    pub fn genesis(owner: &VerifyingKey, name: RepoName) -> Self {
        IdentityDoc {
            repository: RepositoryId::derive(owner.as_bytes(), &name),
            name,
            version: 1,
            previous: None,
            maintainers: vec![*owner],
            threshold: 1,
            visibility: Visibility::Public,
        }
    }

    /// A successor of this version: `maintainers` (any order, repeats dropped) with
    /// `threshold`.
    pub fn next(
        &self,
        maintainers: impl IntoIterator<Item = VerifyingKey>,
        threshold: u16,
    ) -> Result<Self, IdentityError> {
        let mut maintainers: Vec<VerifyingKey> = maintainers.into_iter().collect();
        maintainers.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        maintainers.dedup();
        let doc = IdentityDoc {
            repository: self.repository,
            name: self.name.clone(),
            version: self.version + 1,
            previous: Some(self.id()),
            maintainers,
            threshold,
            visibility: self.visibility.clone(),
        };
        doc.check_shape()?;
        Ok(doc)
    }

    /// The same version with `visibility` (for a successor being proposed).
    pub fn with_visibility(mut self, visibility: Visibility) -> Result<Self, IdentityError> {
        self.visibility = match visibility {
            Visibility::Private { allow } => Visibility::private(allow),
            Visibility::Sealed { readers, seeders } => Visibility::sealed(readers, seeders),
            public => public,
        };
        self.check_shape()?;
        Ok(self)
    }

    /// This version's hash: format 1's (the fields before `visibility`) for a public
    /// version, as every release computes it; format 2's, which covers the allow list,
    /// for a private one.
    pub fn id(&self) -> VersionId {
        let bytes = match &self.visibility {
            Visibility::Public => postcard::to_allocvec(&("guts/identity/v1", self)),
            private => postcard::to_allocvec(&("guts/identity/v2", self, private)),
        }
        .expect("docs always encode");
        VersionId(Sha256::digest(&bytes).into())
    }

    /// Whether the repository is private at this version.
    pub fn is_private(&self) -> bool {
        !matches!(self.visibility, Visibility::Public)
    }

    /// Whether the repository is encrypted at this version.
    pub fn is_sealed(&self) -> bool {
        matches!(self.visibility, Visibility::Sealed { .. })
    }

    /// Whether `key` may read an encrypted repository's contents at this version (its
    /// maintainers and readers); for any other repository, whether it may see it.
    pub fn may_read(&self, key: &VerifyingKey) -> bool {
        match &self.visibility {
            Visibility::Sealed { readers, .. } => self.is_maintainer(key) || names(readers, key),
            _ => self.may_see(key),
        }
    }

    /// Who holds an encrypted repository's key at this version: its maintainers and
    /// readers (sorted, no repeats).
    pub fn readers(&self) -> Vec<VerifyingKey> {
        match &self.visibility {
            Visibility::Sealed { readers, .. } => {
                sorted(self.maintainers.iter().chain(readers).copied())
            }
            _ => Vec::new(),
        }
    }

    /// Whether `key` may learn of the repository at this version: anyone for a public
    /// one; its maintainers and allowed keys for a private one.
    pub fn may_see(&self, key: &VerifyingKey) -> bool {
        match &self.visibility {
            Visibility::Public => true,
            Visibility::Private { allow } => self.is_maintainer(key) || names(allow, key),
            Visibility::Sealed { readers, seeders } => {
                self.is_maintainer(key) || names(readers, key) || names(seeders, key)
            }
        }
    }

    /// Whether `key` maintains the repository at this version.
    pub fn is_maintainer(&self, key: &VerifyingKey) -> bool {
        self.maintainers
            .binary_search_by(|k| k.as_bytes().cmp(key.as_bytes()))
            .is_ok()
    }

    /// Checks what a version must be on its own: maintainers sorted, unique, 1 to
    /// [`MAX_MAINTAINERS`]; threshold 1 to their number; allowed keys sorted, unique, at
    /// most [`MAX_ALLOWED`]; genesis and only genesis without a predecessor, and genesis
    /// exactly the implied one (public: a repository is made private by its next version).
    pub fn check_shape(&self) -> Result<(), IdentityError> {
        let bad = |reason: String| IdentityError::Malformed {
            repository: self.repository,
            version: self.version,
            reason,
        };
        let n = self.maintainers.len();
        if n == 0 || n > MAX_MAINTAINERS {
            return Err(bad(format!(
                "{n} maintainers; a version names 1 to {MAX_MAINTAINERS}"
            )));
        }
        if self
            .maintainers
            .windows(2)
            .any(|w| w[0].as_bytes() >= w[1].as_bytes())
        {
            return Err(bad("maintainers not sorted, or one named twice".into()));
        }
        if self.threshold == 0 || usize::from(self.threshold) > n {
            return Err(bad(format!(
                "threshold {} with {n} maintainers; it must be 1 to {n}",
                self.threshold
            )));
        }
        let lists: &[&Vec<VerifyingKey>] = match &self.visibility {
            Visibility::Public => &[],
            Visibility::Private { allow } => &[allow],
            Visibility::Sealed { readers, seeders } => &[readers, seeders],
        };
        let total: usize = lists.iter().map(|l| l.len()).sum();
        if total > MAX_ALLOWED {
            return Err(bad(format!(
                "{total} allowed keys; a version names at most {MAX_ALLOWED}"
            )));
        }
        if lists
            .iter()
            .any(|l| l.windows(2).any(|w| w[0].as_bytes() >= w[1].as_bytes()))
        {
            return Err(bad("allowed keys not sorted, or one named twice".into()));
        }
        match (self.version, self.previous) {
            (1, None) => {
                if *self != IdentityDoc::genesis(&self.maintainers[0], self.name.clone()) {
                    return Err(bad(
                        "version 1 must be the creator alone, threshold 1, as the id derives"
                            .into(),
                    ));
                }
            }
            (1, Some(_)) | (0, _) => return Err(bad("version 1 has no predecessor".into())),
            (_, None) => return Err(bad("a version after 1 names its predecessor".into())),
            (_, Some(_)) => {}
        }
        Ok(())
    }
}

fn signing_bytes(id: &VersionId) -> Vec<u8> {
    postcard::to_allocvec(&("guts/identity-signature/v1", id)).expect("ids always encode")
}

/// An identity version with the signatures gathered for it so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVersion {
    /// The version.
    pub doc: IdentityDoc,
    /// Signatures over its hash, sorted by key bytes, one per key.
    pub signatures: Vec<(VerifyingKey, Signature)>,
}

impl SignedVersion {
    /// `doc` signed by `key` alone: a proposal until enough others sign it too.
    pub fn propose(doc: IdentityDoc, key: &SigningKey) -> Self {
        let mut version = SignedVersion {
            doc,
            signatures: Vec::new(),
        };
        version.sign(key);
        version
    }

    /// Adds `key`'s signature (replacing one it made before).
    pub fn sign(&mut self, key: &SigningKey) {
        let signature = key.sign(&signing_bytes(&self.doc.id()));
        self.insert(key.verifying_key(), signature);
    }

    fn insert(&mut self, key: VerifyingKey, signature: Signature) {
        match self
            .signatures
            .binary_search_by(|(k, _)| k.as_bytes().cmp(key.as_bytes()))
        {
            Ok(i) => self.signatures[i] = (key, signature),
            Err(i) => self.signatures.insert(i, (key, signature)),
        }
    }

    /// Whether `key` has signed it (validly or not: see [`Self::signers_among`]).
    pub fn signed_by(&self, key: &VerifyingKey) -> bool {
        self.signatures.iter().any(|(k, _)| k == key)
    }

    /// The keys among `previous`'s maintainers whose signature on this version verifies.
    pub fn signers_among(&self, previous: &IdentityDoc) -> Vec<VerifyingKey> {
        let bytes = signing_bytes(&self.doc.id());
        self.signatures
            .iter()
            .filter(|(k, s)| previous.is_maintainer(k) && k.verify_strict(&bytes, s).is_ok())
            .map(|(k, _)| *k)
            .collect()
    }

    /// Keeps only the signatures of `previous`'s maintainers that verify; returns how many
    /// are left.
    fn keep_valid(&mut self, previous: &IdentityDoc) -> usize {
        let valid = self.signers_among(previous);
        self.signatures.retain(|(k, _)| valid.contains(k));
        self.signatures.len()
    }
}

/// What [`IdentityHistory::add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionAdded {
    /// A version not held before.
    New,
    /// New signatures on a version held before.
    Signatures(usize),
    /// Nothing new.
    Unchanged,
}

mod history;
#[cfg(test)]
mod visibility_tests;

pub use history::IdentityHistory;
