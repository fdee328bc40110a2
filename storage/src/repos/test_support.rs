//! Fixtures and helpers shared by the repository tests.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use ed25519_dalek::SigningKey;
use git2::{Oid, Repository, Signature};
use guts_protocol::{RepositoryId, SignedRefs};

use super::shared::SharedAccepted;
use super::{PackStats, Pushed, RefUpdate, Repositories, object_id};
use crate::StorageError;

/// A working repository with history: main with a merge from a feature branch, an
/// annotated and a lightweight tag.
pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) repo: Repository,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path().join("demo")).unwrap();
        let fx = Fixture { _dir: dir, repo };
        let c1 = fx.commit("refs/heads/main", &[("README", "hello\n")], &[]);
        let c2 = fx.commit(
            "refs/heads/main",
            &[("README", "hello\nworld\n"), ("src/a.rs", "fn a() {}\n")],
            &[c1],
        );
        let f1 = fx.commit(
            "refs/heads/feature",
            &[("README", "hello\n"), ("src/b.rs", "fn b() {}\n")],
            &[c1],
        );
        let m = fx.commit(
            "refs/heads/main",
            &[
                ("README", "hello\nworld\n"),
                ("src/a.rs", "fn a() {}\n"),
                ("src/b.rs", "fn b() {}\n"),
            ],
            &[c2, f1],
        );
        {
            let sig = Signature::now("T", "t@example.com").unwrap();
            let obj = fx.repo.find_object(m, None).unwrap();
            fx.repo.tag("v1", &obj, &sig, "release 1", false).unwrap();
            fx.repo
                .reference("refs/tags/v0", c1, false, "light")
                .unwrap();
            fx.repo.set_head("refs/heads/main").unwrap();
        }
        fx
    }

    pub(super) fn path(&self) -> &Path {
        self.repo.workdir().unwrap()
    }

    pub(super) fn commit(&self, branch: &str, files: &[(&str, &str)], parents: &[Oid]) -> Oid {
        let mut index = git2::Index::new().unwrap();
        for (name, content) in files {
            let blob = self.repo.blob(content.as_bytes()).unwrap();
            let mut entry = git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: content.len() as u32,
                id: blob,
                flags: 0,
                flags_extended: 0,
                path: name.as_bytes().to_vec(),
            };
            entry.flags = name.len() as u16 & 0xfff;
            index.add(&entry).unwrap();
        }
        let tree = self
            .repo
            .find_tree(index.write_tree_to(&self.repo).unwrap())
            .unwrap();
        let parents: Vec<_> = parents
            .iter()
            .map(|p| self.repo.find_commit(*p).unwrap())
            .collect();
        let parent_refs: Vec<_> = parents.iter().collect();
        let sig = Signature::now("T", "t@example.com").unwrap();
        let c = self
            .repo
            .commit(None, &sig, &sig, "change", &tree, &parent_refs)
            .unwrap();
        self.repo.reference(branch, c, true, "commit").unwrap();
        c
    }
}

pub(super) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub(super) fn store() -> (tempfile::TempDir, Repositories) {
    let dir = tempfile::tempdir().unwrap();
    let repos = Repositories::new(dir.path());
    (dir, repos)
}

/// Builds the pack `from` would send for `snapshot` to `to`.
pub(super) fn pack_for(
    from: &Repositories,
    to: &Repositories,
    snapshot: &SignedRefs,
) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    from.build_pack(
        &snapshot.repository(),
        &to.wants(snapshot).unwrap(),
        &to.haves(&snapshot.repository()).unwrap(),
        &mut |_| {},
        &mut |c| {
            chunks.push(c.to_vec());
            true
        },
    )
    .unwrap();
    chunks
}

pub(super) fn accept(
    to: &Repositories,
    snapshot: &SignedRefs,
    chunks: Vec<Vec<u8>>,
) -> Result<PackStats, StorageError> {
    let mut it = chunks.into_iter().map(Ok);
    to.accept(snapshot, Some(&mut it), &mut |_| {})
}

pub(super) fn git_refs(repos: &Repositories, id: &RepositoryId) -> BTreeMap<String, Oid> {
    let repo = Repository::open_bare(repos.path(id)).unwrap();
    let mut out = BTreeMap::new();
    for r in repo.references().unwrap().flatten() {
        if let (Ok(n), Some(t)) = (r.name(), r.target()) {
            out.insert(n.to_owned(), t);
        }
    }
    out
}

/// Pack files (`.pack`) in the repository.
pub(super) fn pack_files(repos: &Repositories, id: &RepositoryId) -> usize {
    fs::read_dir(repos.path(id).join("objects/pack"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
        .unwrap_or(0)
}

pub(super) fn fsck(path: &Path) {
    let out = std::process::Command::new("git")
        .args(["fsck", "--full", "--strict"])
        .current_dir(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git fsck: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `git push` from the fixture into `area` with git keeping what it receives as
/// a pack (as it does for any push of 100 objects or more); returns the area's packs.
/// `spec` is one refspec or several separated by spaces.
pub(super) fn git_push(fx: &Fixture, area: &std::path::Path, spec: &str) -> Vec<String> {
    let out = std::process::Command::new("git")
        .args(["push", "--quiet", "--force", "--no-verify"])
        .arg("--receive-pack=git -c receive.unpackLimit=1 receive-pack")
        .arg(area)
        .args(spec.split_whitespace())
        .current_dir(fx.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut packs: Vec<String> = std::fs::read_dir(area.join("objects/pack"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pack"))
        .collect();
    packs.sort();
    packs
}

/// Pushes `commit` to `branch` of `id` as `key` through a push area, as git-remote-guts
/// does (fast-forward).
pub(super) fn push_to(
    repos: &Repositories,
    fx: &Fixture,
    id: &RepositoryId,
    key: &SigningKey,
    branch: &str,
    commit: Oid,
) -> Result<Pushed, StorageError> {
    let area = repos.create_staging(id, key)?;
    git_push(fx, &area, &format!("{commit}:{branch}"));
    let update = RefUpdate {
        name: branch.into(),
        new: Some(object_id(commit)),
        force: false,
    };
    repos.push(id, &area, &[update], key)
}

/// Sends everything `from` holds of `id` to `to`, with the objects `to` lacks.
pub(super) fn replicate(
    from: &Repositories,
    to: &Repositories,
    id: &RepositoryId,
) -> Result<SharedAccepted, StorageError> {
    let state = from.held(id).unwrap().unwrap().into_state().shared();
    let targets: Vec<_> = {
        let mut t: Vec<_> = state
            .views
            .iter()
            .flat_map(|v| v.refs.values().copied())
            .collect();
        t.sort();
        t.dedup();
        t
    };
    let wants = to.missing(id, &targets).unwrap();
    let mut chunks = Vec::new();
    if !wants.is_empty() {
        from.build_pack(id, &wants, &to.haves(id).unwrap(), &mut |_| {}, &mut |c| {
            chunks.push(c.to_vec());
            true
        })
        .unwrap();
    }
    let mut it = chunks.into_iter().map(Ok);
    to.accept_shared(id, state, Some(&mut it), &mut |_| {})
}
