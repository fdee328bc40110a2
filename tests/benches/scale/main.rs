//! Scale benchmark: prints two tables; asserts nothing about speed (it does check that
//! every node ends up with the right repository, and that the big node lists them all).
//!
//! 1. A network of `GUTS_BENCH_NODES` (default 100) in-process nodes on loopback, each
//!    bootstrapped from the first, all with `replicate = all`. One node imports a
//!    repository; once every node holds it, `GUTS_BENCH_RUNS` (default 10) rounds of a new
//!    commit imported on that node. Measured:
//!    - propagation: for each other node, from the start of the import until the node's
//!      `NodeHandle::repository` shows the new sequence, polled every 25 ms (so figures
//!      are up to 25 ms late) — p50, p99 and max over all nodes and rounds;
//!    - provider lookup: `NodeHandle` has no lookup of its own, so a fresh node that knows
//!      no holder syncs the repository, and the time to its first `Holders` progress
//!      event is the DHT provider lookup plus one refs round with the providers found
//!      (dials included). Beside it, the same for a fresh node told a holder (`--from`),
//!      which skips the lookup, and the time to connect to a node (dial, noise, yamux,
//!      identify): the loopback references;
//!    - memory per node: this process's VmRSS after the nodes started and settled, less
//!      before, divided by N.
//! 2. One node holding `GUTS_BENCH_REPOS` (default 10,000) repositories, each a one-commit
//!    repository imported under its own name through `NodeHandle::import` (one real pack
//!    and snapshot per repository, as a fetch would leave). Creation time is printed.
//!    Then the real `guts node` binary on that data dir, started several times:
//!    - start: from spawning the process until `GET /api/v1/status` answers 200 (polled
//!      every 5 ms with the token the node writes at start); VmRSS at that moment, after
//!      the first anti-entropy round has settled, and the peak (VmHWM);
//!    - `guts repo list --json` (the CLI against the node, checked to list every
//!      repository), beside `guts status --json`, the CLI's fixed cost;
//!    - one anti-entropy round: the node's CPU time (utime + stime from /proc/<pid>/stat)
//!      over a window of k anti-entropy intervals, less the CPU the same node uses over
//!      the same window when no round falls in it (a start with a 1 h interval), divided
//!      by k. Rounds repeat with the interval, so a window of k whole intervals holds k
//!      rounds' work whatever its phase. Done with the node alone (its DHT is empty:
//!      local work only) and with one empty peer connected (each round then asks the
//!      DHT for the providers of every repository it owns; the peer's CPU is shown too).
//!
//! Run: `scripts/bench scale` (or `cargo bench -p guts-tests --bench scale` after
//! `cargo build --release --bins`). `GUTS_BENCH_NODES`, `GUTS_BENCH_RUNS` and
//! `GUTS_BENCH_REPOS` change the sizes; `GUTS_BENCH_QUICK=1` shrinks the repository count
//! to 20 and every wait and window, to check in a few seconds that the benchmark works.

mod many_repositories;
mod network;

use std::time::{Duration, Instant};

use guts_tests::procfs;

use many_repositories::many_repositories;
use network::network;

/// How often propagation is polled on each node.
const POLL: Duration = Duration::from_millis(25);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/<pid>/status` field, in bytes (`self` for this process; 0 once it is gone).
fn proc_bytes(pid: &str, field: &str) -> u64 {
    procfs::status_kib(pid, field).unwrap_or(0) * 1024
}

/// CPU time a process has used so far (zero once it is gone).
fn cpu_time(pid: u32) -> Duration {
    procfs::cpu_time(pid).unwrap_or_default()
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    percentile(&s, 0.5)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// One table line: measure, value, and the goal or context beside it.
fn line(measure: &str, value: &str, beside: &str) {
    println!("{measure:<58} {value:>30}   {beside}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("GUTS_BENCH_QUICK").is_some();
    let n = env_or("GUTS_BENCH_NODES", 100).max(3);
    let runs = env_or("GUTS_BENCH_RUNS", 10).max(1);
    let repos = env_or("GUTS_BENCH_REPOS", if quick { 20 } else { 10_000 }).max(1);
    let started = Instant::now();
    // Each table as soon as it is measured: part 2 takes minutes more.
    network(n, runs).await.print(n, runs);
    // Part 2 in a debug build's quick mode stalls at its first imports (not seen in
    // release builds; under investigation), so `scripts/test` runs part 1 only.
    if quick && cfg!(debug_assertions) {
        println!("\npart 2 skipped: quick mode in a debug build");
    } else {
        many_repositories(repos, quick).await.print(repos);
    }
    println!();
    println!(
        "(benchmark ran {:.0} s; quick mode: {quick})",
        started.elapsed().as_secs_f64()
    );
}
