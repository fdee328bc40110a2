//! What a node knows of one repository's collaboration: its identity history and the
//! views of those who may publish, and the canonical refs they give.

use serde::{Deserialize, Serialize};

use crate::canonical::{self, Ancestry, Canonical};
use crate::identity::{
    IdentityDoc, IdentityError, IdentityHistory, SignedVersion, VersionAdded, Visibility,
};
use crate::refs::SignedRefs;
use crate::views::{ViewAdded, ViewError, Views};

/// Something signed for a repository: an identity version or a view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Published {
    /// An identity version with the signatures it carries.
    Version(SignedVersion),
    /// A maintainer's view.
    View(Box<SignedRefs>),
}

/// Why something published is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The identity version is refused.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The view is refused.
    #[error(transparent)]
    View(#[from] ViewError),
}

impl StateError {
    /// Whether the item may be taken once more of the identity is known (its predecessor,
    /// or the version that makes its signer a maintainer): worth asking the sender again,
    /// not a fault of the sender's.
    pub fn may_fit_later(&self) -> bool {
        matches!(
            self,
            StateError::Identity(IdentityError::UnknownPrevious { .. })
                | StateError::View(ViewError::NotMaintainer { .. })
        )
    }
}

/// What [`RepositoryState::merge`] did.
#[derive(Debug, Default)]
pub struct Merged {
    /// Whether anything was taken.
    pub changed: bool,
    /// What was refused, and why.
    pub refused: Vec<StateError>,
    /// Keys seen signing two different views with one sequence, and that sequence.
    pub equivocations: Vec<(ed25519_dalek::VerifyingKey, u64)>,
}

/// What [`RepositoryState::add`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An identity version or signatures on one.
    Version(VersionAdded),
    /// A view.
    View(ViewAdded),
}

/// A repository with maintainers as a node stores and sends it: its first version (which
/// the id derives from), the later versions with their signatures, and the views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedState {
    /// Version 1: the creator alone, threshold 1.
    pub genesis: IdentityDoc,
    /// Every later version held, by version number then hash.
    pub versions: Vec<SignedVersion>,
    /// The views held, by key.
    pub views: Vec<SignedRefs>,
}

/// [`SharedState`] with each version's visibility (identity format 2): the form in which
/// a repository that is or was private travels (sync 1.4.0) and is stored (record format
/// 3). [`SharedState`]'s own encoding leaves visibility out, so releases before private
/// repositories read it as they always did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedStateV2 {
    /// Version 1: the creator alone, threshold 1, public.
    pub genesis: IdentityDoc,
    /// Every later version held, with its visibility.
    pub versions: Vec<(SignedVersion, Visibility)>,
    /// The views held, by key.
    pub views: Vec<SignedRefs>,
}

impl From<&SharedState> for SharedStateV2 {
    fn from(state: &SharedState) -> Self {
        SharedStateV2 {
            genesis: state.genesis.clone(),
            versions: state
                .versions
                .iter()
                .map(|v| (v.clone(), v.doc.visibility.clone()))
                .collect(),
            views: state.views.clone(),
        }
    }
}

impl From<SharedStateV2> for SharedState {
    fn from(state: SharedStateV2) -> Self {
        SharedState {
            genesis: state.genesis,
            versions: state
                .versions
                .into_iter()
                .map(|(mut v, visibility)| {
                    v.doc.visibility = visibility;
                    v
                })
                .collect(),
            views: state.views,
        }
    }
}

impl SharedState {
    /// Whether any version in it is private: it then only goes in [`SharedStateV2`]'s
    /// form.
    pub fn ever_private(&self) -> bool {
        self.versions.iter().any(|v| v.doc.is_private())
    }
}

/// One repository's identity history and views.
#[derive(Debug, Clone)]
pub struct RepositoryState {
    /// The identity history.
    pub identity: IdentityHistory,
    /// The views held.
    pub views: Views,
}

impl RepositoryState {
    /// A repository with only its implied first version and no views.
    pub fn new(genesis: IdentityDoc) -> Result<Self, IdentityError> {
        Ok(RepositoryState {
            identity: IdentityHistory::new(genesis)?,
            views: Views::new(),
        })
    }

    /// The state of `shared`, as a peer sent it: each version and view is judged as if it
    /// came alone (in version order, views last), and those refused are returned with why.
    pub fn from_peer(shared: SharedState) -> Result<(Self, Merged), IdentityError> {
        let mut state = RepositoryState::new(shared.genesis)?;
        let merged = state.merge(shared.versions, shared.views);
        Ok((state, merged))
    }

    /// Takes every version and view it can of those given (versions first, by version
    /// number, so each finds its predecessor).
    pub fn merge(&mut self, mut versions: Vec<SignedVersion>, views: Vec<SignedRefs>) -> Merged {
        versions.sort_by_key(|v| v.doc.version);
        let mut merged = Merged::default();
        for v in versions {
            match self.identity.add(v) {
                Ok(VersionAdded::Unchanged) => {}
                Ok(_) => merged.changed = true,
                Err(e) => merged.refused.push(e.into()),
            }
        }
        for v in views {
            let (signer, sequence) = (v.signed.signer, v.sequence());
            match self.views.add(v, &self.identity) {
                Ok(ViewAdded::Unchanged) => {}
                Ok(ViewAdded::Equivocation { kept }) => {
                    merged.changed |= kept;
                    merged.equivocations.push((signer, sequence));
                }
                Ok(_) => merged.changed = true,
                Err(e) => merged.refused.push(e.into()),
            }
        }
        merged
    }

    /// What a node serves: every version, and the views of those who may publish now (a
    /// removed maintainer's view is kept, in case the removal loses to a competing
    /// version, but no longer passed on).
    pub fn shared(&self) -> SharedState {
        let mut state = self.stored();
        state
            .views
            .retain(|v| self.identity.may_publish(&v.signed.signer));
        state
    }

    /// What a node stores: every version and every view held.
    pub fn stored(&self) -> SharedState {
        SharedState {
            genesis: self.identity.genesis().clone(),
            versions: self.identity.versions().into_iter().cloned().collect(),
            views: self.views.iter().cloned().collect(),
        }
    }

    /// The state stored by this node (see [`Self::stored`]): versions and views were
    /// checked when they came, so signatures are not checked again; links and
    /// thresholds are.
    pub fn from_stored(stored: SharedState) -> Result<Self, IdentityError> {
        let mut state = RepositoryState::new(stored.genesis)?;
        state.identity.restore(stored.versions);
        state.views = Views::restore(stored.views);
        Ok(state)
    }

    /// Takes `item` if it is valid here and new.
    pub fn add(&mut self, item: Published) -> Result<Change, StateError> {
        Ok(match item {
            Published::Version(v) => Change::Version(self.identity.add(v)?),
            Published::View(v) => Change::View(self.views.add(*v, &self.identity)?),
        })
    }

    /// A number that grows with every view published and every identity version taken:
    /// the sum of the held views' sequences and the chain's length. What a sync reports
    /// for a repository with maintainers, where no one sequence says how new it is.
    pub fn revision(&self) -> u64 {
        let views: u64 = self.views.iter().map(SignedRefs::sequence).sum();
        views + self.identity.chain().count() as u64
    }

    /// The canonical refs under the identity version in effect.
    pub fn canonical(&self, ancestry: &dyn Ancestry) -> Canonical {
        canonical::canonical(
            self.identity.current(),
            self.views.of_maintainers(&self.identity),
            ancestry,
        )
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    use super::*;
    use crate::canonical::test_dag::{Dag, c};
    use crate::identity::VersionId;
    use crate::refs::Refs;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn genesis() -> IdentityDoc {
        IdentityDoc::genesis(&key(1).verifying_key(), "shared".parse().unwrap())
    }

    fn view(signer: u8, sequence: u64, refs: &[(&str, u8)]) -> Published {
        let refs: Refs = refs
            .iter()
            .map(|(n, t)| (n.parse().unwrap(), c(*t)))
            .collect();
        let head = Some("refs/heads/main".parse().unwrap()).filter(|h| refs.contains_key(h));
        Published::View(Box::new(
            SignedRefs::sign_view(
                &key(signer),
                genesis().repository,
                genesis().name,
                sequence,
                head,
                refs,
            )
            .unwrap(),
        ))
    }

    /// One signature each: the same version arrives from its signers separately.
    fn signed_apart(doc: &IdentityDoc, signers: &[u8]) -> Vec<Published> {
        signers
            .iter()
            .map(|s| Published::Version(SignedVersion::propose(doc.clone(), &key(*s))))
            .collect()
    }

    /// Everything a node might hear about one repository: competing identity versions,
    /// proposals, signatures arriving apart, views superseded, replayed, equivocated, from
    /// removed keys, from outsiders.
    fn scenario() -> Vec<Published> {
        let ks = |s: &[u8]| {
            s.iter()
                .map(|s| key(*s).verifying_key())
                .collect::<Vec<_>>()
        };
        let v2 = genesis().next(ks(&[1, 2, 3]), 2).unwrap();
        // Two successors of v2 at its threshold: v3a (drops 3) by 1 and 2, v3b (adds 4,
        // threshold 1) by 2 and 3, and v3c by 3 alone (pending forever). They tie on two
        // signatures, so the smaller hash wins; v4 follows v3a (drops 1), signed by 2.
        let v3a = v2.next(ks(&[1, 2]), 2).unwrap();
        let v3b = v2.next(ks(&[1, 2, 3, 4]), 1).unwrap();
        let v3c = v2.next(ks(&[3]), 1).unwrap();
        let v4a = v3a.next(ks(&[2, 4]), 1).unwrap();
        let mut items = Vec::new();
        items.extend(signed_apart(&v2, &[1]));
        items.extend(signed_apart(&v3a, &[1, 2]));
        items.extend(signed_apart(&v3b, &[2, 3]));
        items.extend(signed_apart(&v3c, &[3]));
        items.extend(signed_apart(&v4a, &[2]));
        // Commits: 1 <- 2 <- 3 <- 4 <- 7, 2 <- 5, 2 <- 6.
        for (signer, seq, main, tag) in [
            (1, 1, 2, 9),
            (1, 2, 3, 9),
            (1, 3, 4, 9),
            (2, 1, 3, 9),
            (3, 1, 6, 9),
            (3, 4, 7, 9),
            (4, 1, 7, 8),
            (4, 2, 4, 9),
            (9, 5, 5, 9), // never a maintainer
        ] {
            items.push(view(
                signer,
                seq,
                &[("refs/heads/main", main), ("refs/tags/v1", tag)],
            ));
        }
        // Key 2's last sequence, twice: an equivocation, on a branch only it has too.
        items.push(view(
            2,
            2,
            &[("refs/heads/main", 4), ("refs/heads/side", 5)],
        ));
        items.push(view(
            2,
            2,
            &[("refs/heads/main", 5), ("refs/heads/side", 6)],
        ));
        items.push(view(
            4,
            3,
            &[("refs/heads/topic", 5), ("refs/heads/main", 7)],
        ));
        items
    }

    fn dag() -> Dag {
        Dag::new(&[
            (1, &[]),
            (2, &[1]),
            (3, &[2]),
            (4, &[3]),
            (7, &[4]),
            (5, &[2]),
            (6, &[2]),
            (8, &[]),
            (9, &[]),
        ])
    }

    /// Delivers `items` in the given order as a node would hear them; what does not fit
    /// yet comes again later (the node asks the sender for its state), until nothing more
    /// is taken.
    fn deliver(items: Vec<Published>) -> (Vec<VersionId>, Canonical) {
        let mut state = RepositoryState::new(genesis()).unwrap();
        let mut queue = items;
        loop {
            let before = queue.len();
            let mut later = Vec::new();
            for item in queue {
                match state.add(item.clone()) {
                    Err(e) if e.may_fit_later() => later.push(item),
                    _ => {}
                }
            }
            if later.is_empty() || later.len() == before {
                break;
            }
            queue = later;
        }
        let chain = state.identity.chain().map(|d| d.id()).collect();
        (chain, state.canonical(&dag()))
    }

    #[test]
    fn the_scenario_is_not_trivial() {
        let (chain, canonical) = deliver(scenario());
        // v3a and v3b tie on two signatures: if v3a has the smaller hash, v4 follows it.
        let ks = |s: &[u8]| {
            s.iter()
                .map(|s| key(*s).verifying_key())
                .collect::<Vec<_>>()
        };
        let v2 = genesis().next(ks(&[1, 2, 3]), 2).unwrap();
        let v3a = v2.next(ks(&[1, 2]), 2).unwrap();
        let v3b = v2.next(ks(&[1, 2, 3, 4]), 1).unwrap();
        let expected = if v3a.id() < v3b.id() { 4 } else { 3 };
        assert_eq!(chain.len(), expected);
        assert!(
            canonical
                .refs
                .contains_key(&"refs/heads/main".parse().unwrap())
        );
        assert!(canonical.head.is_some());
    }

    #[test]
    fn the_stored_state_comes_back_whole_and_removed_views_are_not_passed_on() {
        let ks = |s: &[u8]| {
            s.iter()
                .map(|s| key(*s).verifying_key())
                .collect::<Vec<_>>()
        };
        let mut state = RepositoryState::new(genesis()).unwrap();
        let v2 = genesis().next(ks(&[1, 2]), 1).unwrap();
        let v3 = v2.next(ks(&[1]), 1).unwrap();
        for item in [
            Published::Version(SignedVersion::propose(v2, &key(1))),
            view(1, 1, &[("refs/heads/main", 3)]),
            view(2, 1, &[("refs/heads/main", 4)]),
        ] {
            state.add(item).unwrap();
        }
        assert_eq!(state.shared().views.len(), 2);
        state
            .add(Published::Version(SignedVersion::propose(v3, &key(1))))
            .unwrap();
        assert_eq!(state.shared().views.len(), 1, "key 2 was removed");
        assert_eq!(state.stored().views.len(), 2);

        let bytes = postcard::to_allocvec(&state.stored()).unwrap();
        let back = RepositoryState::from_stored(postcard::from_bytes(&bytes).unwrap()).unwrap();
        assert_eq!(back.identity.current(), state.identity.current());
        assert_eq!(back.views, state.views);
        assert_eq!(back.canonical(&dag()), state.canonical(&dag()));
        assert_eq!(
            back.canonical(&dag()).refs.values().next(),
            Some(&c(3)),
            "only key 1 counts"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn every_order_gives_the_same_identity_and_refs(
            order in Just(scenario()).prop_shuffle()
        ) {
            prop_assert_eq!(deliver(order), deliver(scenario()));
        }
    }
}
