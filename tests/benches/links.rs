//! Bad-link benchmark: prints a table; asserts nothing about speed.
//!
//! Replication over a shaped link between two namespace hosts (`guts_tests::link`:
//! bandwidth by tc `tbf`, random loss by iptables `statistic`, round trip by the
//! `delay-proxy`), against the reference measured over the very same link in the same run:
//! `git clone --mirror` from `git daemon` behind its own delay proxy. Guts: `guts repo
//! sync ID --from OWNER` on a fresh node already connected to the owner (so the time is
//! the transfer and its checks, as git's clone is), until it holds the repository.
//!
//! Run: `scripts/bench links` (root: it makes namespaces). `GUTS_BENCH_RATE_MBIT` (10),
//! `GUTS_BENCH_LOSS_PCT` (2), `GUTS_BENCH_RTT_MS` (100) shape the link; `GUTS_BENCH_RUNS`
//! (3) repeats; `GUTS_BENCH_COMMITS` (600) sizes the synthetic repository.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use guts_tests::eventually;
use guts_tests::git::{Synthetic, disk_size, refs};
use guts_tests::link::{BadLink, Shape};
use guts_tests::process::{GutsNode, NodeSpec};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A node in host `host`'s namespace listening on its loopback only: the other host
/// reaches it only through a delay proxy.
fn node(link: &BadLink, host: usize, dir: &Path, extra: &[&str]) -> GutsNode {
    let mut spec = NodeSpec::on_lan(&link.lan, host, dir).log_filter("warn,guts_node::api=info");
    spec.args = ["--listen", "/ip4/127.0.0.1/tcp/9000", "--mdns", "off"]
        .map(String::from)
        .to_vec();
    spec.args.extend(extra.iter().map(|s| s.to_string()));
    spec.spawn()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    if !is_root() {
        println!("links benchmark skipped: it builds network namespaces and needs root");
        return;
    }
    let quick = std::env::var_os("GUTS_BENCH_QUICK").is_some();
    let shape = Shape {
        rate_mbit: env_or("GUTS_BENCH_RATE_MBIT", 10) as u32,
        loss: env_or("GUTS_BENCH_LOSS_PCT", 2) as f64 / 100.0,
        rtt: Duration::from_millis(env_or("GUTS_BENCH_RTT_MS", 100) as u64),
    };
    let runs = env_or("GUTS_BENCH_RUNS", 3).max(1);
    let commits = if quick {
        20
    } else {
        env_or("GUTS_BENCH_COMMITS", 600)
    };
    let tmp = tempfile::tempdir().unwrap();
    let work = Synthetic {
        commits,
        text_files: 30,
        binary_every: 50,
        binary_size: 256 << 10,
        seed: 11,
    }
    .build("links");
    let served = tmp.path().join("served");
    std::fs::create_dir(&served).unwrap();
    let mirror = Command::new("git")
        .args(["clone", "--quiet", "--mirror"])
        .arg(work.path())
        .arg(served.join("repo.git"))
        .status()
        .expect("git clone --mirror");
    assert!(mirror.success());
    let size = disk_size(&served.join("repo.git"));

    let mut link = BadLink::new(shape);
    // git daemon on host 0's loopback, reached through its own delay proxy.
    let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
    let exec_path = String::from_utf8_lossy(&exec_path.stdout).trim().to_owned();
    let mut daemon = Command::new("ip")
        .args(["netns", "exec", link.lan.host(0)])
        .arg(Path::new(&exec_path).join("git-daemon"))
        .args([
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.0.1",
            "--port=9418",
        ])
        .arg(format!("--base-path={}", served.display()))
        .arg(&served)
        .spawn()
        .expect("git daemon");
    let git_proxy = link.proxy(9419, 9418);
    let url = format!("git://{git_proxy}/repo.git");
    let host1 = link.lan.host(1).to_owned();
    let in_host1 = |args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &host1])
            .args(args)
            .output()
            .expect("run in host 1")
    };
    eventually(Duration::from_secs(20), "git daemon to answer", || {
        let out = in_host1(&["git", "ls-remote", &url]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });

    let owner = node(&link, 0, &tmp.path().join("owner"), &[]);
    let owner_id = owner.status().peer_id;
    let proxy = link.proxy(9100, 9000);
    let (ip, port) = proxy.split_once(':').expect("ip:port");
    let bootstrap = format!("/ip4/{ip}/tcp/{port}");
    let id = owner.import(work.path()).id;

    let (mut git_times, mut guts_times) = (Vec::new(), Vec::new());
    for r in 0..runs {
        let dest = tmp.path().join(format!("git-{r}.git"));
        let started = Instant::now();
        let out = in_host1(&[
            "git",
            "clone",
            "--quiet",
            "--mirror",
            &url,
            dest.to_str().unwrap(),
        ]);
        git_times.push(started.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let replica = node(
            &link,
            1,
            &tmp.path().join(format!("replica-{r}")),
            &["--bootstrap", &bootstrap],
        );
        eventually(
            Duration::from_secs(30),
            "the replica to reach the owner",
            || {
                if replica.peers().iter().any(|p| p.peer_id == owner_id) {
                    Ok(())
                } else {
                    Err("not connected".into())
                }
            },
        );
        let started = Instant::now();
        let out = replica.client(["repo", "sync", &id, "--from", &owner_id]);
        guts_times.push(started.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let repos: Vec<guts_node::api::types::RepoSummary> =
            replica.client_json("repo list").unwrap();
        let copy = repos.iter().find(|x| x.id == id).expect("held");
        assert_eq!(refs(Path::new(&copy.path)), refs(work.path()));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();

    let (git, guts) = (median(git_times), median(guts_times));
    println!();
    println!(
        "replication over {} Mbit/s, {}% loss each way, {} ms RTT ({runs} run(s), medians)",
        shape.rate_mbit,
        shape.loss * 100.0,
        shape.rtt.as_millis()
    );
    println!(
        "repository: {commits} commits, {:.1} MB as a git mirror",
        size as f64 / 1e6
    );
    println!("| what | time | ratio to git |");
    println!("|---|---|---|");
    println!(
        "| `git clone --mirror git://` over the link (reference) | {} | 1.00x |",
        secs(git)
    );
    println!(
        "| `guts repo sync --from OWNER` on a fresh node, over the link | {} | {:.2}x |",
        secs(guts),
        guts.as_secs_f64() / git.as_secs_f64()
    );
}
