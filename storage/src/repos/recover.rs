//! Crash recovery: [`Repositories::recover`] puts every repository back to the state of
//! its last verified snapshot.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::TryLockError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use git2::Repository;
use guts_protocol::RepositoryId;

use super::ingest::apply_refs;
use super::{
    PUSH_PREFIX, QUARANTINE_PREFIX, REPACK_PREFIX, Recovered, Repositories, SIGNED_REFS_FILE, git,
};
use crate::StorageError;
use crate::fs::sync_dir;

/// Refs an earlier version of import used as a staging area; cleared by recovery.
const IMPORT_NAMESPACE: &str = "refs/guts-import/";

/// File beside the store that says the last node closed it with no write under way
/// ([`Repositories::close`]). A start that finds it skips the walk of every repository;
/// one that does not (a crash, a kill, an older version) walks them all.
const CLEAN_FILE: &str = "clean-shutdown";

/// How often [`Repositories::close`] looks again at a lock a writer still holds.
const CLOSE_POLL: Duration = Duration::from_millis(10);

impl Repositories {
    /// Brings every repository back to its last verified state after a crash: removes
    /// stale lock files, quarantines and half-moved packs, and points the git refs at the
    /// snapshot. A repository that cannot be brought back is set aside rather than
    /// stopping the node; one a crash left without a snapshot is removed. Runs while the
    /// data dir is locked by this process, so no lock file can belong to a live writer.
    ///
    /// After a clean shutdown only the cheap part runs (half-created repositories), so
    /// a node with many repositories starts at once. [`Self::recover_start`] and
    /// [`Self::recover_pending`] are the same in two steps, the second one in the
    /// background.
    pub fn recover(&self) -> Result<Recovered, StorageError> {
        let mut recovered = self.recover_start()?;
        let walked = self.recover_pending()?;
        recovered.set_aside.extend(walked.set_aside);
        recovered.stale_locks.extend(walked.stale_locks);
        Ok(recovered)
    }

    /// The part of [`Self::recover`] that must come before anything reads the store:
    /// clones and copies of an earlier run cleared, half-created repositories removed.
    /// After a crash, every repository is then pending: [`Self::recover_pending`] walks
    /// them, and until it reaches one, the first write to it recovers it first.
    pub fn recover_start(&self) -> Result<Recovered, StorageError> {
        *self
            .recovery_started
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(std::time::SystemTime::now());
        let marker = self.clean_marker();
        let clean = match fs::remove_file(&marker) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(source) => {
                return Err(StorageError::Write {
                    path: marker,
                    source,
                });
            }
        };
        if clean {
            // Gone for good before the first write: a crash from here on must not look
            // like a clean shutdown at the next start.
            let dir = self.root.parent().unwrap_or(&self.root);
            sync_dir(dir).map_err(|source| StorageError::Write {
                path: dir.to_owned(),
                source,
            })?;
        }
        // Clones an import left behind (a crash, a kill): never imported, of no use.
        let _ = fs::remove_dir_all(self.imports_root());
        // Published copies are remade when first asked for (their alternates name the
        // store's absolute path, which may have moved).
        let _ = fs::remove_dir_all(self.published_root());
        let dirs = self.repository_dirs()?;
        let mut recovered = Recovered {
            after_crash: !clean && !dirs.is_empty(),
            ..Recovered::default()
        };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (id, path) in dirs {
            if !path.join(SIGNED_REFS_FILE).exists() {
                fs::remove_dir_all(&path).map_err(|source| StorageError::Write {
                    path: path.clone(),
                    source,
                })?;
                recovered.incomplete.push(id);
            } else if !clean {
                pending.insert(id);
            }
        }
        Ok(recovered)
    }

    /// Recovers every repository still pending after [`Self::recover_start`], each under
    /// its write lock (a write that came first has done it). Blocking.
    pub fn recover_pending(&self) -> Result<Recovered, StorageError> {
        let ids: Vec<RepositoryId> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        let mut recovered = Recovered::default();
        for id in ids {
            if self.closed.load(Ordering::SeqCst) {
                break;
            }
            let lock = self.lock(&id);
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(aside) = self.recover_if_pending(&id, &mut recovered.stale_locks)? {
                recovered.set_aside.push(aside);
            }
        }
        Ok(recovered)
    }

    /// How many repositories are still to be recovered.
    pub fn recovering(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Recovers `id` if it is pending, for a caller holding its write lock; where it was
    /// set aside and why, if it could not be.
    pub(super) fn recover_if_pending(
        &self,
        id: &RepositoryId,
        stale_locks: &mut Vec<PathBuf>,
    ) -> Result<Option<(RepositoryId, PathBuf, StorageError)>, StorageError> {
        if !self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
        {
            return Ok(None);
        }
        let path = self.path(id);
        let outcome = match self.recover_one(id, &path, stale_locks) {
            Ok(()) => None,
            Err(e) => {
                let aside = self.set_aside_dir().join(format!(
                    "{id}-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or_default()
                ));
                fs::create_dir_all(self.set_aside_dir())
                    .and_then(|()| fs::rename(&path, &aside))
                    .map_err(|source| StorageError::Write {
                        path: aside.clone(),
                        source,
                    })?;
                Some((*id, aside, e))
            }
        };
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(outcome)
    }

    /// Closes the store for shutdown: refuses every write from now on, waits up to
    /// `wait` for those under way, and, if they all finished and no push area is left,
    /// records a clean shutdown so the next [`Self::recover`] can skip the walk.
    /// Returns whether it did. Blocking.
    pub fn close(&self, wait: Duration) -> Result<bool, StorageError> {
        self.closed.store(true, Ordering::SeqCst);
        let locks: Vec<_> = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let deadline = Instant::now() + wait;
        for lock in locks {
            loop {
                match lock.try_lock() {
                    Ok(_) => break,
                    // A writer panicked mid-write: leave it to the next start's walk.
                    Err(TryLockError::Poisoned(_)) => return Ok(false),
                    Err(TryLockError::WouldBlock) if Instant::now() >= deadline => {
                        return Ok(false);
                    }
                    Err(TryLockError::WouldBlock) => std::thread::sleep(CLOSE_POLL),
                }
            }
        }
        // A push area outlives its lock (git writes into it before the push is applied).
        for (_, path) in self.repository_dirs()? {
            let Ok(entries) = fs::read_dir(&path) else {
                continue;
            };
            let busy = entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(PUSH_PREFIX));
            if busy {
                return Ok(false);
            }
        }
        let marker = self.clean_marker();
        let dir = self.root.parent().unwrap_or(&self.root);
        fs::File::create(&marker)
            .and_then(|f| f.sync_all())
            .and_then(|()| sync_dir(dir))
            .map_err(|source| StorageError::Write {
                path: marker.clone(),
                source,
            })?;
        Ok(true)
    }

    fn clean_marker(&self) -> PathBuf {
        self.root.with_file_name(CLEAN_FILE)
    }

    /// Where repositories that could not be recovered go (beside the store).
    fn set_aside_dir(&self) -> PathBuf {
        self.root.with_file_name("set-aside")
    }

    fn recover_one(
        &self,
        id: &RepositoryId,
        path: &Path,
        stale_locks: &mut Vec<PathBuf>,
    ) -> Result<(), StorageError> {
        remove_lock_files(path, stale_locks);
        let started = self
            .recovery_started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(std::time::SystemTime::now);
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let work = name.starts_with(QUARANTINE_PREFIX)
                    || name.starts_with(REPACK_PREFIX)
                    || name.starts_with(PUSH_PREFIX);
                // A push area made since recovery started (a user's push under way
                // while the walk runs in the background) is not a crash's leftover.
                let before_start = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < started);
                if work && before_start {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let pack_dir = path.join("objects").join("pack");
        if let Ok(entries) = fs::read_dir(&pack_dir) {
            for entry in entries.flatten() {
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "pack") && !p.with_extension("idx").exists() {
                    let _ = fs::remove_file(&p);
                }
            }
        }
        let held = self.held(id)?.ok_or(StorageError::UnknownRepository(*id))?;
        let repo =
            Repository::open_bare(path).map_err(git(format!("opening {}", path.display())))?;
        clear_namespace(&repo, IMPORT_NAMESPACE)?;
        apply_refs(&repo, &held)?;
        // Every ref target must be readable: a store that lost objects is not recovered.
        for target in &held.targets() {
            repo.find_object(super::oid(target), None)
                .map_err(git(format!("reading {target} in {}", path.display())))?;
        }
        Ok(())
    }
}

/// Removes the `*.lock` files git and libgit2 leave when killed mid-update (`HEAD.lock`,
/// `packed-refs.lock`, `config.lock`, `refs/**/*.lock`), which would otherwise make every
/// later update of that ref fail. Objects are not walked: nothing there is a lock.
fn remove_lock_files(repo: &Path, removed: &mut Vec<PathBuf>) {
    let mut dirs = vec![repo.to_owned()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if path != repo.join("objects") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "lock")
                && fs::remove_file(&path).is_ok()
            {
                removed.push(path);
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;

    use git2::{Oid, Repository};
    use guts_protocol::RefName;

    use std::time::Duration;

    use crate::StorageError;
    use crate::repos::test_support::{Fixture, fsck, git_refs, key, store};
    use crate::repos::{QUARANTINE_PREFIX, Repositories, oid};

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
    fn after_a_crash_a_write_recovers_its_repository_first_and_the_walk_spares_new_work() {
        let fx = Fixture::new();
        let (dir, repos) = store();
        let s = repos.import(fx.path(), None, &key(1)).unwrap().snapshot;
        let id = s.repository();
        let other = repos
            .import(fx.path(), Some("other".parse().unwrap()), &key(1))
            .unwrap()
            .snapshot
            .repository();
        // A kill: no clean marker; a writer's lock left in each repository.
        for r in [&id, &other] {
            fs::write(repos.path(r).join("packed-refs.lock"), b"").unwrap();
        }
        let restarted = Repositories::new(dir.path());
        let started = restarted.recover_start().unwrap();
        assert!(started.after_crash);
        assert_eq!(restarted.recovering(), 2, "both wait for the walk");

        // A write to one not reached yet recovers it first.
        let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
        fx.commit("refs/heads/main", &[("later", "later\n")], &[main]);
        let changed = restarted.import(fx.path(), None, &key(1)).unwrap();
        assert!(changed.changed);
        assert_eq!(restarted.recovering(), 1);

        // A push area made now is the user's, not a crash's: the walk leaves it.
        let area = restarted.create_staging(&other, &key(1)).unwrap();
        let walked = restarted.recover_pending().unwrap();
        assert_eq!(restarted.recovering(), 0);
        assert!(walked.set_aside.is_empty());
        assert!(!repos.path(&other).join("packed-refs.lock").exists());
        assert!(area.exists(), "a push under way keeps its area");
        fsck(&repos.path(&id));
        fsck(&repos.path(&other));
    }

    #[test]
    fn stale_locks_go_half_created_repositories_go_broken_ones_are_set_aside() {
        let fx = Fixture::new();
        let (dir, repos) = store();
        let s = repos.import(fx.path(), None, &key(1)).unwrap().snapshot;
        let id = s.repository();
        let path = repos.path(&id);
        // A writer killed mid-update leaves its locks; git then refuses that ref.
        for lock in [
            "HEAD.lock",
            "packed-refs.lock",
            "refs/heads/main.lock",
            "config.lock",
        ] {
            fs::write(path.join(lock), b"").unwrap();
        }
        let repo = Repository::open_bare(&path).unwrap();
        let c1 = s.refs[&"refs/tags/v0".parse::<RefName>().unwrap()];
        assert!(
            repo.reference("refs/heads/main", oid(&c1), true, "blocked")
                .is_err(),
            "a stale lock blocks the ref"
        );
        // A repository created by a fetch the crash cut short: no snapshot, a quarantine.
        let half_id: guts_protocol::RepositoryId =
            "0123456789abcdefghijklmnopqrstuv".parse().unwrap();
        let half = repos.path(&half_id);
        fs::create_dir_all(half.join(format!("{QUARANTINE_PREFIX}y/pack"))).unwrap();
        fs::write(
            half.join(format!("{QUARANTINE_PREFIX}y/pack/p.pack")),
            vec![0; 4096],
        )
        .unwrap();
        // A second repository whose objects are gone.
        let fx2 = Fixture::new();
        let main = fx2.repo.refname_to_id("refs/heads/main").unwrap();
        fx2.commit("refs/heads/main", &[("OTHER", "x\n")], &[main]);
        let broken = repos
            .import(fx2.path(), Some("other".parse().unwrap()), &key(1))
            .unwrap();
        let broken_id = broken.snapshot.repository();
        let broken_path = repos.path(&broken_id);
        fs::remove_dir_all(broken_path.join("objects")).unwrap();
        fs::create_dir_all(broken_path.join("objects/pack")).unwrap();

        let recovered = repos.recover().unwrap();
        let mut removed: Vec<String> = recovered
            .stale_locks
            .iter()
            .map(|p| p.strip_prefix(&path).unwrap().display().to_string())
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            [
                "HEAD.lock",
                "config.lock",
                "packed-refs.lock",
                "refs/heads/main.lock"
            ]
        );
        repo.reference("refs/heads/main", oid(&c1), true, "unblocked")
            .unwrap();
        assert!(!half.exists(), "the half-created repository is gone");
        assert_eq!(recovered.incomplete.len(), 1);
        assert_eq!(recovered.set_aside.len(), 1, "{:?}", recovered.set_aside);
        let (aside_id, aside, _) = &recovered.set_aside[0];
        assert_eq!(*aside_id, broken_id);
        assert!(aside.starts_with(dir.path().join("set-aside")) && aside.exists());
        assert!(!broken_path.exists());
        assert_eq!(repos.list().unwrap(), vec![id], "the good repository stays");
        // Recovering again finds nothing more to do and the store is sound.
        repos.recover().unwrap();
        fsck(&path);
    }

    #[test]
    fn a_clean_close_lets_the_next_start_skip_the_walk_once() {
        let fx = Fixture::new();
        let (dir, repos) = store();
        let id = repos
            .import(fx.path(), None, &key(1))
            .unwrap()
            .snapshot
            .repository();
        let lock = repos.path(&id).join("HEAD.lock");

        assert!(
            repos.close(Duration::from_secs(1)).unwrap(),
            "nothing under way"
        );
        assert!(matches!(
            repos.import(fx.path(), None, &key(1)),
            Err(StorageError::Closed)
        ));
        assert!(matches!(
            repos.create_staging(&id, &key(1)),
            Err(StorageError::Closed)
        ));

        // The next node: a lock file only a crash leaves is not looked for...
        let repos = Repositories::new(dir.path());
        fs::write(&lock, b"").unwrap();
        let recovered = repos.recover().unwrap();
        assert!(!recovered.after_crash && recovered.stale_locks.is_empty());
        assert!(
            lock.exists(),
            "a clean start does not walk the repositories"
        );
        // ...but the marker is used up: without another close, the start after is full.
        let recovered = repos.recover().unwrap();
        assert!(recovered.after_crash);
        assert_eq!(recovered.stale_locks, vec![lock.clone()]);
        assert!(!lock.exists());
    }

    #[test]
    fn a_close_with_a_push_under_way_is_not_clean() {
        let fx = Fixture::new();
        let (dir, repos) = store();
        let id = repos
            .import(fx.path(), None, &key(1))
            .unwrap()
            .snapshot
            .repository();
        let area = repos.create_staging(&id, &key(1)).unwrap();
        assert!(!repos.close(Duration::from_secs(1)).unwrap());
        let recovered = Repositories::new(dir.path()).recover().unwrap();
        assert!(
            recovered.after_crash,
            "the push area is cleared by a full walk"
        );
        assert!(!area.exists());
    }

    #[test]
    fn a_close_waits_for_a_write_under_way() {
        let fx = Fixture::new();
        let (_dir, repos) = store();
        let id = repos
            .import(fx.path(), None, &key(1))
            .unwrap()
            .snapshot
            .repository();
        let lock = repos.lock(&id);
        let held = lock.lock().unwrap();
        assert!(
            !repos.close(Duration::from_millis(50)).unwrap(),
            "a writer still holds the lock"
        );
        drop(held);
        assert!(repos.close(Duration::from_millis(50)).unwrap());
    }
}
