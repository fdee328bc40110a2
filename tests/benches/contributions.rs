//! Contributions benchmark: prints a table; asserts nothing about speed.
//!
//! On loopback, in one run:
//! - a repository with 1,000 patches and 1,000 issues (each with a review or a comment:
//!   4,000 changes from 20 contributors' keys) replicated whole by a fresh `guts node`
//!   (release build), beside the same history without them and `git clone --mirror` from
//!   `git daemon` of the owner's store, which holds every change as a commit: wall time,
//!   bytes received, peak RSS;
//! - a patch opened with `git push guts://<id> HEAD:refs/patches` on one node until two
//!   other nodes list it: median and 95th percentile.
//!
//! Run: `scripts/bench contributions`. `GUTS_BENCH_RUNS` (default 3) repeats the
//! replication, `GUTS_BENCH_CHANGES` (default 1000) is the number of patches and of
//! issues, `GUTS_BENCH_PATCHES` (default 20) the patches timed for propagation,
//! `GUTS_BENCH_COMMITS` (default 1000) the history; `GUTS_BENCH_QUICK` makes it small.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use git2::{ObjectType, Repository};
use guts_cob::{Action, Change, ChangeId, SignedChange, Verdict};
use guts_node::api::types::StatusReport;
use guts_node::api::types::collab::{IssueReport, PatchReport};
use guts_protocol::{ObjectId, RepositoryId};
use guts_storage::{ChangePolicy, GitObjectHasher, Repositories};
use guts_tests::bench::{
    GitDaemon, env_or, inbound_wire_bytes, median, mib, ms, peak_rss, run, timed,
};
use guts_tests::eventually;
use guts_tests::git::Synthetic;
use guts_tests::process::{GutsNode, NodeSpec, git_against};

/// Contributors' keys: each stays under a node's quota of objects per key.
const CONTRIBUTORS: u8 = 20;

fn spawn(dir: &Path, bootstrap: Option<&GutsNode>) -> GutsNode {
    let mut spec = NodeSpec::loopback(dir).log_filter("warn,guts_node::api=info");
    if let Some(b) = bootstrap {
        spec = spec.args(["--bootstrap", &b.tcp_addr()]);
    }
    spec.spawn()
}

fn connected(node: &GutsNode) {
    eventually(Duration::from_secs(20), "connected", || {
        let s: StatusReport = node.client_json("status")?;
        (s.connected_peers > 0)
            .then_some(())
            .ok_or_else(|| "not yet".to_owned())
    });
}

/// Signs `action` by `author` in `id`, after `parents` of `object`.
fn sign(
    id: RepositoryId,
    author: &SigningKey,
    object: Option<ChangeId>,
    parents: Vec<ChangeId>,
    action: Action,
) -> SignedChange {
    SignedChange::sign(
        Change {
            repository: id,
            object,
            parents,
            author: author.verifying_key(),
            timestamp: 1_700_000_000,
            action,
        },
        author,
    )
    .unwrap()
}

/// `n` issues with a comment each and `n` patches (of commits of main) with a review
/// each, put into the owner's store as a peer would send them: one pack, taken by
/// `accept_changes`. Returns how many changes.
fn contribute(data_dir: &Path, scratch: &Path, id: RepositoryId, n: usize) -> usize {
    let store = Repositories::new(data_dir);
    let repo = Repository::open_bare(store.path(&id)).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_ref("refs/heads/main").unwrap();
    let commits: Vec<git2::Oid> = walk.map(Result::unwrap).collect();
    let keys: Vec<SigningKey> = (1..=CONTRIBUTORS)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let out = Repository::init_bare(scratch).unwrap();
    let odb = out.odb().unwrap();
    let mut builder = out.packbuilder().unwrap();
    let mut tips = Vec::new();
    let mut add = |signed: &SignedChange| -> ChangeId {
        let form = signed.git_form(&GitObjectHasher);
        for (kind, body) in [
            (ObjectType::Blob, &form.blob),
            (ObjectType::Tree, &form.tree),
            (ObjectType::Commit, &form.commit),
        ] {
            let oid = odb.write(kind, body).unwrap();
            builder.insert_object(oid, None).unwrap();
        }
        form.id
    };
    for k in 0..n {
        let author = &keys[k % keys.len()];
        let other = &keys[(k + 1) % keys.len()];
        let issue = add(&sign(
            id,
            author,
            None,
            vec![],
            Action::OpenIssue {
                title: format!("Issue {k}"),
                body: "It breaks when the input is empty.".into(),
                labels: vec![],
            },
        ));
        tips.push(add(&sign(
            id,
            other,
            Some(issue),
            vec![issue],
            Action::Comment {
                body: "Seen here too.".into(),
                reply_to: None,
            },
        )));
        let head = commits[k % commits.len()];
        let base = repo.find_commit(head).unwrap().parent_id(0).unwrap_or(head);
        let patch = add(&sign(
            id,
            author,
            None,
            vec![],
            Action::OpenPatch {
                title: format!("Patch {k}"),
                description: "Handles the empty input.".into(),
                target: "refs/heads/main".parse().unwrap(),
                base: ObjectId(base.as_bytes().try_into().unwrap()),
                head: ObjectId(head.as_bytes().try_into().unwrap()),
                draft: false,
            },
        ));
        tips.push(add(&sign(
            id,
            other,
            Some(patch),
            vec![patch],
            Action::Review {
                revision: patch,
                verdict: Some(Verdict::Accept),
                summary: "Fine.".into(),
                comments: vec![],
            },
        )));
    }
    let mut pack = git2::Buf::new();
    builder.write_buf(&mut pack).unwrap();
    let mut chunks = std::iter::once(Ok(pack.to_vec()));
    let taken = store
        .accept_changes(
            &id,
            &tips,
            Some(&mut chunks),
            &ChangePolicy::default(),
            &|_| false,
            &mut |_| {},
        )
        .unwrap();
    assert!(taken.left_out.is_empty(), "{:?}", &taken.left_out[..1]);
    taken.taken.len()
}

/// A fresh node syncs `id` from `owner`: wall time, bytes received, peak RSS.
fn replicate(dir: &Path, owner: &GutsNode, id: &str) -> (Duration, u64, u64, GutsNode) {
    let node = spawn(dir, Some(owner));
    connected(&node);
    let before = inbound_wire_bytes(&node);
    let started = Instant::now();
    let out = node.client(["repo", "sync", id, "--from", &owner.status().peer_id]);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = inbound_wire_bytes(&node) - before;
    (took, bytes, peak_rss(node.pid()), node)
}

/// `git ARGS` in `dir` against `node`, which must succeed.
fn git_ok(node: &GutsNode, dir: &Path, args: &[&str]) {
    let out = node.git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // Quick mode (scripts/test): a few of each, to check it runs.
    let quick = std::env::var_os("GUTS_BENCH_QUICK").is_some();
    let runs = env_or("GUTS_BENCH_RUNS", 3);
    let n = env_or("GUTS_BENCH_CHANGES", if quick { 20 } else { 1000 });
    let timed_patches = env_or("GUTS_BENCH_PATCHES", if quick { 2 } else { 20 });
    let commits = env_or("GUTS_BENCH_COMMITS", 1000);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    eprintln!("generating a repository of {commits} commits...");
    let work = Synthetic {
        commits,
        text_files: 100,
        binary_every: 200,
        binary_size: 64 * 1024,
        seed: 11,
    }
    .build("synthetic");
    let owner = spawn(&root.join("owner"), None);
    let import = |name: &str| -> String {
        let out = owner.client_ok(&[
            "repo",
            "import",
            work.path().to_str().unwrap(),
            "--name",
            name,
            "--json",
        ]);
        let r: guts_node::api::types::ImportResponse = serde_json::from_str(&out).unwrap();
        r.repository.id
    };
    let plain = import("plain");
    let busy = import("busy");
    eprintln!("writing {n} patches and {n} issues...");
    let changes = contribute(
        owner.data_dir(),
        &root.join("scratch.git"),
        busy.parse().unwrap(),
        n,
    );

    let (mut busy_t, mut busy_b, mut busy_m) = (Vec::new(), 0, 0);
    let (mut plain_t, mut plain_b, mut plain_m) = (Vec::new(), 0, 0);
    let (mut git_t, mut git_m) = (Vec::new(), 0);
    let daemon = GitDaemon::start(&owner.data_dir().join("repos"));
    for r in 0..runs {
        let (t, b, m, node) = replicate(&root.join(format!("busy-{r}")), &owner, &busy);
        if r == 0 {
            let patches: Vec<PatchReport> = node
                .client_json(&format!("patch list {busy} --all"))
                .unwrap();
            let issues: Vec<IssueReport> = node
                .client_json(&format!("issue list {busy} --all"))
                .unwrap();
            let on_owner: Vec<PatchReport> = owner
                .client_json(&format!("patch list {busy} --all"))
                .unwrap();
            assert_eq!(
                (patches.len(), issues.len(), on_owner.len()),
                (n, n, n),
                "all replicated:\n{}",
                node.log_text()
            );
        }
        busy_t.push(t);
        (busy_b, busy_m) = (busy_b.max(b), busy_m.max(m));
        let (t, b, m, _) = replicate(&root.join(format!("plain-{r}")), &owner, &plain);
        plain_t.push(t);
        (plain_b, plain_m) = (plain_b.max(b), plain_m.max(m));
        let (t, m) = timed(
            Command::new("git")
                .args(["clone", "--quiet", "--mirror"])
                .arg(format!("git://127.0.0.1:{}/{busy}", daemon.port))
                .arg(root.join(format!("mirror-{r}.git"))),
        );
        git_t.push(t);
        git_m = git_m.max(m);
    }

    eprintln!("timing {timed_patches} patches from one node to two others...");
    let b = spawn(&root.join("b"), Some(&owner));
    let c = spawn(&root.join("c"), Some(&owner));
    for node in [&b, &c] {
        connected(node);
        node.client_ok(&["repo", "follow", &plain]);
        node.client_ok(&["repo", "sync", &plain]);
    }
    let clone = root.join("contributor");
    run(git_against(root, c.api(), c.data_dir())
        .args(["clone", "-q", &format!("guts://{plain}")])
        .arg(&clone));
    for (k, v) in [("user.name", "c"), ("user.email", "c@example.com")] {
        git_ok(&c, &clone, &["config", k, v]);
    }
    let mut seen = Vec::new();
    for i in 0..timed_patches {
        std::fs::write(clone.join("CONTRIBUTING"), format!("{i}\n")).unwrap();
        git_ok(&c, &clone, &["add", "CONTRIBUTING"]);
        git_ok(&c, &clone, &["commit", "-qm", &format!("Contribution {i}")]);
        let started = Instant::now();
        git_ok(&c, &clone, &["push", "-q", "origin", "HEAD:refs/patches"]);
        for node in [&owner, &b] {
            eventually(Duration::from_secs(60), "the patch listed", || {
                let list: Vec<PatchReport> = node.client_json(&format!("patch list {plain}"))?;
                (list.len() > i)
                    .then_some(())
                    .ok_or_else(|| format!("{} patches", list.len()))
            });
        }
        seen.push(started.elapsed());
    }

    println!();
    println!(
        "contributions: {commits}-commit synthetic repository, {n} patches and {n} issues ({changes} changes), {runs} runs, loopback"
    );
    println!(
        "{:<52} {:>14} {:>14} {:>8}",
        "", "guts", "reference", "ratio"
    );
    let (bt, pt, gt) = (median(busy_t), median(plain_t), median(git_t));
    let row = |what: &str, a: String, b: String, ratio: f64| {
        println!("{what:<52} {a:>14} {b:>14} {ratio:>7.2}x");
    };
    row(
        "replication with contributions vs without",
        ms(bt),
        ms(pt),
        bt.as_secs_f64() / pt.as_secs_f64(),
    );
    row(
        "  vs git clone --mirror of the store (git daemon)",
        ms(bt),
        ms(gt),
        bt.as_secs_f64() / gt.as_secs_f64(),
    );
    row(
        "  bytes received, with vs without",
        mib(busy_b),
        mib(plain_b),
        busy_b as f64 / plain_b.max(1) as f64,
    );
    row(
        "  peak RSS of the receiving node, with vs without",
        mib(busy_m),
        mib(plain_m),
        busy_m as f64 / plain_m.max(1) as f64,
    );
    println!(
        "{:<52} {:>14}",
        "  peak RSS of git clone --mirror",
        mib(git_m)
    );
    println!(
        "{:<52} {:>14} {:>14}",
        "patch pushed on C until listed on A and B: p50, p95",
        ms(percentile(seen.clone(), 0.5)),
        ms(percentile(seen, 0.95))
    );
}
