//! Filesystem helpers shared by the stores: atomic replacement of a file and durable
//! directory entries.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Makes the entries of `dir` (files created, renamed or removed in it) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `contents` all at once: a temporary file, fsynced, renamed over.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // Best effort: the new contents are in place either way.
        let _ = sync_dir(dir);
    }
    Ok(())
}
