//! Plain git against Guts: `git push`, `git clone guts://…`, `git pull`, through the
//! `git-remote-guts` helper and real nodes.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use guts_node::api::types::{RepoDetail, RepoSummary};
use guts_tests::eventually;
use guts_tests::process::{GutsNode, NodeSpec, git_against, path_with_helper};

fn ok(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    stderr
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit(dir: &Path, node: &GutsNode, file: &str, content: &str, message: &str) {
    std::fs::write(dir.join(file), content).unwrap();
    ok(node.git(dir, &["add", file]), "git add");
    ok(
        node.git(dir, &["commit", "-q", "-m", message]),
        "git commit",
    );
}

fn detail(node: &GutsNode, id: &str) -> RepoDetail {
    node.client_json(&format!("repo show {id}")).unwrap()
}

/// The packs in an object directory's `pack/`: (name, inode), so files linked from
/// elsewhere compare equal.
fn packs(dir: &Path) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut packs: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .map(|e| {
            let ino = e.metadata().unwrap().ino();
            (e.file_name().to_string_lossy().into_owned(), ino)
        })
        .collect();
    packs.sort();
    packs
}

/// The remote's branches and tags as `git ls-remote` shows them through the helper.
fn ls_remote(dir: &Path, node: &GutsNode, url: &str) -> Vec<String> {
    let out = node.git(dir, &["ls-remote", url]);
    assert!(
        out.status.success(),
        "git ls-remote {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // As `git for-each-ref` prints them: no HEAD, no peeled tags, a space.
    let mut lines: Vec<String> = text(&out)
        .lines()
        .filter(|l| !l.ends_with("HEAD") && !l.ends_with("^{}"))
        .map(|l| l.replace('\t', " "))
        .collect();
    lines.sort();
    lines
}

#[test]
fn owner_pushes_others_clone_and_pull_and_only_the_owner_moves_refs() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeSpec::loopback(&tmp.path().join("a")).spawn();
    let b = NodeSpec::loopback(&tmp.path().join("b"))
        .args(["--bootstrap", &a.tcp_addr()])
        .spawn();
    let created: RepoSummary = a.client_json("repo init demo").unwrap();
    assert!(created.url.starts_with("guts://"));
    let (url, id) = (created.url.clone(), created.id.clone());

    // The owner's working repository: branches, tags, a merge.
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    ok(a.git(&work, &["init", "-q", "-b", "main"]), "git init");
    commit(&work, &a, "README", "hello\n", "first");
    ok(
        a.git(&work, &["tag", "-a", "v1", "-m", "release 1"]),
        "git tag",
    );
    ok(
        a.git(&work, &["checkout", "-q", "-b", "feature"]),
        "git checkout",
    );
    commit(&work, &a, "feature.txt", "f\n", "feature");
    ok(a.git(&work, &["checkout", "-q", "main"]), "git checkout");
    commit(&work, &a, "main.txt", "m\n", "main work");
    ok(
        a.git(&work, &["merge", "-q", "--no-edit", "feature"]),
        "git merge",
    );
    ok(a.git(&work, &["tag", "v0", "HEAD~1"]), "git tag");
    ok(
        a.git(&work, &["remote", "add", "origin", &url]),
        "git remote add",
    );
    let pushed = ok(
        a.git(&work, &["push", "origin", "main", "feature", "--tags"]),
        "git push",
    );
    assert!(
        pushed.contains("[new branch]") && pushed.contains("[new tag]"),
        "{pushed}"
    );
    let local_refs = text(&a.git(
        &work,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ],
    ));
    let mut expected: Vec<String> = local_refs.lines().map(str::to_owned).collect();
    expected.sort();
    assert_eq!(
        ls_remote(&work, &a, &url),
        expected,
        "A's store holds what was pushed"
    );

    // B clones by URL: the same refs and content.
    let clone = tmp.path().join("clone");
    let cloned = git_against(tmp.path(), b.api(), b.data_dir())
        .env("GIT_TRANSPORT_HELPER_DEBUG", "1")
        .args(["clone", &url, clone.to_str().unwrap()])
        .output()
        .unwrap();
    let helper_said = String::from_utf8_lossy(&cloned.stderr).into_owned();
    ok(cloned, "git clone");
    assert_eq!(ls_remote(&clone, &b, &url), expected);
    assert_eq!(
        std::fs::read_to_string(clone.join("feature.txt")).unwrap(),
        "f\n"
    );
    let head = |dir: &Path, node: &GutsNode| text(&node.git(dir, &["rev-parse", "HEAD"]));
    assert_eq!(head(&clone, &b), head(&work, &a));
    // The clone took B's verified packs as they are (linked: same files), not a second
    // transfer through upload-pack; and git finds nothing wrong with them.
    let store_packs = packs(&b.data_dir().join("repos").join(&id).join("objects/pack"));
    let clone_packs = packs(&clone.join(".git/objects/pack"));
    assert!(!clone_packs.is_empty());
    assert_eq!(clone_packs, store_packs, "the clone's packs are the node's");
    // One pack, handed over as the fetch's lock with connectivity-ok: git trusts it
    // rather than walking every object again, and removes the lock after.
    assert_eq!(store_packs.len(), 1, "{store_packs:?}");
    for line in [".keep", "<- connectivity-ok"] {
        assert!(
            helper_said.contains(line),
            "the helper did not say {line:?}:\n{helper_said}"
        );
    }
    assert!(
        !std::fs::read_dir(clone.join(".git/objects/pack"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".keep")),
        "the lock outlived the clone"
    );
    ok(b.git(&clone, &["fsck", "--strict"]), "git fsck");

    // A user who asked git to check what it fetches gets git's own fetch, and its
    // fsck, not the node's packs linked in.
    let checked = tmp.path().join("checked");
    ok(
        git_against(tmp.path(), b.api(), b.data_dir())
            .args(["-c", "transfer.fsckObjects=true", "clone", &url])
            .arg(&checked)
            .output()
            .unwrap(),
        "git clone with fsck",
    );
    assert_eq!(ls_remote(&checked, &b, &url), expected);
    let checked_packs = packs(&checked.join(".git/objects/pack"));
    assert!(
        checked_packs.iter().all(|p| !store_packs.contains(p)),
        "a clone that asked for fsck took the node's packs: {checked_packs:?}"
    );

    // A shallow clone still negotiates through git upload-pack.
    let shallow = tmp.path().join("shallow");
    ok(
        b.git(
            tmp.path(),
            &["clone", "--depth", "1", &url, shallow.to_str().unwrap()],
        ),
        "git clone --depth 1",
    );
    assert_eq!(head(&shallow, &b), head(&work, &a));
    assert_eq!(
        text(&b.git(&shallow, &["rev-list", "--count", "HEAD"])),
        "1",
        "a depth-1 clone has one commit"
    );

    // A new push on A shows up with git pull on B.
    commit(&work, &a, "README", "hello\nagain\n", "second");
    ok(a.git(&work, &["push", "origin", "main"]), "git push");
    ok(b.git(&clone, &["pull", "-q"]), "git pull");
    assert_eq!(head(&clone, &b), head(&work, &a));

    // B does not own it: its push signs B's fork, and the owner's refs move nowhere.
    let seq_a = detail(&a, &id).summary.sequence;
    let before = detail(&a, &id).refs;
    commit(&clone, &b, "evil.txt", "x\n", "not the owner's");
    let forked = b.git(&clone, &["push", "origin", "main"]);
    let message = String::from_utf8_lossy(&forked.stderr);
    assert!(forked.status.success(), "{message}");
    assert!(message.contains("signed your fork 1"), "{message}");
    let fork = detail(&b, &id).forks;
    assert_eq!(fork.len(), 1, "{fork:?}");
    assert_eq!(fork[0].refs.get("refs/heads/main"), Some(&head(&clone, &b)));
    eventually(Duration::from_secs(30), "b's fork on a", || {
        let forks = detail(&a, &id).forks;
        let same =
            |f: &guts_node::api::types::ForkReport| (f.key.clone(), f.sequence, f.refs.clone());
        if forks.iter().map(same).eq(fork.iter().map(same)) && !forks[0].you {
            Ok(())
        } else {
            Err(format!("{forks:?}"))
        }
    });
    assert_eq!(detail(&a, &id).refs, before);
    assert_eq!(detail(&a, &id).summary.sequence, seq_a);
    assert_eq!(detail(&b, &id).refs, before);

    // The owner rewrites main (refused without --force, taken with it) and deletes a
    // branch; both reach B.
    ok(
        a.git(&work, &["reset", "-q", "--hard", "HEAD~1"]),
        "git reset",
    );
    commit(&work, &a, "README", "rewritten\n", "rewritten");
    let before = detail(&a, &id);
    let non_ff = a.git(&work, &["push", "origin", "main"]);
    assert!(
        !non_ff.status.success(),
        "a non-fast-forward push needs --force"
    );
    let said = String::from_utf8_lossy(&non_ff.stderr);
    assert!(
        said.contains("main") && said.contains("non-fast-forward"),
        "git names the refused ref and why: {said}"
    );
    let after = detail(&a, &id);
    assert_eq!(after.refs, before.refs, "the refused push moved no ref");
    assert_eq!(
        after.summary.sequence, before.summary.sequence,
        "and signed nothing"
    );
    ok(
        a.git(&work, &["push", "--force", "origin", "main"]),
        "git push --force",
    );
    ok(
        a.git(&work, &["push", "origin", "--delete", "feature"]),
        "git push --delete",
    );
    ok(
        b.git(&clone, &["fetch", "-q", "--prune", "origin"]),
        "git fetch --prune",
    );
    let remote_branches = text(&b.git(&clone, &["branch", "-r"]));
    assert!(
        !remote_branches.contains("origin/feature"),
        "{remote_branches}"
    );
    assert_eq!(
        text(&b.git(&clone, &["rev-parse", "origin/main"])),
        head(&work, &a)
    );
    // And B's node holds exactly the owner's refs.
    let want = detail(&a, &id).refs;
    eventually(Duration::from_secs(20), "B's store to match A's", || {
        let have = detail(&b, &id).refs;
        if have == want {
            Ok(())
        } else {
            Err(format!("{have:?}"))
        }
    });
}

#[test]
fn git_errors_say_what_is_wrong_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeSpec::loopback(&tmp.path().join("n")).spawn();
    // One line that says it, from the helper: not a backtrace, not a screenful.
    let fatal = |out: Output| {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("fatal: guts:"))
            .collect();
        assert_eq!(lines.len(), 1, "one fatal line from the helper:\n{err}");
        lines[0].to_owned()
    };
    let dest = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();

    let unknown = "00000000000000000000000000000000";
    let line = fatal(node.git(
        tmp.path(),
        &["clone", &format!("guts://{unknown}"), &dest("u")],
    ));
    assert!(
        line.contains(unknown) && line.contains("no holder"),
        "{line}"
    );
    let repos: Vec<RepoSummary> = node.client_json("repo list").unwrap();
    assert!(
        repos.is_empty(),
        "a failed clone does not leave the node following it: {repos:?}"
    );

    let line = fatal(node.git(tmp.path(), &["clone", "guts://not-an-id", &dest("m")]));
    assert!(line.contains("not-an-id") && line.contains("32"), "{line}");

    let mut stopped = NodeSpec::loopback(&tmp.path().join("gone")).spawn();
    let addr = stopped.api();
    stopped.stop();
    let out = Command::new("git")
        .args(["clone", &format!("guts://{unknown}"), &dest("g")])
        .env("PATH", path_with_helper())
        .env("GUTS_API", addr.to_string())
        .output()
        .unwrap();
    let line = fatal(out);
    assert!(
        line.contains(&format!("no node at {addr}")) && line.contains("guts node"),
        "{line}"
    );
}

#[test]
fn guts_clone_pushes_through_the_node_and_a_store_path_takes_no_push() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeSpec::loopback(&tmp.path().join("a")).spawn();
    let b = NodeSpec::loopback(&tmp.path().join("b"))
        .args(["--bootstrap", &a.tcp_addr()])
        .spawn();
    let created: RepoSummary = a.client_json("repo init demo").unwrap();
    let (url, id) = (created.url.clone(), created.id.clone());
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    ok(a.git(&work, &["init", "-q", "-b", "main"]), "git init");
    commit(&work, &a, "README", "hello\n", "first");
    ok(a.git(&work, &["push", "-q", &url, "main"]), "git push");

    // B clones with `guts clone` (fetching first); A's own clone pushes.
    let on_b = tmp.path().join("on-b");
    ok(
        b.client(["clone", &id, on_b.to_str().unwrap()]),
        "guts clone on b",
    );
    assert_eq!(text(&b.git(&on_b, &["remote", "get-url", "origin"])), url);
    let mine = tmp.path().join("mine");
    ok(
        a.client(["clone", &id, mine.to_str().unwrap()]),
        "guts clone on a",
    );
    assert_eq!(text(&a.git(&mine, &["remote", "get-url", "origin"])), url);
    let before = detail(&a, &id).summary.sequence;
    commit(&mine, &a, "README", "hello again\n", "second");
    let pushed = ok(a.git(&mine, &["push"]), "git push from guts clone");
    assert!(pushed.contains("signed snapshot"), "{pushed}");
    let after = detail(&a, &id);
    assert_eq!(after.summary.sequence, before + 1, "signed");
    let tip = text(&a.git(&mine, &["rev-parse", "HEAD"]));
    assert_eq!(after.refs["refs/heads/main"], tip);
    // Announced: B, which follows what it cloned, gets it without asking.
    eventually(Duration::from_secs(20), "b to hear of the push", || {
        let held = detail(&b, &id);
        if held.refs.get("refs/heads/main") == Some(&tip) {
            Ok(())
        } else {
            Err(format!("{:?}", held.refs))
        }
    });

    // Plain git pointed at the store's path is refused, naming the URL to use.
    let store = after.summary.path.clone();
    let plain = tmp.path().join("plain");
    ok(
        a.git(
            tmp.path(),
            &["clone", "-q", &store, plain.to_str().unwrap()],
        ),
        "git clone of the store path",
    );
    commit(&plain, &a, "README", "unsigned\n", "not signed");
    let out = a.git(&plain, &["push", "origin", "main"]);
    assert!(!out.status.success(), "a push into the store was taken");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("push to {url}")), "{err}");
    assert_eq!(detail(&a, &id).refs, after.refs, "no ref moved");
    let store_main = Command::new("git")
        .args(["-C", &store, "rev-parse", "refs/heads/main"])
        .output()
        .unwrap();
    assert_eq!(text(&store_main), tip, "the store's own ref did not move");
}

/// A push whose one update the node refuses (a ref outside heads and tags) still carries
/// that update's commit in its pack; the node signs the rest, and no other node ever
/// gets the refused commit, though the pack is the repository's only one.
#[test]
fn a_refused_update_of_a_push_never_reaches_another_node() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeSpec::loopback(&tmp.path().join("a")).spawn();
    let b = NodeSpec::loopback(&tmp.path().join("b"))
        .args(["--bootstrap", &a.tcp_addr()])
        .spawn();
    let created: RepoSummary = a.client_json("repo init demo").unwrap();
    let (url, id) = (created.url.clone(), created.id.clone());
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    ok(a.git(&work, &["init", "-q", "-b", "main"]), "git init");
    commit(&work, &a, "README", "hello\n", "first");
    ok(
        a.git(&work, &["checkout", "-q", "-b", "secret"]),
        "git checkout",
    );
    commit(&work, &a, "secret.txt", "not for anyone\n", "secret");
    let secret = text(&a.git(&work, &["rev-parse", "HEAD"]));
    // One push, one pack: main, and the secret under a name the node refuses.
    let pushed = a.git(&work, &["push", &url, "main", "secret:refs/notes/secret"]);
    assert!(!pushed.status.success(), "the notes ref must be refused");
    let signed = detail(&a, &id);
    assert!(
        signed.refs.contains_key("refs/heads/main"),
        "{:?}",
        signed.refs
    );
    assert!(!signed.refs.contains_key("refs/notes/secret"));

    // B fetches the repository with nothing of its own: it gets what the snapshot
    // reaches, not the pack as it arrived.
    ok(b.client(["repo", "sync", &id]), "repo sync on b");
    let held = detail(&b, &id);
    assert_eq!(held.refs, signed.refs);
    let has_secret = Command::new("git")
        .arg("--git-dir")
        .arg(&held.summary.path)
        .args(["cat-file", "-e", &secret])
        .output()
        .unwrap();
    assert!(
        !has_secret.status.success(),
        "B received the commit of an update A refused"
    );
}
