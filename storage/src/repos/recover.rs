//! Crash recovery: [`Repositories::recover`] puts every repository back to the state of
//! its last verified snapshot.

use std::fs;

use git2::Repository;

use super::ingest::apply_refs;
use super::{PUSH_PREFIX, QUARANTINE_PREFIX, REPACK_PREFIX, Repositories, git};
use crate::StorageError;

/// Refs an earlier version of import used as a staging area; cleared by recovery.
const IMPORT_NAMESPACE: &str = "refs/guts-import/";

impl Repositories {
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
}
