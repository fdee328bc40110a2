//! The history check of a long history, in child processes of the node's own binary.
//!
//! Why processes: libgit2 serializes reads of one pack across the threads of a process
//! (two threads checked a million objects slower than one), and processes share no
//! locks. Each child takes one contiguous run of the walk, so consecutive commits, which
//! share most of their trees, meet the same checker; the memory a check grows with (the
//! height of every tree it read) goes with the child. A large pack's history is walked
//! in a child too, for the same reason. The protocol is a few lines: the commits in hex
//! on the child's stdin, nothing on its stdout if they pass, else one verdict line; a
//! walker takes `tip <id>` and `hide <id>` lines and prints the commits it walked.

use std::ffi::OsString;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use git2::Oid;
use guts_protocol::RepositoryId;

use super::{Limits, object_id};
use crate::StorageError;

/// The first argument that makes the node's binary a history checker: see
/// [`check_worker_main`](super::check_worker_main).
pub const CHECK_WORKER_ARG: &str = "internal-check-history";

/// New commits each child takes at least: below this a history is checked in the
/// node's own process (starting a child and reading the first full tree cost more).
const COMMITS_PER_WORKER: usize = 4096;
/// Objects a pack brings from which its history is walked in a child: the walk reads
/// the pack's index all over (28 MB at a million objects) and libgit2's walk state grows
/// with the commits, memory the node would keep as its peak.
const WALK_IN_WORKER_OBJECTS: usize = 4096;
/// Children that check one history, at most.
const MAX_WORKERS: usize = 4;

/// The program started as a checker, set once at start-up.
static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Has histories of many new commits checked in child processes started as `program
/// internal-check-history …`, which must reach
/// [`check_worker_main`](super::check_worker_main). Without it (in
/// tests of this crate, say) every check runs in the calling thread.
pub fn use_check_workers(program: PathBuf) {
    let _ = PROGRAM.set(program);
}

/// Starts a checker (`walk`: a walker) for the repository at `repo`.
fn spawn(
    program: &Path,
    repo: &Path,
    quarantine: Option<&Path>,
    id: RepositoryId,
    limits: &Limits,
    walk: bool,
) -> std::io::Result<Child> {
    let mut command = Command::new(program);
    command
        .arg(CHECK_WORKER_ARG)
        .arg(repo)
        .arg(quarantine.map_or_else(|| OsString::from("-"), |q| q.as_os_str().to_owned()))
        .arg(id.to_string())
        .arg(limits.max_tree_depth.to_string());
    if walk {
        command.arg("walk");
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
}

/// Walks the history from `tips`, not into `hidden`, in a child when the pack brought
/// at least [`WALK_IN_WORKER_OBJECTS`] objects; `None` when it did not, no program is
/// set, or the child could not start: the caller walks itself.
pub(super) fn walk_in_worker(
    repo: &Path,
    quarantine: Option<&Path>,
    id: RepositoryId,
    tips: &[Oid],
    hidden: &[Oid],
    new_objects: usize,
    limits: &Limits,
) -> Option<Result<Vec<Oid>, StorageError>> {
    let program = PROGRAM.get()?;
    if new_objects < WALK_IN_WORKER_OBJECTS {
        return None;
    }
    let mut child = match spawn(program, repo, quarantine, id, limits, true) {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(
                "cannot start a history walker ({}): walking in process: {e}",
                program.display()
            );
            return None;
        }
    };
    let started = std::time::Instant::now();
    let mut lines = String::new();
    for (kind, ids) in [("tip", tips), ("hide", hidden)] {
        for commit in ids {
            lines.push_str(&format!("{kind} {commit}\n"));
        }
    }
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let read = std::thread::scope(|scope| {
        if let Some(mut stdin) = stdin {
            scope.spawn(move || stdin.write_all(lines.as_bytes()));
        }
        let mut commits = Vec::new();
        let mut verdict = None;
        if let Some(stdout) = stdout {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match Oid::from_str(&line) {
                    Ok(commit) if line.len() == 40 => commits.push(commit),
                    _ => {
                        verdict = Some(line);
                        break;
                    }
                }
            }
        }
        (commits, verdict)
    });
    let (commits, verdict) = read;
    let ended = outcome(&mut child, verdict.as_deref().unwrap_or_default());
    tracing::debug!(
        repository = %id,
        commits = commits.len(),
        elapsed = ?started.elapsed(),
        "history walked in a child process"
    );
    Some(match ended {
        Ok(None) => Ok(commits),
        Ok(Some(line)) => Err(parse_verdict(&line, id)),
        Err(why) => Err(child_failed(id, "walking", &why)),
    })
}

/// Checks `commits` of the repository at `repo` (reading `quarantine` as an alternate)
/// in child processes; `None` when there are too few, no program is set, or no child
/// could start: the caller checks them itself.
pub(super) fn check_in_workers(
    repo: &Path,
    quarantine: Option<&Path>,
    id: RepositoryId,
    commits: &[Oid],
    limits: &Limits,
) -> Option<Result<(), StorageError>> {
    let program = PROGRAM.get()?;
    if commits.len() < COMMITS_PER_WORKER {
        return None;
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS)
        .min(commits.len() / COMMITS_PER_WORKER)
        .max(1);
    let runs: Vec<&[Oid]> = commits.chunks(commits.len().div_ceil(workers)).collect();
    let mut children = Vec::new();
    for _ in &runs {
        match spawn(program, repo, quarantine, id, limits, false) {
            Ok(child) => children.push(child),
            Err(e) => {
                tracing::warn!(
                    "cannot start a history checker ({}): checking in process: {e}",
                    program.display()
                );
                reap(&mut children);
                return None;
            }
        }
    }
    let started = std::time::Instant::now();
    // Feeding stdin from threads: a child reads all of its run before it says anything.
    let verdicts: Vec<Result<Option<String>, String>> = std::thread::scope(|scope| {
        for (child, run) in children.iter_mut().zip(&runs) {
            if let Some(mut stdin) = child.stdin.take() {
                scope.spawn(move || {
                    let mut lines = String::with_capacity(run.len() * 41);
                    for commit in *run {
                        lines.push_str(&commit.to_string());
                        lines.push('\n');
                    }
                    // A child that stopped early (a verdict, a crash) closed its end.
                    let _ = stdin.write_all(lines.as_bytes());
                });
            }
        }
        let mut verdicts = Vec::new();
        for i in 0..children.len() {
            let verdict = wait(&mut children[i]);
            let failed = !matches!(verdict, Ok(None));
            verdicts.push(verdict);
            if failed {
                // The first verdict in walk order stands: the rest need not finish.
                reap(&mut children[i + 1..]);
                break;
            }
        }
        verdicts
    });
    tracing::debug!(
        repository = %id,
        commits = commits.len(),
        workers,
        elapsed = ?started.elapsed(),
        "history checked in child processes"
    );
    for verdict in verdicts {
        match verdict {
            Ok(None) => {}
            Ok(Some(line)) => return Some(Err(parse_verdict(&line, id))),
            Err(why) => return Some(Err(child_failed(id, "checking", &why))),
        }
    }
    Some(Ok(()))
}

/// Waits for a checker: see [`outcome`].
fn wait(child: &mut Child) -> Result<Option<String>, String> {
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        // A verdict is one short line; anything longer is not one.
        let _ = (&mut stdout).take(64 * 1024).read_to_string(&mut out);
    }
    outcome(child, &out)
}

/// How `child`, which `said` this after its work, ended: `Ok(None)` if it passed,
/// `Ok(Some(verdict))` if it refused, `Err` if it failed without a verdict.
fn outcome(child: &mut Child, said: &str) -> Result<Option<String>, String> {
    let status = child.wait().map_err(|e| e.to_string())?;
    let line = said.lines().next().unwrap_or_default().to_owned();
    match (status.success(), line.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some(line)),
        _ => Err(format!("the child exited with {status} saying {line:?}")),
    }
}

/// A child that failed without a verdict (or with one that makes no sense): this node's
/// trouble, not the peer's.
fn child_failed(id: RepositoryId, doing: &str, why: &str) -> StorageError {
    StorageError::Git {
        context: format!("{doing} the history of {id} in a child process"),
        source: git2::Error::from_str(why),
    }
}

/// Stops and reaps `children`.
fn reap(children: &mut [Child]) {
    for child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One verdict line for a refusal; a failure of the checker itself starts with `error`.
pub(super) fn verdict_line(error: &StorageError) -> String {
    let line = match error {
        StorageError::MissingObject { object, .. } => format!("missing {object}"),
        StorageError::BadObject { object, reason, .. } => format!("bad {object} {reason}"),
        StorageError::Incomplete { reason, .. } => format!("incomplete {reason}"),
        other => format!("error {other}"),
    };
    line.replace(['\n', '\r'], " ")
}

/// The refusal a verdict line names.
fn parse_verdict(line: &str, repository: RepositoryId) -> StorageError {
    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
    let (object, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let object = Oid::from_str(object).ok().map(object_id);
    match (kind, object) {
        ("missing", Some(object)) => StorageError::MissingObject { repository, object },
        ("bad", Some(object)) => StorageError::BadObject {
            repository,
            object,
            reason: reason.to_owned(),
        },
        ("incomplete", _) => StorageError::Incomplete {
            repository,
            reason: rest.to_owned(),
        },
        _ => child_failed(repository, "checking", line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_back_as_the_refusals_they_name() {
        let repository = RepositoryId::derive(&[7; 32], &"checked".parse().unwrap());
        let object = object_id(Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap());
        for error in [
            StorageError::MissingObject { repository, object },
            StorageError::BadObject {
                repository,
                object,
                reason: "an entry named \".git\"\nsecond line".into(),
            },
            StorageError::Incomplete {
                repository,
                reason: "object not found - no match for id (abc)".into(),
            },
        ] {
            let line = verdict_line(&error);
            assert!(!line.contains('\n'), "{line:?}");
            let back = parse_verdict(&line, repository);
            assert_eq!(
                back.to_string(),
                error.to_string().replace('\n', " "),
                "{line:?}"
            );
        }
        let local = parse_verdict("error cannot open the repository", repository);
        assert!(matches!(local, StorageError::Git { .. }), "{local:?}");
        assert!(!local.is_peer_fault());
    }
}
