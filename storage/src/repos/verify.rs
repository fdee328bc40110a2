//! What a snapshot's objects must satisfy before it is applied: every target present and
//! fully connected, tags followed to their end, and every new commit's tree by the rules
//! of [`super::trees`]; the history walk, here or in check workers.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::Path;
use std::str::FromStr;

use git2::{ObjectType, Oid, Repository};
use guts_protocol::{ObjectId, RepositoryId};

use super::trees::TreeChecker;
use super::{Limits, check_workers, git, object_id, oid, read_quarantine};
use crate::StorageError;

/// Where a ref's target leads once its tags are followed.
#[derive(Clone, Copy)]
struct Peeled {
    id: Oid,
    kind: Option<ObjectType>,
    /// Tags followed to get there.
    tags: usize,
}

/// Checks that every one of `targets` (ref targets of repository `id`) is present and
/// fully connected: for
/// commits, all history not reachable from `known` (tips already verified) with every
/// tree and blob; for tags, what they point at. Each new tree is checked against
/// `limits` and git's rules for entries. `quarantine` is an objects directory `repo`
/// reads as an alternate (the received packs), which processes that open `repo` again
/// must add too.
pub(super) fn check_targets(
    repo: &Repository,
    quarantine: Option<&Path>,
    id: RepositoryId,
    targets: &[ObjectId],
    known: &[Oid],
    new_objects: usize,
    limits: &Limits,
) -> Result<(), StorageError> {
    let mut trees = TreeChecker::new(repo, id, limits)?;
    // Where each tag already followed leads, and through how many tags, so a chain
    // that many refs share is read once: linear in the refs and the tags, not their
    // product. The depth is the whole chain's, whichever ref reached it first.
    let mut peeled: HashMap<Oid, Peeled> = HashMap::new();
    let mut tips = Vec::new();
    for target in targets {
        let start = oid(target);
        if peeled.contains_key(&start) {
            // Seen before: its commit is a tip already, its tree checked.
            continue;
        }
        let mut object = repo
            .find_object(start, None)
            .map_err(|_| trees.missing(start))?;
        let mut chain = Vec::new();
        let mut end = None;
        while object.kind() == Some(ObjectType::Tag) {
            if let Some(known) = peeled.get(&object.id()) {
                end = Some(*known);
                break;
            }
            chain.push(object.id());
            if chain.len() > limits.max_tree_depth {
                break;
            }
            let tag = object.into_tag().map_err(|o| trees.missing(o.id()))?;
            let target_id = tag.target_id();
            object = tag.target().map_err(|_| trees.missing(target_id))?;
        }
        let end = end.unwrap_or(Peeled {
            id: object.id(),
            kind: object.kind(),
            tags: 0,
        });
        // A chain of tags is a chain of objects to read: bounded like tree depth.
        if chain.len() + end.tags > limits.max_tree_depth {
            return Err(trees.bad(start, "a chain of tags too long to follow"));
        }
        for (i, tag) in chain.iter().enumerate() {
            let tags = end.tags + chain.len() - i;
            peeled.insert(*tag, Peeled { tags, ..end });
        }
        peeled.insert(
            start,
            Peeled {
                tags: end.tags + chain.len(),
                ..end
            },
        );
        match end.kind {
            Some(ObjectType::Commit) => tips.push(end.id),
            Some(ObjectType::Tree) => trees.check(end.id)?,
            _ => {}
        }
    }
    tips.sort_unstable();
    tips.dedup();
    if tips.is_empty() {
        return Ok(());
    }
    let hidden: Vec<Oid> = known
        .iter()
        .filter_map(|k| {
            repo.find_object(*k, None)
                .and_then(|o| o.peel_to_commit())
                .ok()
        })
        .map(|commit| commit.id())
        .collect();
    // The walk reads every new commit and fails on a missing parent; the commits' trees
    // are checked after it. Both run in child processes when there are many.
    let commits = match check_workers::walk_in_worker(
        repo.path(),
        quarantine,
        id,
        &tips,
        &hidden,
        new_objects,
        limits,
    ) {
        Some(walked) => walked?,
        None => walk(repo, id, &tips, &hidden)?,
    };
    if let Some(outcome) =
        check_workers::check_in_workers(repo.path(), quarantine, id, &commits, limits)
    {
        return outcome;
    }
    trees.check_commits(&commits)
}

/// The commits reachable from `tips` and not from `hidden`, in libgit2's walk order
/// (newest first along each line of history); a missing parent makes the history
/// incomplete.
pub(super) fn walk(
    repo: &Repository,
    id: RepositoryId,
    tips: &[Oid],
    hidden: &[Oid],
) -> Result<Vec<Oid>, StorageError> {
    let mut walk = repo.revwalk().map_err(git("starting a walk"))?;
    for tip in tips {
        walk.push(*tip).map_err(|_| StorageError::MissingObject {
            repository: id,
            object: object_id(*tip),
        })?;
    }
    for commit in hidden {
        let _ = walk.hide(*commit);
    }
    walk.map(|commit| {
        commit.map_err(|e| StorageError::Incomplete {
            repository: id,
            reason: e.message().to_owned(),
        })
    })
    .collect()
}

/// The checker's side: `args` are the repository's git dir, the quarantine objects
/// directory (or `-`), the repository id and the tree depth limit; stdin holds the
/// commits to check, one id per line. Prints nothing and returns 0 if they pass, else
/// prints one verdict line and returns 1 (2 for bad arguments). With a fifth argument
/// `walk`, stdin holds `tip <id>` and `hide <id>` lines and the commits walked are
/// printed, one id per line, before any verdict.
pub fn check_worker_main(args: &[OsString]) -> i32 {
    let (args, walking) = match args {
        [rest @ .., last] if last == "walk" => (rest, true),
        _ => (args, false),
    };
    let [repo, quarantine, id, depth] = args else {
        eprintln!(
            "usage: {} GIT_DIR QUARANTINE|- REPOSITORY MAX_TREE_DEPTH [walk] < commits",
            check_workers::CHECK_WORKER_ARG
        );
        return 2;
    };
    let id = id.to_str().and_then(|s| RepositoryId::from_str(s).ok());
    let depth = depth.to_str().and_then(|s| s.parse::<usize>().ok());
    let (Some(id), Some(max_tree_depth)) = (id, depth) else {
        eprintln!(
            "{}: bad repository id or depth: {args:?}",
            check_workers::CHECK_WORKER_ARG
        );
        return 2;
    };
    let limits = Limits {
        max_tree_depth,
        ..Limits::default()
    };
    let outcome = (|| -> Result<(), StorageError> {
        let repo = Repository::open(repo).map_err(git(format!("opening {repo:?}")))?;
        if quarantine != "-" {
            read_quarantine(&repo, Path::new(quarantine))?;
        }
        let mut commits = Vec::new();
        let (mut tips, mut hidden) = (Vec::new(), Vec::new());
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| StorageError::Transfer(e.to_string()))?;
            let (list, hex) = match line.split_once(' ') {
                Some(("tip", hex)) if walking => (&mut tips, hex),
                Some(("hide", hex)) if walking => (&mut hidden, hex),
                _ => (&mut commits, line.as_str()),
            };
            list.push(Oid::from_str(hex.trim()).map_err(git("reading a commit id"))?);
        }
        if walking {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for commit in walk(&repo, id, &tips, &hidden)? {
                writeln!(out, "{commit}").map_err(|e| StorageError::Transfer(e.to_string()))?;
            }
            return out
                .flush()
                .map_err(|e| StorageError::Transfer(e.to_string()));
        }
        let mut trees = TreeChecker::new(&repo, id, &limits)?;
        trees.check_commits(&commits)
    })();
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            println!("{}", check_workers::verdict_line(&e));
            1
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::test_support::{accept, key, store};
    use super::super::trees::{MODE_BLOB, MODE_EXECUTABLE, MODE_SYMLINK, MODE_TREE};
    use super::*;
    use crate::repos::Repositories;
    use guts_crafted::Crafted;
    use guts_protocol::{RefName, SignedRefs};

    /// Refused, by the store's own check for `what`, or before it by git's index-pack
    /// (its fsck, or its check that every object an object names is there) (the store's check is pinned against git's in
    /// `the_hand_check_agrees_with_git_fsck`).
    fn refused_for(result: Result<crate::PackStats, StorageError>, what: &str) {
        match result {
            Err(StorageError::BadPack(said)) if said.contains("fatal: ") => {}
            Err(StorageError::BadObject { reason, .. }) => {
                assert!(
                    reason.contains(what),
                    "refused for {reason:?}, not {what:?}"
                )
            }
            other => panic!("expected a refusal for {what:?}, got {other:?}"),
        }
    }

    fn accept_crafted(
        repos: &Repositories,
        crafted: &mut Crafted,
        name: &str,
        root: Oid,
    ) -> Result<crate::PackStats, StorageError> {
        let commit = crafted.commit(root);
        let snapshot = crafted.snapshot(&key(5), name, commit);
        accept(repos, &snapshot, vec![crafted.pack()])
    }

    #[test]
    fn a_tree_30000_levels_deep_is_refused_without_recursion() {
        let (_dir, repos) = store();
        let mut crafted = Crafted::new();
        let root = crafted.chain(30_000);
        // The test thread's stack (2 MiB) is what a blocking thread of the node has: a
        // recursive walk of 30,000 levels overflows it and aborts the whole process.
        refused_for(
            accept_crafted(&repos, &mut crafted, "deep", root),
            "deeper than 4096 levels",
        );
        let commit = crafted.commit(root);
        let id = crafted.snapshot(&key(5), "deep", commit).repository();
        assert_eq!(repos.signed_refs(&id).unwrap(), None, "nothing kept");
    }

    #[test]
    fn import_takes_a_tree_at_the_limit_and_refuses_one_past_it() {
        let (_dir, repos) = store();
        for (levels, ok) in [(4096, true), (4097, false)] {
            let mut crafted = Crafted::new();
            let root = crafted.chain(levels);
            let commit = crafted.commit(root);
            crafted
                .repo
                .reference("refs/heads/main", commit, true, "test")
                .unwrap();
            // libgit2 builds the import's pack recursively, on a thread with the default
            // stack: the limit must leave it room.
            let result = repos.import(
                crafted.repo.path(),
                Some(format!("depth{levels}").parse().unwrap()),
                &key(6),
            );
            match (ok, result) {
                (true, Ok(imported)) => assert!(imported.changed),
                (false, Err(StorageError::BadObject { reason, .. })) => {
                    assert!(reason.contains("deeper than 4096"), "{reason}")
                }
                (_, other) => panic!("{levels} levels: {other:?}"),
            }
        }
    }

    #[test]
    fn depth_is_counted_at_the_deepest_path_of_a_shared_subtree() {
        let limits = Limits {
            max_tree_depth: 8,
            ..Limits::default()
        };
        let (_dir, repos) = store();
        let repos = repos.with_limits(limits);
        let mut crafted = Crafted::new();
        let at_limit = crafted.chain(8);
        accept_crafted(&repos, &mut crafted, "eight", at_limit).expect("8 levels fit");

        // A subtree of `levels` levels is read once, first at depth 2 (the walk takes the
        // last entry first: `b`), then reached again at depth 3 through `a/c`, where only
        // its recorded height can tell how deep it goes.
        for (levels, fits) in [(5, true), (6, true), (7, false)] {
            let mut crafted = Crafted::new();
            let shared = crafted.chain(levels);
            let wrapper = crafted.tree(&[(b"c", MODE_TREE, shared)]);
            let root = crafted.tree(&[(b"a", MODE_TREE, wrapper), (b"b", MODE_TREE, shared)]);
            let result = accept_crafted(&repos, &mut crafted, &format!("shared{levels}"), root);
            if fits {
                result.unwrap_or_else(|e| panic!("{levels} levels at depth 3 fit in 8: {e}"));
            } else {
                refused_for(result, "deeper than 8 levels");
            }
        }
    }

    #[test]
    fn a_chain_of_tags_is_followed_up_to_the_depth_limit() {
        let limits = Limits {
            max_tree_depth: 8,
            ..Limits::default()
        };
        let (_dir, repos) = store();
        let repos = repos.with_limits(limits);
        for (tags, fits) in [(8, true), (9, false)] {
            let mut crafted = Crafted::new();
            let file = crafted.blob(b"x\n");
            let tree = crafted.tree(&[(b"file", MODE_BLOB, file)]);
            let commit = crafted.commit(tree);
            let mut top = crafted.tag(commit, "commit");
            for _ in 1..tags {
                top = crafted.tag(top, "tag");
            }
            let snapshot = crafted.snapshot_with_tag(&key(5), &format!("tags{tags}"), commit, top);
            let result = accept(&repos, &snapshot, vec![crafted.pack()]);
            if fits {
                result.unwrap_or_else(|e| panic!("{tags} tags fit in 8: {e}"));
            } else {
                refused_for(result, "a chain of tags too long");
            }
        }
    }

    /// Refs at every level of one chain are judged by the whole chain, whichever ref
    /// reaches a shared part first: the walk remembers where tags lead (one read per
    /// tag), not only whether a ref was seen.
    #[test]
    fn refs_sharing_a_chain_of_tags_are_judged_by_its_whole_depth() {
        let limits = Limits {
            max_tree_depth: 8,
            ..Limits::default()
        };
        let (_dir, repos) = store();
        let repos = repos.with_limits(limits);
        // Ref names sort before and after the deepest one: both orders of the walk.
        for (case, (low, deep)) in [
            ("refs/tags/a", "refs/tags/z"),
            ("refs/tags/z", "refs/tags/a"),
        ]
        .into_iter()
        .enumerate()
        {
            for (tags, fits) in [(8, true), (9, false)] {
                let mut crafted = Crafted::new();
                let file = crafted.blob(b"x\n");
                let tree = crafted.tree(&[(b"file", MODE_BLOB, file)]);
                let commit = crafted.commit(tree);
                let mut chain = vec![crafted.tag(commit, "commit")];
                for _ in 1..tags {
                    let top = *chain.last().unwrap();
                    chain.push(crafted.tag(top, "tag"));
                }
                let main: RefName = "refs/heads/main".parse().unwrap();
                let refs = [
                    (main.clone(), object_id(commit)),
                    (low.parse().unwrap(), object_id(chain[tags / 2])),
                    (deep.parse().unwrap(), object_id(chain[tags - 1])),
                ]
                .into_iter()
                .collect();
                let name = format!("shared{case}x{tags}");
                let snapshot =
                    SignedRefs::sign(&key(5), name.parse().unwrap(), 1, Some(main), refs).unwrap();
                let result = accept(&repos, &snapshot, vec![crafted.pack()]);
                if fits {
                    result.unwrap_or_else(|e| panic!("{tags} tags fit in 8: {e}"));
                } else {
                    refused_for(result, "a chain of tags too long");
                }
            }
        }
    }

    #[test]
    fn a_tree_named_by_a_ref_or_a_tag_is_checked_like_a_commit_tree() {
        let limits = Limits {
            max_tree_depth: 8,
            ..Limits::default()
        };
        let (_dir, repos) = store();
        let repos = repos.with_limits(limits);
        // A fine commit on main, and `refs/tags/t` naming the tree `make` builds (given
        // the commit's tree), straight or through an annotated tag. Git allows refs to
        // trees (linux has `v2.6.11-tree`).
        let offer = |name: String, tagged: bool, make: &dyn Fn(&mut Crafted, Oid) -> Oid| {
            let mut crafted = Crafted::new();
            let file = crafted.blob(b"x\n");
            let fine = crafted.tree(&[(b"file", MODE_BLOB, file)]);
            let commit = crafted.commit(fine);
            let tree = make(&mut crafted, fine);
            let target = if tagged {
                crafted.tag(tree, "tree")
            } else {
                tree
            };
            let snapshot = crafted.snapshot_with_tag(&key(5), &name, commit, target);
            accept(&repos, &snapshot, vec![crafted.pack()])
        };
        for tagged in [false, true] {
            refused_for(
                offer(format!("deep{tagged}"), tagged, &|c, _| c.chain(9)),
                "deeper than 8 levels",
            );
            refused_for(
                offer(format!("dotgit{tagged}"), tagged, &|c, fine| {
                    c.tree(&[(b".git", MODE_TREE, fine)])
                }),
                "git's own directory",
            );
            offer(format!("fits{tagged}"), tagged, &|c, _| c.chain(8))
                .unwrap_or_else(|e| panic!("a tree of 8 levels fits: {e}"));
        }
    }

    #[test]
    fn malformed_trees_are_refused_and_odd_modes_read_as_git_reads_them() {
        let (_dir, repos) = store();
        let mut crafted = Crafted::new();
        let file = crafted.blob(b"x\n");
        let entry = |head: &[u8], id: &[u8]| [head, id].concat();
        let cases: [(Vec<u8>, &str); 6] = [
            (b"100644".to_vec(), "without a space"),
            (entry(b"100644 file", b""), "without its end"),
            (entry(b"100644 file\0", &file.as_bytes()[..12]), "cut short"),
            (entry(b"10x644 file\0", file.as_bytes()), "octal file mode"),
            (entry(b"2000000 file\0", file.as_bytes()), "octal file mode"),
            (entry(b"100644 \0", file.as_bytes()), "empty"),
        ];
        for (i, (bytes, why)) in cases.into_iter().enumerate() {
            let mut crafted = Crafted::new();
            crafted.blob(b"x\n");
            let root = crafted.write(ObjectType::Tree, &bytes);
            refused_for(
                accept_crafted(&repos, &mut crafted, &format!("bad{i}"), root),
                why,
            );
        }
        // A commit may not name a blob as its tree.
        let mut crafted = Crafted::new();
        let blob = crafted.blob(b"not a tree\n");
        refused_for(
            accept_crafted(&repos, &mut crafted, "blob-as-tree", blob),
            "but is a blob",
        );
        // Modes git wrote long ago (group-writable, a tree with permission bits) are
        // read as the ones git writes today, and checked as such.
        let mut crafted = Crafted::new();
        let ok = crafted.blob(b"ok\n");
        let sub = crafted.chain(2);
        let root = crafted.tree(&[(b"old.txt", 0o100664, ok), (b"dir", 0o40755, sub)]);
        accept_crafted(&repos, &mut crafted, "odd-modes", root).expect("odd but valid modes");
        // ...a subtree so marked still counts toward the depth limit.
        let repos = repos.with_limits(Limits {
            max_tree_depth: 4,
            ..Limits::default()
        });
        let mut crafted = Crafted::new();
        let deep = crafted.chain(4);
        let root = crafted.tree(&[(b"dir", 0o40755, deep)]);
        refused_for(
            accept_crafted(&repos, &mut crafted, "odd-deep", root),
            "deeper than 4",
        );
    }

    #[test]
    fn entries_git_would_not_check_out_are_refused() {
        // (Odd file modes are read as git reads them: see the test above.)
        let cases: [(&[u8], i32, &str); 6] = [
            (b".git", MODE_BLOB, "git's own directory"),
            (b".GIT", MODE_TREE, "git's own directory"),
            (b"git~1", MODE_BLOB, "git's own directory"),
            (b"..", MODE_TREE, "\"..\""),
            (b"a/b", MODE_BLOB, "path separator"),
            (b".gitmodules", MODE_SYMLINK, "symbolic link"),
        ];
        let (_dir, repos) = store();
        for (i, (name, mode, why)) in cases.into_iter().enumerate() {
            let mut crafted = Crafted::new();
            let target = if mode == MODE_TREE {
                crafted.chain(1)
            } else {
                crafted.blob(b"x\n")
            };
            let root = crafted.tree(&[(name, mode, target)]);
            refused_for(
                accept_crafted(&repos, &mut crafted, &format!("case{i}"), root),
                why,
            );
        }
        let mut crafted = Crafted::new();
        let modules = crafted.blob(b"[submodule \"x\"]\n\tpath = x\n\turl = --upload-pack=evil\n");
        let root = crafted.tree(&[(b".gitmodules", MODE_BLOB, modules)]);
        refused_for(accept_crafted(&repos, &mut crafted, "modules", root), "url");

        let mut crafted = Crafted::new();
        let ok = crafted.blob(b"ok\n");
        let sub = crafted.chain(2);
        let root = crafted.tree(&[
            (b".gitignore", MODE_BLOB, ok),
            (b"run.sh", MODE_EXECUTABLE, ok),
            (b"link", MODE_SYMLINK, ok),
            (b"src", MODE_TREE, sub),
        ]);
        accept_crafted(&repos, &mut crafted, "fine", root).expect("an ordinary tree");
    }

    #[test]
    fn a_pack_announcing_too_many_objects_is_refused_before_indexing() {
        let (_dir, repos) = store();
        let repos = repos.with_limits(Limits {
            max_pack_objects: 3,
            ..Limits::default()
        });
        let mut crafted = Crafted::new();
        let root = crafted.chain(3);
        let commit = crafted.commit(root);
        let snapshot = crafted.snapshot(&key(5), "many", commit);
        match accept(&repos, &snapshot, vec![crafted.pack()]) {
            Err(StorageError::BadPack(why)) => assert!(why.contains("max_pack_objects"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn duplicate_entries_are_refused_even_apart() {
        let (_dir, repos) = store();
        // A blob and a tree both named `a`: in git's order `a-b` sorts between them.
        for (i, second_mode) in [MODE_BLOB, MODE_TREE].into_iter().enumerate() {
            let mut crafted = Crafted::new();
            let file = crafted.blob(b"x\n");
            let sub = crafted.tree(&[(b"file", MODE_BLOB, file)]);
            let second = if second_mode == MODE_TREE { sub } else { file };
            let root = crafted.tree(&[
                (b"a", MODE_BLOB, file),
                (b"a-b", MODE_BLOB, file),
                (b"a", second_mode, second),
            ]);
            refused_for(
                accept_crafted(&repos, &mut crafted, &format!("dup{i}"), root),
                "duplicate entry",
            );
        }
    }
}
