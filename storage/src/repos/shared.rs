//! Repositories with maintainers: identity versions and views from peers, and this node's
//! own changes (a proposal, a signature on one, its key's view after a push).
//!
//! Each goes the way a snapshot does (see [`Repositories::accept`]): new objects through
//! the quarantine, every target checked, then the git refs (canonical and views) and the
//! record move together.

use std::fs;
use std::io;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use git2::Repository;
use guts_protocol::Canonical;
use guts_protocol::repository::StateError;
use guts_protocol::{
    RepositoryId, RepositoryState, SharedState, SignedRefs, SignedVersion, VersionId, Visibility,
};

use super::held::{GitAncestry, Held};
use super::ingest::Objects;
use super::packer::Fsck;
use super::ref_updates::{apply_update, choose_head};
use super::{PackStats, Pushed, RefUpdate, Repositories};
use crate::StorageError;

/// What [`Repositories::accept_shared`] did.
#[derive(Debug)]
pub struct SharedAccepted {
    /// Objects and bytes received.
    pub stats: PackStats,
    /// Whether anything new was taken.
    pub changed: bool,
    /// Versions and views refused, and why (the rest were taken).
    pub refused: Vec<StateError>,
}

impl From<StateError> for StorageError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Identity(e) => StorageError::Identity(e),
            StateError::View(e) => StorageError::View(e),
        }
    }
}

impl Repositories {
    /// Takes what it can of `incoming` (a peer's identity versions and views of `id`),
    /// with the objects of `pack`. Refused only when nothing of it could be taken and
    /// something was wrong with it; otherwise what was refused is listed. Blocking.
    pub fn accept_shared(
        &self,
        id: &RepositoryId,
        incoming: SharedState,
        pack: Option<&mut dyn Iterator<Item = io::Result<Vec<u8>>>>,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<SharedAccepted, StorageError> {
        let lock = self.lock(id);
        let _guard = self.write(id, &lock)?;
        let state = match self.held(id)? {
            Some(held) => held.into_state(),
            None => {
                if incoming.genesis.repository != *id {
                    return Err(guts_protocol::identity::IdentityError::WrongRepository {
                        expected: *id,
                        found: incoming.genesis.repository,
                    }
                    .into());
                }
                RepositoryState::new(incoming.genesis)?
            }
        };
        self.accept_shared_locked(state, incoming.versions, incoming.views, pack, progress)
    }

    /// [`Self::accept_shared`] for a caller holding the lock, with `state` what is held
    /// (or the bare genesis of a repository not held yet).
    pub(super) fn accept_shared_locked(
        &self,
        state: RepositoryState,
        versions: Vec<SignedVersion>,
        views: Vec<SignedRefs>,
        pack: Option<&mut dyn Iterator<Item = io::Result<Vec<u8>>>>,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<SharedAccepted, StorageError> {
        let id = state.identity.repository();
        let offered = versions.len() + views.len();
        let existed = self.path(&id).join(super::SIGNED_REFS_FILE).exists();
        let previous = existed.then(|| Held::from_state(state.clone()));
        let mut next = state;
        let merged = next.merge(versions, views);
        if !merged.changed {
            let mut refused = merged.refused;
            if refused.len() == offered && !refused.is_empty() {
                return Err(refused.swap_remove(0).into());
            }
            return Ok(SharedAccepted {
                stats: PackStats::default(),
                changed: false,
                refused,
            });
        }
        let objects = match pack {
            Some(chunks) => Objects::Stream(chunks, Fsck::Strict),
            None => Objects::Held,
        };
        let created = !self.path(&id).exists();
        let record = Held::from_state(next);
        let result = self.accept_inner(&record, previous.as_ref(), objects, progress);
        if result.is_err() && created {
            let _ = fs::remove_dir_all(self.path(&id));
        }
        if result.is_ok()
            && let Held::Shared(state) = &record
            && let Err(e) = self.open_sealed_locked(state)
        {
            // What was taken is verified and kept (and served); only this node's
            // plaintext lags, and the next sealed commit may open.
            tracing::warn!(repository = %id, "cannot open the encrypted repository: {e}");
        }
        Ok(SharedAccepted {
            stats: result?,
            changed: true,
            refused: merged.refused,
        })
    }

    /// What is held of `id` and its canonical refs (a single owner's are its snapshot's).
    pub fn canonical(&self, id: &RepositoryId) -> Result<Option<(Held, Canonical)>, StorageError> {
        let Some(held) = self.held(id)? else {
            return Ok(None);
        };
        let canonical = match &held {
            Held::Owner(s) => Canonical {
                refs: s.refs.clone(),
                head: s.signed.header.head.clone(),
            },
            Held::Shared(state) => {
                let repo = Repository::open_bare(self.path(id))
                    .map_err(super::git("opening the repository"))?;
                state.canonical(&GitAncestry(&repo))
            }
        };
        Ok(Some((held, canonical)))
    }

    /// Proposes that `maintainers` with `threshold` maintain `id` from the next version
    /// on, signed by `key`, a maintainer now. It takes effect at once if `key`'s signature
    /// is enough. Returns the version.
    pub fn propose(
        &self,
        id: &RepositoryId,
        maintainers: Vec<VerifyingKey>,
        threshold: u16,
        key: &SigningKey,
    ) -> Result<SignedVersion, StorageError> {
        self.propose_with(id, maintainers, threshold, None, key)
    }

    /// [`Self::propose`], with the next version's visibility (`None`: as now).
    pub fn propose_with(
        &self,
        id: &RepositoryId,
        maintainers: Vec<VerifyingKey>,
        threshold: u16,
        visibility: Option<Visibility>,
        key: &SigningKey,
    ) -> Result<SignedVersion, StorageError> {
        self.change_identity(id, key, |state| {
            let mut doc = state.identity.current().next(maintainers, threshold)?;
            if let Some(visibility) = visibility {
                doc = doc.with_visibility(visibility)?;
            }
            if doc.is_sealed()
                && !state.identity.current().is_sealed()
                && state.shared().views.iter().any(|v| !v.refs.is_empty())
            {
                return Err(StorageError::Sealed {
                    repository: *id,
                    reason: "encryption is chosen when a repository is made (guts repo init \
                             NAME --encrypted); this one already has history in clear"
                        .into(),
                });
            }
            let version = SignedVersion::propose(doc, key);
            state.identity.add(version.clone())?;
            Ok(version)
        })
    }

    /// Adds `key`'s signature to the proposal `version` of `id`.
    pub fn sign_version(
        &self,
        id: &RepositoryId,
        version: &VersionId,
        key: &SigningKey,
    ) -> Result<SignedVersion, StorageError> {
        self.change_identity(id, key, |state| {
            state.identity.sign(version, key)?;
            Ok(state
                .identity
                .version(version)
                .expect("a version just signed is held")
                .clone())
        })
    }

    fn change_identity(
        &self,
        id: &RepositoryId,
        key: &SigningKey,
        change: impl FnOnce(&mut RepositoryState) -> Result<SignedVersion, StorageError>,
    ) -> Result<SignedVersion, StorageError> {
        let lock = self.lock(id);
        let _guard = self.write(id, &lock)?;
        let held = self.held(id)?.ok_or(StorageError::UnknownRepository(*id))?;
        let mut state = held.clone().into_state();
        let current = state.identity.current();
        if !current.is_maintainer(&key.verifying_key()) {
            return Err(StorageError::NotMaintainer {
                repository: *id,
                key: hex::encode(key.verifying_key().as_bytes()),
                version: current.version,
            });
        }
        let version = change(&mut state)?;
        self.accept_inner(
            &Held::from_state(state),
            Some(&held),
            Objects::Held,
            &mut |_| {},
        )?;
        Ok(version)
    }

    /// Gives `key`, a maintainer of `id` with no view yet, its first view: the refs as the
    /// maintainers before it left them (the canonical refs under the last version in
    /// effect that did not name it). Without this, adding maintainers at a threshold only
    /// the new ones can reach would leave every branch without agreement until each of
    /// them pushed. Returns the view, or `None` if there is nothing to adopt.
    pub fn adopt_view(
        &self,
        id: &RepositoryId,
        key: &SigningKey,
    ) -> Result<Option<SignedRefs>, StorageError> {
        let lock = self.lock(id);
        let _guard = self.write(id, &lock)?;
        let Some(Held::Shared(state)) = self.held(id)? else {
            return Ok(None);
        };
        let me = key.verifying_key();
        if !state.identity.current().is_maintainer(&me) || state.views.of(&me).is_some() {
            return Ok(None);
        }
        let Some(before) = state
            .identity
            .chain()
            .filter(|d| !d.is_maintainer(&me))
            .last()
        else {
            return Ok(None);
        };
        let repo =
            Repository::open_bare(self.path(id)).map_err(super::git("opening the repository"))?;
        let canonical =
            guts_protocol::canonical::canonical(before, state.views.iter(), &GitAncestry(&repo));
        if canonical.refs.is_empty() {
            return Ok(None);
        }
        let name = state.identity.genesis().name.clone();
        let view = SignedRefs::sign_view(key, *id, name, 1, canonical.head, canonical.refs)?;
        let previous = Held::Shared(state.clone());
        let mut next = state;
        next.views.add(view.clone(), &next.identity)?;
        self.accept_inner(
            &Held::from_state(next),
            Some(&previous),
            Objects::Held,
            &mut |_| {},
        )?;
        Ok(Some(view))
    }

    /// A push to a repository with maintainers: the updates move `key`'s own view
    /// (starting from the canonical refs if it has none yet), which is signed with its next
    /// sequence. The caller holds the lock; `src` is the push area.
    pub(super) fn push_view_locked(
        &self,
        state: RepositoryState,
        src: Repository,
        indexed: Option<&Path>,
        updates: &[RefUpdate],
        key: &SigningKey,
    ) -> Result<Pushed, StorageError> {
        let id = state.identity.repository();
        let signer = key.verifying_key();
        if !state.identity.may_publish(&signer) {
            return Err(StorageError::NotMaintainer {
                repository: id,
                key: hex::encode(signer.as_bytes()),
                version: state.identity.current().version,
            });
        }
        let own = state.views.of(&signer).cloned();
        let (mut refs, old_head) = match &own {
            Some(view) => (view.refs.clone(), view.signed.header.head.clone()),
            None => {
                let canonical = state.canonical(&GitAncestry(&src));
                (canonical.refs, canonical.head)
            }
        };
        let mut results = Vec::new();
        for update in updates {
            let outcome = apply_update(&src, &mut refs, update);
            results.push((update.name.clone(), outcome));
        }
        let head = choose_head(old_head, &refs);
        if let Some(view) = &own
            && view.refs == refs
            && view.signed.header.head == head
        {
            return Ok(Pushed {
                snapshot: view.clone(),
                shared: true,
                results,
                changed: false,
                fork: false,
            });
        }
        let sequence = own.as_ref().map_or(1, |v| v.sequence() + 1);
        let name = state.identity.genesis().name.clone();
        let view = SignedRefs::sign_view(key, id, name, sequence, head, refs)?;
        let previous = Held::from_state(state.clone());
        let mut next = state;
        next.views.add(view.clone(), &next.identity)?;
        self.publish_record(src, indexed, &Held::from_state(next), Some(&previous))?;
        Ok(Pushed {
            snapshot: view,
            shared: true,
            results,
            changed: true,
            fork: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use git2::Oid;
    use guts_protocol::wire;

    use super::*;
    use crate::repos::object_id;
    use crate::repos::test_support::{Fixture, fsck, git_refs, key, push_to, replicate, store};
    use crate::{StorageError, fork_ref, view_ref};

    const MAIN: &str = "refs/heads/main";

    /// Pushes `commit` to `main` of `id` as `key` (fast-forward).
    fn push(
        repos: &Repositories,
        fx: &Fixture,
        id: &RepositoryId,
        key: &SigningKey,
        commit: Oid,
    ) -> Result<Pushed, StorageError> {
        push_to(repos, fx, id, key, MAIN, commit)
    }

    fn main_of(repos: &Repositories, id: &RepositoryId) -> Option<Oid> {
        git_refs(repos, id).get(MAIN).copied()
    }

    fn keys(seeds: &[u8]) -> Vec<VerifyingKey> {
        seeds.iter().map(|s| key(*s).verifying_key()).collect()
    }

    #[test]
    fn a_branch_moves_when_two_of_three_maintainers_agree() {
        let fx = Fixture::new();
        let (_d, repos) = store();
        let alice = key(1);
        let id = repos
            .import(fx.path(), None, &alice)
            .unwrap()
            .snapshot
            .repository();
        let m = main_of(&repos, &id).unwrap();

        let v2 = repos.propose(&id, keys(&[1, 2, 3]), 2, &alice).unwrap();
        let Some(Held::Shared(state)) = repos.held(&id).unwrap() else {
            panic!("a repository with maintainers is held as such");
        };
        assert_eq!(
            state.identity.current(),
            &v2.doc,
            "genesis needs one signature"
        );
        // Alice's snapshot is her view now; one view of two needed.
        assert_eq!(main_of(&repos, &id), None);
        let alice_view = state.views.of(&alice.verifying_key()).unwrap();
        let refs = git_refs(&repos, &id);
        assert_eq!(
            refs.get(&view_ref(alice_view, &MAIN.parse().unwrap())),
            Some(&m)
        );

        // Bob's node adopts the branches as Alice left them: two of three at m.
        let adopted = repos.adopt_view(&id, &key(2)).unwrap().unwrap();
        assert_eq!(
            adopted.refs.get(&MAIN.parse().unwrap()),
            Some(&object_id(m))
        );
        assert_eq!(main_of(&repos, &id), Some(m));
        assert!(repos.adopt_view(&id, &key(2)).unwrap().is_none(), "once");
        assert!(
            repos.adopt_view(&id, &key(9)).unwrap().is_none(),
            "maintainers only"
        );

        // Bob builds on main: one view past m is not enough.
        let b = fx.commit(MAIN, &[("README", "bob\n")], &[m]);
        let pushed = push(&repos, &fx, &id, &key(2), b).unwrap();
        assert_eq!(pushed.snapshot.sequence(), 2);
        assert_eq!(main_of(&repos, &id), Some(m));
        // Carol agrees with Bob: main moves to b.
        push(&repos, &fx, &id, &key(3), b).unwrap();
        assert_eq!(main_of(&repos, &id), Some(b));
        fsck(&repos.path(&id));

        // Another node takes it all and computes the same refs.
        let (_d2, replica) = store();
        let accepted = replicate(&repos, &replica, &id).unwrap();
        assert!(accepted.changed && accepted.refused.is_empty());
        assert_eq!(git_refs(&replica, &id), git_refs(&repos, &id));
        fsck(&replica.path(&id));
        assert!(!replicate(&repos, &replica, &id).unwrap().changed);

        // Someone else's push makes a fork of its own: no branch moves.
        let f = fx.commit(MAIN, &[("README", "dave\n")], &[b]);
        let pushed = push(&repos, &fx, &id, &key(9), f).unwrap();
        assert!(pushed.fork && pushed.changed && !pushed.shared);
        assert_eq!(main_of(&repos, &id), Some(b));
        let forked = fork_ref(&key(9).verifying_key(), &MAIN.parse().unwrap());
        assert_eq!(git_refs(&repos, &id).get(&forked), Some(&f));
        fsck(&repos.path(&id));
    }

    #[test]
    fn a_removed_maintainer_can_no_longer_push_and_no_longer_counts() {
        let fx = Fixture::new();
        let (_d, repos) = store();
        let alice = key(1);
        let id = repos
            .import(fx.path(), None, &alice)
            .unwrap()
            .snapshot
            .repository();
        let m = main_of(&repos, &id).unwrap();
        let v2 = repos.propose(&id, keys(&[1, 2, 3]), 2, &alice).unwrap();
        let c = fx.commit(MAIN, &[("README", "carol\n")], &[m]);
        push(&repos, &fx, &id, &key(3), c).unwrap();
        assert_eq!(main_of(&repos, &id), Some(m), "alice at m, carol past it");

        // Dropping Carol needs two of three: pending after one.
        let v3 = repos.propose(&id, keys(&[1, 2]), 2, &alice).unwrap();
        let held = |r: &Repositories| match r.held(&id).unwrap().unwrap() {
            Held::Shared(s) => s,
            Held::Owner(_) => panic!("shared"),
        };
        assert_eq!(held(&repos).identity.current(), &v2.doc);
        assert_eq!(held(&repos).identity.pending().len(), 1);
        let err = repos.sign_version(&id, &v3.doc.id(), &key(9)).unwrap_err();
        assert!(matches!(err, StorageError::NotMaintainer { .. }), "{err}");
        repos.sign_version(&id, &v3.doc.id(), &key(2)).unwrap();
        assert_eq!(held(&repos).identity.current(), &v3.doc);

        // Carol's view no longer counts, and her push makes a fork.
        assert_eq!(main_of(&repos, &id), None, "alice alone of two");
        let c2 = fx.commit(MAIN, &[("README", "carol again\n")], &[c]);
        assert!(push(&repos, &fx, &id, &key(3), c2).unwrap().fork);
        assert_eq!(main_of(&repos, &id), None);
        // Nor is her view passed on.
        assert_eq!(held(&repos).shared().views.len(), 1);
    }

    #[test]
    fn a_private_identity_is_stored_with_its_allow_list_in_format_3() {
        let fx = Fixture::new();
        let (_d, repos) = store();
        let id = repos
            .import(fx.path(), None, &key(1))
            .unwrap()
            .snapshot
            .repository();
        let before = git_refs(&repos, &id);
        let private = Visibility::private([key(2).verifying_key()]);
        let v2 = repos
            .propose_with(&id, keys(&[1]), 1, Some(private.clone()), &key(1))
            .unwrap();
        assert_eq!(v2.doc.visibility, private);
        let bytes = std::fs::read(repos.path(&id).join(crate::repos::SIGNED_REFS_FILE)).unwrap();
        assert_eq!(bytes[0], 3, "format 3");
        let old = wire::decode::<guts_protocol::SignedRefs>(&bytes, usize::MAX).unwrap_err();
        assert_eq!(
            old.to_string(),
            "message has wire version 3, this node speaks 1"
        );
        // Read back whole: the allow list decides who may see it; the branches stay.
        let Some(Held::Shared(state)) = repos.held(&id).unwrap() else {
            panic!("held with its identity");
        };
        assert!(state.identity.may_see(&key(2).verifying_key()));
        assert!(!state.identity.may_see(&key(3).verifying_key()));
        let after = git_refs(&repos, &id);
        let canonical: std::collections::BTreeMap<_, _> = after
            .iter()
            .filter(|(n, _)| !n.starts_with(crate::VIEWS_PREFIX))
            .map(|(n, t)| (n.clone(), *t))
            .collect();
        assert_eq!(canonical, before);
        std::fs::remove_file(repos.path(&id).join("packed-refs")).unwrap();
        assert!(repos.recover().unwrap().set_aside.is_empty());
        assert_eq!(git_refs(&repos, &id), after);
    }

    #[test]
    fn the_record_reads_back_and_older_releases_refuse_it_by_version() {
        let fx = Fixture::new();
        let (_d, repos) = store();
        let id = repos
            .import(fx.path(), None, &key(1))
            .unwrap()
            .snapshot
            .repository();
        repos.propose(&id, keys(&[1, 2]), 1, &key(1)).unwrap();
        let before = git_refs(&repos, &id);
        let bytes = std::fs::read(repos.path(&id).join(crate::repos::SIGNED_REFS_FILE)).unwrap();
        // What a release before maintainers does with it.
        let old = wire::decode::<guts_protocol::SignedRefs>(&bytes, usize::MAX).unwrap_err();
        assert_eq!(
            old.to_string(),
            "message has wire version 2, this node speaks 1"
        );
        // Refs put back from the record after a crash.
        std::fs::remove_file(repos.path(&id).join("packed-refs")).unwrap();
        let recovered = repos.recover().unwrap();
        assert!(recovered.after_crash && recovered.set_aside.is_empty());
        assert_eq!(git_refs(&repos, &id), before);
        assert_eq!(repos.list().unwrap(), vec![id]);
    }
}
