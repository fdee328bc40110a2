//! Canonical refs: what the maintainers agree on, computed from their views.
//!
//! A pure function of the identity version in effect and the maintainers' views, so every
//! node holding the same views computes the same refs whatever order they arrived in.
//! Per ref:
//!
//! - a branch (`refs/heads/…`) is at commit `c` when at least the threshold of maintainers
//!   have a tip that is `c` or descends from `c`; of the commits that qualify, the one no
//!   other qualifying commit descends from (so the branch moves as far as the threshold
//!   has gone, and no further). Commits considered are the tips and, when no tip has
//!   enough support, their merge bases: two maintainers who built on the agreed commit
//!   in different directions keep the branch there. Forks that each qualify (a threshold
//!   of at most half) are settled by more support, then the smaller commit id;
//! - any other ref (tags, notes) is at a target when at least the threshold of views have
//!   exactly that target (a tag does not "descend");
//! - a ref no target qualifies for is not canonical (a branch one maintainer created
//!   appears once enough others have it; one deleted by enough maintainers goes);
//! - HEAD is the head most maintainers' views name among the canonical refs (the smaller
//!   name on a tie).
//!
//! With one maintainer and threshold 1 the canonical refs are exactly its view: a
//! single-owner repository is unchanged.

use std::collections::{BTreeMap, BTreeSet};

use crate::identity::IdentityDoc;
use crate::ids::{ObjectId, RefName};
use crate::refs::{Refs, SignedRefs};

/// Most commits weighed for one branch: tips plus merge bases.
const MAX_CANDIDATES: usize = 128;

/// Commit ancestry, as the store knows it.
pub trait Ancestry {
    /// Whether `descendant` is `ancestor` or has it among its ancestors.
    fn descends(&self, descendant: ObjectId, ancestor: ObjectId) -> bool;
    /// The best common ancestor of `a` and `b`, if they have one.
    fn merge_base(&self, a: ObjectId, b: ObjectId) -> Option<ObjectId>;
}

/// The canonical refs and HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Canonical {
    /// Refs the maintainers agree on.
    pub refs: Refs,
    /// The branch a clone checks out.
    pub head: Option<RefName>,
}

/// Where one maintainer's view has a ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position<'a> {
    /// The maintainer.
    pub maintainer: &'a ed25519_dalek::VerifyingKey,
    /// Its target there, if its view has the ref.
    pub target: Option<ObjectId>,
}

/// Computes the canonical refs of `identity` from `views` (views of keys that are not its
/// maintainers are ignored).
pub fn canonical<'a>(
    identity: &IdentityDoc,
    views: impl IntoIterator<Item = &'a SignedRefs>,
    ancestry: &dyn Ancestry,
) -> Canonical {
    let views: Vec<&SignedRefs> = views
        .into_iter()
        .filter(|v| identity.is_maintainer(&v.signed.signer))
        .collect();
    let threshold = usize::from(identity.threshold);
    let mut tips: BTreeMap<&RefName, Vec<ObjectId>> = BTreeMap::new();
    for view in &views {
        for (name, target) in &view.refs {
            tips.entry(name).or_default().push(*target);
        }
    }
    let mut refs = Refs::new();
    for (name, tips) in tips {
        if tips.len() < threshold {
            continue;
        }
        let chosen = if name.as_str().starts_with("refs/heads/") {
            branch(&tips, threshold, ancestry)
        } else {
            exact(&tips, threshold)
        };
        if let Some(target) = chosen {
            refs.insert(name.clone(), target);
        }
    }
    let mut heads: BTreeMap<&RefName, usize> = BTreeMap::new();
    for view in &views {
        if let Some(head) = &view.signed.header.head
            && refs.contains_key(head)
        {
            *heads.entry(head).or_default() += 1;
        }
    }
    // max_by keeps the last of equals; iterate names from the largest so ties go to the
    // smallest name.
    let head = heads
        .into_iter()
        .rev()
        .max_by_key(|(_, votes)| *votes)
        .map(|(name, _)| name.clone());
    Canonical { refs, head }
}

/// Where each of `identity`'s maintainers has `name`: what `guts repo show` prints.
pub fn positions<'a>(
    identity: &'a IdentityDoc,
    views: &[&SignedRefs],
    name: &RefName,
) -> Vec<Position<'a>> {
    identity
        .maintainers
        .iter()
        .map(|maintainer| Position {
            maintainer,
            target: views
                .iter()
                .find(|v| v.signed.signer == *maintainer)
                .and_then(|v| v.refs.get(name).copied()),
        })
        .collect()
}

/// The target at least `threshold` tips have exactly; more support, then the smaller id.
fn exact(tips: &[ObjectId], threshold: usize) -> Option<ObjectId> {
    let mut counts: BTreeMap<ObjectId, usize> = BTreeMap::new();
    for t in tips {
        *counts.entry(*t).or_default() += 1;
    }
    counts
        .into_iter()
        .filter(|(_, n)| *n >= threshold)
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t)
}

fn branch(tips: &[ObjectId], threshold: usize, ancestry: &dyn Ancestry) -> Option<ObjectId> {
    let distinct: BTreeSet<ObjectId> = tips.iter().copied().collect();
    if distinct.len() == 1 {
        // Everyone with the branch agrees: the common case, with no ancestry walk.
        return distinct.into_iter().next();
    }
    let support = |c: ObjectId| {
        tips.iter()
            .filter(|t| **t == c || ancestry.descends(**t, c))
            .count()
    };
    let mut candidates: BTreeMap<ObjectId, usize> =
        distinct.iter().map(|c| (*c, support(*c))).collect();
    // Merge bases, then merge bases of those, until something qualifies.
    let mut frontier: Vec<ObjectId> = distinct.into_iter().collect();
    while !candidates.values().any(|n| *n >= threshold)
        && !frontier.is_empty()
        && candidates.len() < MAX_CANDIDATES
    {
        let mut next = Vec::new();
        let all: Vec<ObjectId> = candidates.keys().copied().collect();
        for a in &frontier {
            for b in &all {
                if a >= b && frontier.contains(b) {
                    continue;
                }
                if let Some(base) = ancestry.merge_base(*a, *b)
                    && !candidates.contains_key(&base)
                    && candidates.len() < MAX_CANDIDATES
                {
                    candidates.insert(base, support(base));
                    next.push(base);
                }
            }
        }
        frontier = next;
    }
    let qualified: Vec<(ObjectId, usize)> = candidates
        .into_iter()
        .filter(|(_, n)| *n >= threshold)
        .collect();
    qualified
        .iter()
        .filter(|(c, _)| {
            !qualified
                .iter()
                .any(|(other, _)| other != c && ancestry.descends(*other, *c))
        })
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(c, _)| *c)
}

/// A commit graph for tests: commits numbered by their first byte.
#[cfg(test)]
pub(crate) mod test_dag {
    use std::collections::{BTreeSet, HashMap};

    use super::Ancestry;
    use crate::ids::ObjectId;

    /// Commits numbered by their first byte, each with its parents.
    pub(crate) struct Dag(HashMap<ObjectId, Vec<ObjectId>>);

    pub(crate) fn c(n: u8) -> ObjectId {
        ObjectId([n; 20])
    }

    impl Dag {
        pub(crate) fn new(edges: &[(u8, &[u8])]) -> Self {
            Dag(edges
                .iter()
                .map(|(n, ps)| (c(*n), ps.iter().map(|p| c(*p)).collect()))
                .collect())
        }

        fn ancestors(&self, of: ObjectId) -> BTreeSet<ObjectId> {
            let mut seen = BTreeSet::new();
            let mut todo = vec![of];
            while let Some(x) = todo.pop() {
                if seen.insert(x) {
                    todo.extend(self.0.get(&x).into_iter().flatten().copied());
                }
            }
            seen
        }
    }

    impl Ancestry for Dag {
        fn descends(&self, descendant: ObjectId, ancestor: ObjectId) -> bool {
            self.ancestors(descendant).contains(&ancestor)
        }
        fn merge_base(&self, a: ObjectId, b: ObjectId) -> Option<ObjectId> {
            let common: BTreeSet<ObjectId> = self
                .ancestors(a)
                .intersection(&self.ancestors(b))
                .copied()
                .collect();
            // The common ancestor no other common ancestor descends from.
            common
                .iter()
                .find(|x| !common.iter().any(|y| y != *x && self.descends(*y, **x)))
                .copied()
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::test_dag::{Dag, c};
    use super::*;
    use crate::identity::IdentityDoc;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn identity(n: u8, threshold: u16) -> IdentityDoc {
        let genesis = IdentityDoc::genesis(&key(1).verifying_key(), "demo".parse().unwrap());
        genesis
            .next((1..=n).map(|s| key(s).verifying_key()), threshold)
            .unwrap()
    }

    fn view(doc: &IdentityDoc, signer: u8, refs: &[(&str, u8)]) -> SignedRefs {
        let refs: Refs = refs
            .iter()
            .map(|(name, t)| (name.parse().unwrap(), c(*t)))
            .collect();
        let head = refs.keys().next().cloned();
        SignedRefs::sign_view(
            &key(signer),
            doc.repository,
            doc.name.clone(),
            1,
            head,
            refs,
        )
        .unwrap()
    }

    const MAIN: &str = "refs/heads/main";

    /// 1 <- 2 <- 3 <- 4, and 2 <- 5 (a fork), 2 <- 6.
    fn dag() -> Dag {
        Dag::new(&[
            (1, &[]),
            (2, &[1]),
            (3, &[2]),
            (4, &[3]),
            (5, &[2]),
            (6, &[2]),
        ])
    }

    fn main_of(doc: &IdentityDoc, views: &[SignedRefs]) -> Option<ObjectId> {
        canonical(doc, views, &dag())
            .refs
            .get(&MAIN.parse().unwrap())
            .copied()
    }

    #[test]
    fn a_branch_moves_when_the_threshold_has_reached_it() {
        let doc = identity(3, 2);
        let a = view(&doc, 1, &[(MAIN, 3)]);
        let b = view(&doc, 2, &[(MAIN, 2)]);
        let c3 = view(&doc, 3, &[(MAIN, 4)]);
        assert_eq!(
            main_of(&doc, std::slice::from_ref(&a)),
            None,
            "one of three"
        );
        assert_eq!(main_of(&doc, &[a.clone(), b.clone()]), Some(c(2)));
        assert_eq!(main_of(&doc, &[a.clone(), b, c3.clone()]), Some(c(3)));
        assert_eq!(main_of(&doc, &[a, c3]), Some(c(3)));
    }

    #[test]
    fn diverging_maintainers_keep_the_branch_where_they_agreed() {
        let doc = identity(3, 2);
        let views = [view(&doc, 1, &[(MAIN, 5)]), view(&doc, 2, &[(MAIN, 3)])];
        assert_eq!(main_of(&doc, &views), Some(c(2)));
    }

    #[test]
    fn forks_that_both_qualify_settle_by_support_then_id() {
        let doc = identity(4, 1);
        let views = [
            view(&doc, 1, &[(MAIN, 5)]),
            view(&doc, 2, &[(MAIN, 6)]),
            view(&doc, 3, &[(MAIN, 6)]),
        ];
        assert_eq!(main_of(&doc, &views), Some(c(6)), "two beat one");
        let views = [view(&doc, 1, &[(MAIN, 5)]), view(&doc, 2, &[(MAIN, 6)])];
        assert_eq!(
            main_of(&doc, &views),
            Some(c(5)),
            "a tie goes to the smaller id"
        );
    }

    #[test]
    fn tags_need_exact_agreement_and_outsiders_do_not_count() {
        let doc = identity(3, 2);
        let tag = "refs/tags/v1";
        let views = [
            view(&doc, 1, &[(tag, 3)]),
            view(&doc, 2, &[(tag, 4)]),
            view(&doc, 9, &[(tag, 3)]),
        ];
        assert!(canonical(&doc, &views, &dag()).refs.is_empty());
        let views = [view(&doc, 1, &[(tag, 3)]), view(&doc, 2, &[(tag, 3)])];
        assert_eq!(canonical(&doc, &views, &dag()).refs.len(), 1);
    }

    #[test]
    fn a_single_owner_is_its_own_view() {
        let genesis = IdentityDoc::genesis(&key(1).verifying_key(), "demo".parse().unwrap());
        let v = view(
            &genesis,
            1,
            &[(MAIN, 5), ("refs/heads/x", 1), ("refs/tags/t", 9)],
        );
        let got = canonical(&genesis, [&v], &dag());
        assert_eq!(got.refs, v.refs);
        assert_eq!(got.head, v.signed.header.head);
    }
}
