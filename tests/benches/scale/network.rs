//! Part 1: a network of many in-process nodes (see main.rs).

use std::path::Path;
use std::time::{Duration, Instant};

use guts_node::api::types::{SyncOutcome, SyncProgress};
use guts_node::{NodeHandle, Replicate};
use guts_protocol::{RepositoryId, SignedRefs, wire};
use guts_tests::cluster::{TestNode, star};
use guts_tests::eventually_async;
use guts_tests::git::WorkRepo;

use super::{POLL, cpu_time, line, median, mib, ms, percentile, proc_bytes};

// ---- Part 1: a network of many in-process nodes -------------------------------------

/// The window over which part 1 watches the network's CPU with nothing to do.
const IDLE_WINDOW: Duration = Duration::from_secs(3);
/// The network has settled once it uses less than this share of a core over a window...
const QUIET_SHARE: f64 = 0.25;
/// ...or after this long.
const SETTLE_MAX: Duration = Duration::from_secs(120);

/// What part 1 measured.
pub(super) struct NetworkReport {
    start_all: Duration,
    settle: Duration,
    mean_peers: f64,
    rss_before: u64,
    rss_after: u64,
    /// From the mesh forming until the network settled.
    quiet: Duration,
    /// CPU the settled network used over `IDLE_WINDOW` with nothing to do.
    idle_cpu: Duration,
    /// CPU used and wall time taken by the rounds of new commits.
    rounds_cpu: (Duration, Duration),
    new_repo: Duration,
    imports: Vec<Duration>,
    /// Every (node, round) propagation time.
    propagation: Vec<Duration>,
    /// Per round, until the last node held the commit.
    last_node: Vec<Duration>,
    lookup: Vec<Duration>,
    lookup_sync: Vec<Duration>,
    named_refs: Vec<Duration>,
    named_sync: Vec<Duration>,
    connect: Vec<Duration>,
}

impl NetworkReport {
    pub(super) fn print(&self, n: usize, runs: usize) {
        let others = n - 1;
        println!();
        println!(
            "scale benchmark, part 1: {n} in-process nodes on loopback (replicate = all, \
             each bootstrapped from the first), {runs} rounds of one new commit"
        );
        line("measure", "value", "goal / context");
        line(
            &format!("start {n} nodes, one after another"),
            &ms(self.start_all),
            &format!("{} per node", ms(self.start_all / n as u32)),
        );
        line(
            "until every node is in the gossip mesh",
            &ms(self.settle),
            &format!("{:.1} connected peers per node", self.mean_peers),
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let share = |cpu: Duration, wall: Duration| {
            format!(
                "{:.0}% of a core",
                cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
            )
        };
        line(
            "then until the network settled (joining ends)",
            &ms(self.quiet),
            &format!(
                "CPU then {} over {IDLE_WINDOW:?}; the machine has {cores} cores",
                share(self.idle_cpu, IDLE_WINDOW)
            ),
        );
        line(
            "CPU while the commits propagate",
            &share(self.rounds_cpu.0, self.rounds_cpu.1),
            &format!("{} over {}", ms(self.rounds_cpu.0), ms(self.rounds_cpu.1)),
        );
        let per_node = self.rss_after.saturating_sub(self.rss_before) / n as u64;
        line(
            "memory per node (process VmRSS growth / N)",
            &mib(per_node),
            &format!(
                "process {} before, {} after",
                mib(self.rss_before),
                mib(self.rss_after)
            ),
        );
        line(
            &format!("new repository: import until all {others} others hold it"),
            &ms(self.new_repo),
            "",
        );
        line(
            "new commit: the import itself on the owner (median)",
            &ms(median(&self.imports)),
            "",
        );
        let mut p = self.propagation.clone();
        p.sort();
        line(
            &format!(
                "new commit to each node: p50 / p99 / max ({} samples)",
                p.len()
            ),
            &format!(
                "{} / {} / {}",
                ms(percentile(&p, 0.5)),
                ms(percentile(&p, 0.99)),
                ms(percentile(&p, 1.0))
            ),
            "goal: p99 under 3 s on loopback at 100 nodes",
        );
        let mut last = self.last_node.clone();
        last.sort();
        line(
            "new commit to the last node: median / max over rounds",
            &format!("{} / {}", ms(median(&last)), ms(percentile(&last, 1.0))),
            &format!("polled every {}", ms(POLL)),
        );
        let mut l = self.lookup.clone();
        l.sort();
        line(
            "provider lookup + refs round (fresh node, no holder known)",
            &format!("{} median, {} max", ms(median(&l)), ms(percentile(&l, 1.0))),
            "includes dialing the providers found",
        );
        line(
            "  reference: refs from a named holder (fresh node, --from)",
            &format!(
                "{} median",
                ms(median(&self.named_refs)) // the refs round alone, no lookup
            ),
            "the holder was connected just before",
        );
        line(
            "  reference: connect to a node (dial, handshakes, identify)",
            &format!("{} median", ms(median(&self.connect))),
            &format!("{} samples", self.connect.len()),
        );
        line(
            "  whole sync, no holder known / holder named",
            &format!(
                "{} / {}",
                ms(median(&self.lookup_sync)),
                ms(median(&self.named_sync))
            ),
            "lookup, refs, pack fetch",
        );
    }
}

pub(super) async fn network(n: usize, runs: usize) -> NetworkReport {
    let rss_before = proc_bytes("self", "VmRSS:");
    eprintln!("starting {n} nodes...");
    let t = Instant::now();
    let nodes = star(n, |c| c.replication.replicate = Replicate::All).await;
    let start_all = t.elapsed();
    // Announcements travel the gossip mesh: measure once every node is in it.
    let t = Instant::now();
    let want_mesh = 2.min(n - 1);
    let mean_peers = eventually_async(
        Duration::from_secs(300),
        "every node in the gossip mesh",
        || async {
            let mut peers = 0;
            for node in &nodes {
                let s = node.handle.status().await.map_err(|e| e.to_string())?;
                if s.gossip_mesh_peers < want_mesh {
                    return Err(format!("a node has {} mesh peers", s.gossip_mesh_peers));
                }
                peers += s.connected_peers;
            }
            Ok(peers as f64 / nodes.len() as f64)
        },
    )
    .await;
    let settle = t.elapsed();
    let rss_after = proc_bytes("self", "VmRSS:");
    let me = std::process::id();
    // Joining goes on after the mesh forms (DHT bootstrap, more connections, identify):
    // the commits are timed on a network that has settled, as a running one has.
    eprintln!("waiting for the network to settle...");
    let t = Instant::now();
    let idle_cpu = loop {
        let before = cpu_time(me);
        tokio::time::sleep(IDLE_WINDOW).await;
        let used = cpu_time(me).saturating_sub(before);
        if used < IDLE_WINDOW.mul_f64(QUIET_SHARE) || t.elapsed() > SETTLE_MAX {
            break used;
        }
    };
    let quiet = t.elapsed();

    // The owner is not the node everyone bootstrapped from: that one is best connected.
    let owner = &nodes[n - 1];
    let others: Vec<&NodeHandle> = nodes[..n - 1].iter().map(|t| &t.handle).collect();
    let work = WorkRepo::with_history("scale");
    eprintln!("importing a repository, then {runs} new commits...");
    let t = Instant::now();
    let (imported, seen) = tokio::join!(
        owner.handle.import(work.path().to_owned(), None),
        seen_by_all(&others, None, 1, t)
    );
    let id: RepositoryId = imported.expect("import").0.id.parse().unwrap();
    let new_repo = *seen.iter().max().unwrap();
    let (mut imports, mut propagation, mut last_node) = (Vec::new(), Vec::new(), Vec::new());
    let (rounds_started, cpu_before) = (Instant::now(), cpu_time(me));
    for round in 0..runs {
        work.commit(
            "refs/heads/main",
            &[("round", format!("{round}\n").as_bytes())],
            &format!("round {round}"),
        );
        let sequence = round as u64 + 2;
        let t = Instant::now();
        let import = async {
            let r = owner.handle.import(work.path().to_owned(), None).await;
            (r, t.elapsed())
        };
        let ((imported, took), seen) =
            tokio::join!(import, seen_by_all(&others, Some(id), sequence, t));
        let (summary, changed) = imported.expect("import");
        assert!(changed && summary.sequence == sequence, "{summary:?}");
        imports.push(took);
        last_node.push(*seen.iter().max().unwrap());
        propagation.extend(seen);
    }
    let rounds_cpu = (
        cpu_time(me).saturating_sub(cpu_before),
        rounds_started.elapsed(),
    );
    // Correctness: every node holds exactly the owner's refs.
    let want = owner.handle.repository(id).await.unwrap().unwrap().refs;
    for node in &others {
        let held = node.repository(id).await.unwrap().unwrap();
        assert_eq!(held.refs, want, "a node's refs differ from the owner's");
    }

    eprintln!("provider lookups...");
    let (mut lookup, mut lookup_sync, mut named_refs, mut named_sync, mut connect) =
        (vec![], vec![], vec![], vec![], vec![]);
    let final_sequence = runs as u64 + 1;
    for run in 0..runs {
        // Each fresh node joins through a different node of the network.
        let via = nodes[run % (n - 1)].addr.clone();
        let joiner = join(&via, n).await;
        let (to_refs, whole) = timed_sync(&joiner.handle, id, None, final_sequence).await;
        lookup.push(to_refs);
        lookup_sync.push(whole);
        joiner.shutdown().await;

        let joiner = join(&via, n).await;
        // The reference connect: to a node the joiner has no connection to yet.
        let connected: Vec<String> = joiner
            .handle
            .peers()
            .await
            .expect("peers")
            .into_iter()
            .map(|p| p.peer_id)
            .collect();
        if let Some(stranger) = nodes[..n - 1]
            .iter()
            .find(|t| !connected.contains(&t.handle.peer_id().to_string()))
        {
            let t = Instant::now();
            joiner
                .handle
                .connect(stranger.addr.clone())
                .await
                .expect("connect");
            connect.push(t.elapsed());
        }
        // Connected before the clock starts: the refs round alone.
        let owner_peer = joiner
            .handle
            .connect(owner.addr.clone())
            .await
            .expect("connect to the owner");
        let (to_refs, whole) =
            timed_sync(&joiner.handle, id, Some(owner_peer), final_sequence).await;
        named_refs.push(to_refs);
        named_sync.push(whole);
        joiner.shutdown().await;
    }
    for node in nodes {
        node.shutdown().await;
    }
    NetworkReport {
        start_all,
        settle,
        mean_peers,
        rss_before,
        rss_after,
        quiet,
        idle_cpu,
        rounds_cpu,
        new_repo,
        imports,
        propagation,
        last_node,
        lookup,
        lookup_sync,
        named_refs,
        named_sync,
        connect,
    }
}

/// For each node, the time from `since` until it holds `sequence` of the repository
/// (`id`, or the one repository it holds when `None`). Panics after a minute.
///
/// With an id the node's snapshot file is read directly (what the node's own reads
/// decode): 99 nodes polled through their handles every 25 ms kept the blocking pool
/// busy enough to slow the very propagation being measured.
async fn seen_by_all(
    nodes: &[&NodeHandle],
    id: Option<RepositoryId>,
    sequence: u64,
    since: Instant,
) -> Vec<Duration> {
    let deadline = Duration::from_secs(60);
    let waits = nodes.iter().map(|node| async move {
        loop {
            let held = match id {
                Some(id) => held_sequence(node.data_dir(), id),
                None => node
                    .repositories()
                    .await
                    .ok()
                    .and_then(|r| r.last().map(|s| s.sequence))
                    .unwrap_or(0),
            };
            if held >= sequence {
                return Ok(since.elapsed());
            }
            if since.elapsed() > deadline {
                return Err(());
            }
            tokio::time::sleep(POLL).await;
        }
    });
    let seen = futures::future::join_all(waits).await;
    let missing = seen.iter().filter(|s| s.is_err()).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} nodes did not get sequence {sequence} within {deadline:?}",
        nodes.len()
    );
    seen.into_iter().map(Result::unwrap).collect()
}

/// The sequence of `id` in the node's store at `data_dir` (0 if it holds none).
fn held_sequence(data_dir: &Path, id: RepositoryId) -> u64 {
    let file = data_dir
        .join("repos")
        .join(id.to_string())
        .join("guts-signed-refs");
    std::fs::read(file)
        .ok()
        .and_then(|b| wire::decode::<SignedRefs>(&b, wire::MAX_RESPONSE_SIZE).ok())
        .map_or(0, |s| s.sequence())
}

/// A fresh node (replicating only what it follows) joined to the network through `via`,
/// its routing table filled a little, so a lookup is not its first DHT query.
async fn join(via: &guts_node::Multiaddr, n: usize) -> TestNode {
    let joiner = TestNode::start(|c| c.net.bootstrap = vec![via.clone()]).await;
    let want = 8.min(n - 1);
    eventually_async(Duration::from_secs(60), "the joiner's DHT", || async {
        let s = joiner.handle.status().await.map_err(|e| e.to_string())?;
        if s.routing_table_size >= want {
            Ok(())
        } else {
            Err(format!("{} in its routing table", s.routing_table_size))
        }
    })
    .await;
    joiner
}

/// Syncs `id` on `node`: the time to its first `Holders` progress event (holders found
/// and asked for refs), and to the end. Checks it ends at `sequence`.
async fn timed_sync(
    node: &NodeHandle,
    id: RepositoryId,
    prefer: Option<guts_node::PeerId>,
    sequence: u64,
) -> (Duration, Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let t = Instant::now();
    let first_holders = async {
        while let Some(p) = rx.recv().await {
            if let SyncProgress::Holders { asked } = p {
                assert!(asked > 0, "no holder asked");
                return Some(t.elapsed());
            }
        }
        None
    };
    let sync = async {
        let r = node.sync(id, prefer, Some(tx)).await;
        (r, t.elapsed())
    };
    let (to_refs, (outcome, whole)) = tokio::join!(first_holders, sync);
    match outcome.expect("sync") {
        SyncOutcome::Updated { sequence: s, .. } => assert_eq!(s, sequence),
        other => panic!("a fresh node's sync: {other:?}"),
    }
    (to_refs.expect("a Holders progress event"), whole)
}
