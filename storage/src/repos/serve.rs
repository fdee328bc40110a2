//! Answering peers: packs built from their wants and haves (or the stored pack sent as
//! it is), and the repack that keeps a repository in one pack.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use git2::Repository;
use guts_protocol::{ObjectId, RepositoryId};

use super::ingest::Quarantine;
use super::packer::{Fsck, GitIndexer, pack_objects};
use super::{PackStats, REPACK_PREFIX, Repositories, git, oid};
use crate::StorageError;
use crate::fs::write_atomically;

/// File (inside the bare repository) naming the one pack that holds exactly what the
/// current snapshot reaches, the only pack ever sent as it is.
const CLEAN_PACK_FILE: &str = "guts-clean-pack";
/// Its first line, the format version; a file of another version is ignored (the pack
/// is then served by a walk until the next repack rewrites the file).
const CLEAN_PACK_V1: &str = "guts-clean-pack 1";

impl Repositories {
    /// Builds a pack with every object reachable from `wants` and not from `haves`,
    /// telling `on_count` how many objects it holds, then handing it to `sink` chunk by
    /// chunk as git writes it: stored deltas reused, and thin (deltas against objects
    /// the requester said it has) when it has some. Blocking.
    pub fn build_pack(
        &self,
        id: &RepositoryId,
        wants: &[ObjectId],
        haves: &[ObjectId],
        on_count: &mut dyn FnMut(usize),
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<PackStats, StorageError> {
        let repo = Repository::open_bare(self.path(id))
            .map_err(|_| StorageError::UnknownRepository(*id))?;
        let odb = repo.odb().map_err(git("opening the object database"))?;
        // Haves come from the requester: git refuses ids it does not know.
        let haves: Vec<git2::Oid> = haves.iter().map(oid).filter(|h| odb.exists(*h)).collect();
        // A requester with nothing gets the repository's one pack as it is, with no walk
        // at all, but only a pack known to hold exactly what the current snapshot
        // reaches: a pushed or fetched pack may carry objects of refused updates or
        // anything a peer added, and those must never be passed on.
        if haves.is_empty()
            && let Some(pack) = self.clean_single_pack(id)?
        {
            match stream_pack_file(&pack, on_count, sink) {
                // A repack replaced it meanwhile: build one instead.
                Err(StorageError::Read { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                other => return other,
            }
        }
        let wants: Vec<git2::Oid> = wants.iter().map(oid).collect();
        let thin = !haves.is_empty();
        pack_objects(
            repo.path(),
            &wants,
            &haves,
            thin,
            self.limits.max_tree_depth,
            on_count,
            sink,
        )
    }

    /// The pack files of `id`.
    pub(super) fn packs(&self, id: &RepositoryId) -> Result<Vec<PathBuf>, StorageError> {
        let dir = self.path(id).join("objects").join("pack");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StorageError::Read { path: dir, source }),
        };
        let mut packs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "pack") && p.with_extension("idx").exists()
            })
            .collect();
        packs.sort();
        Ok(packs)
    }

    /// The repository's only pack, if all its objects are in one (no loose objects).
    fn single_pack(&self, id: &RepositoryId) -> Result<Option<PathBuf>, StorageError> {
        let objects = self.path(id).join("objects");
        let loose = fs::read_dir(&objects)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().len() == 2 && e.path().is_dir())
            })
            .unwrap_or(false);
        let mut packs = self.packs(id)?;
        Ok(if packs.len() == 1 && !loose {
            packs.pop()
        } else {
            None
        })
    }

    /// The repository's only pack if it is the one recorded as holding exactly the
    /// objects the current snapshot reaches (see [`Self::record_clean_pack`]).
    fn clean_single_pack(&self, id: &RepositoryId) -> Result<Option<PathBuf>, StorageError> {
        let Some(pack) = self.single_pack(id)? else {
            return Ok(None);
        };
        let marker = fs::read_to_string(self.path(id).join(CLEAN_PACK_FILE)).unwrap_or_default();
        let mut lines = marker.lines();
        let recorded = match (lines.next(), lines.next()) {
            (Some(CLEAN_PACK_V1), Some(name)) => name,
            // Missing, or a version this build does not know: walk instead.
            _ => return Ok(None),
        };
        let name = pack.file_name().and_then(|n| n.to_str());
        Ok((name == Some(recorded)).then_some(pack))
    }

    /// Records that the repository's only pack holds exactly the objects the current
    /// snapshot reaches (it was built from the snapshot's tips alone). Any change of
    /// snapshot forgets it ([`Self::forget_clean_pack`]). The caller holds the lock.
    pub(super) fn record_clean_pack(&self, id: &RepositoryId) -> Result<(), StorageError> {
        let Some(pack) = self.single_pack(id)? else {
            return Ok(());
        };
        let name = pack
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let path = self.path(id).join(CLEAN_PACK_FILE);
        write_atomically(&path, format!("{CLEAN_PACK_V1}\n{name}\n").as_bytes())
            .map_err(|source| StorageError::Write { path, source })
    }

    /// Forgets which pack was clean: called before a snapshot changes what is reachable.
    pub(super) fn forget_clean_pack(&self, id: &RepositoryId) -> Result<(), StorageError> {
        let path = self.path(id).join(CLEAN_PACK_FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StorageError::Write { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Number of pack files `id` has (each fetch or import adds one).
    pub fn pack_count(&self, id: &RepositoryId) -> Result<usize, StorageError> {
        Ok(self.packs(id)?.len())
    }

    /// Rewrites every object reachable from the held snapshot into one pack and removes
    /// the old packs, so that full fetches can send it as it is (and unreachable
    /// objects, e.g. after a force push or in a pushed or fetched pack, go away).
    /// Readers of the old packs finish on them: the files are removed only after the
    /// new pack is in place. Blocking.
    pub fn repack(&self, id: &RepositoryId) -> Result<(), StorageError> {
        let lock = self.lock(id);
        let _guard = self.write(id, &lock)?;
        let Some(held) = self.held(id)? else {
            return Err(StorageError::UnknownRepository(*id));
        };
        let old = self.packs(id)?;
        if old.is_empty() || self.clean_single_pack(id)?.is_some() {
            return Ok(());
        }
        let repo = Repository::open_bare(self.path(id)).map_err(git("opening the repository"))?;
        let quarantine = Quarantine::with_prefix(&self.path(id), REPACK_PREFIX)?;
        // Objects this store verified when it took them.
        let mut indexer = GitIndexer::start(repo.path(), quarantine.dir(), Fsck::StoreOnly)?;
        // Everything servable (the changes' tips and the forks too), or the repack would
        // drop every patch, issue and fork.
        let wants: Vec<git2::Oid> = self
            .servable(id)?
            .unwrap_or_else(|| held.targets())
            .iter()
            .map(oid)
            .collect();
        let mut failed = None;
        let packed = pack_objects(
            repo.path(),
            &wants,
            &[],
            false,
            self.limits.max_tree_depth,
            &mut |_| {},
            &mut |chunk| match indexer.write(chunk) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            },
        );
        // When the indexer stopped git, its reason is the one that matters.
        packed.map_err(|e| failed.unwrap_or(e))?;
        indexer.finish()?;
        let pack_dir = self.path(id).join("objects").join("pack");
        quarantine.promote(&pack_dir)?;
        fail::fail_point!("repack-promoted");
        for pack in old {
            // Index first, so no index ever points at a missing pack.
            let _ = fs::remove_file(pack.with_extension("idx"));
            let _ = fs::remove_file(pack.with_extension("rev"));
            let _ = fs::remove_file(&pack);
        }
        self.record_clean_pack(id)?;
        tracing::debug!(repository = %id, "repacked into one pack");
        Ok(())
    }
}

/// Sends a stored pack file as it is, in 64 KiB pieces.
fn stream_pack_file(
    path: &Path,
    on_count: &mut dyn FnMut(usize),
    sink: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<PackStats, StorageError> {
    use std::io::Read;
    let read_err = |source| StorageError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::File::open(path).map_err(read_err)?;
    let mut header = [0u8; 12];
    file.read_exact(&mut header).map_err(read_err)?;
    if &header[..4] != b"PACK" {
        return Err(StorageError::Corrupt {
            path: path.to_owned(),
            reason: "not a pack file".into(),
        });
    }
    let objects = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    on_count(objects);
    if !sink(&header) {
        return Err(StorageError::Aborted);
    }
    let mut bytes = header.len() as u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        if !sink(&buf[..n]) {
            return Err(StorageError::Aborted);
        }
    }
    Ok(PackStats { objects, bytes })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::repos::test_support::{Fixture, accept, fsck, git_refs, key, pack_for, store};

    #[test]
    fn a_single_pack_is_sent_as_it_is_and_repack_merges_packs() {
        let fx = Fixture::new();
        let (_a, owner) = store();
        let s1 = owner.import(fx.path(), None, &key(1)).unwrap().snapshot;
        let id = s1.repository();
        assert_eq!(owner.pack_count(&id).unwrap(), 1);
        let stored = fs::read(owner.packs(&id).unwrap().pop().unwrap()).unwrap();
        let (_b, replica) = store();
        let full = pack_for(&owner, &replica, &s1);
        assert_eq!(
            full.concat(),
            stored,
            "a requester with nothing gets the stored pack"
        );
        accept(&replica, &s1, full).unwrap();

        // Three more snapshots: three more packs; then one.
        for i in 0..3 {
            let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
            fx.commit("refs/heads/main", &[("n", &format!("{i}\n"))], &[main]);
            owner.import(fx.path(), None, &key(1)).unwrap();
        }
        assert_eq!(owner.pack_count(&id).unwrap(), 4);
        let refs_before = git_refs(&owner, &id);
        owner.repack(&id).unwrap();
        assert_eq!(owner.pack_count(&id).unwrap(), 1);
        assert_eq!(git_refs(&owner, &id), refs_before);
        fsck(&owner.path(&id));
        // An incremental fetch still builds a pack of just the new objects.
        let s4 = owner.signed_refs(&id).unwrap().unwrap();
        let stats = accept(&replica, &s4, pack_for(&owner, &replica, &s4)).unwrap();
        assert_eq!(stats.objects, 9, "three commits, three trees, three blobs");
        assert_eq!(git_refs(&owner, &id), git_refs(&replica, &id));
        fsck(&replica.path(&id));
    }

    #[test]
    fn a_fetch_of_a_small_change_to_a_large_file_gets_a_thin_delta() {
        // 200 KiB of hex that does not repeat: it compresses to about half, no better.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let big: String = (0..200 * 1024 / 16)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                format!("{state:016x}")
            })
            .collect();
        let fx = Fixture::new();
        let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
        fx.commit("refs/heads/main", &[("big", &big)], &[main]);
        let (_a, owner) = store();
        let s1 = owner.import(fx.path(), None, &key(1)).unwrap().snapshot;
        let (_b, replica) = store();
        accept(&replica, &s1, pack_for(&owner, &replica, &s1)).unwrap();

        let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
        let changed = format!("{big}one more line\n");
        fx.commit("refs/heads/main", &[("big", &changed)], &[main]);
        let s2 = owner.import(fx.path(), None, &key(1)).unwrap().snapshot;
        let pack = pack_for(&owner, &replica, &s2);
        let bytes: usize = pack.iter().map(Vec::len).sum();
        // Whole, the new blob alone is ~100 KiB; as a delta against the one the replica
        // has, a few hundred bytes.
        assert!(bytes < 4096, "{bytes} bytes for a one-line change");
        accept(&replica, &s2, pack).unwrap();
        assert_eq!(
            git_refs(&owner, &s2.repository()),
            git_refs(&replica, &s2.repository())
        );
        fsck(&replica.path(&s2.repository()));
    }
}
