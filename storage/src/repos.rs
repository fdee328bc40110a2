//! The repositories a node holds: one bare git repository per repository id under
//! `repos/`, with the owner's latest verified snapshot beside its objects.
//!
//! Everything that reaches a repository goes through [`Repositories::accept`]: the pack
//! (if any) is indexed by libgit2 into a quarantine directory, which verifies every object
//! as it is written; the snapshot's signature, sequence and the connectivity of every ref
//! target are then checked against the repository plus the quarantine; only then do the
//! pack files move into `objects/pack`, the git refs move and the snapshot file is
//! replaced. A crash at any point leaves the previous verified state once
//! [`Repositories::recover`] has run: unreferenced objects at worst, which git tolerates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ed25519_dalek::SigningKey;
use git2::{ObjectType, Oid, Repository};
use guts_protocol::refs::Refs;
use guts_protocol::wire::{self, MAX_RESPONSE_SIZE};
use guts_protocol::{ObjectId, RefName, RepoName, RepositoryId, SignedRefs};

use crate::StorageError;

/// File (inside the bare repository) holding the latest verified snapshot.
const SIGNED_REFS_FILE: &str = "guts-signed-refs";
/// Prefix of quarantine directories inside a repository (packs being received).
const QUARANTINE_PREFIX: &str = "guts-quarantine-";
/// Prefix of push areas (bare repositories borrowing the objects) inside a repository.
const PUSH_PREFIX: &str = "guts-push-";
/// Prefix of directories where a repack writes its new pack.
const REPACK_PREFIX: &str = "guts-repack-";
/// Refs an earlier version of import used as a staging area; cleared by recovery.
const IMPORT_NAMESPACE: &str = "refs/guts-import/";
/// Config layer (under `repos/`) bounding libgit2's pack builder memory.
const PACK_LIMITS_FILE: &str = ".pack-limits.gitconfig";
/// libgit2 reads these from a repository's config; its defaults let the delta search
/// window grow without bound and cache up to 256 MiB of deltas. (libgit2 1.9 also takes
/// its big-file threshold from `pack.deltaCacheSize`: larger objects are stored whole,
/// not delta-compressed.)
const PACK_LIMITS: &str = "[pack]\n\twindowMemory = 16m\n\tdeltaCacheSize = 16m\n";
/// File (in the data dir) listing followed repositories, one id per line.
const FOLLOWING_FILE: &str = "following";
/// Git file mode of a submodule entry: its object lives in another repository.
const GITLINK_MODE: i32 = 0o160000;

/// What [`Repositories::import`] did.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The snapshot now held (new, or the previous one if nothing changed).
    pub snapshot: SignedRefs,
    /// Whether a new snapshot was signed.
    pub changed: bool,
}

/// One ref a push wants to move.
#[derive(Debug, Clone)]
pub struct RefUpdate {
    /// The ref, e.g. `refs/heads/main`.
    pub name: String,
    /// Its new target, or `None` to delete it.
    pub new: Option<ObjectId>,
    /// Whether it may move to a target that does not descend from the old one.
    pub force: bool,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The snapshot now held.
    pub snapshot: SignedRefs,
    /// Each update, and why it was refused if it was.
    pub results: Vec<(String, Result<(), String>)>,
    /// Whether a new snapshot was signed.
    pub changed: bool,
}

/// Counts from building or receiving a pack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Objects in the pack.
    pub objects: usize,
    /// Bytes of pack data.
    pub bytes: u64,
}

/// The repositories under a data dir.
#[derive(Debug, Clone)]
pub struct Repositories {
    root: PathBuf,
    following: PathBuf,
    // One writer per repository at a time; readers (pack building) need no lock because
    // objects are only ever added and refs move atomically.
    locks: Arc<Mutex<HashMap<RepositoryId, Arc<Mutex<()>>>>>,
}

fn git(context: impl Into<String>) -> impl FnOnce(git2::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Git { context, source }
}

fn oid(id: &ObjectId) -> Oid {
    Oid::from_bytes(&id.0).expect("20 bytes make an oid")
}

fn object_id(oid: Oid) -> ObjectId {
    let mut bytes = [0u8; 20];
    bytes.copy_from_slice(oid.as_bytes());
    ObjectId(bytes)
}

impl Repositories {
    /// The repositories under `data_dir/repos`.
    pub fn new(data_dir: &Path) -> Self {
        Repositories {
            root: data_dir.join("repos"),
            following: data_dir.join(FOLLOWING_FILE),
            locks: Arc::default(),
        }
    }

    /// The bare repository of `id` (whether or not it exists).
    pub fn path(&self, id: &RepositoryId) -> PathBuf {
        self.root.join(id.to_string())
    }

    fn lock(&self, id: &RepositoryId) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(*id).or_default().clone()
    }

    /// Every repository this node holds a verified snapshot of.
    pub fn list(&self) -> Result<Vec<RepositoryId>, StorageError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StorageError::Read {
                    path: self.root.clone(),
                    source,
                });
            }
        };
        let mut ids = Vec::new();
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RepositoryId>().ok())
            else {
                continue;
            };
            if entry.path().join(SIGNED_REFS_FILE).exists() {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The latest verified snapshot of `id`, if this node holds the repository.
    pub fn signed_refs(&self, id: &RepositoryId) -> Result<Option<SignedRefs>, StorageError> {
        let path = self.path(id).join(SIGNED_REFS_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StorageError::Read { path, source }),
        };
        wire::decode(&bytes, MAX_RESPONSE_SIZE)
            .map(Some)
            .map_err(|e| StorageError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    /// Makes the local git repository at `source` a repository owned by `key`: its
    /// branches and tags are signed as a new snapshot (sequence one higher than the last,
    /// if it was imported before) and the objects they need come in as a pack built from
    /// `source`, through the same verified path as a fetch from a peer. Nothing changes
    /// if its refs are those of the current snapshot.
    pub fn import(
        &self,
        source: &Path,
        name: Option<RepoName>,
        key: &SigningKey,
    ) -> Result<Imported, StorageError> {
        let not_git = |_| StorageError::NotAGitRepository {
            path: source.to_owned(),
        };
        let src = Repository::open(source).map_err(not_git)?;
        let name = match name {
            Some(n) => n,
            None => default_name(source, &src)?,
        };
        let id = RepositoryId::derive(key.verifying_key().as_bytes(), &name);
        let lock = self.lock(&id);
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());

        let mut refs = Refs::new();
        let mut skipped = Vec::new();
        for glob in ["refs/heads/*", "refs/tags/*"] {
            for reference in src.references_glob(glob).map_err(git("listing refs"))? {
                let reference = reference.map_err(git("listing refs"))?;
                let Ok(full) = reference.name().map(str::to_owned) else {
                    continue;
                };
                let Some(target) = reference.resolve().ok().and_then(|r| r.target()) else {
                    continue;
                };
                match full.parse::<RefName>() {
                    Ok(name) => {
                        refs.insert(name, object_id(target));
                    }
                    Err(_) => skipped.push(full),
                }
            }
        }
        if !skipped.is_empty() {
            tracing::warn!(
                ?skipped,
                "refs with names git accepts but Guts does not were left out"
            );
        }
        if refs.is_empty() {
            return Err(StorageError::NothingToImport {
                path: source.to_owned(),
            });
        }
        let head = src
            .find_reference("HEAD")
            .ok()
            .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_owned))
            .and_then(|t| t.parse::<RefName>().ok())
            .filter(|h| refs.contains_key(h))
            .or_else(|| {
                ["refs/heads/main", "refs/heads/master"]
                    .iter()
                    .filter_map(|n| n.parse::<RefName>().ok())
                    .find(|n| refs.contains_key(n))
            });

        let previous = self.signed_refs(&id)?;
        if let Some(prev) = &previous
            && prev.refs == refs
            && prev.signed.header.head == head
        {
            return Ok(Imported {
                snapshot: prev.clone(),
                changed: false,
            });
        }
        let snapshot = self.publish(src, key, name, refs, head, previous.as_ref())?;
        Ok(Imported {
            snapshot,
            changed: true,
        })
    }

    /// Signs the next snapshot of `name` with `refs` and `head`, and applies it with the
    /// objects it needs taken from `src` (as a pack, through the verified path). The
    /// caller holds the repository's lock.
    fn publish(
        &self,
        src: Repository,
        key: &SigningKey,
        name: RepoName,
        refs: Refs,
        head: Option<RefName>,
        previous: Option<&SignedRefs>,
    ) -> Result<SignedRefs, StorageError> {
        let sequence = previous.map_or(1, |p| p.sequence() + 1);
        let snapshot = SignedRefs::sign(key, name, sequence, head, refs)?;
        let id = snapshot.repository();
        let wants = self.wants(&snapshot)?;
        if wants.is_empty() {
            self.accept_locked(&snapshot, None, &mut |_| {})?;
            return Ok(snapshot);
        }
        let haves = self.haves(&id)?;
        self.limit_pack_memory(&src)?;
        // libgit2 writes the pack on one thread while the indexer reads it on this one,
        // through a bounded channel: the pack is never held whole.
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(16);
        let accepted = std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                let sink_tx = tx.clone();
                let result = write_pack(&src, &id, &wants, &haves, &mut |_| {}, &mut |chunk| {
                    sink_tx.send(Ok(chunk.to_vec())).is_ok()
                });
                if let Err(e) = &result {
                    let _ = tx.send(Err(io::Error::other(e.to_string())));
                }
                result
            });
            let mut chunks = rx.into_iter();
            let accepted = self.accept_locked(&snapshot, Some(&mut chunks), &mut |_| {});
            // Closing the channel unblocks the writer if the indexer stopped early.
            drop(chunks);
            let written = writer.join().unwrap_or(Err(StorageError::Aborted));
            accepted.and(written.map(|_| ()))
        });
        accepted?;
        Ok(snapshot)
    }

    /// Creates an empty repository `name` owned by `key` (a snapshot with no refs).
    pub fn init(&self, name: RepoName, key: &SigningKey) -> Result<SignedRefs, StorageError> {
        let id = RepositoryId::derive(key.verifying_key().as_bytes(), &name);
        let lock = self.lock(&id);
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.signed_refs(&id)?.is_some() {
            return Err(StorageError::AlreadyExists(id));
        }
        let snapshot = SignedRefs::sign(key, name, 1, None, Refs::new())?;
        self.accept_locked(&snapshot, None, &mut |_| {})?;
        Ok(snapshot)
    }

    /// Creates a bare repository where a push can put its objects before they are
    /// checked: it borrows the repository's objects (git alternates), so a push sends
    /// only what is new. Refused unless `key` owns the repository.
    pub fn create_staging(
        &self,
        id: &RepositoryId,
        key: &SigningKey,
    ) -> Result<PathBuf, StorageError> {
        let snapshot = self
            .signed_refs(id)?
            .ok_or(StorageError::UnknownRepository(*id))?;
        check_owner(&snapshot, key)?;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| StorageError::Randomness(e.to_string()))?;
        let path = self
            .path(id)
            .join(format!("{PUSH_PREFIX}{}", hex::encode(random)));
        let staging = Repository::init_bare(&path).map_err(git("creating a push area"))?;
        let alternates = path.join("objects").join("info").join("alternates");
        let objects = self.path(id).join("objects");
        fs::write(&alternates, format!("{}\n", objects.display())).map_err(|source| {
            StorageError::Write {
                path: alternates,
                source,
            }
        })?;
        // The pusher's git sees the current refs through the alternate and sends only
        // what is missing; the staging repository needs no refs of its own.
        drop(staging);
        Ok(path)
    }

    /// Applies a push: the objects are in `staging` (from [`Self::create_staging`]), the
    /// updates say which refs move. Each update is judged on its own (fast-forward
    /// unless forced, deletes allowed); the accepted ones become one new snapshot. The
    /// staging repository is removed whatever happens.
    pub fn push(
        &self,
        id: &RepositoryId,
        staging: &Path,
        updates: &[RefUpdate],
        key: &SigningKey,
    ) -> Result<Pushed, StorageError> {
        let staging_ok = staging.starts_with(self.path(id))
            && staging
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(PUSH_PREFIX));
        if !staging_ok {
            return Err(StorageError::BadStaging(staging.to_owned()));
        }
        let result = self.push_inner(id, staging, updates, key);
        let _ = fs::remove_dir_all(staging);
        result
    }

    fn push_inner(
        &self,
        id: &RepositoryId,
        staging: &Path,
        updates: &[RefUpdate],
        key: &SigningKey,
    ) -> Result<Pushed, StorageError> {
        let lock = self.lock(id);
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self
            .signed_refs(id)?
            .ok_or(StorageError::UnknownRepository(*id))?;
        check_owner(&previous, key)?;
        let src = Repository::open_bare(staging).map_err(git("opening the push area"))?;
        let mut refs = previous.refs.clone();
        let mut results = Vec::new();
        for update in updates {
            let outcome = apply_update(&src, &mut refs, update);
            results.push((update.name.clone(), outcome));
        }
        let mut head = previous
            .signed
            .header
            .head
            .clone()
            .filter(|h| refs.contains_key(h));
        if head.is_none() {
            head = ["refs/heads/main", "refs/heads/master"]
                .iter()
                .filter_map(|n| n.parse::<RefName>().ok())
                .find(|n| refs.contains_key(n))
                .or_else(|| {
                    refs.keys()
                        .find(|n| n.as_str().starts_with("refs/heads/"))
                        .cloned()
                });
        }
        if refs == previous.refs && head == previous.signed.header.head {
            return Ok(Pushed {
                snapshot: previous,
                results,
                changed: false,
            });
        }
        let name = previous.signed.header.name.clone();
        let snapshot = self.publish(src, key, name, refs, head, Some(&previous))?;
        Ok(Pushed {
            snapshot,
            results,
            changed: true,
        })
    }

    /// Bounds what libgit2's pack builder holds in memory when working on `repo`, without
    /// touching its config files: an in-memory, application-level config layer.
    fn limit_pack_memory(&self, repo: &Repository) -> Result<(), StorageError> {
        let file = self.root.join(PACK_LIMITS_FILE);
        if !file.exists() {
            fs::create_dir_all(&self.root).map_err(|source| StorageError::Write {
                path: self.root.clone(),
                source,
            })?;
            write_atomically(&file, PACK_LIMITS.as_bytes()).map_err(|source| {
                StorageError::Write {
                    path: file.clone(),
                    source,
                }
            })?;
        }
        repo.config()
            .and_then(|mut c| c.add_file(&file, git2::ConfigLevel::App, true))
            .map_err(git("limiting pack memory"))
    }

    /// Targets of `snapshot` this node does not have yet: what to ask a holder for.
    pub fn wants(&self, snapshot: &SignedRefs) -> Result<Vec<ObjectId>, StorageError> {
        let id = snapshot.repository();
        let repo = match Repository::open_bare(self.path(&id)) {
            Ok(r) => r,
            Err(_) => return Ok(dedup(snapshot.refs.values().copied())),
        };
        let odb = repo.odb().map_err(git("opening the object database"))?;
        Ok(dedup(
            snapshot
                .refs
                .values()
                .copied()
                .filter(|t| !odb.exists(oid(t))),
        ))
    }

    /// Targets of the held snapshot of `id`: what to tell a holder we have.
    pub fn haves(&self, id: &RepositoryId) -> Result<Vec<ObjectId>, StorageError> {
        Ok(self
            .signed_refs(id)?
            .map(|s| dedup(s.refs.values().copied()))
            .unwrap_or_default())
    }

    /// Builds a pack with every object reachable from `wants` and not from `haves`,
    /// telling `on_count` how many objects it holds, then handing it to `sink` chunk by
    /// chunk as libgit2 writes it (deltas reused). `sink` returns false to abort.
    /// Blocking.
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
        let requester_has_some = haves.iter().any(|h| odb.exists(oid(h)));
        // A requester with nothing gets the repository's one pack as it is: libgit2
        // cannot reuse deltas, so building a pack means a full delta search, while
        // the stored pack is already verified, compressed and complete (extra objects
        // are harmless: the requester verifies what it needs).
        if !requester_has_some && let Some(pack) = self.single_pack(id)? {
            match stream_pack_file(&pack, on_count, sink) {
                // A repack replaced it meanwhile: build one instead.
                Err(StorageError::Read { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                other => return other,
            }
        }
        self.limit_pack_memory(&repo)?;
        write_pack(&repo, id, wants, haves, on_count, sink)
    }

    /// The pack files of `id`.
    fn packs(&self, id: &RepositoryId) -> Result<Vec<PathBuf>, StorageError> {
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

    /// Number of pack files `id` has (each fetch or import adds one).
    pub fn pack_count(&self, id: &RepositoryId) -> Result<usize, StorageError> {
        Ok(self.packs(id)?.len())
    }

    /// Rewrites every object reachable from the held snapshot into one pack and removes
    /// the old packs, so that full fetches can send it as it is (and unreachable
    /// objects, e.g. after a force push, go away). Readers of the old packs finish on
    /// them: the files are removed only after the new pack is in place. Blocking.
    pub fn repack(&self, id: &RepositoryId) -> Result<(), StorageError> {
        let lock = self.lock(id);
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(snapshot) = self.signed_refs(id)? else {
            return Err(StorageError::UnknownRepository(*id));
        };
        let old = self.packs(id)?;
        if old.len() <= 1 {
            return Ok(());
        }
        let repo = Repository::open_bare(self.path(id)).map_err(git("opening the repository"))?;
        self.limit_pack_memory(&repo)?;
        let quarantine = Quarantine::with_prefix(&self.path(id), REPACK_PREFIX)?;
        let odb = repo.odb().map_err(git("opening the object database"))?;
        let mut indexer = git2::Indexer::new(Some(&odb), &quarantine.pack_dir(), 0o444, false)
            .map_err(git("starting to index the pack"))?;
        let wants: Vec<ObjectId> = dedup(snapshot.refs.values().copied());
        write_pack(&repo, id, &wants, &[], &mut |_| {}, &mut |chunk| {
            indexer.write_all(chunk).is_ok()
        })?;
        indexer.commit().map_err(git("indexing the new pack"))?;
        let pack_dir = self.path(id).join("objects").join("pack");
        quarantine.promote(&pack_dir)?;
        for pack in old {
            // Index first, so no index ever points at a missing pack.
            let _ = fs::remove_file(pack.with_extension("idx"));
            let _ = fs::remove_file(pack.with_extension("rev"));
            let _ = fs::remove_file(&pack);
        }
        tracing::debug!(repository = %id, "repacked into one pack");
        Ok(())
    }

    /// Verifies `snapshot` and, with the objects of `pack` (streamed in chunks, indexed
    /// and verified by libgit2 as they arrive), applies it: see the module docs.
    /// `progress` sees objects received and bytes so far. Blocking.
    pub fn accept(
        &self,
        snapshot: &SignedRefs,
        pack: Option<&mut dyn Iterator<Item = io::Result<Vec<u8>>>>,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<PackStats, StorageError> {
        let lock = self.lock(&snapshot.repository());
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.accept_locked(snapshot, pack, progress)
    }

    fn accept_locked(
        &self,
        snapshot: &SignedRefs,
        pack: Option<&mut dyn Iterator<Item = io::Result<Vec<u8>>>>,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<PackStats, StorageError> {
        let id = snapshot.repository();
        snapshot.verify()?;
        let previous = self.signed_refs(&id)?;
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
        let created = !self.path(&id).exists();
        let result = self.accept_inner(snapshot, previous.as_ref(), pack, progress);
        if result.is_err() && created {
            // Nothing a failed first fetch sent is kept.
            let _ = fs::remove_dir_all(self.path(&id));
        }
        result
    }

    fn accept_inner(
        &self,
        snapshot: &SignedRefs,
        previous: Option<&SignedRefs>,
        pack: Option<&mut dyn Iterator<Item = io::Result<Vec<u8>>>>,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<PackStats, StorageError> {
        let id = snapshot.repository();
        let repo = self.open_or_init(&id)?;
        let started = std::time::Instant::now();
        let mut stats = PackStats::default();
        let quarantine = match pack {
            Some(chunks) => {
                let q = Quarantine::new(&self.path(&id))?;
                stats = index_pack(&repo, &q.pack_dir(), chunks, progress)?;
                Some(q)
            }
            None => None,
        };
        if let Some(q) = &quarantine {
            let odb = repo.odb().map_err(git("opening the object database"))?;
            odb.add_disk_alternate(&q.dir.to_string_lossy())
                .map_err(git("reading the received pack"))?;
        }
        let indexed = started.elapsed();
        let known: Vec<Oid> = previous
            .map(|p| p.refs.values().map(oid).collect())
            .unwrap_or_default();
        check_connected(&repo, snapshot, &known)?;
        let verified = started.elapsed();

        if let Some(q) = quarantine {
            q.promote(&self.path(&id).join("objects").join("pack"))?;
        }
        // Git refs first, then the snapshot file that readers take the sequence from: once
        // a sequence shows, its refs are in place. A crash between the two leaves refs
        // ahead of the file, which `recover` puts back.
        apply_refs(&repo, snapshot)?;
        write_atomically(
            &self.path(&id).join(SIGNED_REFS_FILE),
            &wire::encode(snapshot),
        )
        .map_err(|source| StorageError::Write {
            path: self.path(&id).join(SIGNED_REFS_FILE),
            source,
        })?;
        tracing::debug!(
            repository = %id,
            objects = stats.objects,
            bytes = stats.bytes,
            ?indexed,
            verify = ?(verified - indexed),
            apply = ?(started.elapsed() - verified),
            "snapshot {} applied",
            snapshot.sequence()
        );
        Ok(stats)
    }

    fn open_or_init(&self, id: &RepositoryId) -> Result<Repository, StorageError> {
        let path = self.path(id);
        match Repository::open_bare(&path) {
            Ok(r) => Ok(r),
            Err(_) => {
                fs::create_dir_all(&self.root).map_err(|source| StorageError::Write {
                    path: self.root.clone(),
                    source,
                })?;
                Repository::init_bare(&path)
                    .map_err(git(format!("creating repository {}", path.display())))
            }
        }
    }

    /// Brings every repository back to its last verified state after a crash: removes
    /// quarantines and half-moved packs, and points the git refs at the snapshot.
    pub fn recover(&self) -> Result<(), StorageError> {
        for id in self.list()? {
            let path = self.path(&id);
            if let Ok(entries) = fs::read_dir(&path) {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with(QUARANTINE_PREFIX)
                        || name.starts_with(REPACK_PREFIX)
                        || name.starts_with(PUSH_PREFIX)
                    {
                        let _ = fs::remove_dir_all(entry.path());
                    }
                }
            }
            let pack_dir = path.join("objects").join("pack");
            if let Ok(entries) = fs::read_dir(&pack_dir) {
                for entry in entries.flatten() {
                    let p = entry.path();
                    if p.extension().is_some_and(|e| e == "pack")
                        && !p.with_extension("idx").exists()
                    {
                        let _ = fs::remove_file(&p);
                    }
                }
            }
            if let Some(snapshot) = self.signed_refs(&id)? {
                let repo = Repository::open_bare(&path)
                    .map_err(git(format!("opening {}", path.display())))?;
                clear_namespace(&repo, IMPORT_NAMESPACE)?;
                apply_refs(&repo, &snapshot)?;
            }
        }
        Ok(())
    }

    /// Adds `id` to the repositories this node follows (fetches and keeps up to date).
    pub fn follow(&self, id: &RepositoryId) -> Result<bool, StorageError> {
        let mut ids = self.followed()?;
        if ids.contains(id) {
            return Ok(false);
        }
        ids.push(*id);
        let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
        write_atomically(&self.following, text.as_bytes()).map_err(|source| {
            StorageError::Write {
                path: self.following.clone(),
                source,
            }
        })?;
        Ok(true)
    }

    /// The repositories this node follows.
    pub fn followed(&self) -> Result<Vec<RepositoryId>, StorageError> {
        let text = match fs::read_to_string(&self.following) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StorageError::Read {
                    path: self.following.clone(),
                    source,
                });
            }
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.parse()
                    .map_err(
                        |e: guts_protocol::ids::RepositoryIdError| StorageError::Corrupt {
                            path: self.following.clone(),
                            reason: e.to_string(),
                        },
                    )
            })
            .collect()
    }
}

/// The pack of everything reachable from `wants` and not from `haves` in `repo`,
/// handed to `sink` as libgit2 writes it.
fn write_pack(
    repo: &Repository,
    id: &RepositoryId,
    wants: &[ObjectId],
    haves: &[ObjectId],
    on_count: &mut dyn FnMut(usize),
    sink: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<PackStats, StorageError> {
    let odb = repo.odb().map_err(git("opening the object database"))?;
    let mut builder = repo.packbuilder().map_err(git("starting a pack"))?;
    builder.set_threads(0);
    let mut walk = repo.revwalk().map_err(git("starting a walk"))?;
    for want in wants {
        let mut object =
            repo.find_object(oid(want), None)
                .map_err(|_| StorageError::MissingObject {
                    repository: *id,
                    object: *want,
                })?;
        // Annotated tags go in as themselves, then whatever they point at.
        while object.kind() == Some(ObjectType::Tag) {
            builder
                .insert_object(object.id(), None)
                .map_err(git("adding a tag to the pack"))?;
            let tag = object.into_tag().map_err(|_| StorageError::MissingObject {
                repository: *id,
                object: *want,
            })?;
            object = tag.target().map_err(git("following a tag"))?;
        }
        match object.kind() {
            Some(ObjectType::Commit) => walk.push(object.id()),
            _ => builder.insert_recursive(object.id(), None),
        }
        .map_err(git("adding objects to the pack"))?;
    }
    for have in haves {
        let have = oid(have);
        if !odb.exists(have) {
            continue;
        }
        if let Ok(commit) = repo
            .find_object(have, None)
            .and_then(|o| o.peel_to_commit())
        {
            walk.hide(commit.id())
                .map_err(git("marking what the peer has"))?;
        }
    }
    builder
        .insert_walk(&mut walk)
        .map_err(git("adding history to the pack"))?;
    let objects = builder.object_count();
    on_count(objects);
    let mut bytes = 0u64;
    let mut aborted = false;
    let result = builder.foreach(|chunk| {
        bytes += chunk.len() as u64;
        let keep_going = sink(chunk);
        aborted = !keep_going;
        keep_going
    });
    if aborted {
        return Err(StorageError::Aborted);
    }
    result.map_err(git("writing the pack"))?;
    Ok(PackStats { objects, bytes })
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

fn check_owner(snapshot: &SignedRefs, key: &SigningKey) -> Result<(), StorageError> {
    if snapshot.signed.signer == key.verifying_key() {
        return Ok(());
    }
    Err(StorageError::NotOwner {
        repository: snapshot.repository(),
        owner: hex::encode(snapshot.signed.signer.as_bytes()),
    })
}

/// Judges one pushed ref update against `refs` (updating them if accepted).
fn apply_update(src: &Repository, refs: &mut Refs, update: &RefUpdate) -> Result<(), String> {
    let name: RefName = update
        .name
        .parse()
        .map_err(|e: guts_protocol::ids::NameError| e.to_string())?;
    let Some(new) = update.new else {
        return match refs.remove(&name) {
            Some(_) => Ok(()),
            None => Err("no such ref".into()),
        };
    };
    if src.find_object(oid(&new), None).is_err() {
        return Err(format!("object {new} was not received"));
    }
    if let Some(old) = refs.get(&name).copied()
        && old != new
        && !update.force
    {
        if name.as_str().starts_with("refs/tags/") {
            return Err("tag already exists (push with --force to move it)".into());
        }
        let peel = |o: &ObjectId| {
            src.find_object(oid(o), None)
                .and_then(|o| o.peel_to_commit())
                .map(|c| c.id())
        };
        let fast_forward = match (peel(&old), peel(&new)) {
            (Ok(old), Ok(new)) => src.graph_descendant_of(new, old).unwrap_or(false),
            _ => false,
        };
        if !fast_forward {
            return Err("non-fast-forward (push with --force to overwrite)".into());
        }
    }
    refs.insert(name, new);
    Ok(())
}

fn dedup(ids: impl Iterator<Item = ObjectId>) -> Vec<ObjectId> {
    let mut seen = HashSet::new();
    ids.filter(|i| seen.insert(*i)).collect()
}

/// The name of an imported repository when none is given: its directory's name,
/// without `.git`.
fn default_name(source: &Path, repo: &Repository) -> Result<RepoName, StorageError> {
    let dir = if repo.is_bare() {
        repo.path().to_owned()
    } else {
        repo.workdir().unwrap_or(source).to_owned()
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".git").to_owned())
        .unwrap_or_default();
    base.parse()
        .map_err(|e: guts_protocol::ids::NameError| StorageError::BadName {
            path: source.to_owned(),
            reason: e.to_string(),
        })
}

fn clear_namespace(repo: &Repository, prefix: &str) -> Result<(), StorageError> {
    let names: Vec<String> = repo
        .references_glob(&format!("{prefix}*"))
        .map_err(git("listing refs"))?
        .filter_map(|r| r.ok().and_then(|r| r.name().ok().map(str::to_owned)))
        .collect();
    for name in names {
        if let Ok(mut r) = repo.find_reference(&name) {
            r.delete().map_err(git(format!("deleting {name}")))?;
        }
    }
    Ok(())
}

/// Writes the pack from `chunks` into `dir` through libgit2's indexer, which checks
/// every object's hash and resolves deltas (against the repository too, for thin packs).
fn index_pack(
    repo: &Repository,
    dir: &Path,
    chunks: &mut dyn Iterator<Item = io::Result<Vec<u8>>>,
    progress: &mut dyn FnMut(PackStats),
) -> Result<PackStats, StorageError> {
    let odb = repo.odb().map_err(git("opening the object database"))?;
    let mut indexer = git2::Indexer::new(Some(&odb), dir, 0o444, false)
        .map_err(git("starting to index the pack"))?;
    let mut stats = PackStats::default();
    let received = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let counter = received.clone();
    indexer.progress(move |p| {
        counter.set(p.received_objects());
        true
    });
    for chunk in chunks {
        let chunk = chunk.map_err(|e| StorageError::Transfer(e.to_string()))?;
        stats.bytes += chunk.len() as u64;
        indexer
            .write_all(&chunk)
            .map_err(|e| StorageError::BadPack(e.to_string()))?;
        stats.objects = received.get();
        progress(stats);
    }
    indexer
        .commit()
        .map_err(|e| StorageError::BadPack(e.message().to_owned()))?;
    stats.objects = received.get();
    progress(stats);
    Ok(stats)
}

/// Checks that every ref target of `snapshot` is present and fully connected: for
/// commits, all history not reachable from `known` (tips already verified) with every
/// tree and blob; for tags, what they point at. Gitlinks (submodules) are not followed.
fn check_connected(
    repo: &Repository,
    snapshot: &SignedRefs,
    known: &[Oid],
) -> Result<(), StorageError> {
    let id = snapshot.repository();
    let missing = |object: Oid| StorageError::MissingObject {
        repository: id,
        object: object_id(object),
    };
    let odb = repo.odb().map_err(git("opening the object database"))?;
    let mut walk = repo.revwalk().map_err(git("starting a walk"))?;
    let mut pushed = false;
    for target in snapshot.refs.values() {
        let mut object = repo
            .find_object(oid(target), None)
            .map_err(|_| missing(oid(target)))?;
        while object.kind() == Some(ObjectType::Tag) {
            let tag = object.into_tag().map_err(|o| missing(o.id()))?;
            let target_id = tag.target_id();
            object = tag.target().map_err(|_| missing(target_id))?;
        }
        match object.kind() {
            Some(ObjectType::Commit) => {
                walk.push(object.id()).map_err(|_| missing(object.id()))?;
                pushed = true;
            }
            Some(ObjectType::Tree) => {
                check_tree(repo, &odb, object.id(), &mut HashSet::new(), &missing)?
            }
            _ => {}
        }
    }
    for k in known {
        if let Ok(commit) = repo.find_object(*k, None).and_then(|o| o.peel_to_commit()) {
            let _ = walk.hide(commit.id());
        }
    }
    if !pushed {
        return Ok(());
    }
    let mut checked = HashSet::new();
    for commit_id in walk {
        // A walk error means a parent is missing.
        let commit_id = commit_id.map_err(|e| StorageError::Incomplete {
            repository: id,
            reason: e.message().to_owned(),
        })?;
        let commit = repo
            .find_commit(commit_id)
            .map_err(|_| missing(commit_id))?;
        for parent in commit.parent_ids() {
            if !odb.exists(parent) {
                return Err(missing(parent));
            }
        }
        check_tree(repo, &odb, commit.tree_id(), &mut checked, &missing)?;
    }
    Ok(())
}

fn check_tree(
    repo: &Repository,
    odb: &git2::Odb<'_>,
    tree_id: Oid,
    checked: &mut HashSet<Oid>,
    missing: &dyn Fn(Oid) -> StorageError,
) -> Result<(), StorageError> {
    if !checked.insert(tree_id) {
        return Ok(());
    }
    let tree = repo.find_tree(tree_id).map_err(|_| missing(tree_id))?;
    for entry in tree.iter() {
        if entry.filemode() == GITLINK_MODE {
            continue;
        }
        match entry.kind() {
            Some(ObjectType::Tree) => check_tree(repo, odb, entry.id(), checked, missing)?,
            _ => {
                if !odb.exists(entry.id()) {
                    return Err(missing(entry.id()));
                }
            }
        }
    }
    Ok(())
}

/// Points the git refs (branches, tags, HEAD) at `snapshot`'s, in one transaction.
fn apply_refs(repo: &Repository, snapshot: &SignedRefs) -> Result<(), StorageError> {
    let wanted: BTreeMap<&str, Oid> = snapshot
        .refs
        .iter()
        .map(|(n, t)| (n.as_str(), oid(t)))
        .collect();
    let mut current: BTreeMap<String, Oid> = BTreeMap::new();
    for glob in ["refs/heads/*", "refs/tags/*"] {
        for r in repo
            .references_glob(glob)
            .map_err(git("listing refs"))?
            .flatten()
        {
            if let (Ok(name), Some(target)) = (r.name(), r.target()) {
                current.insert(name.to_owned(), target);
            }
        }
    }
    let mut tx = repo
        .transaction()
        .map_err(git("starting a ref transaction"))?;
    let message = format!("guts: snapshot {}", snapshot.sequence());
    for (name, target) in &wanted {
        if current.get(*name) != Some(target) {
            tx.lock_ref(name).map_err(git(format!("locking {name}")))?;
            tx.set_target(name, *target, None, &message)
                .map_err(git(format!("moving {name}")))?;
        }
    }
    for name in current.keys().filter(|n| !wanted.contains_key(n.as_str())) {
        tx.lock_ref(name).map_err(git(format!("locking {name}")))?;
        tx.remove(name).map_err(git(format!("deleting {name}")))?;
    }
    tx.commit().map_err(git("moving refs"))?;
    if let Some(head) = &snapshot.signed.header.head {
        repo.set_head(head.as_str()).map_err(git("setting HEAD"))?;
    }
    Ok(())
}

/// Where an incoming pack is indexed until it is verified.
struct Quarantine {
    dir: PathBuf,
}

impl Quarantine {
    fn new(repo_dir: &Path) -> Result<Self, StorageError> {
        Self::with_prefix(repo_dir, QUARANTINE_PREFIX)
    }

    fn with_prefix(repo_dir: &Path, prefix: &str) -> Result<Self, StorageError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| StorageError::Randomness(e.to_string()))?;
        let dir = repo_dir.join(format!("{prefix}{}", hex::encode(random)));
        fs::create_dir_all(dir.join("pack")).map_err(|source| StorageError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Quarantine { dir })
    }

    fn pack_dir(&self) -> PathBuf {
        self.dir.join("pack")
    }

    /// Moves the verified pack into the repository: the `.pack` first, then its index,
    /// so no index ever points at a missing pack.
    fn promote(self, pack_dir: &Path) -> Result<(), StorageError> {
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
        for file in ordered {
            let to = pack_dir.join(file.file_name().unwrap_or_default());
            fs::rename(file, &to).map_err(|source| StorageError::Write { path: to, source })?;
        }
        sync_dir(pack_dir);
        Ok(())
    }
}

impl Drop for Quarantine {
    fn drop(&mut self) {
        // Verified or not, the quarantine goes; unverified objects go with it.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Replaces `path` with `contents` all at once: a temporary file, fsynced, renamed over.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::Signature;

    /// A working repository with history: main with a merge from a feature branch, an
    /// annotated and a lightweight tag.
    struct Fixture {
        _dir: tempfile::TempDir,
        repo: Repository,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repository::init(dir.path().join("demo")).unwrap();
            let fx = Fixture { _dir: dir, repo };
            let c1 = fx.commit("refs/heads/main", &[("README", "hello\n")], &[]);
            let c2 = fx.commit(
                "refs/heads/main",
                &[("README", "hello\nworld\n"), ("src/a.rs", "fn a() {}\n")],
                &[c1],
            );
            let f1 = fx.commit(
                "refs/heads/feature",
                &[("README", "hello\n"), ("src/b.rs", "fn b() {}\n")],
                &[c1],
            );
            let m = fx.commit(
                "refs/heads/main",
                &[
                    ("README", "hello\nworld\n"),
                    ("src/a.rs", "fn a() {}\n"),
                    ("src/b.rs", "fn b() {}\n"),
                ],
                &[c2, f1],
            );
            {
                let sig = Signature::now("T", "t@example.com").unwrap();
                let obj = fx.repo.find_object(m, None).unwrap();
                fx.repo.tag("v1", &obj, &sig, "release 1", false).unwrap();
                fx.repo
                    .reference("refs/tags/v0", c1, false, "light")
                    .unwrap();
                fx.repo.set_head("refs/heads/main").unwrap();
            }
            fx
        }

        fn path(&self) -> &Path {
            self.repo.workdir().unwrap()
        }

        fn commit(&self, branch: &str, files: &[(&str, &str)], parents: &[Oid]) -> Oid {
            let mut index = git2::Index::new().unwrap();
            for (name, content) in files {
                let blob = self.repo.blob(content.as_bytes()).unwrap();
                let mut entry = git2::IndexEntry {
                    ctime: git2::IndexTime::new(0, 0),
                    mtime: git2::IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode: 0o100644,
                    uid: 0,
                    gid: 0,
                    file_size: content.len() as u32,
                    id: blob,
                    flags: 0,
                    flags_extended: 0,
                    path: name.as_bytes().to_vec(),
                };
                entry.flags = name.len() as u16 & 0xfff;
                index.add(&entry).unwrap();
            }
            let tree = self
                .repo
                .find_tree(index.write_tree_to(&self.repo).unwrap())
                .unwrap();
            let parents: Vec<_> = parents
                .iter()
                .map(|p| self.repo.find_commit(*p).unwrap())
                .collect();
            let parent_refs: Vec<_> = parents.iter().collect();
            let sig = Signature::now("T", "t@example.com").unwrap();
            let c = self
                .repo
                .commit(None, &sig, &sig, "change", &tree, &parent_refs)
                .unwrap();
            self.repo.reference(branch, c, true, "commit").unwrap();
            c
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn store() -> (tempfile::TempDir, Repositories) {
        let dir = tempfile::tempdir().unwrap();
        let repos = Repositories::new(dir.path());
        (dir, repos)
    }

    /// Builds the pack `from` would send for `snapshot` to `to`.
    fn pack_for(from: &Repositories, to: &Repositories, snapshot: &SignedRefs) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        from.build_pack(
            &snapshot.repository(),
            &to.wants(snapshot).unwrap(),
            &to.haves(&snapshot.repository()).unwrap(),
            &mut |_| {},
            &mut |c| {
                chunks.push(c.to_vec());
                true
            },
        )
        .unwrap();
        chunks
    }

    fn accept(
        to: &Repositories,
        snapshot: &SignedRefs,
        chunks: Vec<Vec<u8>>,
    ) -> Result<PackStats, StorageError> {
        let mut it = chunks.into_iter().map(Ok);
        to.accept(snapshot, Some(&mut it), &mut |_| {})
    }

    fn git_refs(repos: &Repositories, id: &RepositoryId) -> BTreeMap<String, Oid> {
        let repo = Repository::open_bare(repos.path(id)).unwrap();
        let mut out = BTreeMap::new();
        for r in repo.references().unwrap().flatten() {
            if let (Ok(n), Some(t)) = (r.name(), r.target()) {
                out.insert(n.to_owned(), t);
            }
        }
        out
    }

    fn pack_files(repos: &Repositories, id: &RepositoryId) -> usize {
        fs::read_dir(repos.path(id).join("objects/pack"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn fsck(path: &Path) {
        let out = std::process::Command::new("git")
            .args(["fsck", "--full", "--strict"])
            .current_dir(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git fsck: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn import_signs_branches_tags_and_head() {
        let fx = Fixture::new();
        let (_d, repos) = store();
        let imported = repos.import(fx.path(), None, &key(1)).unwrap();
        assert!(imported.changed);
        let s = imported.snapshot;
        s.verify().unwrap();
        assert_eq!(s.sequence(), 1);
        assert_eq!(s.signed.header.name.as_str(), "demo");
        let names: Vec<&str> = s.refs.keys().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "refs/heads/feature",
                "refs/heads/main",
                "refs/tags/v0",
                "refs/tags/v1"
            ]
        );
        assert_eq!(
            s.signed.header.head.as_ref().unwrap().as_str(),
            "refs/heads/main"
        );
        assert_eq!(repos.list().unwrap(), vec![s.repository()]);
        assert_eq!(repos.signed_refs(&s.repository()).unwrap().unwrap(), s);
        fsck(&repos.path(&s.repository()));
        // Nothing changed: no new snapshot.
        assert!(!repos.import(fx.path(), None, &key(1)).unwrap().changed);
        // A new commit: sequence 2.
        let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
        fx.commit("refs/heads/main", &[("README", "more\n")], &[main]);
        let again = repos.import(fx.path(), None, &key(1)).unwrap();
        assert!(again.changed);
        assert_eq!(again.snapshot.sequence(), 2);
    }

    #[test]
    fn import_errors_name_the_path() {
        let (_d, repos) = store();
        let dir = tempfile::tempdir().unwrap();
        let err = repos.import(dir.path(), None, &key(1)).unwrap_err();
        assert!(
            matches!(err, StorageError::NotAGitRepository { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&dir.path().display().to_string()));
        let empty = Repository::init(dir.path().join("empty")).unwrap();
        let err = repos
            .import(empty.workdir().unwrap(), None, &key(1))
            .unwrap_err();
        assert!(matches!(err, StorageError::NothingToImport { .. }), "{err}");
    }

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
            packs_before + 2,
            "only the verified pack was added"
        );
        assert!(fs::read_dir(replica.path(&id)).unwrap().flatten().all(|e| {
            !e.file_name()
                .to_string_lossy()
                .starts_with(QUARANTINE_PREFIX)
        }));
    }

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
    fn recover_restores_the_verified_state() {
        let fx = Fixture::new();
        let (_a, repos) = store();
        let s = repos.import(fx.path(), None, &key(1)).unwrap().snapshot;
        let id = s.repository();
        let path = repos.path(&id);
        // What a crash can leave: a quarantine, a pack without its index, a moved ref.
        fs::create_dir_all(path.join(format!("{QUARANTINE_PREFIX}x/pack"))).unwrap();
        fs::write(path.join("objects/pack/pack-dead.pack"), b"junk").unwrap();
        let repo = Repository::open_bare(&path).unwrap();
        let c1 = s.refs[&"refs/tags/v0".parse::<RefName>().unwrap()];
        repo.reference("refs/heads/main", oid(&c1), true, "crash")
            .unwrap();
        repo.reference("refs/heads/stray", oid(&c1), true, "crash")
            .unwrap();
        repos.recover().unwrap();
        let refs = git_refs(&repos, &id);
        let expected: BTreeMap<String, Oid> = s
            .refs
            .iter()
            .map(|(n, t)| (n.to_string(), oid(t)))
            .collect();
        assert_eq!(refs, expected);
        assert!(!path.join(format!("{QUARANTINE_PREFIX}x")).exists());
        assert!(!path.join("objects/pack/pack-dead.pack").exists());
        fsck(&path);
    }

    #[test]
    fn follows_persist() {
        let (_d, repos) = store();
        let id = RepositoryId::from_bytes([4; 20]);
        assert!(repos.follow(&id).unwrap());
        assert!(!repos.follow(&id).unwrap());
        assert_eq!(repos.followed().unwrap(), vec![id]);
    }
}
