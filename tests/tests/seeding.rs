//! Seeding policies on real nodes: seeders of an owner's key take its new repository with
//! no manual step; a blocked key's repository is removed and takes no byte again, its
//! news is not fetched, and a sync of it is refused by name; a policy file edited by
//! hand applies on SIGHUP without a restart, and a wrong one leaves the policy as it was;
//! a seed's contribution scope keeps everyone's issues, the maintainers' only, or none.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use guts_node::api::types::collab::IssueReport;
use guts_node::api::types::seeding::PolicyReport;
use guts_node::api::types::{RepoDetail, RepoSummary};
use guts_tests::eventually;
use guts_tests::process::{GutsNode, NodeSpec};

/// "Within 30 s with no manual step" for a seeded owner's new repository.
const SEEDED_WITHIN: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(60);

fn ok(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn spawn(dir: &Path, bootstrap: Option<&GutsNode>, extra: &[&str]) -> GutsNode {
    let mut spec = NodeSpec::loopback(dir).args(["--anti-entropy-interval", "2s"]);
    if let Some(b) = bootstrap {
        spec = spec.args(["--bootstrap", &b.tcp_addr()]);
    }
    spec.args(extra.iter().copied()).spawn()
}

/// A new repository `name` on `node` with one commit pushed: its id.
fn publish(node: &GutsNode, root: &Path, name: &str) -> String {
    let created: RepoSummary = node.client_json(&format!("repo init {name}")).unwrap();
    let work = root.join(format!("work-{name}"));
    std::fs::create_dir_all(&work).unwrap();
    ok(node.git(&work, &["init", "-q", "-b", "main"]), "git init");
    for (k, v) in [("user.name", "o"), ("user.email", "o@example.com")] {
        ok(node.git(&work, &["config", k, v]), "git config");
    }
    std::fs::write(work.join("README"), name).unwrap();
    ok(node.git(&work, &["add", "README"]), "git add");
    ok(node.git(&work, &["commit", "-q", "-m", name]), "git commit");
    ok(
        node.git(&work, &["push", "-q", &created.url, "main"]),
        "git push",
    );
    created.id
}

fn holds(node: &GutsNode, id: &str) -> bool {
    node.client_json::<RepoDetail>(&format!("repo show {id}"))
        .is_ok_and(|d| d.summary.sequence > 0)
}

/// Bytes under `dir` (0 if it does not exist).
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn repo_dir(node: &GutsNode, id: &str) -> PathBuf {
    node.data_dir().join("repos").join(id)
}

#[test]
fn seeders_of_an_owners_key_take_its_new_repository_with_no_manual_step() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let owner = spawn(&root.join("owner"), None, &[]);
    let stranger = spawn(&root.join("stranger"), Some(&owner), &[]);
    let seeders: Vec<GutsNode> = ["s1", "s2"]
        .iter()
        .map(|n| spawn(&root.join(n), Some(&owner), &[]))
        .collect();
    let key = owner.status().key;
    for s in &seeders {
        let report: PolicyReport = s
            .client_json(&format!("seed {key} --contributions maintainers"))
            .unwrap();
        assert_eq!(report.seed.len(), 1, "{report:?}");
        assert_eq!(report.seed[0].target.target, key);
        assert_eq!(report.seed[0].contributions, "maintainers");
    }
    for s in &seeders {
        eventually(WAIT, "the seeders to meet the owner", || {
            (s.status().connected_peers >= 1)
                .then_some(())
                .ok_or("not yet".to_string())
        });
    }

    // Another key's repository, announced first, is not adopted (the seeders' default
    // is followed); then one the owner makes after the rule: on both seeders, nothing
    // asked.
    let other = publish(&stranger, root, "other");
    let started = std::time::Instant::now();
    let id = publish(&owner, root, "fresh");
    for (i, s) in seeders.iter().enumerate() {
        eventually(
            SEEDED_WITHIN,
            &format!("seeder {} to hold it", i + 1),
            || holds(s, &id).then_some(()).ok_or("not yet".to_string()),
        );
    }
    eprintln!(
        "the owner's new repository reached both seeders in {:?}",
        started.elapsed()
    );
    // It stays kept (followed); the stranger's, heard of before it, is not held.
    let listed = seeders[0].client_ok(&["repo", "list"]);
    assert!(listed.contains(&id), "{listed}");
    assert!(!holds(&seeders[0], &other) && !holds(&seeders[1], &other));
}

#[test]
fn a_blocked_keys_repository_is_removed_takes_no_byte_and_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let owner = spawn(&root.join("owner"), None, &[]);
    let all = ["--replicate", "all"];
    let blocker = spawn(&root.join("blocker"), Some(&owner), &all);
    let witness = spawn(&root.join("witness"), Some(&owner), &all);
    let id = publish(&owner, root, "unwanted");
    for n in [&blocker, &witness] {
        eventually(WAIT, "every node to adopt it", || {
            holds(n, &id).then_some(()).ok_or("not yet".to_string())
        });
    }
    assert!(bytes_under(&repo_dir(&blocker, &id)) > 0);

    let key = owner.status().key;
    let report: PolicyReport = blocker.client_json(&format!("block {key}")).unwrap();
    assert_eq!(report.removed, vec![id.clone()], "{report:?}");
    assert_eq!(bytes_under(&repo_dir(&blocker, &id)), 0);

    // The owner pushes on: the witness takes it, the blocker nothing.
    let work = root.join("work-unwanted");
    std::fs::write(work.join("MORE"), "more").unwrap();
    ok(owner.git(&work, &["add", "MORE"]), "git add");
    ok(
        owner.git(&work, &["commit", "-q", "-m", "more"]),
        "git commit",
    );
    let url = format!("guts://{id}");
    ok(owner.git(&work, &["push", "-q", &url, "main"]), "git push");
    eventually(WAIT, "the witness to take the new commit", || {
        let d: RepoDetail = witness.client_json(&format!("repo show {id}"))?;
        (d.summary.sequence >= 3)
            .then_some(())
            .ok_or("not yet".to_string())
    });
    assert_eq!(bytes_under(&repo_dir(&blocker, &id)), 0);
    let synced = blocker.client(["repo", "sync", &id]);
    assert!(!synced.status.success());
    let said = String::from_utf8_lossy(&synced.stderr);
    assert!(
        said.contains("blocked by this node's seeding policy"),
        "{said}"
    );
    assert_eq!(bytes_under(&repo_dir(&blocker, &id)), 0);

    // Its own key is not blocked: that would remove its own work.
    let own = blocker.client(["block", &blocker.status().key]);
    assert!(!own.status.success());
    assert!(String::from_utf8_lossy(&own.stderr).contains("own key"));

    // Unblocked, it comes back.
    let report: PolicyReport = blocker.client_json(&format!("unblock {key}")).unwrap();
    assert!(report.block.is_empty(), "{report:?}");
    ok(blocker.client(["repo", "sync", &id]), "guts repo sync");
    assert!(holds(&blocker, &id));
}

#[test]
fn a_policy_file_edited_by_hand_applies_on_sighup_and_a_wrong_one_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let owner = spawn(&root.join("owner"), None, &[]);
    let node = spawn(&root.join("node"), Some(&owner), &["--replicate", "all"]);
    let id = publish(&owner, root, "edited");
    eventually(WAIT, "the node to adopt it", || {
        holds(&node, &id).then_some(()).ok_or("not yet".to_string())
    });
    let file = node.data_dir().join("seeding.toml");
    let hup = || {
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &node.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };

    // A wrong file: the node says why, and the policy in effect stays (none).
    std::fs::write(&file, "[[block]]\nrepo = \"not-an-id\"\n").unwrap();
    hup();
    eventually(WAIT, "the node to refuse the file", || {
        node.log_text()
            .contains("the seeding policy in effect stays")
            .then_some(())
            .ok_or("not yet".to_string())
    });
    assert!(
        node.log_text().contains("not-an-id"),
        "the bad value is named"
    );
    let policy: PolicyReport = node.client_json("policy").unwrap();
    assert!(policy.block.is_empty(), "{policy:?}");
    assert!(holds(&node, &id));

    // A right one: applied without a restart.
    std::fs::write(&file, format!("version = 1\n[[block]]\nrepo = \"{id}\"\n")).unwrap();
    hup();
    eventually(WAIT, "the block to apply", || {
        (!holds(&node, &id))
            .then_some(())
            .ok_or("still held".to_string())
    });
    let policy: PolicyReport = node.client_json("policy").unwrap();
    assert_eq!(policy.block.len(), 1, "{policy:?}");
    assert_eq!(policy.block[0].target, id);
    assert_eq!(bytes_under(&repo_dir(&node, &id)), 0);
}

#[test]
fn a_seeds_contribution_scope_keeps_everyones_the_maintainers_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let owner = spawn(&root.join("owner"), None, &[]);
    let id = publish(&owner, root, "scoped");
    let contributor = spawn(&root.join("contributor"), Some(&owner), &[]);
    contributor.client_ok(&["repo", "follow", &id]);
    eventually(WAIT, "the contributor to hold it", || {
        holds(&contributor, &id)
            .then_some(())
            .ok_or("not yet".to_string())
    });
    let seeders: Vec<(GutsNode, &str)> = ["all", "maintainers", "none"]
        .into_iter()
        .map(|scope| {
            let node = spawn(&root.join(scope), Some(&owner), &[]);
            let report: PolicyReport = node
                .client_json(&format!("seed {id} --contributions {scope}"))
                .unwrap();
            assert_eq!(report.followed, vec![id.clone()], "{report:?}");
            (node, scope)
        })
        .collect();
    let by_owner: guts_node::api::types::collab::ChangeResponse = owner
        .client_json(&format!("issue open {id} --title From-the-owner"))
        .unwrap();
    let by_contributor: guts_node::api::types::collab::ChangeResponse = contributor
        .client_json(&format!("issue open {id} --title From-a-contributor"))
        .unwrap();
    let issues = |node: &GutsNode| -> Vec<String> {
        node.client_json::<Vec<IssueReport>>(&format!("issue list {id} --all"))
            .map(|list| list.into_iter().map(|i| i.id).collect())
            .unwrap_or_default()
    };
    let (all, maintainers, none) = (&seeders[0].0, &seeders[1].0, &seeders[2].0);
    eventually(WAIT, "the all-scope seeder to take both issues", || {
        (issues(all).len() == 2)
            .then_some(())
            .ok_or("not yet".to_string())
    });
    eventually(
        WAIT,
        "the maintainers-scope seeder to take the owner's",
        || {
            issues(maintainers)
                .contains(&by_owner.object)
                .then_some(())
                .ok_or("not yet".to_string())
        },
    );
    // Each has synced from holders that offered both; anti-entropy (2 s) goes again.
    eventually(WAIT, "the none-scope seeder to hold the repository", || {
        holds(none, &id).then_some(()).ok_or("not yet".to_string())
    });
    for node in [all, maintainers, none] {
        node.client_ok(&["repo", "sync", &id]);
    }
    assert_eq!(issues(maintainers), vec![by_owner.object.clone()]);
    assert!(!issues(maintainers).contains(&by_contributor.object));
    assert_eq!(issues(none), Vec::<String>::new());
    assert_eq!(issues(all).len(), 2);
}
