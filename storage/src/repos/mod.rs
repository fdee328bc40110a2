//! The repositories a node holds: one bare git repository per repository id under
//! `repos/`, with the owner's latest verified snapshot beside its objects.
//!
//! Everything that reaches a repository goes through [`Repositories::accept`]: the pack
//! (if any) is indexed by git's index-pack into a quarantine directory, which hashes every
//! object as it is written; the snapshot's signature, sequence and the connectivity of every ref
//! target are then checked against the repository plus the quarantine; only then do the
//! pack files move into `objects/pack`, the git refs move and the snapshot file is
//! replaced. A crash at any point leaves the previous verified state once
//! [`Repositories::recover`] has run: unreferenced objects at worst, which git tolerates.

mod author;
pub(crate) mod changes;
#[cfg(test)]
mod changes_tests;
pub(crate) mod check_workers;
pub(crate) mod collab;
#[cfg(test)]
mod collab_tests;
mod contribute;
pub(crate) mod entry_rules;
mod following;
pub(crate) mod forks;
#[cfg(test)]
mod forks_tests;
pub(crate) mod held;
pub(crate) mod import_source;
mod ingest;
mod packed_refs;
mod packer;
pub(crate) mod published;
#[cfg(test)]
mod published_tests;
mod recover;
mod ref_updates;
mod scan;
pub(crate) mod sealed;
#[cfg(test)]
mod sealed_tests;
mod serve;
pub(crate) mod shared;
mod store_guard;
#[cfg(test)]
mod test_support;
mod trees;
pub(crate) mod verify;
mod visibility;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use git2::Oid;
use guts_protocol::{ObjectId, RepositoryId, SignedRefs};

use crate::StorageError;

/// File (inside the bare repository) holding the latest verified snapshot.
const SIGNED_REFS_FILE: &str = "guts-signed-refs";
/// Prefix of quarantine directories inside a repository (packs being received).
const QUARANTINE_PREFIX: &str = "guts-quarantine-";
/// Prefix of push areas (bare repositories borrowing the objects) inside a repository.
const PUSH_PREFIX: &str = "guts-push-";
/// Prefix of directories where a repack writes its new pack.
const REPACK_PREFIX: &str = "guts-repack-";

/// File (in the data dir) listing followed repositories, one id per line.
const FOLLOWING_FILE: &str = "following";

/// What this node keeps of other keys' changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePolicy {
    /// Keys whose changes are neither stored nor passed on.
    pub blocked: std::collections::BTreeSet<[u8; 32]>,
    /// Most objects (patches, issues) one key other than a maintainer opens in one
    /// repository.
    pub max_objects_per_key: usize,
    /// Most changes one key other than a maintainer makes in one repository.
    pub max_changes_per_key: usize,
    /// How many contributors' forks of one repository are kept, and how large.
    pub forks: guts_protocol::ForkLimits,
    /// Only the maintainers' changes and no forks, as if the maintainers had turned
    /// contributions off (this node's seeding policy for one repository).
    pub maintainers_only: bool,
}

impl Default for ChangePolicy {
    fn default() -> Self {
        ChangePolicy {
            blocked: std::collections::BTreeSet::new(),
            max_objects_per_key: 1_000,
            max_changes_per_key: 10_000,
            forks: guts_protocol::ForkLimits::default(),
            maintainers_only: false,
        }
    }
}

/// What [`Repositories::recover`] found and did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Repositories that could not be put back, moved out of the store so the node can
    /// start (and fetch them again): id, where they went, why.
    pub set_aside: Vec<(RepositoryId, PathBuf, StorageError)>,
    /// Repositories a crash left half created (no snapshot yet), removed.
    pub incomplete: Vec<RepositoryId>,
    /// Lock files a killed writer left behind, removed.
    pub stale_locks: Vec<PathBuf>,
    /// Whether the store held repositories and the last node did not close it cleanly,
    /// so every repository was checked (otherwise only half-created ones were looked
    /// for).
    pub after_crash: bool,
}

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
    /// The snapshot now held: with maintainers, the pusher's view.
    pub snapshot: SignedRefs,
    /// Whether the repository has maintainers (the snapshot is a view, announced as one).
    pub shared: bool,
    /// Each update, and why it was refused if it was.
    pub results: Vec<(String, Result<(), String>)>,
    /// Whether a new snapshot was signed.
    pub changed: bool,
    /// Whether the snapshot is the pusher's fork (it does not maintain the repository).
    pub fork: bool,
}

/// Counts from building or receiving a pack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Objects in the pack.
    pub objects: usize,
    /// Bytes of pack data.
    pub bytes: u64,
}

/// What a repository's data may be, whoever sent it: limits checked before and while it
/// is stored, so data that breaks one is refused whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of trees (git's `core.maxTreeDepth` is 4096 too).
    pub max_tree_depth: usize,
    /// Most objects one pack may announce.
    pub max_pack_objects: u32,
    /// Largest object (or delta) a pack may hold, inflated: the indexer holds each whole.
    pub max_object_size: u64,
    /// How many times its wire bytes a pack's objects may inflate to (past 1 GiB).
    pub max_inflation_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tree_depth: 4096,
            // The Linux kernel's history is about 10 million objects.
            max_pack_objects: 20_000_000,
            max_object_size: 512 << 20,
            // zlib alone reaches about 1000:1; deltas of real histories stay well below.
            max_inflation_ratio: 1000,
        }
    }
}

/// The repositories under a data dir.
#[derive(Debug, Clone)]
pub struct Repositories {
    root: PathBuf,
    following: PathBuf,
    // One writer per repository at a time; readers (pack building) need no lock because
    // objects are only ever added and refs move atomically.
    locks: Arc<Mutex<HashMap<RepositoryId, Arc<Mutex<()>>>>>,
    /// Set by [`Repositories::close`]: no write starts after it.
    closed: Arc<AtomicBool>,
    limits: Limits,
    /// What is kept of other keys' contributions when no caller says (see
    /// [`Repositories::with_policy`]).
    policy: Arc<std::sync::RwLock<Arc<ChangePolicy>>>,
    /// The private repositories' ids (see `visibility.rs`).
    private: Arc<visibility::PrivateIds>,
    /// The node's key, which opens the encrypted repositories it reads (see
    /// `sealed.rs`); none in a store that opens none.
    reader: Option<Arc<ed25519_dalek::SigningKey>>,
    /// The follow list, read from its file once and kept in step with it; the mutex
    /// also makes each follow's check-and-append one step.
    follows: Arc<Mutex<Option<FollowList>>>,
    /// The newest sequence of a repository seen on the network, if the node knows one:
    /// this store never signs a sequence someone else already signed with the same key.
    seen_elsewhere: SeenElsewhere,
    /// One published copy made at a time (see `published.rs`).
    publishing: Arc<Mutex<()>>,
    /// Repositories a crash left unchecked, until recovered (see `recover.rs`).
    pending: Arc<Mutex<HashSet<RepositoryId>>>,
    /// When recovery started: what a crash left behind is older.
    recovery_started: Arc<Mutex<Option<std::time::SystemTime>>>,
}

/// A lookup of sequences seen on the network (see [`Repositories::with_seen_elsewhere`]).
#[derive(Clone, Default)]
struct SeenElsewhere(Option<Arc<NewestSeen>>);

/// The newest sequence of a repository seen on the network.
type NewestSeen = dyn Fn(&RepositoryId) -> Option<u64> + Send + Sync;

impl std::fmt::Debug for SeenElsewhere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeenElsewhere")
    }
}

/// The followed repositories, in the order they were followed.
#[derive(Debug, Default)]
struct FollowList {
    order: Vec<RepositoryId>,
    set: HashSet<RepositoryId>,
}

fn git(context: impl Into<String>) -> impl FnOnce(git2::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Git { context, source }
}

/// Makes `repo` read the objects in the quarantine directory `dir` too (received packs
/// not moved in yet).
fn read_quarantine(repo: &git2::Repository, dir: &Path) -> Result<(), StorageError> {
    repo.odb()
        .and_then(|odb| odb.add_disk_alternate(&dir.to_string_lossy()))
        .map_err(git("reading the received pack"))
}

fn oid(id: &ObjectId) -> Oid {
    Oid::from_bytes(&id.0).expect("20 bytes make an oid")
}

pub(crate) fn object_id(oid: Oid) -> ObjectId {
    let mut bytes = [0u8; 20];
    bytes.copy_from_slice(oid.as_bytes());
    ObjectId(bytes)
}

fn dedup(ids: impl Iterator<Item = ObjectId>) -> Vec<ObjectId> {
    let mut seen = HashSet::new();
    ids.filter(|i| seen.insert(*i)).collect()
}

impl Repositories {
    /// The repositories under `data_dir/repos`.
    pub fn new(data_dir: &Path) -> Self {
        Repositories {
            root: data_dir.join("repos"),
            following: data_dir.join(FOLLOWING_FILE),
            locks: Arc::default(),
            closed: Arc::default(),
            limits: Limits::default(),
            policy: Arc::default(),
            private: Arc::default(),
            reader: None,
            follows: Arc::default(),
            seen_elsewhere: SeenElsewhere::default(),
            publishing: Arc::default(),
            pending: Arc::default(),
            recovery_started: Arc::default(),
        }
    }

    /// The same repositories, checked against `limits` from now on.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The same repositories, keeping others' contributions by `policy` where no caller
    /// names one (a contributor's push to its fork).
    pub fn with_policy(self, policy: ChangePolicy) -> Self {
        self.set_policy(policy);
        self
    }

    /// Puts `policy` in effect for this store and every clone of it (a reloaded
    /// seeding policy blocks more keys, or fewer).
    pub fn set_policy(&self, policy: ChangePolicy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// The policy in effect (see [`Self::set_policy`]).
    fn policy(&self) -> Arc<ChangePolicy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tells the store the newest sequence of each repository seen on the network;
    /// signing a sequence at or below it is refused ([`StorageError::BehindNetwork`]).
    pub fn with_seen_elsewhere(
        mut self,
        newest: impl Fn(&RepositoryId) -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        self.seen_elsewhere = SeenElsewhere(Some(Arc::new(newest)));
        self
    }

    /// Refuses to sign `sequence` of `id` if the network has seen it or a later one.
    fn check_not_behind(&self, id: &RepositoryId, sequence: u64) -> Result<(), StorageError> {
        match self.seen_elsewhere.0.as_ref().and_then(|f| f(id)) {
            Some(network) if network >= sequence => Err(StorageError::BehindNetwork {
                repository: *id,
                held: sequence - 1,
                network,
            }),
            _ => Ok(()),
        }
    }

    /// Bytes `id` takes on disk (its whole directory; 0 if it does not exist).
    pub fn disk_usage(&self, id: &RepositoryId) -> Result<u64, StorageError> {
        let mut total = 0u64;
        let mut dirs = vec![self.path(id)];
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StorageError::Read { path: dir, source }),
            };
            for entry in entries.flatten() {
                match entry.file_type() {
                    Ok(t) if t.is_dir() => dirs.push(entry.path()),
                    Ok(_) => total += entry.metadata().map_or(0, |m| m.len()),
                    Err(_) => {}
                }
            }
        }
        Ok(total)
    }

    /// The bare repository of `id` (whether or not it exists).
    pub fn path(&self, id: &RepositoryId) -> PathBuf {
        self.root.join(id.to_string())
    }

    fn lock(&self, id: &RepositoryId) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(*id).or_default().clone()
    }

    /// Takes `lock` (from [`Self::lock`]) to write; refused once the store is closed.
    /// The check comes after the lock is held, so [`Self::close`], which sets the flag
    /// and then takes every lock once, knows no write is left under way.
    /// A repository a crash left unchecked is recovered first.
    fn write<'a>(
        &self,
        id: &RepositoryId,
        lock: &'a Mutex<()>,
    ) -> Result<MutexGuard<'a, ()>, StorageError> {
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return Err(StorageError::Closed);
        }
        if let Some((_, _, why)) = self.recover_if_pending(id, &mut Vec::new())? {
            return Err(why);
        }
        Ok(guard)
    }

    /// Every repository this node holds a verified snapshot of.
    pub fn list(&self) -> Result<Vec<RepositoryId>, StorageError> {
        let mut ids: Vec<RepositoryId> = self
            .repository_dirs()?
            .into_iter()
            .filter(|(_, path)| path.join(SIGNED_REFS_FILE).exists())
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Deletes `id` from this store (it stays followed if it was: see
    /// [`Self::unfollow`]). The snapshot goes first, so a crash in the middle leaves a
    /// repository without one, which the next start removes. Returns false if the
    /// store did not hold it.
    pub fn remove(&self, id: &RepositoryId) -> Result<bool, StorageError> {
        let lock = self.lock(id);
        let _guard = self.write(id, &lock)?;
        let path = self.path(id);
        let write = |path: &Path| {
            let path = path.to_owned();
            move |source| StorageError::Write { path, source }
        };
        let snapshot = path.join(SIGNED_REFS_FILE);
        match fs::remove_file(&snapshot) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && !path.exists() => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(write(&snapshot)(e)),
        }
        crate::fs::sync_dir(&path).map_err(write(&path))?;
        fs::remove_dir_all(&path).map_err(write(&path))?;
        let _ = fs::remove_dir_all(self.published_root().join(id.to_string()));
        self.after_writing(id, None);
        Ok(true)
    }

    /// Every directory of the store named like a repository, snapshot or not.
    fn repository_dirs(&self) -> Result<Vec<(RepositoryId, PathBuf)>, StorageError> {
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
        Ok(entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let id = e.file_name().to_str()?.parse::<RepositoryId>().ok()?;
                Some((id, e.path()))
            })
            .collect())
    }
}
