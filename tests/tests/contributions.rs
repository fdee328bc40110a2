//! Contributions on real nodes: a contributor who does not maintain a repository opens a
//! patch with `git push`, revises it, gets a review, and sees it merged, on every node;
//! an issue commented on both sides of a partition shows the same discussion everywhere
//! once it heals.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use guts_node::api::types::RepoSummary;
use guts_node::api::types::collab::{EventReport, IssueReport, PatchReport};
use guts_tests::eventually;
use guts_tests::process::{GutsNode, NodeSpec, git_against};

const WAIT: Duration = Duration::from_secs(60);

fn ok(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn spawn(dir: &Path, bootstrap: Option<&GutsNode>) -> GutsNode {
    let mut spec = NodeSpec::loopback(dir).args(["--anti-entropy-interval", "1s"]);
    if let Some(b) = bootstrap {
        spec = spec.args(["--bootstrap", &b.tcp_addr()]);
    }
    spec.spawn()
}

fn configure(node: &GutsNode, dir: &Path, who: &str) {
    for (k, v) in [("user.name", who), ("user.email", "w@example.com")] {
        ok(node.git(dir, &["config", k, v]), "git config");
    }
}

fn commit(node: &GutsNode, dir: &Path, file: &str, message: &str) -> String {
    std::fs::write(dir.join(file), format!("{message}\n")).unwrap();
    ok(node.git(dir, &["add", file]), "git add");
    ok(
        node.git(dir, &["commit", "-q", "-m", message]),
        "git commit",
    );
    ok(node.git(dir, &["rev-parse", "HEAD"]), "git rev-parse")
}

struct Three {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    nodes: Vec<GutsNode>,
    id: String,
    url: String,
    first: String,
}

/// A's repository with one commit on main, followed and held by B and C.
fn three() -> Three {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let a = spawn(&root.join("a"), None);
    let b = spawn(&root.join("b"), Some(&a));
    let c = spawn(&root.join("c"), Some(&a));
    let created: RepoSummary = a.client_json("repo init project").unwrap();
    let (id, url) = (created.id.clone(), created.url.clone());
    let alice = root.join("alice");
    std::fs::create_dir(&alice).unwrap();
    ok(a.git(&alice, &["init", "-q", "-b", "main"]), "git init");
    configure(&a, &alice, "alice");
    let first = commit(&a, &alice, "README", "first");
    ok(
        a.git(&alice, &["remote", "add", "origin", &url]),
        "git remote",
    );
    ok(a.git(&alice, &["push", "-q", "origin", "main"]), "git push");
    for node in [&b, &c] {
        node.client_ok(&["repo", "follow", &id]);
    }
    for (i, node) in [&b, &c].iter().enumerate() {
        eventually(WAIT, &format!("main on node {}", i + 1), || {
            let d: guts_node::api::types::RepoDetail =
                node.client_json(&format!("repo show {id}"))?;
            match d.refs.get("refs/heads/main") {
                Some(m) if *m == first => Ok(()),
                other => Err(format!("main at {other:?}")),
            }
        });
    }
    Three {
        _tmp: tmp,
        root,
        nodes: vec![a, b, c],
        id,
        url,
        first,
    }
}

fn patch_on(node: &GutsNode, id: &str, patch: &str) -> Result<PatchReport, String> {
    node.client_json(&format!("patch show {id} {patch}"))
}

fn issue_on(node: &GutsNode, id: &str, issue: &str) -> Result<IssueReport, String> {
    node.client_json(&format!("issue show {id} {issue}"))
}

/// Waits until `check` holds of the patch on every node.
fn patch_everywhere(
    nodes: &[GutsNode],
    id: &str,
    patch: &str,
    what: &str,
    check: impl Fn(&PatchReport) -> bool,
) {
    for (i, node) in nodes.iter().enumerate() {
        eventually(WAIT, &format!("{what} on node {i}"), || {
            let p = patch_on(node, id, patch)?;
            if check(&p) {
                Ok(())
            } else {
                Err(format!("{p:#?}"))
            }
        });
    }
}

#[test]
fn a_contributors_patch_is_revised_reviewed_and_merged_on_every_node() {
    let s = three();
    let (a, c) = (&s.nodes[0], &s.nodes[2]);
    let carol = s.root.join("carol");
    ok(
        git_against(&s.root, c.api(), c.data_dir())
            .args(["clone", "-q", &s.url])
            .arg(&carol)
            .output()
            .unwrap(),
        "carol's clone",
    );
    configure(c, &carol, "carol");

    // Carol's push to main goes to her fork, and she is told how to propose instead.
    let one = commit(c, &carol, "feature.txt", "Add a feature");
    let forked = c.git(&carol, &["push", "origin", "main"]);
    let said = String::from_utf8_lossy(&forked.stderr);
    assert!(forked.status.success(), "{said}");
    assert!(said.contains("HEAD:refs/patches"), "{said}");

    let opened = c.git(
        &carol,
        &[
            "push",
            "-o",
            "description=Adds the feature",
            "origin",
            "HEAD:refs/patches",
        ],
    );
    let said = ok(opened, "opening a patch");
    let _ = said;
    let mine: Vec<PatchReport> = c.client_json(&format!("patch list {}", s.id)).unwrap();
    assert_eq!(mine.len(), 1, "{mine:#?}");
    let patch = mine[0].id.clone();
    assert_eq!(mine[0].title, "Add a feature");
    assert_eq!(mine[0].target, "refs/heads/main");
    assert_eq!(mine[0].revisions[0].head, one);
    assert_eq!(mine[0].revisions[0].base, s.first);
    assert_eq!(mine[0].comments[0].body, "Adds the feature");
    patch_everywhere(&s.nodes, &s.id, &patch, "the patch", |p| {
        p.state == "open" && p.revisions.len() == 1
    });

    // A revision, pushed to the patch's ref.
    let two = commit(c, &carol, "feature.txt", "Fix the feature");
    ok(
        c.git(
            &carol,
            &[
                "push",
                "origin",
                &format!("HEAD:refs/patches/{}", &patch[..10]),
            ],
        ),
        "revising the patch",
    );
    patch_everywhere(&s.nodes, &s.id, &patch, "the revision", |p| {
        p.revisions.len() == 2
            && p.revisions[1].head == two
            && p.revisions[1].note == "Fix the feature"
    });

    // Only a maintainer labels; anyone reviews.
    let label = c.client(["patch", "label", &s.id, &patch, "--add", "feature"]);
    assert!(!label.status.success(), "a contributor labelled");
    let review = a.client_ok(&[
        "patch",
        "review",
        &s.id,
        &patch,
        "--accept",
        "-m",
        "Looks right",
        "--comment",
        "feature.txt:1=Nice name",
    ]);
    assert!(review.contains("reviewed"), "{review}");
    patch_everywhere(&s.nodes, &s.id, &patch, "the review", |p| {
        p.revisions[1].reviews.iter().any(|r| {
            r.verdict.as_deref() == Some("accept")
                && r.summary == "Looks right"
                && r.comments[0].path == "feature.txt"
                && r.comments[0].line == Some(1)
        })
    });

    // The owner merges: main holds the commit and the patch shows merged everywhere.
    a.client_ok(&["patch", "merge", &s.id, &patch]);
    let revision = patch_on(a, &s.id, &patch).unwrap().revisions[1].id.clone();
    patch_everywhere(&s.nodes, &s.id, &patch, "merged", |p| {
        p.state == "merged" && p.merged_revision.as_deref() == Some(revision.as_str())
    });
    for node in &s.nodes {
        let d: guts_node::api::types::RepoDetail =
            node.client_json(&format!("repo show {}", s.id)).unwrap();
        assert_eq!(d.refs.get("refs/heads/main"), Some(&two));
    }
    // Every node tells what happened, in one order.
    let events: Vec<EventReport> = s.nodes[1]
        .client_json(&format!("events --repo {}", s.id))
        .unwrap();
    let actions: Vec<&str> = events
        .iter()
        .filter(|e| e.object == patch)
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(actions, ["open patch", "revise", "review"], "{events:#?}");
    let later: Vec<EventReport> = s.nodes[1]
        .client_json(&format!(
            "events --repo {} --since 2999-01-01T00:00:00Z",
            s.id
        ))
        .unwrap();
    assert!(later.is_empty(), "{later:#?}");
    // Merged patches leave the default list.
    let open: Vec<PatchReport> = a.client_json(&format!("patch list {}", s.id)).unwrap();
    assert!(open.is_empty(), "{open:#?}");

    // Only a maintainer hides a key; then its patches are hidden on every node.
    let carols_key = c.status().key;
    let refused = c.client(["repo", "hide", &s.id, &carols_key]);
    assert!(!refused.status.success(), "a contributor hid a key");
    a.client_ok(&["repo", "hide", &s.id, &carols_key]);
    for (i, node) in s.nodes.iter().enumerate() {
        eventually(WAIT, &format!("carol's patch hidden on node {i}"), || {
            let all: Vec<PatchReport> = node.client_json(&format!("patch list {} --all", s.id))?;
            all.is_empty()
                .then_some(())
                .ok_or(format!("{} patches", all.len()))
        });
    }
}

#[test]
fn an_issue_commented_on_both_sides_of_a_partition_reads_the_same_once_it_heals() {
    let mut s = three();
    let id = s.id.clone();
    let b = &s.nodes[1];
    let opened: guts_node::api::types::collab::ChangeResponse = b
        .client_json(&format!("issue open {id} --title Crash-on-start"))
        .unwrap();
    let issue = opened.object;
    for (i, node) in s.nodes.iter().enumerate() {
        eventually(WAIT, &format!("the issue on node {i}"), || {
            issue_on(node, &id, &issue).map(|_| ())
        });
    }

    let dirs: Vec<PathBuf> = s.nodes.iter().map(|n| n.data_dir().to_owned()).collect();
    for node in &mut s.nodes {
        node.stop();
    }
    let nodes: Vec<GutsNode> = dirs.iter().map(|d| spawn(d, None)).collect();
    nodes[0].client_ok(&["issue", "comment", &id, &issue, "-m", "Seen on A too"]);
    nodes[2].client_ok(&["issue", "comment", &id, &issue, "-m", "And on C"]);
    nodes[0].client_ok(&["issue", "close", &id, &issue]);

    for (from, to) in [(0, 1), (1, 2), (2, 0)] {
        let addr = nodes[to].tcp_addr();
        nodes[from].client_ok(&["connect", &addr]);
    }
    let seen = |node: &GutsNode| -> Result<String, String> {
        let i = issue_on(node, &id, &issue)?;
        let comments: Vec<String> = i.comments.iter().map(|c| c.body.clone()).collect();
        Ok(format!("{} {comments:?}", i.state))
    };
    let settled = eventually(WAIT, "the three nodes to agree", || {
        let all: Vec<String> = nodes.iter().map(seen).collect::<Result<_, _>>()?;
        if all.iter().all(|v| *v == all[0])
            && all[0].contains("And on C")
            && all[0].contains("Seen on A")
        {
            Ok(all[0].clone())
        } else {
            Err(format!("{all:#?}"))
        }
    });
    assert!(settled.starts_with("closed"), "{settled}");
    s.nodes = nodes;
}

#[test]
fn a_blocked_keys_issue_is_neither_stored_nor_passed_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = spawn(&root.join("a"), None);
    let c = spawn(&root.join("c"), Some(&a));
    let carols_key = c.status().key;
    let b = NodeSpec::loopback(&root.join("b"))
        .args([
            "--anti-entropy-interval",
            "1s",
            "--bootstrap",
            &a.tcp_addr(),
        ])
        .args(["--block-key", &carols_key])
        .spawn();
    let created: RepoSummary = a.client_json("repo init project").unwrap();
    let id = created.id;
    for node in [&b, &c] {
        node.client_ok(&["repo", "follow", &id]);
        eventually(WAIT, "the repository followed and held", || {
            let d: guts_node::api::types::RepoDetail =
                node.client_json(&format!("repo show {id}"))?;
            (d.summary.sequence > 0)
                .then_some(())
                .ok_or("not held yet".to_owned())
        });
    }

    let spam: guts_node::api::types::collab::ChangeResponse = c
        .client_json(&format!("issue open {id} --title Buy-now"))
        .unwrap();
    let fine: guts_node::api::types::collab::ChangeResponse = a
        .client_json(&format!("issue open {id} --title A-real-bug"))
        .unwrap();
    eventually(WAIT, "C's issue on A", || {
        issue_on(&a, &id, &spam.object).map(|_| ())
    });
    // B takes A's issue, so it has synced since C's was there to take.
    eventually(WAIT, "A's issue on B", || {
        issue_on(&b, &id, &fine.object).map(|_| ())
    });
    let b_issues: Vec<IssueReport> = b.client_json(&format!("issue list {id} --all")).unwrap();
    assert_eq!(b_issues.len(), 1, "{b_issues:#?}");
    assert_eq!(b_issues[0].id, fine.object);
    // Not stored: B's repository references no change of C's.
    let path = b
        .client_json::<guts_node::api::types::RepoDetail>(&format!("repo show {id}"))
        .unwrap()
        .summary
        .path;
    let refs = ok(
        b.git(
            Path::new(&path),
            &["for-each-ref", "--format=%(refname)", "refs/cobs/"],
        ),
        "git for-each-ref",
    );
    assert!(!refs.contains(&spam.object), "{refs}");
    assert!(refs.contains(&fine.object), "{refs}");
    // Not passed on: B judged C's announcement blocked (not relayed).
    eventually(WAIT, "B to turn C's announcement away", || {
        let (_, metrics) = guts_tests::process::http_get(b.api(), "/metrics")?;
        if metrics.contains("guts_announcements_total{verdict=\"blocked\"}") {
            Ok(())
        } else {
            Err("no blocked verdict yet".to_owned())
        }
    });
}

#[test]
fn with_contributions_off_only_the_maintainers_contribute_and_on_again_anyone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = spawn(&root.join("a"), None);
    let c = spawn(&root.join("c"), Some(&a));
    let created: RepoSummary = a.client_json("repo init mirror").unwrap();
    let id = created.id;
    c.client_ok(&["repo", "follow", &id]);
    c.client_ok(&["repo", "sync", &id]);
    let earlier: guts_node::api::types::collab::ChangeResponse = c
        .client_json(&format!("issue open {id} --title Before"))
        .unwrap();
    eventually(WAIT, "C's issue on A", || {
        issue_on(&a, &id, &earlier.object).map(|_| ())
    });

    // The owner turns contributions off: it reaches C, which then refuses C's own.
    let said = a.client_ok(&["repo", "contributions", &id, "off"]);
    assert!(said.contains("are off"), "{said}");
    eventually(WAIT, "contributions off on C", || {
        let d: guts_node::api::types::RepoDetail = c.client_json(&format!("repo show {id}"))?;
        d.contributions_off
            .then_some(())
            .ok_or("still on".to_owned())
    });
    let refused = c.client(["issue", "open", &id, "--title", "After"]);
    assert!(!refused.status.success(), "C opened an issue");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("contributions to guts://") && why.contains("off"),
        "{why}"
    );
    // What C contributed before is not shown, on either node; the owner still writes.
    for node in [&a, &c] {
        let issues: Vec<IssueReport> = node.client_json(&format!("issue list {id} --all")).unwrap();
        assert!(issues.is_empty(), "{issues:#?}");
    }
    let own: guts_node::api::types::collab::ChangeResponse = a
        .client_json(&format!("issue open {id} --title Owners-own"))
        .unwrap();
    eventually(WAIT, "A's issue on C", || {
        issue_on(&c, &id, &own.object).map(|_| ())
    });
    let show = c.client_ok(&["repo", "show", &id]);
    assert!(show.contains("contributions: off"), "{show}");

    // On again: C's earlier issue shows again and C may open more.
    a.client_ok(&["repo", "contributions", &id, "on"]);
    eventually(WAIT, "C's earlier issue shown on C again", || {
        issue_on(&c, &id, &earlier.object).map(|_| ())
    });
    c.client_ok(&["issue", "open", &id, "--title", "After"]);
}
