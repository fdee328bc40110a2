//! A large repository replicates with bounded memory: the pack streams through, it is
//! never held whole.

use std::time::Duration;

use guts_node::api::types::RepoSummary;
use guts_tests::eventually;
use guts_tests::git::{Synthetic, disk_size, fsck, refs};
use guts_tests::process::NodeSpec;

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM");
    kib * 1024
}

#[test]
fn a_repository_of_120_mb_replicates_with_bounded_memory() {
    // 120 binary files of 1 MiB (incompressible), replacing each other along 120 commits,
    // plus source files edited along the way.
    let work = Synthetic {
        commits: 120,
        text_files: 20,
        binary_every: 1,
        binary_size: 1 << 20,
        seed: 42,
    }
    .build("large");
    let size = disk_size(&work.path().join(".git"));
    assert!(size >= 100 << 20, "the repository is only {size} bytes");

    let tmp = tempfile::tempdir().unwrap();
    let a = NodeSpec::loopback(&tmp.path().join("a")).spawn();
    let b = NodeSpec::loopback(&tmp.path().join("b"))
        .args(["--bootstrap", &a.tcp_addr()])
        .spawn();
    let id = a.import(work.path()).id;

    let out = b.client(["repo", "follow", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = eventually(Duration::from_secs(120), "B to hold the repository", || {
        let repos: Vec<RepoSummary> = b.client_json("repo list")?;
        repos
            .into_iter()
            .find(|r| r.id == id && r.sequence == 1)
            .ok_or_else(|| "not yet".to_owned())
    });
    let copy = std::path::PathBuf::from(&summary.path);
    assert_eq!(refs(&copy), refs(work.path()));
    fsck(&copy);

    let (a_peak, b_peak) = (peak_rss(a.pid()), peak_rss(b.pid()));
    eprintln!("repository {size} bytes; peak RSS: owner {a_peak}, replica {b_peak}");
    // Holding the pack (or the repository) whole would take at least its size; the
    // node streams it, and libgit2 maps at most 32 MiB of pack data at a time.
    assert!(
        b_peak < size * 3 / 4,
        "replica peak RSS {b_peak} for a {size}-byte repository"
    );
    assert!(
        a_peak < size * 3 / 4,
        "owner peak RSS {a_peak} for a {size}-byte repository"
    );
}

/// Writes a linear history of `commits` commits into a new bare repository at `path`,
/// each changing one of 500 files; with `poison`, the first commit also holds a file at
/// `d/.GIT/config` (a tree entry git refuses to check out), which the second removes.
fn long_history(path: &std::path::Path, commits: usize, poison: bool) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let init = Command::new("git")
        .args(["init", "--quiet", "--bare"])
        .arg(path)
        .status()
        .unwrap();
    assert!(init.success());
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet", "--done"])
        .env("GIT_DIR", path)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = std::io::BufWriter::new(child.stdin.take().unwrap());
    for n in 1..=commits {
        write!(
            input,
            "commit refs/heads/main\nmark :{n}\ncommitter T <t@example.com> {n} +0000\ndata 0\n"
        )
        .unwrap();
        if n > 1 {
            writeln!(input, "from :{}", n - 1).unwrap();
        }
        writeln!(input, "M 100644 inline f/{}.txt\ndata 8\n{n:07}\n", n % 500).unwrap();
        match (poison, n) {
            (true, 1) => writeln!(input, "M 100644 inline d/.GIT/config\ndata 2\nx\n").unwrap(),
            (true, 2) => writeln!(input, "D d\n").unwrap(),
            _ => {}
        }
    }
    writeln!(input, "done").unwrap();
    drop(input);
    assert!(child.wait().unwrap().success(), "git fast-import");
}

#[test]
fn a_long_history_is_checked_to_its_first_commit_in_child_processes() {
    // Past the length from which the node checks a history in child processes (4096
    // commits a process), with the one bad tree in the first commit: the last process's
    // run.
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.git");
    let bad = tmp.path().join("bad.git");
    long_history(&good, 10_000, false);
    long_history(&bad, 10_000, true);
    let node = NodeSpec::loopback(&tmp.path().join("node"))
        .log_filter("info,guts_storage=debug")
        .spawn();

    let out = node.client(["repo", "import", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a history with .GIT was taken");
    assert!(
        stderr.contains(".GIT") && stderr.contains("git's own directory"),
        "{stderr}"
    );
    for what in [
        "history walked in a child process",
        "history checked in child processes",
    ] {
        assert!(
            node.log_text().contains(what),
            "no {what:?}: the node did it itself:\n{}",
            node.log_text()
        );
    }

    let out = node.client(["repo", "import", good.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log_text()
    );
    let repos: Vec<RepoSummary> = node.client_json("repo list").unwrap();
    assert_eq!(repos.len(), 1, "{repos:?}");
    assert_eq!(refs(std::path::Path::new(&repos[0].path)), refs(&good));
}
