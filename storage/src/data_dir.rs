use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

use crate::StorageError;
use crate::identity::{IDENTITY_FILE, Identity};

/// Name of the lock file held by the node that owns a data dir.
const LOCK_FILE: &str = "lock";

/// Slots [`DataDir::claim_slot`] tries: far more nodes than one volume should serve.
const MAX_SLOTS: u32 = 256;

/// A node's data dir: its identity and (later) its repositories.
///
/// [`DataDir::open`] takes an exclusive lock for the life of the value, so two nodes never
/// share a data dir (they would share an identity and corrupt each other's repositories).
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    // Held for its lock; released when dropped.
    _lock: Option<File>,
}

impl DataDir {
    /// Opens (creating if needed) the data dir at `root` and locks it for this process.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        create_private_dir(&root)?;
        let lock_path = root.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StorageError::NotWritable {
                path: root.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StorageError::Locked {
                    path: root,
                    lock: lock_path,
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(StorageError::NotWritable { path: root, source });
            }
        }
        Ok(DataDir {
            root,
            _lock: Some(lock),
        })
    }

    /// Opens the first `node-N` directory under `pool` that no running node holds.
    ///
    /// Lets the replicas of a scaled service share one volume: each keeps its own
    /// identity and repositories, and a restarted replica takes back the slot it left.
    pub fn claim_slot(pool: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let pool = pool.into();
        create_private_dir(&pool)?;
        for n in 1..=MAX_SLOTS {
            match DataDir::open(pool.join(format!("node-{n}"))) {
                Err(StorageError::Locked { .. }) => continue,
                other => return other,
            }
        }
        Err(StorageError::NoFreeSlot {
            pool,
            slots: MAX_SLOTS,
        })
    }

    /// Opens the data dir without locking it, for read-mostly tools (e.g. `guts id`) that
    /// may run beside a node.
    pub fn open_unlocked(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        create_private_dir(&root)?;
        Ok(DataDir { root, _lock: None })
    }

    /// The data dir's path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The repositories this node holds.
    pub fn repositories(&self) -> crate::Repositories {
        crate::Repositories::new(&self.root)
    }

    /// The node identity, created on first use.
    pub fn identity(&self) -> Result<Identity, StorageError> {
        Identity::load_or_create(&self.root.join(IDENTITY_FILE))
    }
}

/// Creates `dir` (and parents) with mode 0700 when it does not exist yet, and refuses it
/// if another user owns it or can change it (see [`crate::ownership`]).
fn create_private_dir(dir: &Path) -> Result<(), StorageError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|source| StorageError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    if !dir.is_dir() {
        return Err(StorageError::CreateDir {
            path: dir.to_owned(),
            source: std::io::Error::other("exists and is not a directory"),
        });
    }
    crate::ownership::check(dir, crate::ownership::Kind::Dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_of_a_locked_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DataDir::open(tmp.path()).unwrap();
        let err = DataDir::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
        assert!(err.to_string().contains(&tmp.path().display().to_string()));
        drop(first);
        DataDir::open(tmp.path()).expect("lock is released on drop");
    }

    #[test]
    fn slots_go_to_distinct_nodes_and_a_freed_slot_is_taken_back() {
        let tmp = tempfile::tempdir().unwrap();
        let a = DataDir::claim_slot(tmp.path()).unwrap();
        let b = DataDir::claim_slot(tmp.path()).unwrap();
        let c = DataDir::claim_slot(tmp.path()).unwrap();
        assert_eq!(a.path(), tmp.path().join("node-1"));
        assert_eq!(b.path(), tmp.path().join("node-2"));
        assert_eq!(c.path(), tmp.path().join("node-3"));
        let b_id = b.identity().unwrap().signing_key().verifying_key();
        drop(b);
        let again = DataDir::claim_slot(tmp.path()).unwrap();
        assert_eq!(again.path(), tmp.path().join("node-2"));
        assert_eq!(
            again.identity().unwrap().signing_key().verifying_key(),
            b_id
        );
    }

    #[test]
    fn a_file_in_the_way_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = DataDir::open(file.join("data")).unwrap_err();
        assert!(matches!(err, StorageError::CreateDir { .. }), "{err}");
        assert!(err.to_string().contains("file/data"), "{err}");
    }
}
