//! Moving many refs at once: one new `packed-refs` file, then the loose refs under the
//! prefixes it decides removed. Refs under other prefixes are left as they are, so the
//! record's refs and the changes' tips are written independently.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use guts_protocol::ObjectId;

use crate::StorageError;
use crate::fs::write_atomically;

/// Replaces `packed-refs` with `refs`, keeping any line of the old file outside
/// `prefixes`. Without the `peeled` trait git and libgit2 peel annotated
/// tags themselves when they need to.
pub(super) fn write_packed_refs(
    git_dir: &Path,
    prefixes: &[&str],
    refs: &BTreeMap<String, ObjectId>,
) -> Result<(), StorageError> {
    let path = git_dir.join("packed-refs");
    let ours = |name: &str| prefixes.iter().any(|p| name.starts_with(p));
    let mut lines: Vec<(String, String)> = refs
        .iter()
        .map(|(n, t)| (n.clone(), t.to_string()))
        .collect();
    let old = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(StorageError::Read { path, source }),
    };
    for line in old.lines() {
        if let Some((target, name)) = line.split_once(' ')
            && !line.starts_with('#')
            && !line.starts_with('^')
            && !ours(name)
        {
            lines.push((name.to_owned(), target.to_owned()));
        }
    }
    // `sorted`: git reads the file by binary search, on the names' bytes.
    lines.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut text = String::with_capacity(32 + lines.len() * 64);
    text.push_str("# pack-refs with: sorted \n");
    for (name, target) in &lines {
        text.push_str(target);
        text.push(' ');
        text.push_str(name);
        text.push('\n');
    }
    write_atomically(&path, text.as_bytes()).map_err(|source| StorageError::Write { path, source })
}

/// Removes every loose ref (and emptied directory) under `prefixes`.
pub(super) fn remove_loose_refs(git_dir: &Path, prefixes: &[&str]) -> Result<(), StorageError> {
    for top in prefixes {
        let root = git_dir.join(top.trim_end_matches('/'));
        // Depth first with an explicit stack: ref names nest as deep as a peer made them.
        let mut stack = vec![(root.clone(), false)];
        while let Some((dir, visited)) = stack.pop() {
            if visited {
                if dir != root {
                    let _ = fs::remove_dir(&dir);
                }
                continue;
            }
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StorageError::Read { path: dir, source }),
            };
            stack.push((dir, true));
            for entry in entries.flatten() {
                let path = entry.path();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => stack.push((path, false)),
                    _ => fs::remove_file(&path)
                        .or_else(|e| match e.kind() {
                            io::ErrorKind::NotFound => Ok(()),
                            _ => Err(e),
                        })
                        .map_err(|source| StorageError::Write { path, source })?,
                }
            }
        }
    }
    Ok(())
}
