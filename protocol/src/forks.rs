//! Contributors' forks: the signed refs of a key that does not maintain a repository,
//! published inside the repository's own id.
//!
//! A fork is a [`SignedRefs`] like a maintainer's view, and is judged the same way per key
//! (newest sequence kept, a replay refused, of two of one sequence the smaller digest
//! kept, so every node keeps the same one). It never counts towards the canonical refs.
//! Unlike a view, how many forks a node keeps and how many refs each may hold are the
//! node's own policy ([`ForkLimits`]): a fork left out is no fault of its sender's.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::identity::IdentityHistory;
use crate::refs::{RefsError, SignedRefs};
use crate::views::ViewAdded;

/// Most forks one answer carries, and most a node keeps of one repository.
pub const MAX_FORKS: usize = 1024;
/// Most refs one fork may hold, whatever a node's policy.
pub const MAX_FORK_REFS: usize = 4096;

/// What a node keeps of contributors' forks of one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkLimits {
    /// Most forks kept (their first come keep their place).
    pub max_forks: usize,
    /// Most refs in one fork.
    pub max_refs: usize,
}

impl Default for ForkLimits {
    fn default() -> Self {
        ForkLimits {
            max_forks: 256,
            max_refs: 256,
        }
    }
}

/// A fork the requester holds already: its key and sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkSeen {
    /// The fork's key.
    pub key: VerifyingKey,
    /// The sequence held.
    pub sequence: u64,
}

/// Why a fork is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForkError {
    /// Not well-formed, or not signed by its signer: the sender passed on a forgery.
    #[error(transparent)]
    Refs(#[from] RefsError),
    /// It names another repository, or this one under another name.
    #[error("fork by {signer} is not of {expected}")]
    WrongRepository {
        /// The repository judged.
        expected: crate::RepositoryId,
        /// The signer, hex.
        signer: String,
    },
    /// The signer maintains the repository: it publishes a view, not a fork.
    #[error("{signer} maintains {repository}: its refs are a view, not a fork")]
    Maintainer {
        /// The repository.
        repository: crate::RepositoryId,
        /// The signer, hex.
        signer: String,
    },
    /// Older than the fork held: a replay.
    #[error("fork {sequence} of {signer} is older than the {held} held")]
    Stale {
        /// The signer, hex.
        signer: String,
        /// Its sequence.
        sequence: u64,
        /// The sequence held.
        held: u64,
    },
    /// More refs than this node keeps in one fork.
    #[error("fork of {signer} has {count} refs; this node keeps at most {limit} per fork")]
    TooManyRefs {
        /// The signer, hex.
        signer: String,
        /// Its refs.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// This node keeps as many forks of the repository as it will.
    #[error("this node keeps {limit} forks of the repository already")]
    Full {
        /// The limit.
        limit: usize,
    },
}

impl ForkError {
    /// Whether the sender is at fault (it passed on what no honest node would).
    pub fn is_forged(&self) -> bool {
        matches!(self, ForkError::Refs(_) | ForkError::WrongRepository { .. })
    }
}

/// The newest fork of each contributor key of one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forks {
    by_key: BTreeMap<[u8; 32], SignedRefs>,
}

impl Forks {
    /// Forks this node checked before (from its own store), taken as they are.
    pub fn restore(forks: impl IntoIterator<Item = SignedRefs>) -> Self {
        Forks {
            by_key: forks
                .into_iter()
                .map(|f| (*f.signed.signer.as_bytes(), f))
                .collect(),
        }
    }

    /// Takes `fork` if its signer does not maintain the repository under `identity`, it
    /// fits `limits`, and it is newer than the one held for that key.
    pub fn add(
        &mut self,
        fork: SignedRefs,
        identity: &IdentityHistory,
        limits: &ForkLimits,
    ) -> Result<ViewAdded, ForkError> {
        let signer = fork.signed.signer;
        let hex_signer = || hex::encode(signer.as_bytes());
        if fork.repository() != identity.repository()
            || fork.signed.header.name != identity.genesis().name
        {
            return Err(ForkError::WrongRepository {
                expected: identity.repository(),
                signer: hex_signer(),
            });
        }
        if identity.may_publish(&signer) {
            return Err(ForkError::Maintainer {
                repository: identity.repository(),
                signer: hex_signer(),
            });
        }
        let held = self.by_key.get(signer.as_bytes());
        if let Some(held) = held
            && fork.sequence() < held.sequence()
        {
            return Err(ForkError::Stale {
                signer: hex_signer(),
                sequence: fork.sequence(),
                held: held.sequence(),
            });
        }
        if held == Some(&fork) {
            return Ok(ViewAdded::Unchanged);
        }
        let limit = limits.max_refs.min(MAX_FORK_REFS);
        if fork.refs.len() > limit {
            return Err(ForkError::TooManyRefs {
                signer: hex_signer(),
                count: fork.refs.len(),
                limit,
            });
        }
        let max_forks = limits.max_forks.min(MAX_FORKS);
        if held.is_none() && self.by_key.len() >= max_forks {
            return Err(ForkError::Full { limit: max_forks });
        }
        fork.verify_view()?;
        let added = crate::views::classify(held, &fork);
        if added != (ViewAdded::Equivocation { kept: false }) {
            self.by_key.insert(*signer.as_bytes(), fork);
        }
        Ok(added)
    }

    /// The fork held for `key`.
    pub fn of(&self, key: &VerifyingKey) -> Option<&SignedRefs> {
        self.by_key.get(key.as_bytes())
    }

    /// Every fork held, by key bytes.
    pub fn iter(&self) -> impl Iterator<Item = &SignedRefs> {
        self.by_key.values()
    }

    /// How many forks are held.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// What a requester holds, to be told only what is newer.
    pub fn seen(&self) -> Vec<ForkSeen> {
        self.iter()
            .map(|f| ForkSeen {
                key: f.signed.signer,
                sequence: f.sequence(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::identity::IdentityDoc;
    use crate::ids::ObjectId;
    use crate::refs::Refs;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn identity() -> IdentityHistory {
        IdentityHistory::new(IdentityDoc::genesis(
            &key(1).verifying_key(),
            "demo".parse().unwrap(),
        ))
        .unwrap()
    }

    fn fork(signer: u8, sequence: u64, refs: u8) -> SignedRefs {
        let h = identity();
        let refs: Refs = (0..refs)
            .map(|i| {
                (
                    format!("refs/heads/b{i}").parse().unwrap(),
                    ObjectId([i; 20]),
                )
            })
            .collect();
        SignedRefs::sign_view(
            &key(signer),
            h.repository(),
            "demo".parse().unwrap(),
            sequence,
            None,
            refs,
        )
        .unwrap()
    }

    #[test]
    fn one_newest_fork_per_contributor_and_none_for_maintainers() {
        let (h, limits) = (identity(), ForkLimits::default());
        let mut forks = Forks::default();
        assert_eq!(forks.add(fork(2, 1, 1), &h, &limits), Ok(ViewAdded::New));
        assert_eq!(
            forks.add(fork(2, 1, 1), &h, &limits),
            Ok(ViewAdded::Unchanged)
        );
        assert_eq!(
            forks.add(fork(2, 4, 2), &h, &limits),
            Ok(ViewAdded::Newer { previous: 1 })
        );
        let stale = forks.add(fork(2, 3, 1), &h, &limits).unwrap_err();
        assert!(matches!(stale, ForkError::Stale { held: 4, .. }), "{stale}");
        assert!(!stale.is_forged());
        let owner = forks.add(fork(1, 9, 1), &h, &limits).unwrap_err();
        assert!(matches!(owner, ForkError::Maintainer { .. }), "{owner}");
        let mut forged = fork(3, 100, 1);
        forged.signed.signer = key(4).verifying_key();
        let forged = forks.add(forged, &h, &limits).unwrap_err();
        assert!(forged.is_forged(), "{forged}");
        assert_eq!(forks.len(), 1);
        assert_eq!(forks.seen()[0].sequence, 4);
    }

    #[test]
    fn limits_are_this_nodes_and_first_come_keep_their_place() {
        let h = identity();
        let limits = ForkLimits {
            max_forks: 2,
            max_refs: 3,
        };
        let mut forks = Forks::default();
        let big = forks.add(fork(2, 1, 4), &h, &limits).unwrap_err();
        assert_eq!(
            big.to_string(),
            format!(
                "fork of {} has 4 refs; this node keeps at most 3 per fork",
                hex::encode(key(2).verifying_key().as_bytes())
            )
        );
        forks.add(fork(2, 1, 3), &h, &limits).unwrap();
        forks.add(fork(3, 1, 1), &h, &limits).unwrap();
        let full = forks.add(fork(4, 1, 1), &h, &limits).unwrap_err();
        assert_eq!(full, ForkError::Full { limit: 2 });
        assert!(!full.is_forged());
        // A fork held may still move.
        forks.add(fork(3, 2, 2), &h, &limits).unwrap();
    }

    #[test]
    fn of_two_forks_with_one_sequence_every_node_keeps_the_same() {
        let (h, limits) = (identity(), ForkLimits::default());
        let (a, b) = (fork(2, 5, 1), fork(2, 5, 2));
        let mut first = Forks::default();
        first.add(a.clone(), &h, &limits).unwrap();
        first.add(b.clone(), &h, &limits).unwrap();
        let mut second = Forks::default();
        second.add(b, &h, &limits).unwrap();
        second.add(a, &h, &limits).unwrap();
        assert_eq!(first, second);
    }
}
