//! Changes this node's key writes: a comment or a label needs nothing but the change
//! ([`Repositories::write_change`]); a patch or a revision brings the contributor's
//! commits, pushed by git into a push area first. Those take the road a peer's changes
//! take ([`Repositories::accept_changes`]): one pack, the same quarantine, limits and
//! checks, so a local push is held to what a peer's would be.

use std::fs;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Repository};
use guts_cob::SignedChange;
use guts_protocol::{ObjectId, RefName, RepositoryId};

use super::changes::{ChangePolicy, ChangesAccepted, GitObjectHasher};
use super::{Repositories, git, object_id, oid};
use crate::StorageError;

impl Repositories {
    /// One pack of the objects `targets` (commits or tags, in the push area `area`)
    /// reach that the store of `id` lacks: what a peer asking for them would be sent, so
    /// a local push goes through the same ingest as a peer's.
    pub(super) fn pack_for_store(
        &self,
        id: &RepositoryId,
        area: &Repository,
        targets: &[ObjectId],
    ) -> Result<Vec<u8>, StorageError> {
        let mut walk = area.revwalk().map_err(git("walking the push"))?;
        let mut builder = area.packbuilder().map_err(git("packing the push"))?;
        for target in targets {
            let object =
                area.find_object(oid(target), None)
                    .map_err(|_| StorageError::MissingObject {
                        repository: *id,
                        object: *target,
                    })?;
            // A tag is packed itself; the walk takes it from the commit it names.
            if object.kind() == Some(ObjectType::Tag) {
                builder
                    .insert_object(object.id(), None)
                    .map_err(git("packing the push"))?;
            }
            if let Ok(commit) = object.peel_to_commit() {
                walk.push(commit.id()).map_err(git("walking the push"))?;
            }
        }
        for have in self.haves(id)? {
            // Held targets that are not commits (a tag, a tree) hide nothing.
            let _ = walk.hide(oid(&have));
        }
        builder
            .insert_walk(&mut walk)
            .map_err(git("packing the push"))?;
        let mut pack = git2::Buf::new();
        builder
            .write_buf(&mut pack)
            .map_err(git("packing the push"))?;
        Ok(pack.to_vec())
    }

    /// A push area for a contribution to `id` (a patch's commits): anyone may push one,
    /// it borrows the repository's objects like the owner's (see
    /// [`Self::create_staging`]).
    pub fn create_contribution_area(&self, id: &RepositoryId) -> Result<PathBuf, StorageError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::Closed);
        }
        self.held(id)?.ok_or(StorageError::UnknownRepository(*id))?;
        self.new_area(id)
    }

    /// Where a patch of `head` (pushed into `staging`) for branch `target` starts: the
    /// merge base of `head` and the branch's canonical tip (the tip itself when `head`
    /// does not share its history). Refused when the branch does not exist.
    pub fn patch_base(
        &self,
        id: &RepositoryId,
        staging: &Path,
        target: &RefName,
        head: ObjectId,
    ) -> Result<ObjectId, StorageError> {
        if !self.is_staging_of(id, staging) {
            return Err(StorageError::BadStaging(staging.to_owned()));
        }
        let (_, canonical) = self
            .canonical(id)?
            .ok_or(StorageError::UnknownRepository(*id))?;
        let tip = *canonical
            .refs
            .get(target)
            .ok_or_else(|| StorageError::NoBranch {
                repository: *id,
                branch: target.to_string(),
                branches: canonical
                    .refs
                    .keys()
                    .filter(|n| n.as_str().starts_with("refs/heads/"))
                    .map(|n| n.to_string())
                    .collect(),
            })?;
        let area = Repository::open_bare(staging).map_err(git("opening the push area"))?;
        if area.find_commit(oid(&head)).is_err() {
            return Err(StorageError::MissingObject {
                repository: *id,
                object: head,
            });
        }
        Ok(area
            .merge_base(oid(&head), oid(&tip))
            .map(object_id)
            .unwrap_or(tip))
    }

    /// Takes `signed` (a change this node's key made, naming a commit pushed into
    /// `staging`) with the objects it reaches that the store lacks, as a peer's would be
    /// taken. The area is removed whatever happens. Blocking.
    pub fn contribute(
        &self,
        id: &RepositoryId,
        staging: &Path,
        signed: &SignedChange,
        policy: &ChangePolicy,
        maintainers: &dyn Fn(&ed25519_dalek::VerifyingKey) -> bool,
    ) -> Result<ChangesAccepted, StorageError> {
        if !self.is_staging_of(id, staging) {
            return Err(StorageError::BadStaging(staging.to_owned()));
        }
        let result = self.contribute_inner(id, staging, signed, policy, maintainers);
        let _ = fs::remove_dir_all(staging);
        result
    }

    fn contribute_inner(
        &self,
        id: &RepositoryId,
        staging: &Path,
        signed: &SignedChange,
        policy: &ChangePolicy,
        maintainers: &dyn Fn(&ed25519_dalek::VerifyingKey) -> bool,
    ) -> Result<ChangesAccepted, StorageError> {
        signed.verify()?;
        let area = Repository::open_bare(staging).map_err(git("opening the push area"))?;
        if let Some(related) = signed.change.action.related()
            && area.find_commit(oid(&related)).is_err()
        {
            return Err(StorageError::MissingObject {
                repository: *id,
                object: related,
            });
        }
        let form = signed.git_form(&GitObjectHasher);
        let odb = area.odb().map_err(git("opening the push area's objects"))?;
        odb.write(ObjectType::Blob, &form.blob)
            .and_then(|_| odb.write(ObjectType::Tree, &form.tree))
            .and_then(|_| odb.write(ObjectType::Commit, &form.commit))
            .map_err(git("writing a change"))?;

        // One pack of what the change reaches and the store lacks: what a peer asking
        // for it would be sent.
        let pack = self.pack_for_store(id, &area, &[form.id])?;
        let mut chunks = std::iter::once(Ok(pack));
        self.accept_changes(
            id,
            &[form.id],
            Some(&mut chunks),
            policy,
            maintainers,
            &mut |_| {},
        )
    }
}
