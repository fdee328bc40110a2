//! Discovery benchmark: prints a table; asserts nothing about speed.
//!
//! - DHT join: an N-node network (each node bootstrapped from node 0), then a new node
//!   bootstrapped from node 0 alone. Measured: time to its first connected peer (the
//!   reference, one dial and handshake) and to 20 peers in its routing table.
//! - mDNS: two nodes on a namespace LAN (root only), time from the second node's start
//!   to its first connection, read from the node's own log timestamps.
//!
//! Run: `scripts/bench discovery` (or `cargo bench -p guts-tests --bench discovery`
//! after `cargo build --release --bins`). `GUTS_BENCH_NODES` and `GUTS_BENCH_RUNS` change
//! N (default 50) and the number of runs (default 5).

use std::time::{Duration, Instant};

use guts_tests::cluster::{TestNode, star};
use guts_tests::eventually_async;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Row {
    name: String,
    samples: Vec<Duration>,
}

impl Row {
    fn sorted(&self) -> Vec<Duration> {
        let mut s = self.samples.clone();
        s.sort();
        s
    }
    fn median(&self) -> Duration {
        let s = self.sorted();
        s[s.len() / 2]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_or("GUTS_BENCH_NODES", 50);
    let runs = env_or("GUTS_BENCH_RUNS", 5);
    eprintln!("starting {n} nodes...");
    let nodes = star(n, |_| {}).await;
    let settle_target = 10.min(n - 1);
    eventually_async(
        Duration::from_secs(120),
        "the network to settle",
        || async {
            let mut smallest = usize::MAX;
            for node in &nodes {
                smallest = smallest.min(
                    node.handle
                        .status()
                        .await
                        .map_err(|e| e.to_string())?
                        .routing_table_size,
                );
            }
            if smallest >= settle_target {
                Ok(())
            } else {
                Err(format!("smallest table {smallest}"))
            }
        },
    )
    .await;

    let boot = nodes[0].addr.clone();
    let want = 20.min(n);
    let mut first_peer = Row {
        name: "join: first peer connected (reference)".into(),
        samples: vec![],
    };
    let mut knows = Row {
        name: format!("join: {want} peers in routing table"),
        samples: vec![],
    };
    for run in 0..runs {
        let started = Instant::now();
        let joiner = TestNode::start(|c| c.net.bootstrap = vec![boot.clone()]).await;
        let mut first = None;
        loop {
            let status = joiner.handle.status().await.expect("status");
            if first.is_none() && status.connected_peers >= 1 {
                first = Some(started.elapsed());
            }
            if status.routing_table_size >= want {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "run {run}: joiner stuck at {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        knows.samples.push(started.elapsed());
        first_peer
            .samples
            .push(first.expect("connected before knowing peers"));
        joiner.shutdown().await;
    }
    let mut rows = vec![first_peer, knows];
    let mdns = mdns_runs(runs);

    println!();
    println!("discovery benchmark: {n}-node network on loopback, {runs} runs");
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "measure", "min", "median", "max"
    );
    if let Some(row) = mdns {
        rows.push(row);
    }
    for row in &rows {
        let s = row.sorted();
        println!(
            "{:<44} {:>10} {:>10} {:>10}",
            row.name,
            ms(s[0]),
            ms(row.median()),
            ms(s[s.len() - 1])
        );
    }
    let ratio = rows[1].median().as_secs_f64() / rows[0].median().as_secs_f64();
    println!(
        "{:<44} {:>10} {:>10.1}x",
        format!("ratio: {want} peers / first peer (median)"),
        "",
        ratio
    );
    if rows.len() < 3 {
        println!(
            "{:<44} {:>10}",
            "mDNS: two LAN nodes find each other", "skipped (needs root)"
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// Time from the second node's start to its first connection, from its log.
fn mdns_runs(runs: usize) -> Option<Row> {
    use guts_tests::netns::Lan;
    use guts_tests::process::NodeSpec;
    let root = std::process::Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        return None;
    }
    let mut row = Row {
        name: "mDNS: two LAN nodes find each other".into(),
        samples: vec![],
    };
    for _ in 0..runs {
        let lan = Lan::new(2);
        let tmp = tempfile::tempdir().unwrap();
        let _a = NodeSpec::on_lan(&lan, 0, &tmp.path().join("a")).spawn();
        let b = NodeSpec::on_lan(&lan, 1, &tmp.path().join("b")).spawn();
        let took = guts_tests::eventually(Duration::from_secs(30), "mDNS discovery", || {
            let log = b.log_text();
            let at = |needle: &str| log.lines().find(|l| l.contains(needle)).and_then(log_time);
            match (at("started: peer id"), at("connection established")) {
                (Some(start), Some(connected)) => Ok(Duration::from_secs_f64(
                    (connected - start).rem_euclid(86_400.0),
                )),
                _ => Err("not yet".to_owned()),
            }
        });
        row.samples.push(took);
    }
    Some(row)
}

/// Seconds since midnight of a log line's `YYYY-MM-DDTHH:MM:SS.ffffffZ` timestamp.
fn log_time(line: &str) -> Option<f64> {
    let time = line
        .split_whitespace()
        .next()?
        .split_once('T')?
        .1
        .trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}
