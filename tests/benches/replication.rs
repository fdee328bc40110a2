//! Replication benchmark: prints a table; asserts nothing about speed.
//!
//! On loopback, in one run, against a reference measured the same way:
//! - full replication between two `guts node` processes (release build) vs
//!   `git clone --mirror` from `git daemon`, same repository: wall time, ratio, and peak
//!   RSS of the receiving side (the node's includes its baseline, shown too);
//! - one new commit: bytes the fetching side receives, guts vs `git fetch` (git's counted
//!   by a byte-counting proxy in front of `git daemon`, guts' by libp2p's bandwidth
//!   counter), and the pack bytes alone for guts;
//! - propagation: from `import` (new repository, then a new commit) on one node until
//!   all nodes of a 20-node in-process cluster (replicate = all) hold it.
//!
//! Run: `scripts/bench replication`. The repository is synthetic (thousands of commits,
//! source edits that delta well, binary assets) unless `GUTS_BENCH_REPO` names a local
//! git repository. `GUTS_BENCH_RUNS` (default 3) repeats the timed parts;
//! `GUTS_BENCH_COMMITS` (default 3000) sizes the synthetic history;
//! `GUTS_BENCH_OBJECTS=1000000` instead generates a wide history of that many objects
//! (five per commit, see [`Wide`]), the scale a large git server sees.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use guts_node::api::types::{RepoDetail, RepoSummary, StatusReport};
use guts_protocol::RepositoryId;
use guts_tests::bench::{
    GitDaemon, env_or, git, inbound_wire_bytes, median, mib, ms, peak_rss, run, timed,
};
use guts_tests::cluster::TestNode;
use guts_tests::git::{Synthetic, Wide, WorkRepo, disk_size};
use guts_tests::process::{GutsNode, NodeSpec};
use guts_tests::{eventually, eventually_async};

/// A TCP proxy in front of `target` counting the bytes it sends back to clients.
struct CountingProxy {
    port: u16,
    to_client: Arc<AtomicU64>,
}

impl CountingProxy {
    fn start(target: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let to_client = Arc::new(AtomicU64::new(0));
        let counter = to_client.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_read, mut c_write) = (server, client);
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64 * 1024];
                    loop {
                        match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                counter.fetch_add(n as u64, Ordering::Relaxed);
                                if c_write.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CountingProxy { port, to_client }
    }
}

fn main() {
    let runs = env_or("GUTS_BENCH_RUNS", 3);
    let tmp = tempfile::tempdir().unwrap();

    // The repository: a local one, or a synthetic one.
    let synthetic;
    let objects = env_or("GUTS_BENCH_OBJECTS", 0);
    let (source, label): (PathBuf, String) = match std::env::var_os("GUTS_BENCH_REPO") {
        Some(p) => (PathBuf::from(&p), format!("{}", PathBuf::from(p).display())),
        None if objects > 0 => {
            eprintln!("generating a wide repository of {objects} objects...");
            let path = tmp.path().join("wide.git");
            let made = Wide {
                commits: objects.div_ceil(5),
                seed: 7,
            }
            .build(&path);
            (path, format!("generated: {made} objects in a wide history"))
        }
        None => {
            let commits = env_or("GUTS_BENCH_COMMITS", 3000);
            eprintln!("generating a synthetic repository of {commits} commits...");
            synthetic = Synthetic {
                commits,
                text_files: 300,
                binary_every: 60,
                binary_size: 256 * 1024,
                seed: 7,
            }
            .build("synthetic");
            let l = format!("synthetic: {commits} commits, 300 source files, binary assets");
            (synthetic.path().to_owned(), l)
        }
    };
    // A private working copy, so the benchmark can add a commit to it.
    let work = tmp.path().join("work");
    run(Command::new("git")
        .args(["clone", "--quiet", "--no-local"])
        .arg(&source)
        .arg(&work));
    for branch in String::from_utf8_lossy(
        &git(
            &source,
            &["for-each-ref", "--format=%(refname:short)", "refs/heads"],
        )
        .stdout,
    )
    .lines()
    {
        let _ = Command::new("git")
            .current_dir(&work)
            .args([
                "branch",
                "--quiet",
                "--track",
                branch,
                &format!("origin/{branch}"),
            ])
            .output();
    }
    git(&work, &["remote", "remove", "origin"]);
    let served = tmp.path().join("served");
    std::fs::create_dir(&served).unwrap();
    run(Command::new("git")
        .args(["clone", "--quiet", "--mirror"])
        .arg(&work)
        .arg(served.join("repo.git")));
    let repo_size = disk_size(&served.join("repo.git"));

    // Reference: git clone --mirror from git daemon.
    let daemon = GitDaemon::start(&served);
    let mut git_times = Vec::new();
    let mut git_peak = 0;
    for r in 0..runs {
        let dest = tmp.path().join(format!("git-clone-{r}"));
        let (t, rss) = timed(
            Command::new("git")
                .args([
                    "clone",
                    "--quiet",
                    "--mirror",
                    &format!("git://127.0.0.1:{}/repo.git", daemon.port),
                ])
                .arg(&dest),
        );
        git_times.push(t);
        git_peak = git_peak.max(rss);
    }

    // Import: `guts repo import` into a fresh node vs git's own copy of a local
    // repository (`git clone --mirror --no-local`: pack-objects into index-pack).
    let path = guts_tests::process::path_with_helper();
    let (mut import_guts, mut import_git, mut import_rss) = (Vec::new(), Vec::new(), 0);
    for r in 0..runs {
        let node = NodeSpec::loopback(&tmp.path().join(format!("importer-{r}")))
            .log_filter("warn,guts_node::api=info")
            .spawn();
        let started = Instant::now();
        let out = node.client(["repo", "import", work.to_str().unwrap()]);
        import_guts.push(started.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        import_rss = import_rss.max(peak_rss(node.pid()));
        let (t, _) = timed(
            Command::new("git")
                .args(["clone", "--quiet", "--mirror", "--no-local"])
                .arg(&work)
                .arg(tmp.path().join(format!("git-import-{r}"))),
        );
        import_git.push(t);
    }

    // First push: every branch and tag by `git push guts://…` into `guts repo init`, vs
    // `git push` into `git init --bare`.
    let refspecs = ["refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"];
    let (mut push_guts, mut push_git, mut push_rss) = (Vec::new(), Vec::new(), 0);
    for r in 0..runs {
        let node = NodeSpec::loopback(&tmp.path().join(format!("pusher-{r}")))
            .log_filter("warn,guts_node::api=info")
            .spawn();
        let created: RepoSummary = node.client_json(&format!("repo init pushed-{r}")).unwrap();
        let started = Instant::now();
        run(Command::new("git")
            .current_dir(&work)
            .args(["push", "--quiet", &created.url])
            .args(refspecs)
            .env("PATH", &path)
            .env("GUTS_API", node.api().to_string())
            .env("GUTS_DATA_DIR", node.data_dir()));
        push_guts.push(started.elapsed());
        push_rss = push_rss.max(peak_rss(node.pid()));
        let bare = tmp.path().join(format!("git-push-{r}.git"));
        git(
            tmp.path(),
            &["init", "--quiet", "--bare", bare.to_str().unwrap()],
        );
        let (t, _) = timed(
            Command::new("git")
                .current_dir(&work)
                .args(["push", "--quiet", bare.to_str().unwrap()])
                .args(refspecs),
        );
        push_git.push(t);
    }

    // guts: an owner node and a fresh replica per run.
    let owner = NodeSpec::loopback(&tmp.path().join("owner"))
        .log_filter("warn,guts_node::api=info")
        .spawn();
    let id = owner.import(&work).id;
    let owner_id = owner.status().peer_id;
    let mut guts_times = Vec::new();
    let (mut guts_peak, mut guts_base) = (0, 0);
    let mut replica = None;
    for r in 0..runs {
        let node = NodeSpec::loopback(&tmp.path().join(format!("replica-{r}")))
            .log_filter("warn,guts_node::api=info")
            .args(["--bootstrap", &owner.tcp_addr()])
            .spawn();
        eventually(Duration::from_secs(20), "the replica connected", || {
            let s: StatusReport = node.client_json("status")?;
            if s.connected_peers > 0 {
                Ok(())
            } else {
                Err("not yet".into())
            }
        });
        let base = peak_rss(node.pid());
        let started = Instant::now();
        let out = node.client(["repo", "sync", &id, "--from", &owner_id]);
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        guts_times.push(took);
        guts_peak = guts_peak.max(peak_rss(node.pid()));
        guts_base = guts_base.max(base);
        replica = Some(node);
    }
    let replica = replica.unwrap();
    let followed = replica.client(["repo", "follow", &id]);
    assert!(followed.status.success());
    let shared_times = shared_replication(tmp.path(), &work, &owner, runs);
    let (sealed_push, sealed_times) = encrypted_replication(tmp.path(), &work, &owner, &path, runs);

    // git clone guts://… on a fresh node (it fetches from the owner, then git clones from
    // its store through git-remote-guts) vs git clone from git daemon.
    let (mut clone_guts, mut clone_git) = (Vec::new(), Vec::new());
    for r in 0..runs {
        let node = NodeSpec::loopback(&tmp.path().join(format!("cloner-{r}")))
            .log_filter("warn,guts_node::api=info")
            .args(["--bootstrap", &owner.tcp_addr()])
            .spawn();
        eventually(Duration::from_secs(20), "the cloner connected", || {
            let s: StatusReport = node.client_json("status")?;
            if s.connected_peers > 0 {
                Ok(())
            } else {
                Err("not yet".into())
            }
        });
        let started = Instant::now();
        run(Command::new("git")
            .args(["clone", "--quiet", &format!("guts://{id}")])
            .arg(tmp.path().join(format!("guts-work-{r}")))
            .env("PATH", &path)
            .env("GUTS_API", node.api().to_string())
            .env("GUTS_DATA_DIR", node.data_dir()));
        clone_guts.push(started.elapsed());
        let started = Instant::now();
        run(Command::new("git")
            .args([
                "clone",
                "--quiet",
                &format!("git://127.0.0.1:{}/repo.git", daemon.port),
            ])
            .arg(tmp.path().join(format!("git-work-{r}"))));
        clone_git.push(started.elapsed());
    }

    // One new commit: a line added to a tracked text file, as an everyday change is.
    let tracked = git(&work, &["ls-files", "-z"]).stdout;
    let file = tracked
        .split(|b| *b == 0)
        .filter_map(|name| std::str::from_utf8(name).ok())
        .filter(|name| !name.is_empty())
        .map(|name| work.join(name))
        .find(|path| {
            std::fs::read_to_string(path).is_ok_and(|t| !t.is_empty())
                && !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        })
        .expect("a tracked text file to change");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("// one more line\n");
    std::fs::write(&file, text).unwrap();
    git(
        &work,
        &[
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=b@example.com",
            "commit",
            "--quiet",
            "-am",
            "one more line",
        ],
    );

    // git: push it to the served repository, fetch it through the counting proxy.
    let git_mirror = tmp.path().join("git-clone-0");
    git(
        &work,
        &[
            "push",
            "--quiet",
            served.join("repo.git").to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    let proxy = CountingProxy::start(daemon.port);
    git(
        &git_mirror,
        &[
            "remote",
            "set-url",
            "origin",
            &format!("git://127.0.0.1:{}/repo.git", proxy.port),
        ],
    );
    git(&git_mirror, &["fetch", "--quiet", "origin"]);
    let git_fetch_bytes = proxy.to_client.load(Ordering::Relaxed);

    // guts: re-import, the follower fetches it.
    let before = inbound_wire_bytes(&replica);
    let before_pack = replica.status().transfers.fetched_bytes;
    let out = owner.client(["repo", "import", work.to_str().unwrap()]);
    assert!(out.status.success());
    eventually(
        Duration::from_secs(30),
        "the replica to fetch the commit",
        || {
            let repos: Vec<RepoSummary> = replica.client_json("repo list")?;
            if repos.iter().any(|r| r.id == id && r.sequence == 2) {
                Ok(())
            } else {
                Err("not yet".into())
            }
        },
    );
    let guts_fetch_bytes = inbound_wire_bytes(&replica) - before;
    let guts_pack_bytes = replica.status().transfers.fetched_bytes - before_pack;

    // Propagation through a 20-node cluster.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (new_repo, new_commit, hundred_commits) = rt.block_on(propagation(20));

    let (g, s) = (median(git_times), median(guts_times));
    println!();
    println!(
        "replication benchmark on loopback: {label}, {} on disk, {runs} runs",
        mib(repo_size)
    );
    println!(
        "{:<52} {:>14} {:>14} {:>8}",
        "measure", "guts", "git", "ratio"
    );
    let (ig, id_) = (median(import_guts), median(import_git));
    println!(
        "{:<52} {:>14} {:>14} {:>7.2}x",
        "import vs git clone --mirror --no-local",
        ms(ig),
        ms(id_),
        ig.as_secs_f64() / id_.as_secs_f64()
    );
    println!(
        "{:<52} {:>14}",
        "  peak RSS of the importing node",
        mib(import_rss)
    );
    let (pg, pd) = (median(push_guts), median(push_git));
    println!(
        "{:<52} {:>14} {:>14} {:>7.2}x",
        "first git push guts:// vs git push to a bare repo",
        ms(pg),
        ms(pd),
        pg.as_secs_f64() / pd.as_secs_f64()
    );
    println!(
        "{:<52} {:>14}",
        "  peak RSS of the node taking the push",
        mib(push_rss)
    );
    println!(
        "{:<52} {:>14} {:>14} {:>7.2}x",
        "full replication, median wall time",
        ms(s),
        ms(g),
        s.as_secs_f64() / g.as_secs_f64()
    );
    println!(
        "{:<52} {:>14} {:>14} {:>7.2}x",
        "  peak RSS of the receiving side",
        mib(guts_peak),
        mib(git_peak),
        guts_peak as f64 / git_peak as f64
    );
    println!(
        "{:<52} {:>14}",
        "  (the node's own peak before the fetch)",
        mib(guts_base)
    );
    let sh = median(shared_times);
    println!(
        "{:<52} {:>14} {:>14} {:>7.2}x",
        "  the same, 3 maintainers (threshold 2)",
        ms(sh),
        ms(g),
        sh.as_secs_f64() / g.as_secs_f64()
    );
    println!(
        "{:<52} {:>14} {:>14} {:>7.2}x",
        "first git push guts://, encrypted, vs git push",
        ms(sealed_push),
        ms(pd),
        sealed_push.as_secs_f64() / pd.as_secs_f64()
    );
    let se = median(sealed_times);
    println!(
        "{:<52} {:>14} {:>14} {:>7.2}x",
        "full replication, encrypted, to a reader",
        ms(se),
        ms(g),
        se.as_secs_f64() / g.as_secs_f64()
    );
    let (cg, cd) = (median(clone_guts), median(clone_git));
    println!(
        "{:<52} {:>14} {:>14} {:>7.2}x",
        "git clone guts://… (fresh node) vs git clone git://",
        ms(cg),
        ms(cd),
        cg.as_secs_f64() / cd.as_secs_f64()
    );
    println!(
        "{:<52} {:>12} B {:>12} B {:>7.2}x",
        "one new commit: bytes received",
        guts_fetch_bytes,
        git_fetch_bytes,
        guts_fetch_bytes as f64 / git_fetch_bytes as f64
    );
    println!("{:<52} {:>12} B", "  of which pack (guts)", guts_pack_bytes);
    println!(
        "{:<52} {:>14}",
        "import to all of 20 nodes (new repository)",
        ms(new_repo)
    );
    println!(
        "{:<52} {:>14}",
        "new commit to all of 20 nodes",
        ms(new_commit)
    );
    println!(
        "{:<52} {:>14}   goal: < 2 s",
        "100 new commits (one push) to all of 20 nodes",
        ms(hundred_commits)
    );
}

/// Full replication of the same history as a repository with three maintainers
/// (threshold 2): `owner` imports it under another name and adds two nodes' keys (their
/// nodes sign their first views); a fresh replica per run syncs it from `owner`.
fn shared_replication(tmp: &Path, work: &Path, owner: &GutsNode, runs: usize) -> Vec<Duration> {
    let imported = owner.client([
        "repo",
        "import",
        work.to_str().unwrap(),
        "--name",
        "shared",
        "--json",
    ]);
    assert!(imported.status.success());
    let imported: guts_node::api::types::ImportResponse =
        serde_json::from_slice(&imported.stdout).unwrap();
    let id = imported.repository.id;
    let spawn = |name: &str| {
        NodeSpec::loopback(&tmp.join(name))
            .log_filter("warn,guts_node::api=info")
            .args(["--bootstrap", &owner.tcp_addr()])
            .spawn()
    };
    let maintainers: Vec<GutsNode> = (0..2).map(|i| spawn(&format!("maintainer-{i}"))).collect();
    let mut propose = vec!["repo".to_owned(), "propose".into(), id.clone()];
    for m in &maintainers {
        assert!(m.client(["repo", "follow", &id]).status.success());
        propose.extend(["--add".into(), m.status().key]);
    }
    propose.extend(["--threshold".into(), "2".into()]);
    let proposed = owner.client(&propose);
    assert!(
        proposed.status.success(),
        "{}",
        String::from_utf8_lossy(&proposed.stderr)
    );
    eventually(Duration::from_secs(120), "three views on the owner", || {
        let d: guts_node::api::types::RepoDetail = owner.client_json(&format!("repo show {id}"))?;
        let views = d.maintainers.map_or(0, |m| {
            m.maintainers
                .iter()
                .filter(|m| m.view_sequence.is_some())
                .count()
        });
        (views == 3).then_some(()).ok_or(format!("{views} views"))
    });
    let owner_id = owner.status().peer_id;
    (0..runs)
        .map(|r| {
            let node = spawn(&format!("shared-replica-{r}"));
            eventually(Duration::from_secs(20), "the replica connected", || {
                let s: StatusReport = node.client_json("status")?;
                (s.connected_peers > 0)
                    .then_some(())
                    .ok_or_else(|| "not yet".to_owned())
            });
            let started = Instant::now();
            let out = node.client(["repo", "sync", &id, "--from", &owner_id]);
            let took = started.elapsed();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            took
        })
        .collect()
}

/// The same history as an encrypted repository: `owner` makes one that `runs` fresh
/// replicas read and pushes the history to it (sealing it: timed); each replica then syncs
/// it from `owner` (taking the sealed form and opening it: timed).
fn encrypted_replication(
    tmp: &Path,
    work: &Path,
    owner: &GutsNode,
    path: &str,
    runs: usize,
) -> (Duration, Vec<Duration>) {
    let replicas: Vec<GutsNode> = (0..runs)
        .map(|r| {
            NodeSpec::loopback(&tmp.join(format!("sealed-replica-{r}")))
                .log_filter("warn,guts_node::api=info")
                .args(["--bootstrap", &owner.tcp_addr()])
                .spawn()
        })
        .collect();
    let mut init = "repo init sealed --encrypted".to_owned();
    for r in &replicas {
        init.push_str(&format!(" --allow {}", r.status().key));
    }
    let created: RepoSummary = owner.client_json(&init).unwrap();
    let started = Instant::now();
    run(Command::new("git")
        .current_dir(work)
        .args(["push", "--quiet", &created.url])
        .args(["refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"])
        .env("PATH", path)
        .env("GUTS_API", owner.api().to_string())
        .env("GUTS_DATA_DIR", owner.data_dir()));
    let push = started.elapsed();
    let pushed: RepoDetail = owner
        .client_json(&format!("repo show {}", created.id))
        .unwrap();
    assert!(
        pushed.refs.contains_key("refs/heads/main"),
        "{:?}",
        pushed.refs
    );
    let owner_id = owner.status().peer_id;
    let times = replicas
        .iter()
        .map(|node| {
            eventually(Duration::from_secs(20), "the replica connected", || {
                let s: StatusReport = node.client_json("status")?;
                (s.connected_peers > 0)
                    .then_some(())
                    .ok_or_else(|| "not yet".to_owned())
            });
            let started = Instant::now();
            let out = node.client(["repo", "sync", &created.id, "--from", &owner_id]);
            let took = started.elapsed();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let shown: RepoDetail = node
                .client_json(&format!("repo show {}", created.id))
                .unwrap();
            assert_eq!(
                shown.refs, pushed.refs,
                "the replica opened what was pushed"
            );
            took
        })
        .collect();
    (push, times)
}

/// Times an import, then a new commit, then 100 new commits at once, reaching every node
/// of an `n`-node cluster.
async fn propagation(n: usize) -> (Duration, Duration, Duration) {
    let first = TestNode::start(|_| {}).await;
    let boot = first.addr.clone();
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(
            TestNode::start(|c| {
                c.net.bootstrap = vec![boot.clone()];
                c.replication.replicate = guts_node::Replicate::All;
            })
            .await,
        );
    }
    // Announcements travel the gossip mesh: wait until every node is in it.
    eventually_async(
        Duration::from_secs(60),
        "the gossip mesh formed",
        || async {
            for node in &nodes {
                let s = node.handle.status().await.map_err(|e| e.to_string())?;
                if s.gossip_mesh_peers < 2 {
                    return Err(format!("a node has {} mesh peers", s.gossip_mesh_peers));
                }
            }
            Ok(())
        },
    )
    .await;
    let work = WorkRepo::with_history("spread");
    let all_hold = |id: RepositoryId, sequence: u64| {
        let nodes = &nodes;
        async move {
            eventually_async(
                Duration::from_secs(120),
                "every node to hold it",
                || async {
                    let mut missing = 0;
                    for node in &nodes[1..] {
                        let held = node
                            .handle
                            .repository(id)
                            .await
                            .map_err(|e| e.to_string())?;
                        if held.is_none_or(|d| d.summary.sequence < sequence) {
                            missing += 1;
                        }
                    }
                    if missing == 0 {
                        Ok(())
                    } else {
                        Err(format!("{missing} nodes missing"))
                    }
                },
            )
            .await
        }
    };
    let started = Instant::now();
    let (summary, _) = nodes[0]
        .handle
        .import(work.path().to_owned(), None)
        .await
        .unwrap();
    let id: RepositoryId = summary.id.parse().unwrap();
    all_hold(id, 1).await;
    let new_repo = started.elapsed();
    work.commit(
        "refs/heads/main",
        &[("spread", b"1\n".as_slice())],
        "spread",
    );
    let started = Instant::now();
    nodes[0]
        .handle
        .import(work.path().to_owned(), None)
        .await
        .unwrap();
    all_hold(id, 2).await;
    let new_commit = started.elapsed();
    // A larger update: 100 commits at once, each changing a file.
    for i in 0..100 {
        work.commit(
            "refs/heads/main",
            &[(
                format!("batch/{}", i % 10).as_str(),
                format!("{i}\n").as_bytes(),
            )],
            &format!("batch {i}"),
        );
    }
    let started = Instant::now();
    nodes[0]
        .handle
        .import(work.path().to_owned(), None)
        .await
        .unwrap();
    all_hold(id, 3).await;
    let hundred_commits = started.elapsed();
    for node in nodes {
        node.shutdown().await;
    }
    (new_repo, new_commit, hundred_commits)
}
