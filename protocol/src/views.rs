//! Maintainers' views: each key's own signed refs of a repository.
//!
//! A view is a [`SignedRefs`] signed by a maintainer rather than by the key the id derives
//! from. Each key has its own sequence: a node keeps one view per key, the newest, and
//! refuses an older one (a replay). Two different views of one key with the same sequence
//! are an equivocation; every node keeps the same one of the two (the smaller header
//! digest), so nodes agree on the canonical refs whichever they heard first.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;

use crate::identity::IdentityHistory;
use crate::ids::RepositoryId;
use crate::refs::{RefsError, SignedRefs};

/// What [`Views::add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewAdded {
    /// The key's first view here.
    New,
    /// A newer view replaced the one held.
    Newer {
        /// The sequence held before.
        previous: u64,
    },
    /// The very view held.
    Unchanged,
    /// Another view of the same sequence: the key equivocated. `kept` says whether the
    /// new one replaced the held one (it has the smaller digest).
    Equivocation {
        /// Whether the new view is now the one held.
        kept: bool,
    },
}

/// Why a view is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The view is not well-formed or not signed by its signer.
    #[error(transparent)]
    Refs(#[from] RefsError),
    /// The view is for another repository (or names it differently).
    #[error("view signed by {signer} is for {found}, not {expected}")]
    WrongRepository {
        /// The repository these views are of.
        expected: RepositoryId,
        /// The one it names.
        found: RepositoryId,
        /// The signer, hex.
        signer: String,
    },
    /// The signer maintains the repository neither now nor in a pending proposal.
    #[error("{signer} is not a maintainer of {repository} at identity version {version}")]
    NotMaintainer {
        /// The repository.
        repository: RepositoryId,
        /// The identity version in effect.
        version: u64,
        /// The signer, hex.
        signer: String,
    },
    /// Not newer than the view held for the key: a replay.
    #[error("view {sequence} of {signer} for {repository} is older than the {held} held")]
    Stale {
        /// The repository.
        repository: RepositoryId,
        /// The signer, hex.
        signer: String,
        /// Its sequence.
        sequence: u64,
        /// The sequence held.
        held: u64,
    },
}

/// What taking `offered` (verified, not older) over `held`, one key's signed refs, does:
/// the newer one wins; of two with one sequence, the smaller header digest, so every node
/// keeps the same one whichever came first. Views and forks are judged alike.
pub(crate) fn classify(held: Option<&SignedRefs>, offered: &SignedRefs) -> ViewAdded {
    match held {
        None => ViewAdded::New,
        Some(held) if offered.sequence() > held.sequence() => ViewAdded::Newer {
            previous: held.sequence(),
        },
        Some(held) => ViewAdded::Equivocation {
            kept: offered.signed.digest() < held.signed.digest(),
        },
    }
}

/// The newest view of each key for one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Views {
    by_key: BTreeMap<[u8; 32], SignedRefs>,
}

impl Views {
    /// No views.
    pub fn new() -> Self {
        Self::default()
    }

    /// Views this node checked before (from its own store), taken as they are.
    pub fn restore(views: impl IntoIterator<Item = SignedRefs>) -> Self {
        Views {
            by_key: views
                .into_iter()
                .map(|v| (*v.signed.signer.as_bytes(), v))
                .collect(),
        }
    }

    /// Takes `view` if its signer may publish under `identity` (a maintainer now or in a
    /// pending proposal) and it is newer than the one held for that key.
    pub fn add(
        &mut self,
        view: SignedRefs,
        identity: &IdentityHistory,
    ) -> Result<ViewAdded, ViewError> {
        let signer = view.signed.signer;
        let genesis = identity.genesis();
        if view.repository() != identity.repository() || view.signed.header.name != genesis.name {
            return Err(ViewError::WrongRepository {
                expected: identity.repository(),
                found: view.repository(),
                signer: hex::encode(signer.as_bytes()),
            });
        }
        if !identity.may_publish(&signer) {
            return Err(ViewError::NotMaintainer {
                repository: identity.repository(),
                version: identity.current().version,
                signer: hex::encode(signer.as_bytes()),
            });
        }
        let held = self.by_key.get(signer.as_bytes());
        // Cheap refusals first: a replay costs no signature check.
        if let Some(held) = held
            && view.sequence() < held.sequence()
        {
            return Err(ViewError::Stale {
                repository: identity.repository(),
                signer: hex::encode(signer.as_bytes()),
                sequence: view.sequence(),
                held: held.sequence(),
            });
        }
        if held == Some(&view) {
            return Ok(ViewAdded::Unchanged);
        }
        view.verify_view()?;
        let added = classify(held, &view);
        if added != (ViewAdded::Equivocation { kept: false }) {
            self.by_key.insert(*signer.as_bytes(), view);
        }
        Ok(added)
    }

    /// The view held for `key`.
    pub fn of(&self, key: &VerifyingKey) -> Option<&SignedRefs> {
        self.by_key.get(key.as_bytes())
    }

    /// Every view held, by key bytes.
    pub fn iter(&self) -> impl Iterator<Item = &SignedRefs> {
        self.by_key.values()
    }

    /// The views of the maintainers in effect: the ones that count.
    pub fn of_maintainers<'a>(
        &'a self,
        identity: &'a IdentityHistory,
    ) -> impl Iterator<Item = &'a SignedRefs> {
        let current = identity.current();
        current.maintainers.iter().filter_map(|k| self.of(k))
    }

    /// Whether no view is held.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::identity::{IdentityDoc, SignedVersion};
    use crate::ids::ObjectId;
    use crate::refs::Refs;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn identity() -> IdentityHistory {
        let genesis = IdentityDoc::genesis(&key(1).verifying_key(), "demo".parse().unwrap());
        let mut h = IdentityHistory::new(genesis.clone()).unwrap();
        let v2 = genesis
            .next([1, 2].map(|s| key(s).verifying_key()), 2)
            .unwrap();
        h.add(SignedVersion::propose(v2, &key(1))).unwrap();
        h
    }

    fn view(signer: u8, sequence: u64, target: u8) -> SignedRefs {
        let h = identity();
        let mut refs = Refs::new();
        refs.insert("refs/heads/main".parse().unwrap(), ObjectId([target; 20]));
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
    fn one_newest_view_per_maintainer() {
        let h = identity();
        let mut views = Views::new();
        assert_eq!(views.add(view(2, 1, 1), &h), Ok(ViewAdded::New));
        assert_eq!(views.add(view(2, 1, 1), &h), Ok(ViewAdded::Unchanged));
        assert_eq!(
            views.add(view(2, 3, 2), &h),
            Ok(ViewAdded::Newer { previous: 1 })
        );
        assert!(matches!(
            views.add(view(2, 2, 3), &h),
            Err(ViewError::Stale { held: 3, .. })
        ));
        assert!(matches!(
            views.add(view(7, 9, 3), &h),
            Err(ViewError::NotMaintainer { .. })
        ));
        // A future sequence under a forged signature changes nothing.
        let mut forged = view(2, 100, 9);
        forged.signed.signer = key(1).verifying_key();
        assert!(matches!(
            views.add(forged, &h),
            Err(ViewError::Refs(RefsError::BadSignature(_)))
        ));
        assert_eq!(views.of(&key(2).verifying_key()).unwrap().sequence(), 3);
        assert_eq!(views.of_maintainers(&h).count(), 1);
    }

    #[test]
    fn equivocations_keep_the_same_view_whatever_came_first() {
        let h = identity();
        let (a, b) = (view(2, 5, 1), view(2, 5, 2));
        let mut first = Views::new();
        first.add(a.clone(), &h).unwrap();
        let one = first.add(b.clone(), &h).unwrap();
        let mut second = Views::new();
        second.add(b, &h).unwrap();
        let other = second.add(a, &h).unwrap();
        assert_eq!(first, second);
        assert!(matches!(one, ViewAdded::Equivocation { .. }));
        assert!(matches!(other, ViewAdded::Equivocation { .. }));
        assert_ne!(one, other, "one of the two orders replaced the view held");
    }
}
