//! An owner key that signs two different snapshots with one sequence (a restored backup,
//! two machines sharing an identity) is noticed, reported, and not followed.

use std::process::Command;

use guts_node::api::types::{RepoDetail, RepoSummary, StatusReport};
use guts_tests::git::WorkRepo;
use guts_tests::process::{NodeSpec, http_get};

#[test]
fn a_second_snapshot_with_the_same_sequence_is_reported_and_the_first_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, a2_dir) = (tmp.path().join("a"), tmp.path().join("a2"));
    let work = WorkRepo::with_history("demo");
    let path = work.path().to_str().unwrap().to_owned();
    let mut a = NodeSpec::loopback(&a_dir).spawn();
    a.client_ok(&["repo", "import", &path]);
    let repos: Vec<RepoSummary> = a.client_json("repo list").unwrap();
    let id = repos[0].id.clone();
    a.stop();
    // A backup of the owner's node, restored elsewhere: same key, same store.
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&a_dir)
        .arg(&a2_dir)
        .status()
        .unwrap();
    assert!(copied.success());
    let a = NodeSpec::loopback(&a_dir).spawn();
    let a2 = NodeSpec::loopback(&a2_dir).spawn();

    // Each signs sequence 2, over different commits.
    work.commit("refs/heads/main", &[("ONE", b"1\n".as_slice())], "on a");
    a.client_ok(&["repo", "import", &path]);
    let on_a = guts_tests::git::refs(work.path());
    work.commit(
        "refs/heads/main",
        &[("TWO", b"2\n".as_slice())],
        "on the copy",
    );
    a2.client_ok(&["repo", "import", &path]);
    for node in [&a, &a2] {
        let held: RepoDetail = node.client_json(&format!("repo show {id}")).unwrap();
        assert_eq!(held.summary.sequence, 2);
    }

    // b takes a's version; c takes the copy's.
    let b = NodeSpec::loopback(&tmp.path().join("b"))
        .args(["--bootstrap", &a.tcp_addr()])
        .spawn();
    let c = NodeSpec::loopback(&tmp.path().join("c"))
        .args(["--bootstrap", &a2.tcp_addr()])
        .spawn();
    b.client_ok(&["repo", "sync", &id]);
    c.client_ok(&["repo", "sync", &id]);
    drop(a2);

    // b meets c: c offers the other sequence 2.
    let c_id = c.status().peer_id;
    b.client_ok(&["connect", &c.tcp_addr()]);
    b.client_ok(&["repo", "sync", &id, "--from", &c_id]);
    let status: StatusReport = b.client_json("status").unwrap();
    assert_eq!(status.equivocations.len(), 1, "{:?}", status.equivocations);
    let e = &status.equivocations[0];
    assert_eq!((e.repository.as_str(), e.sequence), (id.as_str(), 2));
    assert_eq!(e.peer, c_id);
    let held: RepoDetail = b.client_json(&format!("repo show {id}")).unwrap();
    assert_eq!(held.refs, on_a, "b keeps the version it saw first");
    assert!(b.log_text().contains("equivocation"), "{}", b.log_text());
    let text = b.client_ok(&["status"]);
    assert!(
        text.contains("EQUIVOCATION") && text.contains(&id),
        "{text}"
    );
    let (_, metrics) = http_get(b.api(), "/metrics").unwrap();
    assert!(metrics.contains("guts_equivocations_total 1"), "{metrics}");
    // Asking again reports nothing new.
    b.client_ok(&["repo", "sync", &id, "--from", &c_id]);
    let status: StatusReport = b.client_json("status").unwrap();
    assert_eq!(status.equivocations.len(), 1);
}
