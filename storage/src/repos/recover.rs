//! Crash recovery: [`Repositories::recover`] puts every repository back to the state of
//! its last verified snapshot.

use std::fs;
use std::path::{Path, PathBuf};

use git2::Repository;
use guts_protocol::RepositoryId;

use super::ingest::apply_refs;
use super::{
    PUSH_PREFIX, QUARANTINE_PREFIX, REPACK_PREFIX, Recovered, Repositories, SIGNED_REFS_FILE, git,
};
use crate::StorageError;

/// Refs an earlier version of import used as a staging area; cleared by recovery.
const IMPORT_NAMESPACE: &str = "refs/guts-import/";

impl Repositories {
    /// Brings every repository back to its last verified state after a crash: removes
    /// stale lock files, quarantines and half-moved packs, and points the git refs at the
    /// snapshot. A repository that cannot be brought back is set aside rather than
    /// stopping the node; one a crash left without a snapshot is removed. Runs while the
    /// data dir is locked by this process, so no lock file can belong to a live writer.
    pub fn recover(&self) -> Result<Recovered, StorageError> {
        let mut recovered = Recovered::default();
        for (id, path) in self.repository_dirs()? {
            if !path.join(SIGNED_REFS_FILE).exists() {
                fs::remove_dir_all(&path).map_err(|source| StorageError::Write {
                    path: path.clone(),
                    source,
                })?;
                recovered.incomplete.push(id);
                continue;
            }
            if let Err(e) = self.recover_one(&id, &path, &mut recovered.stale_locks) {
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
                recovered.set_aside.push((id, aside, e));
            }
        }
        Ok(recovered)
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
        if let Ok(entries) = fs::read_dir(path) {
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
                if p.extension().is_some_and(|e| e == "pack") && !p.with_extension("idx").exists() {
                    let _ = fs::remove_file(&p);
                }
            }
        }
        let snapshot = self
            .signed_refs(id)?
            .ok_or(StorageError::UnknownRepository(*id))?;
        let repo =
            Repository::open_bare(path).map_err(git(format!("opening {}", path.display())))?;
        clear_namespace(&repo, IMPORT_NAMESPACE)?;
        apply_refs(&repo, &snapshot)?;
        // Every ref target must be readable: a store that lost objects is not recovered.
        for target in snapshot.refs.values() {
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

    use crate::repos::test_support::{Fixture, fsck, git_refs, key, store};
    use crate::repos::{QUARANTINE_PREFIX, oid};

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
}
