//! Mirror mode on a real node, against a real upstream (`git daemon` on loopback): the
//! mirror is fetched and signed at once with contributions off, keeps in step with new
//! upstream commits by itself, survives a restart, says why a fetch failed, and an
//! upstream that cannot be fetched is refused by name with nothing left behind.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use guts_node::api::types::RepoDetail;
use guts_node::api::types::mirrors::MirrorReport;
use guts_tests::bench::GitDaemon;
use guts_tests::eventually;
use guts_tests::process::NodeSpec;

const WAIT: Duration = Duration::from_secs(60);

fn git(dir: &Path, args: &[&str]) -> String {
    let out: Output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "U")
        .env("GIT_AUTHOR_EMAIL", "u@example.com")
        .env("GIT_COMMITTER_NAME", "U")
        .env("GIT_COMMITTER_EMAIL", "u@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit(work: &Path, file: &str) -> String {
    std::fs::write(work.join(file), file).unwrap();
    git(work, &["add", file]);
    git(work, &["commit", "-q", "-m", file]);
    git(work, &["push", "-q", "origin", "main"]);
    git(work, &["rev-parse", "HEAD"])
}

#[test]
fn a_mirror_keeps_in_step_with_its_upstream_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // The upstream: a bare repository served by git daemon, pushed to from a work tree.
    let served = root.join("served");
    std::fs::create_dir(&served).unwrap();
    git(
        &served,
        &["init", "-q", "--bare", "-b", "main", "upstream.git"],
    );
    let work = root.join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(
        &work,
        &[
            "remote",
            "add",
            "origin",
            served.join("upstream.git").to_str().unwrap(),
        ],
    );
    let first = commit(&work, "one");
    let daemon = GitDaemon::start(&served);
    let url = format!("git://127.0.0.1:{}/upstream.git", daemon.port);

    let data = root.join("node");
    let mut node = NodeSpec::loopback(&data).spawn();
    // An upstream that cannot be fetched: refused, naming it; nothing made.
    let bad = format!("git://127.0.0.1:{}/nothing.git", daemon.port);
    let out = node.client(["mirror", "add", &bad]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&bad), "{said}");
    assert!(node.client_ok(&["mirror", "list"]).contains("no mirrors"));

    let report: MirrorReport = node
        .client_json(&format!("mirror add {url} --every 1s"))
        .unwrap();
    assert_eq!(report.name, "upstream");
    let id = report.repository.clone();
    let show = |node: &guts_tests::process::GutsNode| -> RepoDetail {
        node.client_json(&format!("repo show {id}")).unwrap()
    };
    let detail = show(&node);
    assert_eq!(detail.refs.get("refs/heads/main"), Some(&first));
    assert!(detail.contributions_off, "a mirror takes no contributions");

    // A new upstream commit lands by itself, signed as the next snapshot.
    let sequence = detail.summary.sequence;
    let second = commit(&work, "two");
    eventually(WAIT, "the mirror to take the new commit", || {
        let d = show(&node);
        (d.refs.get("refs/heads/main") == Some(&second) && d.summary.sequence > sequence)
            .then_some(())
            .ok_or("not yet".to_string())
    });

    // It survives a restart, and a fetch on demand works.
    node.stop();
    let node = NodeSpec::loopback(&data).spawn();
    let third = commit(&work, "three");
    let report: MirrorReport = node.client_json(&format!("mirror sync {id}")).unwrap();
    assert_eq!(report.last_error, None);
    assert_eq!(show(&node).refs.get("refs/heads/main"), Some(&third));

    // The upstream goes away: the mirror says why, and keeps what it has.
    drop(daemon);
    eventually(WAIT, "the failed fetch to show", || {
        let list: Vec<MirrorReport> = node.client_json("mirror list")?;
        list.iter()
            .find(|m| m.repository == id)
            .and_then(|m| m.last_error.clone())
            .ok_or("no error yet".to_string())
    });
    assert_eq!(show(&node).refs.get("refs/heads/main"), Some(&third));

    // Removed: no longer fetched; the repository stays.
    node.client_ok(&["mirror", "remove", &id]);
    assert!(node.client_ok(&["mirror", "list"]).contains("no mirrors"));
    assert_eq!(show(&node).refs.get("refs/heads/main"), Some(&third));
}
