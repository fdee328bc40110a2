//! Repositories with several maintainers, on real nodes: a branch moves where the
//! threshold of maintainers' views agree, on every node; a change of maintainers needs the
//! threshold of the current ones; a removed maintainer's later pushes count nowhere, even
//! on a node that was offline when it was removed; and nodes that heard a partition's
//! news in different orders end with the same identity and refs.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use guts_node::api::types::{ProposalReport, RepoDetail, RepoSummary};
use guts_tests::eventually;
use guts_tests::process::{GutsNode, NodeSpec, git_against};

const WAIT: Duration = Duration::from_secs(60);
const MAIN: &str = "refs/heads/main";

fn ok(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn detail(node: &GutsNode, id: &str) -> Result<RepoDetail, String> {
    node.client_json(&format!("repo show {id}"))
}

/// A node that checks its repositories often, so a healed partition converges in
/// seconds rather than at the default minute.
fn spawn(dir: &Path, bootstrap: Option<&GutsNode>) -> GutsNode {
    let mut spec = NodeSpec::loopback(dir).args(["--anti-entropy-interval", "1s"]);
    if let Some(b) = bootstrap {
        spec = spec.args(["--bootstrap", &b.tcp_addr()]);
    }
    spec.spawn()
}

/// A working repository of `who`'s against `node`, cloned from `url`.
fn clone(node: &GutsNode, root: &Path, who: &str, url: &str) -> PathBuf {
    let dir = root.join(who);
    ok(
        git_against(root, node.api(), node.data_dir())
            .args(["clone", "-q", url])
            .arg(&dir)
            .output()
            .unwrap(),
        &format!("{who}'s git clone"),
    );
    for (k, v) in [("user.name", who), ("user.email", "m@example.com")] {
        ok(node.git(&dir, &["config", k, v]), "git config");
    }
    dir
}

fn commit(node: &GutsNode, dir: &Path, file: &str, content: &str) -> String {
    std::fs::write(dir.join(file), content).unwrap();
    ok(node.git(dir, &["add", file]), "git add");
    ok(node.git(dir, &["commit", "-q", "-m", file]), "git commit");
    ok(node.git(dir, &["rev-parse", "HEAD"]), "git rev-parse")
}

/// Where `main` is on `node` (canonical), if anywhere.
fn main_on(node: &GutsNode, id: &str) -> Result<Option<String>, String> {
    Ok(detail(node, id)?.refs.get(MAIN).cloned())
}

/// Waits until every node has `main` at `commit`.
fn main_everywhere(nodes: &[&GutsNode], id: &str, commit: &str) {
    for (i, node) in nodes.iter().enumerate() {
        eventually(
            WAIT,
            &format!("main at {commit} on node {i}"),
            || match main_on(node, id)? {
                Some(c) if c == commit => Ok(()),
                other => Err(format!("main at {other:?}")),
            },
        );
    }
}

struct Shared {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    nodes: Vec<GutsNode>,
    id: String,
    url: String,
    keys: Vec<String>,
    /// The first commit, pushed by the creator before the others were added.
    first: String,
}

/// Three nodes, whose keys maintain one repository at `threshold`; each maintainer's node
/// has adopted the branches as the creator left them.
fn three_maintainers(threshold: u16) -> Shared {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let a = spawn(&root.join("a"), None);
    let b = spawn(&root.join("b"), Some(&a));
    let c = spawn(&root.join("c"), Some(&a));
    let created: RepoSummary = a.client_json("repo init shared").unwrap();
    let (id, url) = (created.id.clone(), created.url.clone());

    let alice = root.join("alice");
    std::fs::create_dir(&alice).unwrap();
    ok(a.git(&alice, &["init", "-q", "-b", "main"]), "git init");
    for (k, v) in [("user.name", "alice"), ("user.email", "a@example.com")] {
        ok(a.git(&alice, &["config", k, v]), "git config");
    }
    let first = commit(&a, &alice, "README", "shared\n");
    ok(
        a.git(&alice, &["remote", "add", "origin", &url]),
        "git remote",
    );
    ok(a.git(&alice, &["push", "-q", "origin", "main"]), "git push");
    for node in [&b, &c] {
        node.client_ok(&["repo", "follow", &id]);
    }
    main_everywhere(&[&b, &c], &id, &first);

    let keys: Vec<String> = [&a, &b, &c].iter().map(|n| n.status().key).collect();
    let threshold = threshold.to_string();
    let proposal: ProposalReport = a
        .client_json(&format!(
            "repo propose {id} --add {} --add {} --threshold {threshold}",
            keys[1], keys[2]
        ))
        .unwrap();
    assert!(proposal.in_effect, "the creator alone decides version 2");
    for (i, node) in [&a, &b, &c].iter().enumerate() {
        eventually(WAIT, &format!("three views on node {i}"), || {
            let d = detail(node, &id)?;
            let m = d.maintainers.ok_or("no maintainers yet")?;
            let views = m
                .maintainers
                .iter()
                .filter(|m| m.view_sequence.is_some())
                .count();
            if m.version == 2 && views == 3 {
                Ok(())
            } else {
                Err(format!("version {}, {views} views", m.version))
            }
        });
    }
    main_everywhere(&[&a, &b, &c], &id, &first);
    Shared {
        _tmp: tmp,
        root,
        nodes: vec![a, b, c],
        id,
        url,
        keys,
        first,
    }
}

#[test]
fn a_branch_moves_when_two_of_three_maintainers_push_it_and_only_then() {
    let s = three_maintainers(2);
    let (a, b, c) = (&s.nodes[0], &s.nodes[1], &s.nodes[2]);
    let id = &s.id;

    // Alice's push moves her view everywhere, and main nowhere.
    let alice = s.root.join("alice");
    let second = commit(a, &alice, "a.txt", "alice\n");
    ok(
        a.git(&alice, &["push", "-q", "origin", "main"]),
        "alice's push",
    );
    for (i, node) in [a, b, c].iter().enumerate() {
        eventually(WAIT, &format!("alice's view on node {i}"), || {
            let d = detail(node, id)?;
            let at = d
                .positions
                .get(MAIN)
                .and_then(|p| p.get(&s.keys[0]).cloned());
            if at == Some(Some(second.clone())) {
                Ok(d)
            } else {
                Err(format!("alice at {at:?}"))
            }
        });
        assert_eq!(
            main_on(node, id).unwrap(),
            Some(s.first.clone()),
            "node {i}"
        );
    }

    // Bob fetches Alice's view and pushes it as his: main moves on every node.
    let bob = clone(b, &s.root, "bob", &s.url);
    assert_eq!(
        ok(b.git(&bob, &["rev-parse", "HEAD"]), "rev-parse"),
        s.first
    );
    let view = format!("refs/views/{}/heads/main", s.keys[0]);
    ok(
        b.git(&bob, &["fetch", "-q", "origin", &view]),
        "git fetch a view",
    );
    ok(
        b.git(
            &bob,
            &["push", "-q", "origin", "FETCH_HEAD:refs/heads/main"],
        ),
        "bob's push",
    );
    main_everywhere(&[a, b, c], id, &second);

    // A node whose key maintains nothing pushes to a fork of its own: no branch moves,
    // and every node lists the fork, which git fetches under refs/forks/.
    let d = spawn(&s.root.join("d"), Some(a));
    d.client_ok(&["repo", "follow", id]);
    main_everywhere(&[&d], id, &second);
    let dave = clone(&d, &s.root, "dave", &s.url);
    let forked = commit(&d, &dave, "d.txt", "dave\n");
    let pushed = d.git(&dave, &["push", "origin", "main"]);
    let said = String::from_utf8_lossy(&pushed.stderr);
    assert!(pushed.status.success(), "dave's push: {said}");
    assert!(said.contains("signed your fork 1"), "{said}");
    let dave_key = detail(&d, id).unwrap().forks[0].key.clone();
    for node in [a, b, c] {
        eventually(WAIT, "dave's fork on every node", || {
            let forks = detail(node, id)?.forks;
            match forks.iter().find(|f| f.key == dave_key) {
                Some(f) if f.refs.get("refs/heads/main") == Some(&forked) => Ok(()),
                _ => Err(format!("forks {forks:?}")),
            }
        });
    }
    main_everywhere(&[a, b, c, &d], id, &second);
    let fork_ref = format!("refs/forks/{dave_key}/heads/main");
    ok(
        a.git(&s.root.join("alice"), &["fetch", "-q", "origin", &fork_ref]),
        "git fetch dave's fork",
    );
    let fetched = ok(
        a.git(&s.root.join("alice"), &["rev-parse", "FETCH_HEAD"]),
        "rev-parse",
    );
    assert_eq!(fetched.trim(), forked);
}

#[test]
fn a_removed_maintainer_counts_nowhere_even_where_the_removal_came_late() {
    let mut s = three_maintainers(2);
    let id = s.id.clone();
    let carol_key = s.keys[2].clone();

    // Removing Carol needs two of three: Alice's signature alone leaves it pending.
    let proposal: ProposalReport = s.nodes[0]
        .client_json(&format!("repo propose {id} --remove {carol_key}"))
        .unwrap();
    assert!(!proposal.in_effect);
    assert_eq!((proposal.signed_by.len(), proposal.needs), (1, 2));
    eventually(WAIT, "the proposal on Bob's node", || {
        let m = detail(&s.nodes[1], &id)?.maintainers.ok_or("none")?;
        (m.pending.len() == 1 && m.version == 2)
            .then_some(())
            .ok_or(format!("{} pending", m.pending.len()))
    });

    // Carol's node goes offline; Bob accepts.
    let c_dir = s.nodes[2].data_dir().to_owned();
    s.nodes[2].stop();
    s.nodes[1].client_ok(&["repo", "accept", &id, &proposal.id]);
    for i in [0, 1] {
        eventually(WAIT, &format!("version 3 on node {i}"), || {
            let m = detail(&s.nodes[i], &id)?.maintainers.ok_or("none")?;
            (m.version == 3 && m.maintainers.len() == 2)
                .then_some(())
                .ok_or(format!("version {}", m.version))
        });
    }

    // Carol's node comes back cut off, and takes her push: it has not heard.
    let c = spawn(&c_dir, None);
    let carol = clone(&c, &s.root, "carol", &s.url);
    let late = commit(&c, &carol, "c.txt", "carol\n");
    ok(
        c.git(&carol, &["push", "-q", "origin", "main"]),
        "carol's push",
    );
    let carol_view = |node: &GutsNode| -> Result<Option<String>, String> {
        Ok(detail(node, &id)?
            .positions
            .get(MAIN)
            .and_then(|p| p.get(&carol_key).cloned())
            .flatten())
    };
    assert_eq!(carol_view(&c).unwrap(), Some(late.clone()));

    // Back in touch: Carol's node hears of the removal; her view counts nowhere.
    c.client_ok(&["connect", &s.nodes[0].tcp_addr()]);
    eventually(WAIT, "the removal on Carol's node", || {
        let m = detail(&c, &id)?.maintainers.ok_or("none")?;
        (m.version == 3)
            .then_some(())
            .ok_or(format!("version {}", m.version))
    });
    let nodes = [&s.nodes[0], &s.nodes[1], &c];
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(
            carol_view(node).unwrap(),
            None,
            "node {i} lists carol's view"
        );
        assert_eq!(
            main_on(node, &id).unwrap(),
            Some(s.first.clone()),
            "node {i}"
        );
        let listed = ok(node.git(&carol, &["ls-remote", &s.url]), "git ls-remote");
        assert!(
            !listed.contains(&late),
            "node {i} lists carol's commit:\n{listed}"
        );
    }
    // And her next push makes a fork, which moves no branch.
    commit(&c, &carol, "c2.txt", "carol again\n");
    let forked = c.git(&carol, &["push", "origin", "main"]);
    let said = String::from_utf8_lossy(&forked.stderr);
    assert!(said.contains("signed your fork"), "{said}");
    assert_eq!(main_on(&c, &id).unwrap(), Some(s.first.clone()));
    s.nodes[2] = c;
}

#[test]
fn nodes_that_heard_a_partition_in_different_orders_agree_once_it_heals() {
    let mut s = three_maintainers(1);
    let id = s.id.clone();
    let dirs: Vec<PathBuf> = s.nodes.iter().map(|n| n.data_dir().to_owned()).collect();
    let work = s.root.join("alice");
    let bob = clone(&s.nodes[1], &s.root, "bob", &s.url);

    // Cut off from each other, the three do different things.
    for node in &mut s.nodes {
        node.stop();
    }
    let mut nodes: Vec<GutsNode> = dirs.iter().map(|d| spawn(d, None)).collect();
    // Alice and Bob build diverging branches (threshold 1: each qualifies alone).
    commit(&nodes[0], &work, "x.txt", "alice's way\n");
    ok(
        nodes[0].git(&work, &["push", "-q", "origin", "main"]),
        "alice",
    );
    commit(&nodes[1], &bob, "y.txt", "bob's way\n");
    ok(nodes[1].git(&bob, &["push", "-q", "origin", "main"]), "bob");
    // Alice drops Carol while Carol raises the threshold: two competing versions 3,
    // each with one signature of version 2's threshold of one.
    nodes[0].client_ok(&["repo", "propose", &id, "--remove", &s.keys[2]]);
    nodes[2].client_ok(&["repo", "propose", &id, "--threshold", "2"]);

    // Heal in an order that gives each node the others' news differently.
    for (from, to) in [(0, 1), (1, 2), (2, 0)] {
        let addr = nodes[to].tcp_addr();
        nodes[from].client_ok(&["connect", &addr]);
    }
    let view = |node: &GutsNode| -> Result<String, String> {
        let d = detail(node, &id)?;
        let m = d.maintainers.ok_or("none")?;
        Ok(format!(
            "{} {} {:?} {:?}",
            m.version_id, m.threshold, d.refs, d.positions
        ))
    };
    let settled = eventually(WAIT, "the three nodes to agree", || {
        let seen: Vec<String> = nodes.iter().map(view).collect::<Result<_, _>>()?;
        let version_3 = detail(&nodes[0], &id)?
            .maintainers
            .is_some_and(|m| m.version == 3);
        if version_3 && seen.iter().all(|v| *v == seen[0]) {
            Ok(seen[0].clone())
        } else {
            Err(format!("{seen:#?}"))
        }
    });
    assert!(settled.contains(MAIN), "main is canonical: {settled}");
    s.nodes = std::mem::take(&mut nodes);
}
