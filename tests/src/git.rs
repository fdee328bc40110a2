//! Real git repositories for tests and benchmarks, built with libgit2.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use git2::{IndexEntry, IndexTime, Oid, Repository, Signature};
use tempfile::TempDir;

/// A working repository in a temporary directory.
pub struct WorkRepo {
    _dir: TempDir,
    path: PathBuf,
    pub repo: Repository,
    /// Commit time of the next commit: a minute later each time, as in real history
    /// (git's fetch negotiation walks commits by date).
    clock: std::cell::Cell<i64>,
}

impl WorkRepo {
    /// An empty repository named `name`.
    pub fn new(name: &str) -> WorkRepo {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        let repo = Repository::init(&path).expect("git init");
        WorkRepo {
            _dir: dir,
            path,
            repo,
            clock: std::cell::Cell::new(1_700_000_000),
        }
    }

    /// A repository with history: `main` with three commits and a merge of `feature`
    /// (two commits), an annotated tag `v1` and a lightweight tag `v0`, HEAD on `main`.
    pub fn with_history(name: &str) -> WorkRepo {
        let w = WorkRepo::new(name);
        let c1 = w.commit(
            "refs/heads/main",
            &[("README.md", b"# demo\n".as_slice())],
            "first",
        );
        w.commit(
            "refs/heads/main",
            &[("src/lib.rs", b"pub fn a() {}\n".as_slice())],
            "add lib",
        );
        w.branch("feature", c1);
        w.commit(
            "refs/heads/feature",
            &[("src/feature.rs", b"pub fn f() {}\n".as_slice())],
            "feature 1",
        );
        w.commit(
            "refs/heads/feature",
            &[("src/feature.rs", b"pub fn f() { g() }\n".as_slice())],
            "feature 2",
        );
        w.merge("refs/heads/main", "refs/heads/feature", "merge feature");
        w.commit(
            "refs/heads/main",
            &[("CHANGES", b"v1\n".as_slice())],
            "changes",
        );
        w.tag_annotated("v1", "refs/heads/main");
        w.repo
            .reference("refs/tags/v0", c1, true, "tag")
            .expect("tag");
        w.repo.set_head("refs/heads/main").expect("HEAD");
        w
    }

    /// The working tree.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tip(&self, branch: &str) -> Option<Oid> {
        self.repo.refname_to_id(branch).ok()
    }

    /// A commit on `branch` that adds or replaces `files` on top of its tip.
    pub fn commit(&self, branch: &str, files: &[(&str, &[u8])], message: &str) -> Oid {
        let parent = self.tip(branch);
        self.commit_with_parents(branch, files, message, parent.into_iter().collect())
    }

    fn commit_with_parents(
        &self,
        branch: &str,
        files: &[(&str, &[u8])],
        message: &str,
        parents: Vec<Oid>,
    ) -> Oid {
        let mut index = git2::Index::new().expect("index");
        if let Some(first) = parents.first() {
            let tree = self
                .repo
                .find_commit(*first)
                .expect("parent")
                .tree()
                .expect("tree");
            index.read_tree(&tree).expect("read tree");
        }
        for (path, data) in files {
            let blob = self.repo.blob(data).expect("write blob");
            let entry = IndexEntry {
                ctime: IndexTime::new(0, 0),
                mtime: IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: data.len() as u32,
                id: blob,
                // The low 12 bits hold the path length.
                flags: path.len().min(0xfff) as u16,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            index.add(&entry).expect("add file");
        }
        let tree_id = index.write_tree_to(&self.repo).expect("write tree");
        let tree = self.repo.find_tree(tree_id).expect("tree");
        let parents: Vec<_> = parents
            .iter()
            .map(|p| self.repo.find_commit(*p).expect("parent"))
            .collect();
        let parent_refs: Vec<_> = parents.iter().collect();
        let when = self.clock.get();
        self.clock.set(when + 60);
        let sig = Signature::new("Test", "test@example.com", &git2::Time::new(when, 0))
            .expect("signature");
        let id = self
            .repo
            .commit(None, &sig, &sig, message, &tree, &parent_refs)
            .expect("commit");
        self.repo
            .reference(branch, id, true, message)
            .expect("move branch");
        id
    }

    /// Creates branch `name` at `at`.
    pub fn branch(&self, name: &str, at: Oid) {
        self.repo
            .reference(&format!("refs/heads/{name}"), at, true, "branch")
            .expect("branch");
    }

    /// A merge commit on `into` of `from`, keeping `into`'s tree plus `from`'s files.
    pub fn merge(&self, into: &str, from: &str, message: &str) -> Oid {
        let (a, b) = (self.tip(into).expect("into"), self.tip(from).expect("from"));
        let theirs = self
            .repo
            .find_commit(b)
            .expect("from")
            .tree()
            .expect("tree");
        let mut files = Vec::new();
        theirs
            .walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
                if let Some(git2::ObjectType::Blob) = entry.kind() {
                    let blob = self.repo.find_blob(entry.id()).expect("blob");
                    files.push((
                        format!("{dir}{}", entry.name().unwrap_or("")),
                        blob.content().to_vec(),
                    ));
                }
                git2::TreeWalkResult::Ok
            })
            .expect("walk");
        let files: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_slice()))
            .collect();
        self.commit_with_parents(into, &files, message, vec![a, b])
    }

    /// An annotated tag `name` at the tip of `branch`.
    pub fn tag_annotated(&self, name: &str, branch: &str) {
        let target = self
            .repo
            .find_object(self.tip(branch).expect("branch"), None)
            .expect("object");
        let sig = Signature::new(
            "Test",
            "test@example.com",
            &git2::Time::new(1_700_000_000, 0),
        )
        .expect("signature");
        self.repo.tag(name, &target, &sig, name, true).expect("tag");
    }
}

/// Branches and tags of the repository at `path`: name to target.
pub fn refs(path: &Path) -> BTreeMap<String, String> {
    let repo = Repository::open(path).expect("open repository");
    let mut out = BTreeMap::new();
    for r in repo.references().expect("refs").flatten() {
        if let (Ok(name), Some(target)) = (r.name(), r.target())
            && (name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
        {
            out.insert(name.to_owned(), target.to_string());
        }
    }
    out
}

/// Runs `git fsck --full --strict` in `path` and panics with its output if it fails.
/// A node may be repacking the store in the background (packs replaced under fsck's
/// feet), so a failure is retried for a few seconds; a corrupt store fails every time.
pub fn fsck(path: &Path) {
    crate::eventually(Duration::from_secs(10), "a clean git fsck", || {
        let out = Command::new("git")
            .args(["fsck", "--full", "--strict", "--no-dangling"])
            .current_dir(path)
            .output()
            .expect("run git fsck");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "git fsck in {} failed:\n{}{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
}

/// Deterministic pseudo-random bytes (xorshift), so generated repositories are the same
/// every run without a random-number dependency.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Noise(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// The shape of a synthetic repository.
#[derive(Debug, Clone, Copy)]
pub struct Synthetic {
    /// Commits on `main`.
    pub commits: usize,
    /// Text files; each commit edits a few (edits that delta well).
    pub text_files: usize,
    /// Every this many commits, a binary file (incompressible) is added or replaced.
    pub binary_every: usize,
    /// Size of each binary file.
    pub binary_size: usize,
    /// Pseudo-random seed.
    pub seed: u64,
}

impl Synthetic {
    /// Builds the repository: realistic history (source files growing and changing a
    /// few lines at a time, occasional binary assets), a release tag every 100 commits
    /// and a side branch.
    pub fn build(&self, name: &str) -> WorkRepo {
        let w = WorkRepo::new(name);
        let mut noise = Noise::new(self.seed);
        let mut texts: Vec<Vec<String>> = (0..self.text_files)
            .map(|f| {
                (0..40)
                    .map(|l| format!("// file {f} line {l}: {}", noise.next_u64() % 100_000))
                    .collect()
            })
            .collect();
        for c in 0..self.commits {
            let mut files: Vec<(String, Vec<u8>)> = Vec::new();
            for _ in 0..3 {
                let f = (noise.next_u64() as usize) % self.text_files;
                let lines = &mut texts[f];
                let at = (noise.next_u64() as usize) % lines.len();
                if noise.next_u64().is_multiple_of(3) {
                    lines.insert(
                        at,
                        format!("fn f{c}_{at}() {{ /* {} */ }}", noise.next_u64() % 1000),
                    );
                } else {
                    lines[at] = format!("// edited in commit {c}: {}", noise.next_u64() % 100_000);
                }
                files.push((
                    format!("src/mod{}/file{f}.rs", f % 7),
                    (lines.join("\n") + "\n").into_bytes(),
                ));
            }
            if self.binary_every > 0 && c % self.binary_every == 0 {
                let n = (noise.next_u64() as usize) % 8;
                files.push((format!("assets/blob{n}.bin"), noise.bytes(self.binary_size)));
            }
            let refs: Vec<(&str, &[u8])> = files
                .iter()
                .map(|(p, d)| (p.as_str(), d.as_slice()))
                .collect();
            w.commit("refs/heads/main", &refs, &format!("commit {c}"));
            if c > 0 && c % 100 == 0 {
                w.tag_annotated(&format!("v0.{}", c / 100), "refs/heads/main");
            }
            if c == self.commits / 2 {
                let at = w.tip("refs/heads/main").expect("main");
                w.branch("maintenance", at);
            }
        }
        w.commit(
            "refs/heads/maintenance",
            &[("MAINTENANCE", b"fixes\n".as_slice())],
            "maintenance fix",
        );
        w.repo.set_head("refs/heads/main").expect("HEAD");
        w
    }
}

/// Size on disk of the directory tree at `path`.
pub fn disk_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            total += if p.is_dir() {
                disk_size(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    total
}

/// A large generated history, streamed into `git fast-import`: `commits` commits on
/// `refs/heads/main`, each rewriting one of 20,000 small text files (20 x 20 directories
/// of 50 files) to three pseudo-random lines, and an annotated tag every `commits / 10`
/// commits. Each commit brings five objects (itself, a blob, three trees), so 200,000
/// commits make a million objects: the scale git servers see, built in a minute or two.
#[derive(Debug, Clone, Copy)]
pub struct Wide {
    pub commits: usize,
    pub seed: u64,
}

impl Wide {
    /// Writes the history into a new bare repository at `path` and returns its object
    /// count (as `git count-objects` sees it once fast-import has packed it).
    pub fn build(&self, path: &Path) -> usize {
        use std::io::Write;
        let init = Command::new("git")
            .args(["init", "--quiet", "--bare"])
            .arg(path)
            .status()
            .expect("run git init");
        assert!(init.success(), "git init --bare {}", path.display());
        // HEAD names the branch the history is on, so a clone checks it out.
        let head = Command::new("git")
            .args(["symbolic-ref", "HEAD", "refs/heads/main"])
            .env("GIT_DIR", path)
            .status()
            .expect("run git symbolic-ref");
        assert!(head.success(), "git symbolic-ref in {}", path.display());
        let mut child = Command::new("git")
            .args(["fast-import", "--quiet", "--done"])
            .env("GIT_DIR", path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run git fast-import");
        let mut input = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
        let mut noise = Noise::new(self.seed);
        let tag_every = (self.commits / 10).max(1);
        let when = 1_700_000_000u64;
        for n in 1..=self.commits {
            let file = noise.next_u64() % 20_000;
            let path = format!(
                "d{:02}/s{:02}/f{:02}.txt",
                file / 1000,
                file / 50 % 20,
                file % 50
            );
            let content = format!(
                "{:016x}\n{:016x}\n{:016x}\n",
                noise.next_u64(),
                noise.next_u64(),
                noise.next_u64()
            );
            let message = format!("change {n}: {path}\n");
            write!(
                input,
                "commit refs/heads/main\nmark :{n}\n\
                 committer Wide <wide@example.com> {} +0000\n\
                 data {}\n{message}",
                when + n as u64,
                message.len()
            )
            .and_then(|_| {
                if n > 1 {
                    writeln!(input, "from :{}", n - 1)?;
                }
                write!(
                    input,
                    "M 100644 inline {path}\ndata {}\n{content}\n",
                    content.len()
                )
            })
            .expect("write to git fast-import");
            if n % tag_every == 0 {
                let message = format!("release {}\n", n / tag_every);
                write!(
                    input,
                    "tag v{}\nfrom :{n}\ntagger Wide <wide@example.com> {} +0000\ndata {}\n{message}\n",
                    n / tag_every,
                    when + n as u64,
                    message.len()
                )
                .expect("write to git fast-import");
            }
        }
        writeln!(input, "done").expect("write to git fast-import");
        drop(input);
        let status = child.wait().expect("wait for git fast-import");
        assert!(status.success(), "git fast-import into {}", path.display());
        let out = Command::new("git")
            .args(["count-objects", "-v"])
            .env("GIT_DIR", path)
            .output()
            .expect("run git count-objects");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.strip_prefix("count: ")
                    .or_else(|| l.strip_prefix("in-pack: "))
            })
            .filter_map(|v| v.trim().parse::<usize>().ok())
            .sum()
    }
}

/// A bare repository at `dir` of `refs - 1` root commits, each the target of a tag of its
/// own, and `main`: `refs` refs, made by git fast-import (100,000 in a few seconds).
pub fn many_refs_repo(dir: &Path, refs: usize) {
    let out = Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut import = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stream = String::with_capacity(refs * 110);
    for i in 0..refs - 1 {
        let message = format!("commit {i}\n");
        stream.push_str(&format!(
            "commit refs/tags/t{i:06}\ncommitter T <t@example.com> {} +0000\ndata {}\n{message}\n",
            1_600_000_000 + i,
            message.len()
        ));
    }
    // HEAD's branch, so the repository has one.
    stream.push_str("reset refs/heads/main\nfrom refs/tags/t000000\n\n");
    import
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(import.wait().unwrap().success());
}
