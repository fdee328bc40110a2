//! A clone takes the node's verified packs as they are.
//!
//! Through `git upload-pack` a clone paid for the repository twice on one machine: the
//! node fetched and indexed it, then git counted, packed and indexed it all again from
//! the node's store (2.1x `git clone git://`). The node's packs hold every object its
//! signed refs reach (it checked connectivity from every tip before taking them), so for
//! an empty repository they are linked (or copied) in whole, with their indexes: no
//! second transfer, no second indexing, no connectivity walk.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};

/// Whether the repository git runs this helper for (`GIT_DIR`) is empty: no refs, no
/// objects. Only then are the node's packs handed over whole; a fetch into a repository
/// with history negotiates through `git upload-pack` and gets only what it lacks.
pub fn is_empty_repository() -> bool {
    let Some(git_dir) = std::env::var_os("GIT_DIR").map(PathBuf::from) else {
        return false;
    };
    let no_refs = guts_git::in_dir(&git_dir)
        .args(["for-each-ref", "--count=1"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.is_empty());
    no_refs && !holds_objects(&git_dir.join("objects"))
}

/// Whether the user asked git to check what it fetches (`fetch.fsckObjects`, else
/// `transfer.fsckObjects`, in any config of theirs). Then a clone goes through git's own
/// fetch, which runs that fsck with the user's own `fsck.*` settings, instead of taking
/// the node's packs (checked by the node with its settings) as they are. Reading config
/// runs nothing the config names, so this git runs in the user's environment.
pub fn user_wants_fsck() -> bool {
    let get = |key: &str| {
        std::process::Command::new(guts_git::program())
            .args(["config", "--type=bool", "--get", key])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
    };
    get("fetch.fsckObjects")
        .or_else(|| get("transfer.fsckObjects"))
        .unwrap_or(false)
}

/// Whether an object directory holds any pack or loose object.
fn holds_objects(objects: &Path) -> bool {
    let Ok(entries) = fs::read_dir(objects) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_fanout = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
        let dir_has = |suffix: Option<&str>| {
            fs::read_dir(entry.path()).is_ok_and(|mut files| {
                files.any(|f| {
                    f.is_ok_and(|f| {
                        suffix.is_none_or(|s| f.file_name().to_string_lossy().ends_with(s))
                    })
                })
            })
        };
        (is_fanout && dir_has(None)) || (name == "pack" && dir_has(Some(".pack")))
    })
}

/// Puts the node's packs of the repository at `store` into `GIT_DIR` and checks that
/// every object of `wants` is there. Hard links where the file system allows them
/// (packs never change once written), copies otherwise. Retried when the node replaced
/// its packs meanwhile (a repack), so nothing the listing promised is missing. Returns
/// the `.keep` file it wrote when it linked one pack (see [`keep_single_pack`]).
pub fn link_packs(store: &Path, wants: &[String]) -> anyhow::Result<Option<PathBuf>> {
    let git_dir = PathBuf::from(std::env::var_os("GIT_DIR").context("git set no GIT_DIR")?);
    let into = git_dir.join("objects").join("pack");
    fs::create_dir_all(&into).with_context(|| format!("creating {}", into.display()))?;
    let from = store.join("objects").join("pack");
    for _ in 0..3 {
        match link_all(&from, &into) {
            Ok(()) if all_present(&git_dir, wants)? => return Ok(keep_single_pack(&into)),
            Ok(()) => {}
            // A pack went between listing and linking: its replacement is there now.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("copying packs from {}", from.display()));
            }
        }
    }
    bail!(
        "the node's packs in {} lack objects it listed",
        from.display()
    )
}

/// When `pack_dir` holds one pack, marks it kept and returns the `.keep` file. git takes
/// it as the fetch's pack lock (and removes it after): with the helper's
/// `connectivity-ok`, git clone then trusts the tips found in that pack instead of
/// walking every object from them again (`git rev-list --objects`, 5.8 s of a 23 s clone
/// of a million objects). git takes one lock only, so with several packs it walks.
fn keep_single_pack(pack_dir: &Path) -> Option<PathBuf> {
    let mut packs = fs::read_dir(pack_dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"));
    let pack = packs.next()?;
    if packs.next().is_some() {
        return None;
    }
    let keep = pack.with_extension("keep");
    fs::write(&keep, "guts: clone handoff\n").ok()?;
    Some(keep)
}

/// Links or copies every pack of `from` into `into`: the pack, its reverse index when
/// there is one, and its index last (git only sees a pack once its index is there).
fn link_all(from: &Path, into: &Path) -> io::Result<()> {
    let mut stems: Vec<String> = fs::read_dir(from)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".pack").map(str::to_owned)
        })
        .collect();
    stems.sort();
    for stem in stems {
        for ext in ["pack", "rev", "idx"] {
            let (src, dst) = (
                from.join(format!("{stem}.{ext}")),
                into.join(format!("{stem}.{ext}")),
            );
            if dst.exists() {
                continue;
            }
            match fs::hard_link(&src, &dst) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && ext == "rev" => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
                // Another file system, or links to another user's files refused.
                Err(_) => copy(&src, &dst, ext == "rev")?,
            }
        }
    }
    Ok(())
}

/// Copies `src` to `dst` through a temporary name, so git never sees half a file.
fn copy(src: &Path, dst: &Path, optional: bool) -> io::Result<()> {
    let tmp = dst.with_extension("tmp-guts");
    match fs::copy(src, &tmp) {
        Ok(_) => fs::rename(&tmp, dst),
        Err(e) if optional && e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Whether every object of `wants` is in the repository at `git_dir`.
fn all_present(git_dir: &Path, wants: &[String]) -> anyhow::Result<bool> {
    Ok(super::batch_check(Some(git_dir), wants)?
        .iter()
        .all(Option::is_some))
}

/// Fetches `refs` from the node's store at `store` into `GIT_DIR` through git's own
/// negotiation (what a clone falls back to when the packs cannot be handed over).
pub fn fetch_pack(store: &Path, refs: &[String]) -> anyhow::Result<()> {
    let mut fetch = match std::env::var_os("GIT_DIR") {
        Some(dir) => guts_git::in_dir(dir),
        None => guts_git::command(),
    };
    guts_git::allow_local_transport(&mut fetch);
    let status = fetch
        .args(["fetch-pack", "--quiet", "--no-progress"])
        .arg(store)
        .args(refs)
        .stdout(Stdio::null())
        .status()
        .context("running git fetch-pack")?;
    if !status.success() {
        bail!("git fetch-pack from {} failed ({status})", store.display());
    }
    Ok(())
}
