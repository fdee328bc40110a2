//! Verified ingest: [`Repositories::accept`] and the quarantine, indexing and connectivity
//! checks behind it, plus the wants and haves a fetch starts from.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use guts_protocol::{ObjectId, RepositoryId, SignedRefs};

use super::held::{Held, VIEWS_PREFIX};
use super::packed_refs::{remove_loose_refs, write_packed_refs};
use super::packer::{Fsck, GitIndexer};
use super::scan::Scanner;
use super::verify::check_targets;
use super::{
    Limits, PackStats, QUARANTINE_PREFIX, Repositories, SIGNED_REFS_FILE, dedup, git, oid,
    read_quarantine,
};
use crate::StorageError;
use crate::fs::{sync_dir, write_atomically};

impl Repositories {
    /// Targets of `snapshot` this node does not have yet: what to ask a holder for.
    pub fn wants(&self, snapshot: &SignedRefs) -> Result<Vec<ObjectId>, StorageError> {
        let targets = dedup(snapshot.refs.values().copied());
        self.missing(&snapshot.repository(), &targets)
    }

    /// Those of `targets` (distinct) that repository `id` does not have.
    pub fn missing(
        &self,
        id: &RepositoryId,
        targets: &[ObjectId],
    ) -> Result<Vec<ObjectId>, StorageError> {
        let repo = match Repository::open_bare(self.path(id)) {
            Ok(r) => r,
            Err(_) => return Ok(targets.to_vec()),
        };
        let odb = repo.odb().map_err(git("opening the object database"))?;
        Ok(targets
            .iter()
            .copied()
            .filter(|t| !odb.exists(oid(t)))
            .collect())
    }

    /// Every target of what is held of `id` (each view's, with maintainers, and the
    /// changes' tips): what to tell a holder we have.
    pub fn haves(&self, id: &RepositoryId) -> Result<Vec<ObjectId>, StorageError> {
        Ok(self.servable(id)?.unwrap_or_default())
    }

    /// Verifies `snapshot` and, with the objects of `pack` (streamed in chunks, indexed
    /// and hashed by git's index-pack as they arrive), applies it: see the module docs.
    /// `progress` sees objects received and bytes so far. Blocking.
    pub fn accept(
        &self,
        snapshot: &SignedRefs,
        pack: Option<&mut dyn Iterator<Item = io::Result<Vec<u8>>>>,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<PackStats, StorageError> {
        let lock = self.lock(&snapshot.repository());
        let _guard = self.write(&snapshot.repository(), &lock)?;
        self.accept_locked(snapshot, pack, progress)
    }

    /// [`Self::accept`] for a caller that holds the repository's lock.
    pub(super) fn accept_locked(
        &self,
        snapshot: &SignedRefs,
        pack: Option<&mut dyn Iterator<Item = io::Result<Vec<u8>>>>,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<PackStats, StorageError> {
        self.accept_locked_as(snapshot, pack, Fsck::Strict, progress)
    }

    /// [`Self::accept_locked`] with `fsck` saying whether git's index-pack checks every
    /// object too (packs from peers), or only the store's own checks run (the owner's
    /// import: the pack comes from git's pack-objects on the owner's repository, and
    /// git's fsck on top cost 5-13 % of an import).
    pub(super) fn accept_locked_as(
        &self,
        snapshot: &SignedRefs,
        pack: Option<&mut dyn Iterator<Item = io::Result<Vec<u8>>>>,
        fsck: Fsck,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<PackStats, StorageError> {
        let id = snapshot.repository();
        snapshot.verify()?;
        let previous = match self.held(&id)? {
            // The creator's snapshot of a repository that has maintainers now is the
            // creator's view (an older node passed it on, say).
            Some(Held::Shared(state)) => {
                return self
                    .accept_shared_locked(state, Vec::new(), vec![snapshot.clone()], pack, progress)
                    .map(|accepted| accepted.stats);
            }
            Some(Held::Owner(snapshot)) => Some(snapshot),
            None => None,
        };
        if let Some(prev) = &previous
            && snapshot.sequence() <= prev.sequence()
            && snapshot != prev
        {
            return Err(StorageError::Stale {
                repository: id,
                held: prev.sequence(),
                offered: snapshot.sequence(),
            });
        }
        let objects = match pack {
            Some(chunks) => Objects::Stream(chunks, fsck),
            None => Objects::Held,
        };
        let created = !self.path(&id).exists();
        let result = self.accept_inner(
            &Held::Owner(snapshot.clone()),
            previous.map(Held::Owner).as_ref(),
            objects,
            progress,
        );
        if result.is_err() && created {
            // Nothing a failed first fetch sent is kept.
            let _ = fs::remove_dir_all(self.path(&id));
        }
        result
    }

    /// Brings `objects` in, checks that every target of `record` is there and connected
    /// (history below `previous`'s targets was checked before), then moves the git refs
    /// and writes `record`. The caller holds the lock.
    pub(super) fn accept_inner(
        &self,
        record: &Held,
        previous: Option<&Held>,
        objects: Objects<'_>,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<PackStats, StorageError> {
        let id = record.repository();
        let repo = self.open_or_init(&id)?;
        // What is reachable is about to change: no pack is known clean until a repack.
        self.forget_clean_pack(&id)?;
        let started = std::time::Instant::now();
        let (quarantine, stats) = index_objects(self, &repo, &id, objects, progress)?;
        if let Some(q) = &quarantine {
            read_quarantine(&repo, q.dir())?;
        }
        let indexed = started.elapsed();
        let known: Vec<Oid> = previous
            .map(|p| p.targets().iter().map(oid).collect())
            .unwrap_or_default();
        check_targets(
            &repo,
            quarantine.as_ref().map(Quarantine::dir),
            id,
            &record.targets(),
            &known,
            stats.objects,
            &self.limits,
        )?;
        let verified = started.elapsed();

        if let Some(q) = quarantine {
            q.promote(&self.path(&id).join("objects").join("pack"))?;
            fail::fail_point!("accept-promoted");
        }
        // Git refs first, then the snapshot file that readers take the sequence from: once
        // a sequence shows, its refs are in place. A crash between the two leaves refs
        // ahead of the file, which `recover` puts back.
        self.before_writing(record);
        apply_refs(&repo, record)?;
        fail::fail_point!("accept-refs-applied");
        write_atomically(&self.path(&id).join(SIGNED_REFS_FILE), &record.encode()).map_err(
            |source| StorageError::Write {
                path: self.path(&id).join(SIGNED_REFS_FILE),
                source,
            },
        )?;
        self.after_writing(&id, Some(record));
        fail::fail_point!("accept-done");
        tracing::debug!(
            repository = %id,
            objects = stats.objects,
            bytes = stats.bytes,
            ?indexed,
            verify = ?(verified - indexed),
            apply = ?(started.elapsed() - verified),
            "record applied"
        );
        Ok(stats)
    }

    fn open_or_init(&self, id: &RepositoryId) -> Result<Repository, StorageError> {
        let path = self.path(id);
        let repo = match Repository::open_bare(&path) {
            Ok(r) => r,
            Err(_) => {
                fs::create_dir_all(&self.root).map_err(|source| StorageError::Write {
                    path: self.root.clone(),
                    source,
                })?;
                Repository::init_bare(&path)
                    .map_err(git(format!("creating repository {}", path.display())))?
            }
        };
        // Stores made before the guard existed get it at their next update.
        super::store_guard::install(&repo, id)?;
        Ok(repo)
    }
}

/// Brings `objects` into a new quarantine of repository `id` (none when the store holds
/// them all already): indexed and scanned against the limits, not yet checked.
pub(super) fn index_objects(
    repos: &Repositories,
    repo: &Repository,
    id: &RepositoryId,
    objects: Objects<'_>,
    progress: &mut dyn FnMut(PackStats),
) -> Result<(Option<Quarantine>, PackStats), StorageError> {
    Ok(match objects {
        Objects::Stream(chunks, fsck) => {
            let q = Quarantine::new(&repos.path(id))?;
            let stats = index_pack(repo, &q, chunks, fsck, &repos.limits, progress)?;
            fail::fail_point!("accept-indexed");
            (Some(q), stats)
        }
        Objects::Indexed(dir) => {
            let q = Quarantine::new(&repos.path(id))?;
            let stats = adopt_packs(&dir.join("pack"), &q, &repos.limits)?;
            (Some(q), stats)
        }
        Objects::Held => (None, PackStats::default()),
    })
}

/// Where the new objects of a snapshot being accepted are.
pub(super) enum Objects<'a> {
    /// The store holds them all already.
    Held,
    /// A pack streamed in chunks, to be scanned and indexed.
    Stream(&'a mut dyn Iterator<Item = io::Result<Vec<u8>>>, Fsck),
    /// Packs with their indexes in this objects directory's `pack/`, written by git's
    /// index-pack (as `git-remote-guts` runs it for a push).
    Indexed(&'a Path),
}

/// Moves the indexed packs of `from` into `quarantine`, each scanned first against the
/// limits as a streamed pack would be. git's index-pack hashed every object as it wrote
/// them (and completed thin packs), which is the indexing this store would do; what it
/// does not check, the scanner and the snapshot check after this do.
fn adopt_packs(
    from: &Path,
    quarantine: &Quarantine,
    limits: &Limits,
) -> Result<PackStats, StorageError> {
    fn read(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
        move |source| StorageError::Read {
            path: path.to_owned(),
            source,
        }
    }
    let mut stats = PackStats::default();
    let packs: Vec<PathBuf> = fs::read_dir(from)
        .map_err(read(from))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    for pack in packs {
        let mut scanner = Scanner::new(*limits);
        let mut file = fs::File::open(&pack).map_err(read(&pack))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = io::Read::read(&mut file, &mut buf).map_err(read(&pack))?;
            if n == 0 {
                break;
            }
            scanner.feed(&buf[..n]).map_err(StorageError::BadPack)?;
            stats.bytes += n as u64;
        }
        stats.objects += scanner.objects_read();
        for ext in ["pack", "rev", "idx"] {
            let file = pack.with_extension(ext);
            let to = quarantine
                .pack_dir()
                .join(file.file_name().unwrap_or_default());
            match fs::rename(&file, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && ext == "rev" => {}
                Err(source) => return Err(StorageError::Write { path: to, source }),
            }
        }
    }
    Ok(stats)
}

/// Indexes `chunks` into `quarantine` with git's index-pack; every byte passes the
/// scanner first, so no count or size in the pack makes git allocate past the limits.
fn index_pack(
    repo: &Repository,
    quarantine: &Quarantine,
    chunks: &mut dyn Iterator<Item = io::Result<Vec<u8>>>,
    fsck: Fsck,
    limits: &Limits,
    progress: &mut dyn FnMut(PackStats),
) -> Result<PackStats, StorageError> {
    let mut scanner = Scanner::new(*limits);
    let mut indexer = GitIndexer::start(repo.path(), quarantine.dir(), fsck)?;
    let mut stats = PackStats::default();
    for chunk in chunks {
        let chunk = chunk.map_err(|e| StorageError::Transfer(e.to_string()))?;
        scanner.feed(&chunk).map_err(StorageError::BadPack)?;
        stats.bytes += chunk.len() as u64;
        indexer.write(&chunk)?;
        stats.objects = scanner.objects_read();
        progress(stats);
    }
    indexer.finish()?;
    stats.objects = scanner.objects_read();
    progress(stats);
    Ok(stats)
}

/// Moves the repository's refs to `record`'s all at once (branches, tags and views):
/// one new `packed-refs` file (git's own format) renamed over the old, then every loose
/// ref under those prefixes removed, as those would shadow it. One file however many
/// refs: a ref transaction held a lock file open per ref, so a snapshot of a few
/// thousand refs ran out of descriptors. Nothing is written when the refs are already
/// the record's (start-up recovery calls this for every repository).
pub(super) fn apply_refs(repo: &Repository, record: &Held) -> Result<(), StorageError> {
    let (refs, head) = record.git_refs(repo);
    let mut current: BTreeMap<String, Oid> = BTreeMap::new();
    for prefix in OURS {
        for r in repo
            .references_glob(&format!("{prefix}*"))
            .map_err(git("listing refs"))?
            .flatten()
        {
            if let (Ok(name), Some(target)) = (r.name(), r.target()) {
                current.insert(name.to_owned(), target);
            }
        }
    }
    let same = current.len() == refs.len()
        && refs
            .iter()
            .all(|(n, t)| current.get(n.as_str()) == Some(&oid(t)));
    if !same {
        write_packed_refs(repo.path(), &OURS, &refs)?;
        remove_loose_refs(repo.path(), &OURS)?;
    }
    if let Some(head) = &head {
        repo.set_head(head.as_str()).map_err(git("setting HEAD"))?;
    }
    Ok(())
}

/// The ref prefixes a record decides; refs elsewhere (an import's namespace) are left.
const OURS: [&str; 3] = ["refs/heads/", "refs/tags/", VIEWS_PREFIX];

/// Where an incoming pack is indexed until it is verified.
pub(super) struct Quarantine {
    dir: PathBuf,
}

impl Quarantine {
    fn new(repo_dir: &Path) -> Result<Self, StorageError> {
        Self::with_prefix(repo_dir, QUARANTINE_PREFIX)
    }

    /// A quarantine named `prefix` plus random hex (a repack uses its own prefix).
    pub(super) fn with_prefix(repo_dir: &Path, prefix: &str) -> Result<Self, StorageError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| StorageError::Randomness(e.to_string()))?;
        let dir = repo_dir.join(format!("{prefix}{}", hex::encode(random)));
        fs::create_dir_all(dir.join("pack")).map_err(|source| StorageError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Quarantine { dir })
    }

    /// The quarantine itself: an objects directory with a `pack/` inside.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn pack_dir(&self) -> PathBuf {
        self.dir.join("pack")
    }

    /// Moves the verified pack into the repository: the `.pack` first, then its index,
    /// so no index ever points at a missing pack.
    pub(super) fn promote(self, pack_dir: &Path) -> Result<(), StorageError> {
        let files: Vec<PathBuf> = fs::read_dir(self.pack_dir())
            .map_err(|source| StorageError::Read {
                path: self.pack_dir(),
                source,
            })?
            .flatten()
            .map(|e| e.path())
            .collect();
        let mut ordered: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "pack"))
            .collect();
        ordered.extend(
            files
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e != "pack")),
        );
        // The indexer does not fsync. The snapshot that names these objects is
        // written (and fsynced) next, so the packs must be on disk first, or a power cut
        // could leave a durable snapshot over objects that never reached the disk.
        for file in &ordered {
            fs::File::open(file)
                .and_then(|f| f.sync_all())
                .map_err(|source| StorageError::Write {
                    path: file.to_path_buf(),
                    source,
                })?;
        }
        for file in ordered {
            let to = pack_dir.join(file.file_name().unwrap_or_default());
            fs::rename(file, &to).map_err(|source| StorageError::Write { path: to, source })?;
        }
        sync_dir(pack_dir).map_err(|source| StorageError::Write {
            path: pack_dir.to_owned(),
            source,
        })?;
        Ok(())
    }
}

impl Drop for Quarantine {
    fn drop(&mut self) {
        // Verified or not, the quarantine goes; unverified objects go with it.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use guts_protocol::SignedRefs;

    use crate::StorageError;
    use crate::repos::QUARANTINE_PREFIX;
    use crate::repos::test_support::{
        Fixture, accept, fsck, git_refs, key, pack_files, pack_for, store,
    };

    #[test]
    fn a_replica_gets_identical_refs_then_only_new_objects() {
        let fx = Fixture::new();
        let (_a, owner) = store();
        let (_b, replica) = store();
        let s1 = owner.import(fx.path(), None, &key(1)).unwrap().snapshot;
        let id = s1.repository();
        let stats = accept(&replica, &s1, pack_for(&owner, &replica, &s1)).unwrap();
        assert!(stats.objects >= 10, "{stats:?}");
        assert_eq!(git_refs(&owner, &id), git_refs(&replica, &id));
        assert_eq!(replica.signed_refs(&id).unwrap().unwrap(), s1);
        fsck(&replica.path(&id));

        let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
        fx.commit(
            "refs/heads/main",
            &[
                ("README", "hello\nworld\nagain\n"),
                ("src/a.rs", "fn a() {}\n"),
                ("src/b.rs", "fn b() {}\n"),
            ],
            &[main],
        );
        let s2 = owner.import(fx.path(), None, &key(1)).unwrap().snapshot;
        let chunks = pack_for(&owner, &replica, &s2);
        let stats = accept(&replica, &s2, chunks).unwrap();
        // A commit, its root tree and one blob.
        assert_eq!(stats.objects, 3, "{stats:?}");
        assert_eq!(git_refs(&owner, &id), git_refs(&replica, &id));
        fsck(&replica.path(&id));
    }

    #[test]
    fn bad_input_changes_nothing() {
        let fx = Fixture::new();
        let (_a, owner) = store();
        let (_b, replica) = store();
        let s1 = owner.import(fx.path(), None, &key(1)).unwrap().snapshot;
        let id = s1.repository();
        let full = pack_for(&owner, &replica, &s1);

        // A corrupted pack into a new repository: no trace of it.
        let mut bad: Vec<u8> = full.concat();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        let err = accept(&replica, &s1, vec![bad]).unwrap_err();
        assert!(matches!(err, StorageError::BadPack(_)), "{err}");
        assert!(!replica.path(&id).exists());

        // A pack without the objects the snapshot needs (built as if we had them).
        let mut partial = Vec::new();
        let haves = owner.haves(&id).unwrap();
        owner
            .build_pack(&id, &[], &haves, &mut |_| {}, &mut |c| {
                partial.push(c.to_vec());
                true
            })
            .unwrap();
        let err = accept(&replica, &s1, partial).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::MissingObject { .. } | StorageError::Incomplete { .. }
            ),
            "{err}"
        );
        assert!(!replica.path(&id).exists());

        // The real thing, then a rollback and a forgery.
        accept(&replica, &s1, full.clone()).unwrap();
        let refs_before = git_refs(&replica, &id);
        let packs_before = pack_files(&replica, &id);
        let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
        fx.commit("refs/heads/main", &[("x", "y\n")], &[main]);
        let s2 = owner.import(fx.path(), None, &key(1)).unwrap().snapshot;
        let s2_pack = pack_for(&owner, &replica, &s2);
        accept(&replica, &s2, s2_pack.clone()).unwrap();
        let refs_s2 = git_refs(&replica, &id);
        assert_ne!(refs_before, refs_s2);
        let err = accept(&replica, &s1, vec![]).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Stale {
                    held: 2,
                    offered: 1,
                    ..
                }
            ),
            "{err}"
        );

        let mut forged =
            SignedRefs::sign(&key(2), "demo".parse().unwrap(), 9, None, s2.refs.clone()).unwrap();
        forged.signed.header.repository = id;
        let err = accept(&replica, &forged, s2_pack).unwrap_err();
        assert!(matches!(err, StorageError::InvalidSnapshot(_)), "{err}");
        assert_eq!(git_refs(&replica, &id), refs_s2);
        assert_eq!(replica.signed_refs(&id).unwrap().unwrap(), s2);
        assert_eq!(
            pack_files(&replica, &id),
            packs_before + 1,
            "only the verified pack was added"
        );
        assert!(fs::read_dir(replica.path(&id)).unwrap().flatten().all(|e| {
            !e.file_name()
                .to_string_lossy()
                .starts_with(QUARANTINE_PREFIX)
        }));
    }
}
