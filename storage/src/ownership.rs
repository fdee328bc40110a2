//! A data dir someone else prepared is not this node's. Another user who creates the
//! directory first (in a shared temporary directory, say) would choose the node's
//! identity, or swap its repositories; so, as ssh does with its own files, the node
//! refuses a data dir, an ancestor of it or an identity key that another user owns or
//! can write, and a key others can read, naming the path and the fix.

use std::path::Path;

use crate::StorageError;

/// What a path is, for the rule it must meet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The data dir, or a directory above it: writable only by its owner (this user,
    /// or root above the data dir), or by this user's own group, or sticky like /tmp.
    Dir,
    /// The identity key: this user's, and nobody else's to read or write.
    SecretFile,
}

/// Checks `path` (and, for a directory, every directory above it) against its rule.
#[cfg(unix)]
pub(crate) fn check(path: &Path, kind: Kind) -> Result<(), StorageError> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: plain reads of the process's ids.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let unsafe_path = |path: &Path, reason: String, fix: String| StorageError::UnsafePath {
        path: path.to_owned(),
        reason,
        fix,
    };
    let meta = std::fs::metadata(path).map_err(|source| StorageError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.mode() & 0o7777;
    if meta.uid() != uid && !(kind == Kind::Dir && meta.uid() == 0) {
        return Err(unsafe_path(
            path,
            format!(
                "is owned by uid {}, not by this user (uid {uid})",
                meta.uid()
            ),
            format!(
                "use a data dir of your own, or `chown -R {uid} {}`",
                path.display()
            ),
        ));
    }
    match kind {
        Kind::SecretFile if mode & 0o077 != 0 => {
            return Err(unsafe_path(
                path,
                format!(
                    "can be read or written by other users (mode {:o})",
                    mode & 0o777
                ),
                format!("`chmod 600 {}`", path.display()),
            ));
        }
        Kind::Dir if !writable_by_owner_only(mode, meta.gid(), gid) => {
            return Err(unsafe_path(
                path,
                format!("can be written by other users (mode {:o})", mode & 0o777),
                format!("`chmod go-w {}`", path.display()),
            ));
        }
        _ => {}
    }
    if kind == Kind::Dir
        && let Some(parent) = std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
    {
        check_ancestors(&parent, uid, gid)?;
    }
    Ok(())
}

/// Directories above the data dir may belong to root, and may be writable by all if
/// sticky (/tmp): others can then add entries but not rename or remove ours.
#[cfg(unix)]
fn check_ancestors(dir: &Path, uid: u32, gid: u32) -> Result<(), StorageError> {
    use std::os::unix::fs::MetadataExt;
    let mut next = Some(dir);
    while let Some(dir) = next {
        let Ok(meta) = std::fs::metadata(dir) else {
            break;
        };
        let mode = meta.mode() & 0o7777;
        let sticky = mode & 0o1000 != 0;
        let owner_ok = meta.uid() == uid || meta.uid() == 0;
        if !owner_ok || (!sticky && !writable_by_owner_only(mode, meta.gid(), gid)) {
            return Err(StorageError::UnsafePath {
                path: dir.to_owned(),
                reason: format!(
                    "(above the data dir) is owned by uid {} with mode {:o}: another user could \
                     replace what is in it",
                    meta.uid(),
                    mode & 0o777
                ),
                fix: "put the data dir under a directory only you (or root) can change".to_owned(),
            });
        }
        next = dir.parent();
    }
    Ok(())
}

/// Whether a directory of `mode` and group `group` can be written only by its owner, or
/// by the group `own_group` (this user's; a Kubernetes volume's fsGroup is such a group).
#[cfg(unix)]
fn writable_by_owner_only(mode: u32, group: u32, own_group: u32) -> bool {
    mode & 0o002 == 0 && (mode & 0o020 == 0 || group == own_group)
}

#[cfg(not(unix))]
pub(crate) fn check(_path: &Path, _kind: Kind) -> Result<(), StorageError> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_dir_others_can_write_is_refused_naming_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o700);
        check(&dir, Kind::Dir).unwrap();
        chmod(&dir, 0o757);
        let e = check(&dir, Kind::Dir).unwrap_err().to_string();
        assert!(
            e.contains("data") && e.contains("757") && e.contains("chmod go-w"),
            "{e}"
        );
        // Group-writable by this user's own group is fine (a Kubernetes fsGroup).
        chmod(&dir, 0o2770);
        check(&dir, Kind::Dir).unwrap();
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("identity.key");
        std::fs::write(&key, "x").unwrap();
        chmod(&key, 0o600);
        check(&key, Kind::SecretFile).unwrap();
        chmod(&key, 0o640);
        let e = check(&key, Kind::SecretFile).unwrap_err().to_string();
        assert!(e.contains("identity.key") && e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn an_ancestor_others_can_write_is_refused_unless_sticky() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        let dir = shared.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        chmod(&dir, 0o700);
        chmod(&shared, 0o777);
        let e = check(&dir, Kind::Dir).unwrap_err().to_string();
        assert!(
            e.contains("shared") && e.contains("above the data dir"),
            "{e}"
        );
        chmod(&shared, 0o1777);
        check(&dir, Kind::Dir).unwrap();
    }
}
