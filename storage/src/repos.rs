//! The repositories a node holds: one directory per repository id under `repos/`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use guts_protocol::wire::{self, MAX_RESPONSE_SIZE};
use guts_protocol::{RepositoryId, SignedRefs};

use crate::StorageError;

/// File holding a repository's latest verified snapshot.
const SIGNED_REFS_FILE: &str = "signed-refs";

/// The repositories under a data dir.
#[derive(Debug, Clone)]
pub struct Repositories {
    root: PathBuf,
}

impl Repositories {
    /// The repositories under `data_dir/repos`.
    pub fn new(data_dir: &Path) -> Self {
        Repositories {
            root: data_dir.join("repos"),
        }
    }

    fn dir(&self, id: &RepositoryId) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// The latest verified snapshot of `id`, if this node holds the repository.
    pub fn signed_refs(&self, id: &RepositoryId) -> Result<Option<SignedRefs>, StorageError> {
        let path = self.dir(id).join(SIGNED_REFS_FILE);
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
}
