//! The versions of one repository's identity a node holds, and which are in effect.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::{
    IdentityDoc, IdentityError, MAX_SUCCESSORS, MAX_VERSIONS, SignedVersion, VersionAdded,
    VersionId,
};
use crate::ids::RepositoryId;

/// The versions of one repository's identity a node holds, and which of them are in effect.
#[derive(Debug, Clone)]
pub struct IdentityHistory {
    genesis: IdentityDoc,
    /// Every version after genesis, with only valid signatures.
    versions: HashMap<VersionId, SignedVersion>,
    /// Versions in effect, genesis first; the last is current.
    chain: Vec<VersionId>,
}

impl IdentityHistory {
    /// The history of a repository with only its implied first version.
    pub fn new(genesis: IdentityDoc) -> Result<Self, IdentityError> {
        genesis.check_shape()?;
        if genesis.version != 1 {
            return Err(IdentityError::Malformed {
                repository: genesis.repository,
                version: genesis.version,
                reason: "a history starts at version 1".into(),
            });
        }
        let chain = vec![genesis.id()];
        Ok(IdentityHistory {
            genesis,
            versions: HashMap::new(),
            chain,
        })
    }

    /// The repository.
    pub fn repository(&self) -> RepositoryId {
        self.genesis.repository
    }

    /// Version 1.
    pub fn genesis(&self) -> &IdentityDoc {
        &self.genesis
    }

    /// Takes versions this node checked before (from its own store): signatures are not
    /// verified again, links and thresholds are. Versions whose predecessor is missing
    /// are dropped.
    pub fn restore(&mut self, mut versions: Vec<SignedVersion>) {
        versions.sort_by_key(|v| v.doc.version);
        for v in versions {
            let known = v.doc.previous.is_some_and(|p| self.doc(&p).is_some());
            if known && v.doc.repository == self.genesis.repository && !v.signatures.is_empty() {
                self.versions.insert(v.doc.id(), v);
            }
        }
        self.resolve();
    }

    /// The version in effect.
    pub fn current(&self) -> &IdentityDoc {
        self.doc(self.chain.last().expect("the chain has genesis"))
            .expect("chain versions are held")
    }

    /// The versions in effect, genesis first.
    pub fn chain(&self) -> impl Iterator<Item = &IdentityDoc> {
        self.chain.iter().filter_map(|id| self.doc(id))
    }

    /// A held version by hash.
    pub fn doc(&self, id: &VersionId) -> Option<&IdentityDoc> {
        if *id == self.chain[0] {
            Some(&self.genesis)
        } else {
            self.versions.get(id).map(|v| &v.doc)
        }
    }

    /// A held version after genesis, with its signatures.
    pub fn version(&self, id: &VersionId) -> Option<&SignedVersion> {
        self.versions.get(id)
    }

    /// Every held version after genesis, by version number then hash: what a node serves.
    pub fn versions(&self) -> Vec<&SignedVersion> {
        let mut all: Vec<&SignedVersion> = self.versions.values().collect();
        all.sort_by_key(|v| (v.doc.version, v.doc.id()));
        all
    }

    /// Whether only the implied first version is held (a single-owner repository).
    pub fn is_genesis_only(&self) -> bool {
        self.versions.is_empty()
    }

    /// Successors of the current version signed by fewer than its threshold: proposals
    /// waiting for signatures, by hash.
    pub fn pending(&self) -> Vec<&SignedVersion> {
        let current = self.chain.last().expect("the chain has genesis");
        let mut pending: Vec<&SignedVersion> = self
            .versions
            .values()
            .filter(|v| v.doc.previous.as_ref() == Some(current))
            .collect();
        pending.sort_by_key(|v| v.doc.id());
        pending
    }

    /// Whether `key` maintains the repository now or is named by a proposal waiting on the
    /// current version: whose views a node keeps.
    pub fn may_publish(&self, key: &VerifyingKey) -> bool {
        self.current().is_maintainer(key) || self.pending().iter().any(|v| v.doc.is_maintainer(key))
    }

    /// Whether `key` may learn of the repository under the version in effect (see
    /// [`IdentityDoc::may_see`]): whom a node serves, lists and announces it to.
    pub fn may_see(&self, key: &VerifyingKey) -> bool {
        self.current().may_see(key)
    }

    /// Whether any version held is private: such a history only travels and is stored in
    /// the form that carries visibility (a release that cannot read it must not get it,
    /// nor could it check the private versions' hashes).
    pub fn ever_private(&self) -> bool {
        self.versions.values().any(|v| v.doc.is_private())
    }

    /// Takes `version` (or the signatures it carries that are new), keeping only valid
    /// signatures of its predecessor's maintainers, and settles which versions are in effect.
    pub fn add(&mut self, mut version: SignedVersion) -> Result<VersionAdded, IdentityError> {
        let doc = &version.doc;
        doc.check_shape()?;
        if doc.repository != self.genesis.repository || doc.name != self.genesis.name {
            return Err(IdentityError::WrongRepository {
                expected: self.genesis.repository,
                found: doc.repository,
            });
        }
        let Some(previous_id) = doc.previous else {
            // Genesis is implied and must be this one (check_shape made it the implied one).
            return if *doc == self.genesis {
                Ok(VersionAdded::Unchanged)
            } else {
                Err(IdentityError::WrongRepository {
                    expected: self.genesis.repository,
                    found: doc.repository,
                })
            };
        };
        let Some(previous) = self.doc(&previous_id).cloned() else {
            return Err(IdentityError::UnknownPrevious {
                repository: doc.repository,
                version: doc.version,
                previous: previous_id,
            });
        };
        if doc.version != previous.version + 1 {
            return Err(IdentityError::Malformed {
                repository: doc.repository,
                version: doc.version,
                reason: format!(
                    "it follows version {}, so it must be version {}",
                    previous.version,
                    previous.version + 1
                ),
            });
        }
        // Encryption is chosen with the repository's first real version and kept: turning
        // it on later would leave the history in clear, turning it off would publish it.
        if previous.version > 1 && previous.is_sealed() != doc.is_sealed() {
            return Err(IdentityError::Malformed {
                repository: doc.repository,
                version: doc.version,
                reason: format!(
                    "version {} is {}encrypted; a repository's encryption is chosen when it \
                     is made and kept",
                    previous.version,
                    if previous.is_sealed() { "" } else { "not " }
                ),
            });
        }
        let (repository, number) = (doc.repository, doc.version);
        if version.keep_valid(&previous) == 0 {
            return Err(IdentityError::Unsigned {
                repository,
                version: number,
            });
        }
        let id = version.doc.id();
        let added = match self.versions.get_mut(&id) {
            Some(held) => {
                let before = held.signatures.len();
                for (k, s) in version.signatures {
                    if !held.signed_by(&k) {
                        held.insert(k, s);
                    }
                }
                match held.signatures.len() - before {
                    0 => VersionAdded::Unchanged,
                    n => VersionAdded::Signatures(n),
                }
            }
            None => {
                if self.versions.len() >= MAX_VERSIONS {
                    return Err(IdentityError::TooMany {
                        repository: self.repository(),
                        count: self.versions.len(),
                        limit: MAX_VERSIONS,
                    });
                }
                let siblings = self
                    .versions
                    .values()
                    .filter(|v| v.doc.previous == Some(previous_id))
                    .count();
                if siblings >= MAX_SUCCESSORS {
                    return Err(IdentityError::TooMany {
                        repository: self.repository(),
                        count: siblings,
                        limit: MAX_SUCCESSORS,
                    });
                }
                self.versions.insert(id, version);
                VersionAdded::New
            }
        };
        if added != VersionAdded::Unchanged {
            self.resolve();
        }
        Ok(added)
    }

    /// Adds `key`'s signature to the held version `id` (a proposal it accepts).
    pub fn sign(
        &mut self,
        id: &VersionId,
        key: &SigningKey,
    ) -> Result<VersionAdded, IdentityError> {
        let Some(mut version) = self.versions.get(id).cloned() else {
            return Err(IdentityError::UnknownVersion {
                repository: self.repository(),
                id: *id,
            });
        };
        let previous = version
            .doc
            .previous
            .and_then(|p| self.doc(&p).cloned())
            .expect("held versions have held predecessors");
        if !previous.is_maintainer(&key.verifying_key()) {
            return Err(IdentityError::NotMaintainer {
                repository: self.repository(),
                version: previous.version,
                key: hex::encode(key.verifying_key().as_bytes()),
            });
        }
        version.sign(key);
        self.add(version)
    }

    /// Walks from genesis, at each version taking the successor with the most valid
    /// signatures of its maintainers if that reaches its threshold (smaller hash on a tie).
    fn resolve(&mut self) {
        let mut successors: BTreeMap<VersionId, Vec<(usize, VersionId)>> = BTreeMap::new();
        for (id, v) in &self.versions {
            if let Some(p) = v.doc.previous {
                successors
                    .entry(p)
                    .or_default()
                    .push((v.signatures.len(), *id));
            }
        }
        let mut chain = vec![self.chain[0]];
        loop {
            let at = *chain.last().expect("non-empty");
            let threshold = usize::from(self.doc(&at).expect("held").threshold);
            let best = successors
                .get(&at)
                .into_iter()
                .flatten()
                .filter(|(signed, _)| *signed >= threshold)
                .max_by(|(sa, ia), (sb, ib)| sa.cmp(sb).then(ib.cmp(ia)));
            match best {
                // Hashes link each version to an earlier one, so the walk cannot loop.
                Some((_, id)) => chain.push(*id),
                None => break,
            }
        }
        self.chain = chain;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn history() -> IdentityHistory {
        IdentityHistory::new(IdentityDoc::genesis(
            &key(1).verifying_key(),
            "demo".parse().unwrap(),
        ))
        .unwrap()
    }

    fn three(h: &IdentityHistory, threshold: u16) -> IdentityDoc {
        h.current()
            .next([1, 2, 3].map(|s| key(s).verifying_key()), threshold)
            .unwrap()
    }

    #[test]
    fn a_version_takes_effect_at_the_threshold_of_its_predecessor() {
        let mut h = history();
        assert!(h.is_genesis_only());
        let v2 = three(&h, 2);
        assert_eq!(
            h.add(SignedVersion::propose(v2.clone(), &key(1))),
            Ok(VersionAdded::New)
        );
        assert_eq!(h.current(), &v2, "genesis has threshold 1");

        // Version 3 drops key 3; one signature of two needed is pending.
        let v3 = v2.next([1, 2].map(|s| key(s).verifying_key()), 2).unwrap();
        h.add(SignedVersion::propose(v3.clone(), &key(1))).unwrap();
        assert_eq!(h.current(), &v2);
        assert_eq!(h.pending().len(), 1);
        assert!(h.may_publish(&key(3).verifying_key()));
        assert_eq!(h.sign(&v3.id(), &key(2)), Ok(VersionAdded::Signatures(1)));
        assert_eq!(h.current(), &v3);
        assert!(!h.may_publish(&key(3).verifying_key()));
        assert_eq!(h.chain().count(), 3);
    }

    #[test]
    fn bad_signatures_and_outsiders_do_not_count() {
        let mut h = history();
        let v2 = three(&h, 2);
        h.add(SignedVersion::propose(v2.clone(), &key(1))).unwrap();
        let v3 = v2.next([key(9).verifying_key()], 1).unwrap();
        // Key 9 is not a maintainer of version 2.
        assert!(matches!(
            h.add(SignedVersion::propose(v3.clone(), &key(9))),
            Err(IdentityError::Unsigned { .. })
        ));
        assert!(matches!(
            h.sign(&v3.id(), &key(9)),
            Err(IdentityError::UnknownVersion { .. })
        ));
        // A maintainer's key with a signature over something else.
        let mut forged = SignedVersion::propose(v3.clone(), &key(1));
        forged
            .signatures
            .push((key(2).verifying_key(), key(2).sign(b"something else")));
        forged
            .signatures
            .sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        assert_eq!(h.add(forged), Ok(VersionAdded::New));
        assert_eq!(h.current(), &v2, "one valid signature of two");
        assert_eq!(h.version(&v3.id()).unwrap().signatures.len(), 1);
    }

    #[test]
    fn competing_versions_resolve_the_same_whatever_the_order() {
        let base = history();
        let v2 = three(&base, 1);
        let a = v2.next([1, 2].map(|s| key(s).verifying_key()), 1).unwrap();
        let b = v2.next([2, 3].map(|s| key(s).verifying_key()), 1).unwrap();
        let c = v2.next([1, 3].map(|s| key(s).verifying_key()), 1).unwrap();
        let mut b2 = SignedVersion::propose(b.clone(), &key(2));
        b2.sign(&key(3));
        let items = [
            SignedVersion::propose(v2.clone(), &key(1)),
            SignedVersion::propose(a.clone(), &key(1)),
            b2,
            SignedVersion::propose(c.clone(), &key(3)),
        ];
        for order in [[0, 1, 2, 3], [0, 3, 2, 1], [0, 2, 1, 3]] {
            let mut h = base.clone();
            for i in order {
                h.add(items[i].clone()).unwrap();
            }
            assert_eq!(h.current(), &b, "two signatures beat one");
        }
        // a and c tie on one signature each: the smaller hash wins.
        let mut h = base.clone();
        for i in [0, 3, 1] {
            h.add(items[i].clone()).unwrap();
        }
        let smaller = if a.id() < c.id() { &a } else { &c };
        assert_eq!(h.current(), smaller);
    }

    #[test]
    fn versions_must_link_and_fit() {
        let mut h = history();
        let v2 = three(&h, 2);
        let v3 = v2.next([key(1).verifying_key()], 1).unwrap();
        assert!(matches!(
            h.add(SignedVersion::propose(v3, &key(1))),
            Err(IdentityError::UnknownPrevious { .. })
        ));
        assert!(matches!(
            h.current().next([key(1).verifying_key()], 2),
            Err(IdentityError::Malformed { .. })
        ));
        let other = IdentityDoc::genesis(&key(2).verifying_key(), "demo".parse().unwrap());
        let foreign = other.next([key(2).verifying_key()], 1).unwrap();
        assert!(matches!(
            h.add(SignedVersion::propose(foreign, &key(2))),
            Err(IdentityError::WrongRepository { .. })
        ));
        let mut skipped = v2.clone();
        skipped.version = 5;
        assert!(matches!(
            h.add(SignedVersion::propose(skipped, &key(1))),
            Err(IdentityError::Malformed { .. })
        ));
    }
}
