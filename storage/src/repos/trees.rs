//! Checking trees: each read once, no deeper than the limit, every entry one git can check
//! out safely (git's `transfer.fsckObjects` rules that matter for a working tree).
//!
//! Everything here iterates: a tree nesting 30,000 levels deep must cost a refusal, not
//! the stack of the thread that reads it.

use std::collections::HashMap;

use git2::{ObjectType, Oid, Repository};
use guts_protocol::{ObjectId, RepositoryId};

use super::entry_rules::{check_entry_name, check_gitmodules, names_dotgit};
use super::{Limits, git, object_id, oid};
use crate::StorageError;

/// Git file modes of tree entries.
pub(super) const MODE_TREE: i32 = 0o040000;
pub(super) const MODE_BLOB: i32 = 0o100644;
pub(super) const MODE_EXECUTABLE: i32 = 0o100755;
pub(super) const MODE_SYMLINK: i32 = 0o120000;
/// A submodule: its object lives in another repository, so it is not followed.
pub(super) const MODE_GITLINK: i32 = 0o160000;

/// A map keyed by object ids: `ObjectId`, not git2's `Oid`, which compares through an
/// FFI call (with std's SipHash the maps took a sixth of the check's CPU at a million
/// objects). foldhash with a random seed: fast, and ids a peer chose (it can grind their
/// low bits) still spread over the table.
pub(super) type IdMap<V> = HashMap<ObjectId, V, foldhash::quality::RandomState>;

/// Walks trees once each, remembering how many levels each one spans.
pub(super) struct TreeChecker<'r> {
    repo: &'r Repository,
    odb: git2::Odb<'r>,
    repository: RepositoryId,
    max_depth: usize,
    /// Trees checked, with their height (a tree with no subtrees has height 1). A u32
    /// rather than a usize: at a million objects this map is the check's largest
    /// allocation (600,000 trees), and no tree nests four billion levels.
    heights: IdMap<u32>,
    /// Blobs found present (most entries of a new tree name blobs an earlier tree had),
    /// with whether one passed the `.gitmodules` rules: every commit's tree may name the
    /// same `.gitmodules`, read and parsed once.
    blobs: IdMap<bool>,
}

impl<'r> TreeChecker<'r> {
    pub(super) fn new(
        repo: &'r Repository,
        repository: RepositoryId,
        limits: &Limits,
    ) -> Result<Self, StorageError> {
        Ok(TreeChecker {
            repo,
            odb: repo.odb().map_err(git("opening the object database"))?,
            repository,
            max_depth: limits.max_tree_depth,
            heights: IdMap::default(),
            blobs: IdMap::default(),
        })
    }

    /// Checks each of `commits`: its parents present, its tree by these rules.
    pub(super) fn check_commits(&mut self, commits: &[Oid]) -> Result<(), StorageError> {
        for &commit_id in commits {
            let commit = self
                .repo
                .find_commit(commit_id)
                .map_err(|_| self.missing(commit_id))?;
            for parent in commit.parent_ids() {
                if !self.odb.exists(parent) {
                    return Err(self.missing(parent));
                }
            }
            self.check(commit.tree_id())?;
        }
        Ok(())
    }

    pub(super) fn missing(&self, object: Oid) -> StorageError {
        StorageError::MissingObject {
            repository: self.repository,
            object: object_id(object),
        }
    }

    pub(super) fn bad(&self, object: Oid, reason: impl Into<String>) -> StorageError {
        StorageError::BadObject {
            repository: self.repository,
            object: object_id(object),
            reason: reason.into(),
        }
    }

    pub(super) fn too_deep(&self, object: ObjectId) -> StorageError {
        self.bad(
            oid(&object),
            format!(
                "trees nest deeper than {} levels (max_tree_depth)",
                self.max_depth
            ),
        )
    }

    /// The height of a tree already checked.
    pub(super) fn height(&self, tree: &ObjectId) -> Option<usize> {
        self.heights.get(tree).map(|&h| h as usize)
    }

    /// Checks the tree `root` and everything below it. Depth is counted from `root`
    /// (level 1); heights are kept per tree, so a subtree reached through two paths is
    /// read once but still counted at its deepest.
    pub(super) fn check(&mut self, root: Oid) -> Result<(), StorageError> {
        let root = object_id(root);
        if let Some(height) = self.height(&root) {
            return if height > self.max_depth {
                Err(self.too_deep(root))
            } else {
                Ok(())
            };
        }
        // (tree, depth of the tree, its subtrees once read)
        let mut stack: Vec<(ObjectId, usize, Option<Vec<ObjectId>>)> = vec![(root, 1, None)];
        while let Some((tree_id, depth, subtrees)) = stack.pop() {
            match subtrees {
                None => {
                    if depth > self.max_depth {
                        return Err(self.too_deep(tree_id));
                    }
                    if let Some(height) = self.height(&tree_id) {
                        if depth + height - 1 > self.max_depth {
                            return Err(self.too_deep(tree_id));
                        }
                        continue;
                    }
                    let subtrees = self.read(tree_id)?;
                    let unseen: Vec<ObjectId> = subtrees
                        .iter()
                        .copied()
                        .filter(|t| !self.heights.contains_key(t))
                        .collect();
                    stack.push((tree_id, depth, Some(subtrees)));
                    stack.extend(unseen.into_iter().map(|t| (t, depth + 1, None)));
                }
                Some(subtrees) => {
                    // Every subtree has been checked by now (pushed after this entry).
                    let below = subtrees
                        .iter()
                        .filter_map(|t| self.height(t))
                        .max()
                        .unwrap_or(0);
                    let height = below + 1;
                    if depth + height - 1 > self.max_depth {
                        return Err(self.too_deep(tree_id));
                    }
                    self.heights
                        .insert(tree_id, u32::try_from(height).unwrap_or(u32::MAX));
                }
            }
        }
        Ok(())
    }

    /// Reads one tree: checks its entries and that its blobs are present; returns its
    /// subtrees.
    fn read(&mut self, tree: ObjectId) -> Result<Vec<ObjectId>, StorageError> {
        let tree_id = oid(&tree);
        // Straight from the object database rather than `find_tree`: libgit2's object
        // cache stored each tree of the history only to evict it again (a fifth of the
        // CPU of checking a million objects went to its hash table), and each tree is
        // read once here anyway.
        let object = self.odb.read(tree_id).map_err(|_| self.missing(tree_id))?;
        if object.kind() != ObjectType::Tree {
            return Err(self.bad(
                tree_id,
                format!("named as a tree but is a {}", object.kind().str()),
            ));
        }
        let data = object.data();
        let entries = parse_tree(data).map_err(|why| self.bad(tree_id, why))?;
        // Duplicates by sorting the names: a tree's entries are few, and git's order can
        // set equal names apart (a file `a` and a directory `a` sort as `a` and `a/`).
        let mut names: Vec<&[u8]> = entries.iter().map(|e| e.name).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(self.bad(
                tree_id,
                format!("duplicate entry {:?}", String::from_utf8_lossy(pair[0])),
            ));
        }
        let mut subtrees = Vec::new();
        for entry in &entries {
            let name = entry.name;
            check_entry_name(name).map_err(|why| self.bad(tree_id, why))?;
            let mode = entry.mode;
            let is_gitmodules = names_dotgit(name, b"gitmodules");
            match mode {
                MODE_GITLINK => continue,
                MODE_TREE => subtrees.push(entry.id),
                MODE_BLOB | MODE_EXECUTABLE | MODE_SYMLINK => {
                    if is_gitmodules && mode == MODE_SYMLINK {
                        return Err(self.bad(tree_id, ".gitmodules is a symbolic link"));
                    }
                    let checked = match self.blobs.get(&entry.id) {
                        Some(checked) => *checked,
                        None => {
                            if !self.odb.exists(oid(&entry.id)) {
                                return Err(self.missing(oid(&entry.id)));
                            }
                            self.blobs.insert(entry.id, false);
                            false
                        }
                    };
                    if is_gitmodules && !checked {
                        let blob_id = oid(&entry.id);
                        let blob = self
                            .repo
                            .find_blob(blob_id)
                            .map_err(|_| self.missing(blob_id))?;
                        check_gitmodules(blob.content()).map_err(|why| self.bad(blob_id, why))?;
                        self.blobs.insert(entry.id, true);
                    }
                }
                other => {
                    return Err(self.bad(tree_id, format!("entry with file mode {other:o}")));
                }
            }
        }
        Ok(subtrees)
    }
}

/// One entry of a tree, borrowed from the tree's bytes.
struct TreeEntry<'a> {
    /// The file mode, normalized as libgit2 and git read it.
    mode: i32,
    name: &'a [u8],
    id: ObjectId,
}

/// Parses a tree's bytes (entries of `<octal mode> <name>\0<20-byte id>`), refusing what
/// libgit2's own parser refuses. By hand because libgit2 parses trees only through its
/// object cache (see [`TreeChecker::read`]).
fn parse_tree(mut data: &[u8]) -> Result<Vec<TreeEntry<'_>>, String> {
    const ID_LEN: usize = 20;
    let mut entries = Vec::new();
    while !data.is_empty() {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("an entry without a space after its mode")?;
        let (digits, rest) = data.split_at(space);
        // Octal digits only (no sign, no space), as many leading zeros as any, at most
        // 16 bits: what libgit2 reads.
        let mode = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| matches!(b, b'0'..=b'7')))
            .and_then(|d| u16::from_str_radix(d, 8).ok())
            .ok_or_else(|| {
                format!(
                    "entry mode {:?} is not an octal file mode",
                    String::from_utf8_lossy(digits)
                )
            })?;
        let rest = &rest[1..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("an entry name without its end")?;
        let (name, rest) = rest.split_at(nul);
        if name.is_empty() || name.len() > usize::from(u16::MAX) {
            return Err("an entry with an empty or over-long name".into());
        }
        let (id, rest) = rest[1..]
            .split_at_checked(ID_LEN)
            .ok_or("an entry cut short in its object id")?;
        let mut key = [0; ID_LEN];
        key.copy_from_slice(id);
        entries.push(TreeEntry {
            mode: normalize_mode(i32::from(mode)),
            name,
            id: ObjectId(key),
        });
        data = rest;
    }
    Ok(entries)
}

/// Git's reading of a mode (libgit2's `normalize_filemode`): old histories hold modes
/// such as 100664 or 040755, which git reads as the five it writes.
fn normalize_mode(mode: i32) -> i32 {
    const TYPE: i32 = 0o170000;
    match mode & TYPE {
        MODE_TREE => MODE_TREE,
        _ if mode & 0o100 != 0 => MODE_EXECUTABLE,
        MODE_GITLINK => MODE_GITLINK,
        MODE_SYMLINK => MODE_SYMLINK,
        _ => MODE_BLOB,
    }
}
