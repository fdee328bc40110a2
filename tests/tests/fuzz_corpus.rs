//! Replays the committed fuzz seed corpora (`fuzz/corpus/<target>/`) through the same
//! code the cargo-fuzz targets in `fuzz/fuzz_targets/` run (fuzz/src/lib.rs, included
//! below), on stable Rust, so a regression on any seed fails the ordinary test suite;
//! fuzzing itself is `scripts/fuzz`.
//!
//! `cargo test -p guts-tests --test fuzz_corpus -- --ignored write_seed_corpora`
//! regenerates the seeds (deterministically: fixed keys, dates and names).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use guts_storage::{PackStats, Repositories, StorageError};
use targets::{entry_rules, frames, pack_ingest, pack_objects, signed_refs, wire_messages};

/// The fuzz targets' bodies: the very file the cargo-fuzz binaries build on.
/// (`scratch_repos` there is the fuzz binaries' own; the replays make their stores.)
#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod targets;

// ---- Replay ----------------------------------------------------------------------------

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs `body` on every file of `target`'s corpus; fails naming each file that panics.
fn replay(target: &str, mut body: impl FnMut(&str, &[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if catch_unwind(AssertUnwindSafe(|| body(&name, &data))).is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "{target}: panicked on {failed:?}");
}

#[test]
fn wire_messages_corpus() {
    replay("wire_messages", |_, data| wire_messages(data));
}

#[test]
fn signed_refs_corpus() {
    replay("signed_refs", |_, data| signed_refs(data));
}

#[test]
fn frames_corpus() {
    replay("frames", |_, data| frames(data));
}

/// `seed-bad-name-*` must be refused as tree entry names, `seed-bad-gitmodules-*` as
/// `.gitmodules` contents, `seed-ok-*` accepted as both's kind: the seeds pin the rules,
/// not only the absence of panics.
#[test]
fn entry_rules_corpus() {
    replay("entry_rules", |name, data| {
        entry_rules(data);
        let name_ok = guts_storage::check_entry_name(data).is_ok();
        let modules_ok = guts_storage::check_gitmodules(data).is_ok();
        if name.starts_with("seed-bad-name-") {
            assert!(!name_ok, "{name} accepted as an entry name");
        } else if name.starts_with("seed-bad-gitmodules-") {
            assert!(!modules_ok, "{name} accepted as .gitmodules");
        } else if name == "seed-ok-name" {
            assert!(name_ok, "{name} refused");
        } else if name == "seed-ok-gitmodules" {
            assert!(modules_ok, "{name} refused");
        }
    });
}

/// Replays a pack target's corpus into a store of its own. The seeds named `seed-ok-*`
/// are valid: if they stop being accepted, the fuzzer no longer reaches the checks
/// after indexing. Every other `seed-*` is an attack (a delta bomb, a `.git` entry, a
/// thin pack, a count one too high, ...) that must be refused; files the fuzzer added
/// (not `seed-*`) need only not panic.
fn replay_packs(
    target: &str,
    body: impl Fn(&Repositories, &[u8]) -> Option<Result<PackStats, StorageError>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let repos = Repositories::new(dir.path());
    let (mut accepted, mut refused) = (0, 0);
    replay(target, |name, data| {
        let result = body(&repos, data);
        if name.starts_with("seed-ok-") {
            match result {
                Some(Ok(_)) => accepted += 1,
                other => panic!("{name}: {other:?}"),
            }
        } else if name.starts_with("seed-") {
            match result {
                Some(Err(_)) => refused += 1,
                other => panic!("{name} must be refused: {other:?}"),
            }
        }
    });
    assert!(accepted > 0, "no seed-ok-* seed accepted");
    assert!(refused > 0, "no attack seed in the corpus");
}

#[test]
fn pack_ingest_corpus() {
    replay_packs("pack_ingest", pack_ingest);
}

#[test]
fn pack_objects_corpus() {
    replay_packs("pack_objects", pack_objects);
}

// ---- Seeds -----------------------------------------------------------------------------

/// Writes `fuzz/corpus/<target>/seed-*` (replacing the previous seeds, leaving any other
/// file there alone).
#[test]
#[ignore = "regenerates the committed seed corpora"]
fn write_seed_corpora() {
    seeds::write_all();
}

mod seeds {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use ed25519_dalek::SigningKey;
    use git2::{ObjectType, Oid, Repository};
    use guts_protocol::wire::{
        self, Announcement, MAX_REQUEST_SIZE, PackRequest, PackResponse, SyncRequest, SyncResponse,
    };
    use guts_protocol::{ObjectId, RefName, SignedRefs};

    use super::*;
    use guts_crafted::{delta_varint, entry_header, ofs_delta_offset, sha1, zlib_stored};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn reset(target: &str) -> PathBuf {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
            {
                std::fs::remove_file(path).unwrap();
            }
        }
        dir
    }

    fn put(dir: &Path, name: &str, data: &[u8]) {
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }

    fn snapshot(seed: u8, name: &str, sequence: u64, n: usize, head: bool) -> SignedRefs {
        let mut refs = BTreeMap::new();
        for i in 0..n {
            let name = if i % 3 == 2 {
                format!("refs/tags/v{i}")
            } else {
                format!("refs/heads/b{i}")
            };
            refs.insert(
                name.parse::<RefName>().unwrap(),
                ObjectId([i as u8 + 1; 20]),
            );
        }
        let head = head.then(|| refs.keys().next().unwrap().clone());
        SignedRefs::sign(&key(seed), name.parse().unwrap(), sequence, head, refs).unwrap()
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    pub fn write_all() {
        let s1 = snapshot(1, "demo", 1, 4, true);
        let s7 = snapshot(2, "other.repo", 7, 2, false);
        let id = s1.repository();
        let messages: Vec<(&str, Vec<u8>)> = vec![
            (
                "sync-get-refs",
                wire::encode(&SyncRequest::GetRefs { repository: id }),
            ),
            ("sync-list", wire::encode(&SyncRequest::ListRepositories)),
            (
                "resp-refs",
                wire::encode(&SyncResponse::Refs(Box::new(s1.clone()))),
            ),
            (
                "resp-refs-nohead",
                wire::encode(&SyncResponse::Refs(Box::new(s7.clone()))),
            ),
            ("resp-not-found", wire::encode(&SyncResponse::NotFound)),
            (
                "resp-rate-limited",
                wire::encode(&SyncResponse::RateLimited),
            ),
            (
                "resp-repositories",
                wire::encode(&SyncResponse::Repositories(vec![id, s7.repository()])),
            ),
            (
                "pack-request",
                wire::encode(&PackRequest {
                    repository: id,
                    wants: vec![ObjectId([1; 20]), ObjectId([2; 20])],
                    haves: vec![ObjectId([3; 20])],
                }),
            ),
            (
                "pack-pack",
                wire::encode(&PackResponse::Pack { objects: 300 }),
            ),
            ("pack-not-found", wire::encode(&PackResponse::NotFound)),
            ("pack-busy", wire::encode(&PackResponse::Busy)),
            (
                "pack-rate-limited",
                wire::encode(&PackResponse::RateLimited),
            ),
            (
                "pack-refused",
                wire::encode(&PackResponse::Refused("no such want".into())),
            ),
            ("announce-new-repo", wire::encode(&Announcement::of(&s1))),
            ("announce-new-commit", wire::encode(&Announcement::of(&s7))),
        ];
        let dir = reset("wire_messages");
        for (name, bytes) in &messages {
            put(&dir, name, bytes);
        }

        let dir = reset("frames");
        for (name, bytes) in &messages {
            if name.starts_with("sync") || name.starts_with("resp") {
                put(&dir, name, &frame(bytes));
            }
        }
        let get = wire::encode(&SyncRequest::GetRefs { repository: id });
        // Refused on the length alone, before the body is read.
        let mut oversized = ((MAX_REQUEST_SIZE + 1) as u32).to_be_bytes().to_vec();
        oversized.extend(&get);
        put(&dir, "oversized-request", &oversized);
        put(&dir, "truncated", &frame(&get)[..get.len()]);
        put(&dir, "max-length-announced", &u32::MAX.to_be_bytes());

        let dir = reset("signed_refs");
        put(&dir, "snapshot", &wire::encode(&s1));
        put(&dir, "snapshot-nohead", &wire::encode(&s7));
        put(
            &dir,
            "snapshot-empty",
            &wire::encode(&snapshot(3, "e", 2, 0, false)),
        );
        let mut tampered = s1.clone();
        tampered.signed.header.sequence = 2;
        put(&dir, "snapshot-bad-signature", &wire::encode(&tampered));
        for (name, text) in [
            ("repository-id", id.to_string()),
            (
                "object-id",
                "0123456789abcdef0123456789ABCDEF01234567".to_owned(),
            ),
            ("ref-name", "refs/heads/feature/x-y_z".to_owned()),
            ("ref-name-bad", "refs/heads/a..b@{1}.lock".to_owned()),
            ("repo-name", "guts-core_1.0".to_owned()),
            ("repo-name-unicode", ".g\u{200c}it".to_owned()),
        ] {
            put(&dir, name, text.as_bytes());
        }

        write_pack_seeds();
        write_object_seeds();
    }

    /// `git` with a fixed identity and dates, and no user or system config.
    fn git(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        use std::io::Write;
        let mut child = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Fuzz")
            .env("GIT_AUTHOR_EMAIL", "fuzz@example.invalid")
            .env("GIT_AUTHOR_DATE", "1700000000 +0000")
            .env("GIT_COMMITTER_NAME", "Fuzz")
            .env("GIT_COMMITTER_EMAIL", "fuzz@example.invalid")
            .env("GIT_COMMITTER_DATE", "1700000000 +0000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or_default())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "git {args:?}");
        out.stdout
    }

    /// The pack_ingest input for `pack` with `refs/heads/main` at `target`.
    fn ingest_input(how: u8, target: Oid, pack: &[u8]) -> Vec<u8> {
        let mut out = vec![how];
        out.extend(target.as_bytes());
        out.extend(pack);
        out
    }

    /// A repository of raw objects written straight into the object database, so no
    /// name or mode is vetted; packed whole by libgit2.
    struct Raw {
        _dir: tempfile::TempDir,
        repo: Repository,
        objects: Vec<Oid>,
    }

    impl Raw {
        fn new() -> Raw {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repository::init_bare(dir.path()).unwrap();
            Raw {
                _dir: dir,
                repo,
                objects: Vec::new(),
            }
        }

        fn write(&mut self, kind: ObjectType, data: &[u8]) -> Oid {
            let id = self.repo.odb().unwrap().write(kind, data).unwrap();
            self.objects.push(id);
            id
        }

        /// A tree of one entry.
        fn tree(&mut self, mode: &str, name: &[u8], id: Oid) -> Oid {
            let mut data = format!("{mode} ").into_bytes();
            data.extend(name);
            data.push(0);
            data.extend(id.as_bytes());
            self.write(ObjectType::Tree, &data)
        }

        fn commit(&mut self, tree: Oid) -> Oid {
            let text = format!(
                "tree {tree}\nauthor F <f@example.invalid> 1700000000 +0000\n\
                 committer F <f@example.invalid> 1700000000 +0000\n\nraw\n"
            );
            self.write(ObjectType::Commit, text.as_bytes())
        }

        fn pack(&self) -> Vec<u8> {
            let mut builder = self.repo.packbuilder().unwrap();
            for id in &self.objects {
                builder.insert_object(*id, None).unwrap();
            }
            let mut buf = git2::Buf::new();
            builder.write_buf(&mut buf).unwrap();
            buf.to_vec()
        }
    }

    fn write_pack_seeds() {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        git(
            w,
            &["-c", "init.defaultBranch=main", "init", "-q", "."],
            None,
        );
        // A file big enough that its second version is stored as a delta.
        let mut text: String = (0..60).map(|i| format!("line {i} of the file\n")).collect();
        std::fs::write(w.join("notes.txt"), &text).unwrap();
        std::fs::write(w.join("README"), "hello\n").unwrap();
        git(w, &["add", "."], None);
        git(w, &["commit", "-q", "-m", "first"], None);
        text.push_str("one more line\n");
        std::fs::write(w.join("notes.txt"), &text).unwrap();
        std::fs::create_dir(w.join("src")).unwrap();
        std::fs::write(w.join("src/lib.rs"), "pub fn a() {}\n").unwrap();
        git(w, &["add", "."], None);
        git(w, &["commit", "-q", "-m", "second"], None);
        git(w, &["tag", "-a", "-m", "release", "v1"], None);
        let rev = |r: &str| {
            let out = git(w, &["rev-parse", r], None);
            Oid::from_str(String::from_utf8(out).unwrap().trim()).unwrap()
        };
        let main = rev("main");
        let tag = rev("v1");
        let pack = |args: &[&str], revs: &str| {
            let mut a = vec!["pack-objects", "--stdout", "-q"];
            a.extend(args);
            git(w, &a, Some(revs.as_bytes()))
        };
        let ofs = pack(&["--revs", "--delta-base-offset"], "main\n");
        let refd = pack(&["--revs"], "main\n");
        let thin = pack(
            &["--revs", "--thin", "--delta-base-offset"],
            "main\n^main~1\n",
        );
        let newer = pack(&["--revs"], "main\n^main~1\n");
        let with_tag = pack(&["--revs", "--delta-base-offset"], "v1\n");

        let dir = reset("pack_ingest");
        put(&dir, "ok-ofs-delta", &ingest_input(0, main, &ofs));
        put(&dir, "ok-ref-delta", &ingest_input(0, main, &refd));
        put(&dir, "ok-split-in-header", &ingest_input(5, main, &ofs));
        put(&dir, "ok-chunks-of-7", &ingest_input(127 + 7, main, &ofs));
        put(&dir, "ok-annotated-tag", &ingest_input(0, tag, &with_tag));
        put(&dir, "thin", &ingest_input(0, main, &thin));
        put(&dir, "missing-parent", &ingest_input(0, main, &newer));
        put(
            &dir,
            "wrong-target",
            &ingest_input(0, Oid::from_bytes(&[9; 20]).unwrap(), &ofs),
        );
        put(&dir, "no-pack", &ingest_input(0, main, &[]));
        let mut flipped = ofs.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        put(&dir, "flipped-byte", &ingest_input(0, main, &flipped));
        put(
            &dir,
            "truncated",
            &ingest_input(0, main, &ofs[..ofs.len() / 2]),
        );
        let mut count = ofs.clone();
        count[11] += 1;
        put(&dir, "count-plus-one", &ingest_input(0, main, &count));
        let mut many = ofs.clone();
        many[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        put(&dir, "count-max", &ingest_input(0, main, &many));
        let mut trailer = ofs.clone();
        *trailer.last_mut().unwrap() ^= 1;
        put(&dir, "bad-checksum", &ingest_input(0, main, &trailer));

        // Trees nesting 5,000 levels (over the 4,096 limit).
        let mut raw = Raw::new();
        let blob = raw.write(ObjectType::Blob, b"deep\n");
        let mut top = raw.tree("100644", b"file", blob);
        for _ in 1..5000 {
            top = raw.tree("40000", b"d", top);
        }
        let commit = raw.commit(top);
        put(
            &dir,
            "deep-tree-5000",
            &ingest_input(0, commit, &raw.pack()),
        );

        // A tree entry named `.git`.
        let mut raw = Raw::new();
        let blob = raw.write(ObjectType::Blob, b"[core]\n\tworktree = /\n");
        let inner = raw.tree("100644", b"config", blob);
        let root = raw.tree("40000", b".git", inner);
        let commit = raw.commit(root);
        put(&dir, "dotgit-entry", &ingest_input(0, commit, &raw.pack()));

        // A .gitmodules that would run an option.
        let mut raw = Raw::new();
        let blob = raw.write(
            ObjectType::Blob,
            b"[submodule \"x\"]\n\tpath = x\n\turl = --upload-pack=touch$IFS/tmp/pwned\n",
        );
        let root = raw.tree("100644", b".gitmodules", blob);
        let commit = raw.commit(root);
        put(
            &dir,
            "gitmodules-option",
            &ingest_input(0, commit, &raw.pack()),
        );

        // A delta building 64 KiB from a 256-byte base (accepted: the ref names the blob
        // it builds), and one announcing a 2 GiB result (refused before libgit2 sees it).
        let base: Vec<u8> = (0..=255u8).collect();
        let result: Vec<u8> = base.iter().copied().cycle().take(65_536).collect();
        let blob = Oid::hash_object(ObjectType::Blob, &result).unwrap();
        put(
            &dir,
            "ok-delta-64k",
            &ingest_input(0, blob, &delta_pack(&base, 65_536)),
        );
        let bomb = delta_pack(&base, 2 << 30);
        put(&dir, "delta-bomb-2g", &ingest_input(0, blob, &bomb));

        check_seeds("pack_ingest", pack_ingest);
    }

    /// A pack of `base` as a blob and an offset delta on it that copies the whole base
    /// until it has built `result` bytes (in zlib stored blocks).
    fn delta_pack(base: &[u8], result: u64) -> Vec<u8> {
        let mut delta = delta_varint(base.len() as u64);
        delta.extend(delta_varint(result));
        let size = u16::try_from(base.len()).unwrap().to_le_bytes();
        // Copy from offset 0 (no offset bytes), two size bytes; at most 64 KiB of them.
        for _ in 0..(result / base.len() as u64).min(256) {
            delta.extend([0x80 | 0x10 | 0x20, size[0], size[1]]);
        }
        let mut pack = b"PACK".to_vec();
        pack.extend(2u32.to_be_bytes());
        pack.extend(2u32.to_be_bytes());
        let base_at = pack.len();
        pack.extend(entry_header(3, base.len() as u64));
        pack.extend(zlib_stored(base));
        let delta_at = pack.len();
        pack.extend(entry_header(6, delta.len() as u64));
        pack.extend(ofs_delta_offset((delta_at - base_at) as u64));
        pack.extend(zlib_stored(&delta));
        let trailer = sha1(&pack);
        pack.extend(trailer);
        pack
    }

    /// Checks that a pack target accepts its `seed-ok-*` seeds and refuses the others.
    fn check_seeds(
        target: &str,
        body: impl Fn(&Repositories, &[u8]) -> Option<Result<PackStats, StorageError>>,
    ) {
        let store = tempfile::tempdir().unwrap();
        let repos = Repositories::new(store.path());
        let mut files: Vec<_> = std::fs::read_dir(corpus_dir(target))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let result = body(&repos, &std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(
                result.is_ok(),
                name.starts_with("seed-ok-"),
                "{name}: {result:?}"
            );
            println!("{target}/{name}: {:?}", result.map_err(|e| e.to_string()));
        }
    }

    const COMMIT: u8 = 0;
    const TREE: u8 = 1;
    const BLOB: u8 = 2;
    const TAG: u8 = 3;

    /// A pack_objects input: `pick`, then each object's kind, length and content.
    fn objects(pick: u8, objects: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![pick];
        for (kind, body) in objects {
            out.push(*kind);
            out.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
            out.extend(body);
        }
        out
    }

    /// A tree's content (entries in git's order); each entry names the object `back + 1`
    /// places before the tree.
    fn tree(entries: &[(&str, &[u8], u8)]) -> (u8, Vec<u8>) {
        let mut out = Vec::new();
        for (mode, name, back) in entries {
            out.extend(mode.as_bytes());
            out.push(b' ');
            out.extend(*name);
            out.extend([0, 0xfe, *back]);
        }
        (TREE, out)
    }

    fn blob(content: &[u8]) -> (u8, Vec<u8>) {
        (BLOB, content.to_vec())
    }

    /// A commit of the tree `tree + 1` places before it, with parents likewise.
    fn commit(tree: u8, parents: &[u8]) -> (u8, Vec<u8>) {
        let mut out = vec![b't', b'r', b'e', b'e', b' ', 0xfd, tree, b'\n'];
        for p in parents {
            out.extend(b"parent ");
            out.extend([0xfd, *p, b'\n']);
        }
        out.extend(
            b"author F <f@example.invalid> 1700000000 +0000\n\
              committer F <f@example.invalid> 1700000000 +0000\n\nfuzz\n",
        );
        (COMMIT, out)
    }

    fn tag(back: u8, kind: &str, name: &str) -> (u8, Vec<u8>) {
        let mut out = b"object ".to_vec();
        out.extend([0xfd, back]);
        out.extend(
            format!(
                "\ntype {kind}\ntag {name}\ntagger F <f@example.invalid> 1700000000 +0000\n\nrelease\n"
            )
            .as_bytes(),
        );
        (TAG, out)
    }

    /// A commit whose root tree holds one entry `name` (mode `mode`) of `content`.
    fn one_entry(mode: &str, name: &[u8], content: (u8, Vec<u8>)) -> Vec<u8> {
        objects(0, &[content, tree(&[(mode, name, 0)]), commit(0, &[])])
    }

    fn write_object_seeds() {
        let dir = reset("pack_objects");
        let hello = || blob(b"hello\n");
        put(&dir, "ok-commit", &one_entry("100644", b"README", hello()));
        // 0 blob, 1 tree, 2 commit, 3 blob, 4 tree src, 5 tree, 6 commit (parent 2).
        let history = [
            hello(),
            tree(&[("100644", b"README", 0)]),
            commit(0, &[]),
            blob(b"pub fn a() {}\n"),
            tree(&[("100644", b"lib.rs", 0)]),
            tree(&[("100644", b"README", 4), ("40000", b"src", 0)]),
            commit(0, &[3]),
        ];
        put(&dir, "ok-history", &objects(0, &history));
        let mut tagged = history.to_vec();
        tagged.push(tag(0, "commit", "v1"));
        tagged.push(tag(0, "tag", "v1-again"));
        put(&dir, "ok-tag-of-tag", &objects(0, &tagged));
        // The ref names a tree: a file, a symbolic link, an executable, a submodule.
        let (_, mut entries) = tree(&[
            ("100644", b".gitignore", 0),
            ("120000", b"link", 0),
            ("100755", b"run.sh", 0),
        ]);
        entries.extend(b"160000 sub\0");
        entries.extend([0x11; 20]);
        put(
            &dir,
            "ok-tree-target",
            &objects(0, &[hello(), (TREE, entries)]),
        );
        let modules = |url: &str| {
            blob(format!("[submodule \"lib\"]\n\tpath = lib\n\turl = {url}\n").as_bytes())
        };
        let url = "https://example.invalid/lib";
        put(
            &dir,
            "ok-gitmodules",
            &one_entry("100644", b".gitmodules", modules(url)),
        );
        let evil = "--upload-pack=touch$IFS/tmp/pwned";
        put(
            &dir,
            "gitmodules-option",
            &one_entry("100644", b".gitmodules", modules(evil)),
        );
        put(
            &dir,
            "gitmodules-symlink",
            &one_entry("120000", b".gitmodules", modules(url)),
        );
        for (name, entry) in [
            ("dotgit", &b".git"[..]),
            ("dotgit-case", b".GIT"),
            ("dotgit-short", b"git~1"),
            ("dotgit-hfs", ".g\u{200c}it".as_bytes()),
            ("dotdot", b".."),
            ("slash", b"a/b"),
        ] {
            put(&dir, name, &one_entry("100644", entry, hello()));
        }
        // libgit2 reads an odd mode as git does: a blob.
        put(&dir, "ok-odd-mode", &one_entry("170000", b"x", hello()));
        let dup = [
            hello(),
            tree(&[("100644", b"a", 0), ("100644", b"a", 0)]),
            commit(0, &[]),
        ];
        put(&dir, "duplicate-entry", &objects(0, &dup));
        let mut missing_parent = objects(0, &[hello(), tree(&[("100644", b"a", 0)])]);
        let (_, mut c) = commit(0, &[]);
        c.splice(8..8, format!("parent {}\n", "a".repeat(40)).into_bytes());
        missing_parent.push(COMMIT);
        missing_parent.extend(u16::try_from(c.len()).unwrap().to_be_bytes());
        missing_parent.extend(c);
        put(&dir, "missing-parent", &missing_parent);
        // Trees nesting 5,000 levels (over the 4,096 limit).
        let mut deep = vec![hello(), tree(&[("100644", b"file", 0)])];
        deep.extend(std::iter::repeat_n(tree(&[("40000", b"d", 0)]), 4999));
        deep.push(commit(0, &[]));
        put(&dir, "deep-tree-5000", &objects(0, &deep));
        check_seeds("pack_objects", pack_objects);
    }
}
