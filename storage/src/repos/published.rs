//! What git serves of a public repository to anyone (the node's HTTP endpoint): a small
//! bare repository beside the store, `published/<id>/`, that borrows the store's objects
//! (`objects/info/alternates`) and holds only the canonical branches and tags, HEAD, and,
//! under `refs/guts/`, the signed record as a blob ([`RECORD_REF`]) and the maintainers'
//! views, so that a clone can be checked with `guts verify`.
//!
//! The store itself is left as it is: a record blob written into it would be a loose
//! object in every repository (no longer sent as its one clean pack) that no repack
//! keeps. Each copy is rebuilt from the record file when that file changes, and all of
//! them are dropped at start (their alternates name absolute paths).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use git2::{ObjectType, Oid, Repository};
use guts_protocol::record::{self, RECORD_REF};
use guts_protocol::{ObjectId, RepositoryId};

use super::held::{Held, VIEWS_PREFIX};
use super::packed_refs::write_packed_refs;
use super::{Repositories, SIGNED_REFS_FILE, git, object_id};
use crate::StorageError;
use crate::clone_check::PUBLISHED_VIEWS_PREFIX;
use crate::fs::write_atomically;

/// Where the published copies are, under the data dir.
pub(super) const PUBLISHED_DIR: &str = "published";
/// The hash of the record file a copy was made from.
const STAMP_FILE: &str = "guts-stamp";
/// How long a replaced record blob is kept: a fetch that was told of it (`info/refs`)
/// asks for it in its next request, at most the HTTP answer deadline later.
const OLD_RECORD_KEPT: Duration = Duration::from_secs(15 * 60);

impl Repositories {
    /// The published copy of `id` (see the module's doc), made or brought up to date
    /// from its record; `None` if this store does not hold `id`. Whether `id` may be
    /// shown to anyone is the caller's to decide first.
    pub fn published(&self, id: &RepositoryId) -> Result<Option<PathBuf>, StorageError> {
        let record_path = self.path(id).join(SIGNED_REFS_FILE);
        let bytes = match fs::read(&record_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StorageError::Read {
                    path: record_path,
                    source,
                });
            }
        };
        let stamp = Oid::hash_object(ObjectType::Blob, &bytes)
            .map_err(git("hashing the record"))?
            .to_string();
        let dir = self.published_root().join(id.to_string());
        if fs::read_to_string(dir.join(STAMP_FILE)).is_ok_and(|s| s == stamp) {
            return Ok(Some(dir));
        }
        let held = Held::decode(&bytes, &record_path)?;
        // One writer at a time; a second finds the stamp the first wrote.
        let _guard = self
            .publishing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if fs::read_to_string(dir.join(STAMP_FILE)).is_ok_and(|s| s == stamp) {
            return Ok(Some(dir));
        }
        self.make_published(id, held, &dir)?;
        write_atomically(&dir.join(STAMP_FILE), stamp.as_bytes()).map_err(|source| {
            StorageError::Write {
                path: dir.join(STAMP_FILE),
                source,
            }
        })?;
        Ok(Some(dir))
    }

    fn make_published(
        &self,
        id: &RepositoryId,
        held: Held,
        dir: &Path,
    ) -> Result<(), StorageError> {
        let store = Repository::open_bare(self.path(id)).map_err(git("opening the repository"))?;
        let (all, head) = held.git_refs(&store);
        // The canonical refs, and each maintainer's view where `guts verify` finds it
        // (the clone needs the views' commits to weigh them as the node does).
        let mut refs: BTreeMap<String, ObjectId> = all
            .into_iter()
            .filter_map(|(name, target)| {
                let served = name.starts_with("refs/heads/") || name.starts_with("refs/tags/");
                if served {
                    return Some((name, target));
                }
                let view = name.strip_prefix(VIEWS_PREFIX)?;
                Some((format!("{PUBLISHED_VIEWS_PREFIX}{view}"), target))
            })
            .collect();
        let copy = match Repository::open_bare(dir) {
            Ok(r) => r,
            Err(_) => {
                let _ = fs::remove_dir_all(dir);
                Repository::init_bare(dir).map_err(git("making the published copy"))?
            }
        };
        let objects = self.path(id).join("objects");
        let alternates = dir.join("objects").join("info").join("alternates");
        let line = format!("{}\n", objects.display());
        if fs::read_to_string(&alternates).ok().as_deref() != Some(line.as_str()) {
            write_atomically(&alternates, line.as_bytes()).map_err(|source| {
                StorageError::Write {
                    path: alternates.clone(),
                    source,
                }
            })?;
        }
        let blob = copy
            .blob(&record::encode(&held.into_state().shared()))
            .map_err(git("writing the record blob"))?;
        refs.insert(RECORD_REF.to_owned(), object_id(blob));
        write_packed_refs(copy.path(), &["refs/"], &refs)?;
        if let Some(head) = head {
            copy.set_head(head.as_str()).map_err(git("setting HEAD"))?;
        }
        forget_old_records(&dir.join("objects"), blob);
        Ok(())
    }

    /// Where published copies go.
    pub(super) fn published_root(&self) -> PathBuf {
        self.root.parent().unwrap_or(&self.root).join(PUBLISHED_DIR)
    }
}

/// Removes record blobs other than `current` written more than [`OLD_RECORD_KEPT`] ago
/// (the copy's own objects are only ever record blobs).
fn forget_old_records(objects: &Path, current: Oid) {
    let current = current.to_string();
    let Ok(fans) = fs::read_dir(objects) else {
        return;
    };
    for fan in fans.flatten() {
        let name = fan.file_name().to_string_lossy().into_owned();
        if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let Ok(files) = fs::read_dir(fan.path()) else {
            continue;
        };
        for file in files.flatten() {
            let hex = format!("{name}{}", file.file_name().to_string_lossy());
            let old = file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > OLD_RECORD_KEPT);
            if hex != current && old {
                let _ = fs::remove_file(file.path());
            }
        }
    }
}
