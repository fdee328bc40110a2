//! Flood benchmark: a `guts node` process (release build) under each flood a stranger can
//! send, beside the same node idle. For each it prints the node's peak resident memory
//! and `/health` latency (p50, p99, worst) while the flood runs. Asserts nothing about
//! speed: the table is the result.
//!
//! Floods:
//! - `announcements`: 10,000 genuine announcements of new repositories under fresh keys
//!   (the node replicates everything);
//! - `sync requests`: one peer sending GetRefs as fast as request-response takes them;
//! - `maximal frames`: 500 pack streams each announcing the largest request, then silent;
//! - `unread transfers`: every transfer slot taken by a requester that never reads;
//! - `DHT store`: ADD_PROVIDER of 4,000-byte keys with 300 addresses each, and 60 KB
//!   PUT_VALUE records, from one peer;
//! - `DHT lookups`: one peer's lookups as fast as its Kademlia sends them;
//! - every other protocol the node answers (identify, ping, gossipsub, AutoNAT v1 and v2,
//!   DCUtR, relay reservations on a relay): streams opened as fast as one connection
//!   takes them, each sending a frame that claims 1 MiB (gossipsub: an RPC of 90 made-up
//!   topics and an IHAVE of 400 made-up ids; the relay: a reservation request) and then
//!   held open;
//! - `maximal pack requests, 100,000 refs`: 8 pack requests of 200,000 wants each against
//!   a repository of 100,000 refs.
//!
//! Run: `scripts/bench floods`. `GUTS_BENCH_QUICK=1` runs each flood briefly (a check that
//! the benchmark works, not a measurement).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use guts_protocol::wire::{Announcement, PackRequest, SyncRequest};
use guts_protocol::{NetworkName, RepositoryId, SignedRefs};
use guts_tests::git::{Noise, WorkRepo, many_refs_repo};
use guts_tests::kad_flood::{kad_swarm, lookup_flood, store_flood};
use guts_tests::peer::{Flooder, RawPeer, StreamPeer};
use guts_tests::process::{GutsNode, NodeSpec, http_get};
use guts_tests::procfs;
use guts_tests::raw_frames::{gossipsub_protocol, ihave_rpc, subscribe_rpc};

/// What a probe thread saw while a flood ran.
struct Seen {
    latencies: Vec<Duration>,
    peak_rss_kib: u64,
}

fn rss_kib(pid: u32) -> u64 {
    procfs::status_kib(pid, "VmRSS:").unwrap_or(0)
}

/// Probes `/health` and samples RSS every 20 ms until `stop`.
fn probe(node: &GutsNode, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    let (api, pid) = (node.api(), node.pid());
    std::thread::spawn(move || {
        let mut seen = Seen {
            latencies: Vec::new(),
            peak_rss_kib: 0,
        };
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let ok = matches!(http_get(api, "/health"), Ok((200, _)));
            let took = started.elapsed();
            seen.latencies.push(if ok { took } else { Duration::MAX });
            seen.peak_rss_kib = seen.peak_rss_kib.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    if d == Duration::MAX {
        "failed".into()
    } else {
        format!("{:.1}", d.as_secs_f64() * 1000.0)
    }
}

fn row(name: &str, seen: Seen) {
    let mut l = seen.latencies;
    l.sort();
    println!(
        "| {name} | {:.1} | {} | {} | {} | {} |",
        seen.peak_rss_kib as f64 / 1024.0,
        ms(percentile(&l, 0.5)),
        ms(percentile(&l, 0.99)),
        ms(l.last().copied().unwrap_or_default()),
        l.len()
    );
}

fn spawn_node(dir: &std::path::Path, name: &str, args: &[&str]) -> GutsNode {
    NodeSpec::loopback(&dir.join(name))
        .log_filter("warn,guts_node::api=info")
        .args(args.iter().copied())
        .spawn()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("GUTS_BENCH_QUICK").is_some();
    let period = Duration::from_secs(if quick { 1 } else { 10 });
    let announcements = if quick { 500 } else { 10_000 };
    let network = NetworkName::default_network();
    let dir = tempfile::tempdir().unwrap();
    println!("| flood | peak RSS (MiB) | /health p50 (ms) | p99 (ms) | worst (ms) | probes |");
    println!("|---|---|---|---|---|---|");

    // Idle, the reference.
    let node = spawn_node(dir.path(), "idle", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = probe(&node, stop.clone());
    tokio::time::sleep(period).await;
    stop.store(true, Ordering::Relaxed);
    row("idle", seen.join().unwrap());
    drop(node);

    // Announcements from fresh keys at a replicate-all node.
    let node = spawn_node(dir.path(), "announce", &["--replicate", "all"]);
    let messages: Vec<Vec<u8>> = (0..announcements as u32)
        .map(|i| {
            let mut seed = [9u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let snapshot = SignedRefs::sign(
                &SigningKey::from_bytes(&seed),
                format!("flood{i}").parse().unwrap(),
                1,
                None,
                Default::default(),
            )
            .unwrap();
            guts_protocol::wire::encode(&Announcement::of(&snapshot))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = probe(&node, stop.clone());
    let flooder = Flooder::spawn(&network, messages);
    flooder.connect(&node.tcp_addr().parse().unwrap());
    let deadline = Instant::now() + period.max(Duration::from_secs(5)) * 3;
    while flooder.published() < announcements && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(period).await;
    stop.store(true, Ordering::Relaxed);
    row(
        &format!("{announcements} announcements, fresh keys"),
        seen.join().unwrap(),
    );
    drop((flooder, node));

    // GetRefs as fast as one peer can send them.
    let node = spawn_node(dir.path(), "requests", &[]);
    let node_id: libp2p::PeerId = node.status().peer_id.parse().unwrap();
    let mut raw = RawPeer::new(&network).await;
    raw.dial(
        &format!("{}/p2p/{node_id}", node.tcp_addr())
            .parse()
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let seen = probe(&node, stop.clone());
    let until = Instant::now() + period;
    let mut sent = 0u64;
    while Instant::now() < until {
        for _ in 0..50 {
            raw.request(
                &node_id,
                SyncRequest::GetRefs {
                    repository: RepositoryId::from_bytes([sent as u8; 20]),
                },
            );
            sent += 1;
        }
        raw.run_for(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    row(&format!("{sent} sync requests"), seen.join().unwrap());
    drop((raw, node));

    // 500 pack streams announcing the largest request, then silent.
    let node = spawn_node(dir.path(), "frames", &["--max-streams-per-peer", "1000"]);
    let node_id: libp2p::PeerId = node.status().peer_id.parse().unwrap();
    let stranger = StreamPeer::spawn(&network);
    stranger.connect(
        &format!("{}/p2p/{node_id}", node.tcp_addr())
            .parse()
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let seen = probe(&node, stop.clone());
    let mut prefix = (guts_protocol::wire::MAX_PACK_REQUEST_SIZE as u32)
        .to_be_bytes()
        .to_vec();
    prefix.push(0);
    let mut streams = Vec::new();
    let until = Instant::now() + period;
    while streams.len() < 500 && Instant::now() < until + period {
        match stranger.raw_pack_stream(node_id, &prefix).await {
            Ok(s) => streams.push(s),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    tokio::time::sleep(period).await;
    stop.store(true, Ordering::Relaxed);
    row(
        &format!("{} streams of maximal frames", streams.len()),
        seen.join().unwrap(),
    );
    drop((streams, stranger, node));

    // Every transfer slot held by a requester that never reads.
    let node = spawn_node(dir.path(), "unread", &["--transfer-stall-timeout", "5s"]);
    let work = WorkRepo::new("unread");
    let mut noise = Noise::new(3);
    let blobs: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("b{i}"), noise.bytes(1 << 20)))
        .collect();
    let files: Vec<(&str, &[u8])> = blobs
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    work.commit("refs/heads/main", &files, "blobs");
    let id: RepositoryId = node.import(work.path()).id.parse().unwrap();
    let tip = work.repo.refname_to_id("refs/heads/main").unwrap();
    let request = PackRequest {
        repository: id,
        wants: vec![guts_protocol::ObjectId(tip.as_bytes().try_into().unwrap())],
        haves: Vec::new(),
    };
    let node_id: libp2p::PeerId = node.status().peer_id.parse().unwrap();
    let stranger = StreamPeer::spawn(&network);
    stranger.connect(
        &format!("{}/p2p/{node_id}", node.tcp_addr())
            .parse()
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let seen = probe(&node, stop.clone());
    let mut unread = Vec::new();
    while unread.len() < 8 {
        match stranger.request_pack(node_id, &request).await {
            Ok(s) => unread.push(s),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    tokio::time::sleep(period).await;
    stop.store(true, Ordering::Relaxed);
    row("8 transfers never read", seen.join().unwrap());
    drop((unread, stranger, node));

    // One peer using the node as its DHT store.
    let (keys, values) = if quick { (300, 20) } else { (3000, 200) };
    let node = spawn_node(
        dir.path(),
        "dht-store",
        &[
            "--requests-per-second-per-peer",
            "1000",
            "--dht-mode",
            "server",
        ],
    );
    let node_id: libp2p::PeerId = node.status().peer_id.parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = probe(&node, stop.clone());
    let mut swarm = kad_swarm(&network, node_id, node.tcp_addr().parse().unwrap(), 300);
    let started = Instant::now();
    store_flood(&mut swarm, keys, values, period * 6).await;
    tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    row(
        &format!("DHT store: {keys} provider keys x 300 addresses, {values} values of 60 KB"),
        seen.join().unwrap(),
    );
    drop((swarm, node));

    // One peer's lookups as fast as they go.
    let node = spawn_node(dir.path(), "dht-lookups", &["--dht-mode", "server"]);
    let node_id: libp2p::PeerId = node.status().peer_id.parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = probe(&node, stop.clone());
    let mut swarm = kad_swarm(&network, node_id, node.tcp_addr().parse().unwrap(), 0);
    let started = Instant::now();
    let lookups = if quick { 2_000 } else { 20_000 };
    let flood = lookup_flood(&mut swarm, node_id, lookups, period).await;
    tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    row(
        &format!(
            "DHT lookups: {lookups} started, {} ended, {}",
            flood.ended,
            if flood.cut_off {
                "banned"
            } else {
                "not banned"
            }
        ),
        seen.join().unwrap(),
    );
    drop((swarm, node));

    // Every other protocol the node answers, streams opened as fast as they go.
    let topics: Vec<String> = (0..90).map(|i| format!("{i:0>150}")).collect();
    let mut gossip = subscribe_rpc(topics.iter().map(String::as_str));
    let ids: Vec<Vec<u8>> = (0..400u32).map(|i| i.to_le_bytes().repeat(8)).collect();
    gossip.extend(ihave_rpc(&network.announce_topic(), &ids));
    // An unsigned-varint length of 1 MiB, then 4 KiB of it.
    let mut claim = vec![0x80, 0x80, 0x40];
    claim.extend(vec![0xa5; 4096]);
    // HopMessage { type: RESERVE }, framed.
    let reserve = [2u8, 0x08, 0x00];
    let protocols: [(&str, libp2p::StreamProtocol, &[u8]); 8] = [
        (
            "identify",
            libp2p::StreamProtocol::new("/ipfs/id/1.0.0"),
            &[],
        ),
        (
            "identify push",
            libp2p::StreamProtocol::new("/ipfs/id/push/1.0.0"),
            &claim,
        ),
        (
            "ping",
            libp2p::StreamProtocol::new("/ipfs/ping/1.0.0"),
            &[7; 32],
        ),
        ("gossipsub", gossipsub_protocol(&network), &gossip),
        (
            "AutoNAT v1",
            libp2p::StreamProtocol::new("/libp2p/autonat/1.0.0"),
            &claim,
        ),
        (
            "AutoNAT v2",
            libp2p::StreamProtocol::new("/libp2p/autonat/2/dial-request"),
            &claim,
        ),
        (
            "DCUtR (direct connection)",
            libp2p::StreamProtocol::new("/libp2p/dcutr"),
            &claim,
        ),
        (
            "relay reservations (a relay)",
            libp2p::StreamProtocol::new("/libp2p/circuit/relay/0.2.0/hop"),
            &reserve,
        ),
    ];
    for (name, protocol, frame) in protocols {
        // A relay serves only once it has an address others can reach it at.
        let args: &[&str] = if name.starts_with("relay") {
            &[
                "--relay-server",
                "--external-address",
                "/ip4/127.0.0.1/tcp/4001",
            ]
        } else {
            &[]
        };
        let node = spawn_node(dir.path(), &name.replace(' ', "-"), args);
        let node_id: libp2p::PeerId = node.status().peer_id.parse().unwrap();
        let stranger = StreamPeer::spawn(&network);
        // Gossipsub listens to a peer only once its own stream to the peer is taken.
        stranger.accept(gossipsub_protocol(&network));
        stranger.connect(&node.tcp_addr().parse().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let seen = probe(&node, stop.clone());
        let (mut held, mut opened, mut refused) = (Vec::new(), 0u64, 0u64);
        let until = Instant::now() + period;
        while Instant::now() < until {
            match tokio::time::timeout(
                Duration::from_secs(1),
                stranger.raw_stream(node_id, protocol.clone(), frame),
            )
            .await
            {
                Ok(Ok(stream)) => {
                    held.push(stream);
                    opened += 1;
                }
                _ => {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            // What one connection keeps open; older ones go.
            if held.len() > 1000 {
                held.remove(0);
            }
        }
        stop.store(true, Ordering::Relaxed);
        row(
            &format!("{name}: {opened} streams opened, {refused} refused"),
            seen.join().unwrap(),
        );
        drop((held, stranger, node));
    }

    // The largest pack requests against the most refs a snapshot may hold.
    let refs = if quick { 2_000 } else { 100_000 };
    let source = dir.path().join("many.git");
    many_refs_repo(&source, refs);
    let node = spawn_node(dir.path(), "many-refs", &[]);
    let id: RepositoryId = node.import(&source).id.parse().unwrap();
    let detail = node.client(["repo", "show", &id.to_string(), "--json"]);
    let detail: serde_json::Value = serde_json::from_slice(&detail.stdout).unwrap();
    // The snapshot's last target: a scan of the refs per want would find it last.
    let last: guts_protocol::ObjectId = detail["refs"]
        .as_object()
        .and_then(|refs| refs.values().next_back())
        .and_then(|v| v.as_str())
        .unwrap()
        .parse()
        .unwrap();
    let request = PackRequest {
        repository: id,
        wants: vec![last; 200_000],
        haves: Vec::new(),
    };
    let node_id: libp2p::PeerId = node.status().peer_id.parse().unwrap();
    let stranger = StreamPeer::spawn(&network);
    stranger.connect(&node.tcp_addr().parse().unwrap());
    // What the import of that many refs left resident, before any request.
    let resident = rss_kib(node.pid()) as f64 / 1024.0;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = probe(&node, stop.clone());
    let mut asked = Vec::new();
    let until = Instant::now() + period;
    while asked.len() < 8 && Instant::now() < until {
        match stranger.request_pack(node_id, &request).await {
            Ok(s) => asked.push(s),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    tokio::time::sleep(period).await;
    stop.store(true, Ordering::Relaxed);
    row(
        &format!(
            "{} pack requests of 200,000 wants, {refs} refs ({resident:.1} MiB before)",
            asked.len()
        ),
        seen.join().unwrap(),
    );
    drop((asked, stranger, node));
    println!();
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "({build} build; /health is answered through the event loop, so its latency is the loop's)"
    );
}
