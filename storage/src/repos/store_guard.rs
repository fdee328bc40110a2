//! A store takes refs only from its node. Someone who points plain git at a store's path
//! (`git push ~/.local/share/guts/repos/<id>`) would move refs nobody signed, that the
//! node then serves; git's own `receive-pack` runs the store's `pre-receive` hook first,
//! so the store carries one that refuses every push and names the `guts://` URL to use.

use std::fs;
use std::path::Path;

use git2::Repository;
use guts_protocol::RepositoryId;

use crate::StorageError;

/// The hook's name under the store's `hooks/`.
const HOOK: &str = "pre-receive";

fn script(id: &RepositoryId) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by the Guts node: this store takes refs only from the node.\n\
         echo \"error: this is a Guts node's store of guts://{id}: it takes no pushes.\" >&2\n\
         echo \"error: push to guts://{id} instead (git remote set-url origin guts://{id}):\" >&2\n\
         echo \"error: the node checks the update, signs it and announces it.\" >&2\n\
         exit 1\n"
    )
}

/// Writes the refusing hook into `repo` (a store) if it is not there, and points
/// `core.hooksPath` at it: the store's own config outranks a user's global hooks path.
pub(super) fn install(repo: &Repository, id: &RepositoryId) -> Result<(), StorageError> {
    let hooks = repo.path().join("hooks");
    let hook = hooks.join(HOOK);
    let text = script(id);
    if fs::read_to_string(&hook).ok().as_deref() != Some(text.as_str()) {
        write_executable(&hooks, &hook, &text)?;
    }
    let hooks_path = hooks.to_string_lossy().into_owned();
    let mut config = repo
        .config()
        .map_err(super::git("reading the store's config"))?;
    let current = config
        .snapshot()
        .and_then(|c| c.get_string("core.hooksPath"))
        .ok();
    if current.as_deref() != Some(hooks_path.as_str()) {
        config
            .set_str("core.hooksPath", &hooks_path)
            .map_err(super::git("writing the store's config"))?;
    }
    Ok(())
}

fn write_executable(dir: &Path, path: &Path, text: &str) -> Result<(), StorageError> {
    let write = |source| StorageError::Write {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(write)?;
    let tmp = dir.join(format!(".{HOOK}.tmp"));
    fs::write(&tmp, text).map_err(write)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(write)?;
    }
    fs::rename(&tmp, path).map_err(write)
}
