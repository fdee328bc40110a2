//! git's own pack machinery, run as child processes: `pack-objects` builds the packs of
//! imports, pushes, fetches and repacks; `index-pack` indexes every pack the store takes.
//!
//! libgit2's pack builder recomputes every delta (an import took 5-6x `git clone`) and
//! cannot make thin packs. `git pack-objects` copies the deltas already stored, sends
//! only what the receiver lacks relative to bases it has (`--thin`), and runs in its own
//! process, so its memory is not the node's. It only reads: what it writes is indexed and
//! verified by the store like any pack from a peer.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::JoinHandle;

use git2::Oid;

use super::PackStats;
use crate::StorageError;

/// Bytes of the pack header: signature, version, object count.
const HEADER: usize = 12;
/// Read size from git's output.
const CHUNK: usize = 64 * 1024;
/// Most of git's error output kept for the message.
const STDERR_KEPT: usize = 4096;

/// `git --git-dir <git_dir>` in git's fixed environment (see [`guts_git`]: nothing from
/// any config shapes what the node sends or keeps, or runs a command), every stream
/// piped.
fn git_in(git_dir: &Path) -> Command {
    let mut command = guts_git::in_dir(git_dir);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts git's `what` (`command` from [`git_in`]); its stderr is read on a thread of its
/// own (so git never blocks on it), the first [`STDERR_KEPT`] bytes kept for a message.
fn spawn(command: &mut Command, what: &str) -> Result<(Child, JoinHandle<String>), String> {
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!(
                "{:?} not found: Guts runs git's {what}, so git must be installed (or GUTS_GIT name it)",
                guts_git::program()
            )
        } else {
            format!("cannot start git {what}: {e}")
        }
    })?;
    let mut stderr = child.stderr.take().ok_or("no stderr from git")?;
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = (&mut stderr)
            .take(STDERR_KEPT as u64)
            .read_to_end(&mut text);
        let _ = io::copy(&mut stderr, &mut io::sink());
        String::from_utf8_lossy(&text).trim().to_owned()
    });
    Ok((child, errors))
}

/// Streams a pack of every object reachable from `wants` and not from `haves` in the
/// repository at `git_dir` to `sink`, telling `on_count` its object count first. With
/// `thin`, deltas may refer to objects reachable from `haves`, which the receiver holds
/// (its indexer completes such packs from its store). `haves` must be in
/// the repository (git refuses unknown ones). Trees up to `max_tree_depth` levels are
/// walked (git has its own limit). `sink` returns false to abort. Blocking.
pub(super) fn pack_objects(
    git_dir: &Path,
    wants: &[Oid],
    haves: &[Oid],
    thin: bool,
    max_tree_depth: usize,
    on_count: &mut dyn FnMut(usize),
    sink: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<PackStats, StorageError> {
    let failed = |reason: String| StorageError::PackObjects {
        path: git_dir.to_owned(),
        reason,
    };
    let mut command = git_in(git_dir);
    command
        // git counts the root tree as a level too.
        .arg("-c")
        .arg(format!("core.maxTreeDepth={}", max_tree_depth + 1))
        .args([
            "pack-objects",
            "--stdout",
            "--revs",
            "--delta-base-offset",
            "-q",
        ]);
    if thin {
        command.arg("--thin");
    }
    let (mut child, errors) = spawn(&mut command, "pack-objects").map_err(failed)?;
    // `--revs` reads every line before it writes a byte, so writing all of stdin first
    // cannot deadlock.
    let mut input = String::with_capacity((wants.len() + haves.len()) * 42);
    for want in wants {
        input.push_str(&format!("{want}\n"));
    }
    for have in haves {
        input.push_str(&format!("^{have}\n"));
    }
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| failed("no stdin".into()))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| failed("no stdout".into()))?;
    let wrote = stdin.write_all(input.as_bytes());
    drop(stdin);

    let mut stats = PackStats::default();
    let mut header = Vec::with_capacity(HEADER);
    let mut buf = vec![0u8; CHUNK];
    let mut aborted = false;
    let read = loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        if header.len() < HEADER {
            let take = (HEADER - header.len()).min(n);
            header.extend_from_slice(&buf[..take]);
            if header.len() == HEADER {
                stats.objects =
                    u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
                on_count(stats.objects);
            }
        }
        stats.bytes += n as u64;
        if !sink(&buf[..n]) {
            aborted = true;
            break Ok(());
        }
    };
    if aborted {
        let _ = child.kill();
    }
    drop(stdout);
    let status = child
        .wait()
        .map_err(|e| failed(format!("waiting for git: {e}")))?;
    let said = errors.join().unwrap_or_default();
    if aborted {
        return Err(StorageError::Aborted);
    }
    if !status.success() {
        let what = if said.is_empty() {
            status.to_string()
        } else {
            said
        };
        return Err(failed(what));
    }
    wrote.map_err(|e| failed(format!("writing to git: {e}")))?;
    read.map_err(|e| failed(format!("reading from git: {e}")))?;
    Ok(stats)
}

/// Whether git's index-pack also runs its fsck on each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fsck {
    /// `--strict` with [`guts_git::INDEX_PACK_STRICT`]'s severities: for packs from
    /// peers.
    Strict,
    /// The store's own checks only: for objects the owner's git or this store wrote.
    StoreOnly,
}

/// A pack being indexed by git's `index-pack` into a quarantine directory.
///
/// libgit2's indexer resolves deltas on one thread and hashes each object with the
/// collision-detecting SHA-1, so receiving took 1.3-1.6x `git clone`; git's index-pack
/// does the same checks (every object hashed with the same SHA-1, compared with any
/// object of that name already stored; thin packs completed from the store) on every
/// core, and in its own process. Bytes reach it only after the scanner has passed them.
pub(super) struct GitIndexer {
    child: Child,
    stdin: Option<ChildStdin>,
    errors: Option<JoinHandle<String>>,
    quarantine: PathBuf,
}

impl GitIndexer {
    /// Starts indexing into `quarantine` (a directory with a `pack/` inside) for the
    /// repository at `git_dir`, whose objects complete thin packs.
    pub(super) fn start(
        git_dir: &Path,
        quarantine: &Path,
        fsck: Fsck,
    ) -> Result<Self, StorageError> {
        let mut command = git_in(git_dir);
        command.args(["index-pack", "--stdin", "--fix-thin"]);
        if fsck == Fsck::Strict {
            command.arg(guts_git::INDEX_PACK_STRICT);
        }
        command
            // The pack lands in the quarantine, as git's own receive-pack quarantines
            // pushes; the store's objects are read as an alternate.
            .env("GIT_OBJECT_DIRECTORY", quarantine)
            .env("GIT_ALTERNATE_OBJECT_DIRECTORIES", git_dir.join("objects"))
            .stdout(Stdio::null());
        let (mut child, errors) =
            spawn(&mut command, "index-pack").map_err(|reason| StorageError::Write {
                path: quarantine.to_owned(),
                source: io::Error::other(reason),
            })?;
        Ok(GitIndexer {
            stdin: child.stdin.take(),
            child,
            errors: Some(errors),
            quarantine: quarantine.to_owned(),
        })
    }

    /// Hands git the next bytes. When git has stopped (a bad pack), the error is git's.
    pub(super) fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        let written = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(chunk),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        };
        match written {
            Ok(()) => Ok(()),
            Err(_) => {
                let said = match self.end() {
                    Ok(()) => "git index-pack stopped reading".into(),
                    Err(said) => said,
                };
                Err(self.classify(said))
            }
        }
    }

    /// Ends the input and waits for git: `Ok` once the pack and its index are in the
    /// quarantine.
    pub(super) fn finish(mut self) -> Result<(), StorageError> {
        self.end().map_err(|said| self.classify(said))
    }

    /// Closes git's input and waits for it; `Err` holds what it said (or how it ended).
    fn end(&mut self) -> Result<(), String> {
        drop(self.stdin.take());
        let status = self.child.wait();
        let said = self
            .errors
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) if said.is_empty() => Err(format!("git index-pack: {s}")),
            Ok(_) => Err(said),
            Err(e) => Err(format!("waiting for git index-pack: {e}")),
        }
    }

    /// This node's own trouble writing (a full disk, a read-only file system, a quota)
    /// is not the pack's fault, so it must not cost the peer that sent it; anything else
    /// git refused is a bad pack.
    fn classify(&self, said: String) -> StorageError {
        const LOCAL: [&str; 4] = [
            "No space left on device",
            "Disk quota exceeded",
            "Read-only file system",
            "Permission denied",
        ];
        if LOCAL.iter().any(|l| said.contains(l)) {
            StorageError::Write {
                path: self.quarantine.clone(),
                source: io::Error::other(said),
            }
        } else {
            StorageError::BadPack(said)
        }
    }
}

impl Drop for GitIndexer {
    fn drop(&mut self) {
        // Unfinished (the scanner refused the pack, or the stream broke): git stops too.
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
