//! The connection manager with real nodes and real sockets.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use futures::future::join_all;
use guts_node::api::types::PeerReport;
use guts_protocol::wire::{SyncRequest, SyncResponse};
use guts_protocol::{NetworkName, RepositoryId};
use guts_tests::cluster::TestNode;
use guts_tests::netns::Lan;
use guts_tests::peer::{DhtPeer, RawPeer, StreamPeer, sync_response};
use guts_tests::process::NodeSpec;
use guts_tests::{eventually, eventually_async};
use libp2p::swarm::SwarmEvent;

fn from_ip<'a>(peers: &'a [PeerReport], ip: &str) -> Vec<&'a PeerReport> {
    let prefix = format!("/ip4/{ip}/");
    peers
        .iter()
        .filter(|p| p.addresses.iter().any(|a| a.starts_with(&prefix)))
        .collect()
}

/// Ten nodes on one host dial a node with max_peers_per_ip = 3: three get in, the rest
/// are refused at the pending stage; two nodes on another host still get in. The peer
/// list shows the source addresses the refusals were based on.
#[test]
fn per_ip_limit_with_distinct_source_addresses() {
    let lan = Lan::new(3);
    let tmp = tempfile::tempdir().unwrap();
    let target = NodeSpec::on_lan(&lan, 0, &tmp.path().join("target"))
        .args(["--mdns", "off", "--max-peers-per-ip", "3"])
        .spawn();
    let target_addr = target.addr_with_prefix(&format!("/ip4/{}/tcp/", lan.host_ip(0)));
    let spawn_on = |host: usize, i: usize| {
        NodeSpec::on_lan(&lan, host, &tmp.path().join(format!("h{host}-{i}")))
            .args(["--mdns", "off", "--bootstrap", &target_addr])
            .spawn()
    };
    let _crowd: Vec<_> = (0..10).map(|i| spawn_on(1, i)).collect();
    let _others: Vec<_> = (0..2).map(|i| spawn_on(2, i)).collect();
    let (crowd_ip, other_ip) = (lan.host_ip(1), lan.host_ip(2));

    eventually(
        Duration::from_secs(30),
        "3 peers from the crowded host, 2 from the other",
        || {
            let peers = target.peers();
            let crowd = from_ip(&peers, &crowd_ip).len();
            assert!(
                crowd <= 3,
                "{crowd} inbound peers from {crowd_ip}: {peers:?}"
            );
            let others = from_ip(&peers, &other_ip).len();
            let denied = target.status().connections.denied["per_ip"];
            if crowd == 3 && others == 2 && denied >= 7 {
                Ok(())
            } else {
                Err(format!(
                    "{crowd} from {crowd_ip}, {others} from {other_ip}, {denied} denied per-IP"
                ))
            }
        },
    );
    let status = target.status();
    assert_eq!(status.limits.max_peers_per_ip, 3);
    assert_eq!(status.connections.inbound, 5, "{:?}", status.connections);
}

/// The same crowded host, exempted with `--per-ip-allow` (as a CIDR): all ten of its
/// nodes get in and nothing is refused per IP.
#[test]
fn per_ip_allow_exempts_a_crowded_host() {
    let lan = Lan::new(2);
    let tmp = tempfile::tempdir().unwrap();
    let crowd_ip = lan.host_ip(1);
    let target = NodeSpec::on_lan(&lan, 0, &tmp.path().join("target"))
        .args(["--mdns", "off", "--max-peers-per-ip", "3"])
        .args(["--per-ip-allow", &format!("{crowd_ip}/32")])
        .spawn();
    let target_addr = target.addr_with_prefix(&format!("/ip4/{}/tcp/", lan.host_ip(0)));
    let _crowd: Vec<_> = (0..10)
        .map(|i| {
            NodeSpec::on_lan(&lan, 1, &tmp.path().join(format!("h1-{i}")))
                .args(["--mdns", "off", "--bootstrap", &target_addr])
                .spawn()
        })
        .collect();
    eventually(
        Duration::from_secs(30),
        "all 10 peers from the exempted host",
        || {
            let crowd = from_ip(&target.peers(), &crowd_ip).len();
            if crowd == 10 {
                Ok(())
            } else {
                Err(format!("{crowd} from {crowd_ip}"))
            }
        },
    );
    let status = target.status();
    assert_eq!(status.connections.denied["per_ip"], 0);
}

/// 40 peers connect to a node with high = 20, low = 10: one trim takes it down to exactly
/// the low watermark, and the peers it protected stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_trim_and_keep_protected_peers() {
    // DHT clients: the target keeps them out of its routing table, so no DHT query
    // (theirs or its own) dials a trimmed peer back and the count holds still at 10.
    let mut dialers = Vec::new();
    for _ in 0..40 {
        dialers.push(
            TestNode::start(|c| {
                c.connections.low_watermark = 0;
                c.net.dht_mode = guts_node::DhtMode::Client;
            })
            .await,
        );
    }
    // The first heartbeat is at start, the next one 8 s later: every connect below is
    // done by then, so that trim sees all 40 (no grace period: a connection still within
    // one would be spared and kept above the low watermark, which the unit tests cover).
    let target = TestNode::start(|c| {
        c.connections.high_watermark = 20;
        c.connections.low_watermark = 10;
        c.connections.max_connections = 100;
        c.connections.trim_interval = Duration::from_secs(8);
        c.connections.trim_grace_period = Duration::ZERO;
    })
    .await;
    let results = join_all(
        dialers
            .iter()
            .map(|d| d.handle.connect(target.addr.clone())),
    )
    .await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    // The target protects three of them (they are already connected: it just marks them).
    let protected: Vec<_> = dialers[..3].iter().map(|d| d.handle.peer_id()).collect();
    for d in &dialers[..3] {
        target
            .handle
            .connect(d.addr.clone())
            .await
            .expect("protect");
    }
    let status = target.handle.status().await.unwrap();
    assert_eq!(
        status.connections.trimmed, 0,
        "no trim before the heartbeat"
    );

    eventually_async(
        Duration::from_secs(30),
        "a trim down to the low watermark",
        || async {
            let status = target.handle.status().await.map_err(|e| e.to_string())?;
            let peers = target.handle.peers().await.map_err(|e| e.to_string())?;
            let ids: Vec<_> = peers.iter().map(|p| p.peer_id.clone()).collect();
            let protected_kept = protected.iter().all(|p| ids.contains(&p.to_string()));
            let n = peers.len();
            // Above the high watermark, trimmed down to the low one (40 -> 10), once.
            if status.connections.trimmed == 30 && n == 10 && protected_kept {
                Ok(())
            } else {
                Err(format!(
                    "{n} peers, {} trimmed, protected kept: {protected_kept}",
                    status.connections.trimmed
                ))
            }
        },
    )
    .await;
    let peers = target.handle.peers().await.unwrap();
    for p in &protected {
        let report = peers.iter().find(|r| r.peer_id == p.to_string()).unwrap();
        assert!(report.protected);
    }
}

/// Connections beyond the high watermark are not kept alive: with trimming an hour
/// away, the three beyond high = 2 close on the idle timeout, and the first two stay.
/// The peers speak identify and nothing else, so no protocol of theirs holds a
/// connection open (a gossip mesh peer's would: it is in use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_high_watermark_close_when_idle() {
    let target = TestNode::start(|c| {
        c.connections.high_watermark = 2;
        c.connections.low_watermark = 1;
        c.connections.trim_interval = Duration::from_secs(3600);
        c.net.idle_connection_timeout = Duration::from_secs(2);
    })
    .await;
    let network = NetworkName::default_network();
    let mut dialers = Vec::new();
    for _ in 0..5 {
        let dialer = StreamPeer::spawn(&network);
        dialer.connect(&target.addr);
        // One at a time: the first two to arrive are the two within the watermark.
        let id = dialer.peer_id().to_string();
        eventually_async(Duration::from_secs(10), "the peer connected", || async {
            let peers = target.handle.peers().await.map_err(|e| e.to_string())?;
            if peers.iter().any(|p| p.peer_id == id) {
                Ok(())
            } else {
                Err(format!("{} peers", peers.len()))
            }
        })
        .await;
        dialers.push(dialer);
    }
    let first_two: Vec<String> = dialers[..2]
        .iter()
        .map(|d| d.peer_id().to_string())
        .collect();
    eventually_async(
        Duration::from_secs(30),
        "the three beyond the high watermark to close",
        || async {
            let peers = target.handle.peers().await.map_err(|e| e.to_string())?;
            let ids: Vec<_> = peers.iter().map(|p| p.peer_id.clone()).collect();
            if ids.len() == 2 && first_two.iter().all(|p| ids.contains(p)) {
                Ok(())
            } else {
                Err(format!("connected: {ids:?}"))
            }
        },
    )
    .await;
    let status = target.handle.status().await.unwrap();
    assert_eq!(status.connections.trimmed, 0, "closed as idle, not trimmed");
}

/// A TCP listener that accepts and then says nothing: dials to it hang until the
/// connection timeout, like an unresponsive peer.
fn black_hole() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let clone = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((stream, _)) = clone.accept() {
            held.push(stream);
        }
    });
    (listener, format!("/ip4/127.0.0.1/tcp/{port}"))
}

/// A node asked to connect to 100 peers at once (40 real, 60 unresponsive) never has more
/// than max_concurrent_dials dials in flight, starts them no faster than the rate, and
/// answers every request: none is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dials_wait_their_turn_under_rate_and_concurrency_limits() {
    const RATE: u64 = 20;
    const MAX_IN_FLIGHT: usize = 10;
    let target = TestNode::start(|c| {
        c.connections.dials_per_second = RATE as u32;
        c.connections.max_concurrent_dials = MAX_IN_FLIGHT as u32;
        c.net.connection_timeout = Duration::from_secs(1);
        c.connections.low_watermark = 0;
        c.connections.max_connections = 200;
        c.connections.high_watermark = 200;
    })
    .await;
    let mut real = Vec::new();
    for _ in 0..40 {
        real.push(TestNode::start(|_| {}).await);
    }
    let holes: Vec<_> = (0..60).map(|_| black_hole()).collect();
    let mut addrs: Vec<_> = real.iter().map(|n| n.addr.clone()).collect();
    addrs.extend(holes.iter().map(|(_, a)| a.parse().unwrap()));

    let started = Instant::now();
    let handle = target.handle.clone();
    let all =
        tokio::spawn(async move { join_all(addrs.into_iter().map(|a| handle.connect(a))).await });
    let mut samples = 0;
    while !all.is_finished() {
        let c = target.handle.status().await.unwrap().connections;
        let elapsed = started.elapsed().as_secs_f64();
        assert!(
            c.dials_in_flight <= MAX_IN_FLIGHT,
            "{} dials in flight",
            c.dials_in_flight
        );
        // A burst of one second's worth, then the rate.
        let allowed = RATE as f64 * (1.0 + elapsed);
        assert!(
            (c.dials_started as f64) <= allowed,
            "{} dials started after {elapsed:.2}s",
            c.dials_started
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let results = all.await.unwrap();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 40, "every real peer connected");
    assert_eq!(
        results.len() - ok,
        60,
        "every unresponsive peer answered with an error"
    );
    let c = target.handle.status().await.unwrap().connections;
    assert_eq!(
        c.dials_in_flight_peak, MAX_IN_FLIGHT,
        "the cap was reached, never passed"
    );
    assert!(c.dials_started >= 100);
    assert!(
        samples > 20,
        "the limits were watched while dials ran ({samples} samples)"
    );
    // 100 dials at 20/s after a burst of 20 take at least 4 s.
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// A peer that floods sync requests is answered RateLimited, then banned: disconnected,
/// refused while the ban lasts, and accepted again after it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_banned_then_let_back() {
    let target = TestNode::start(|c| {
        c.connections.requests_per_second_per_peer = 5;
        c.connections.ban_duration = Duration::from_secs(3);
    })
    .await;
    let target_id = target.handle.peer_id();
    let mut flooder = RawPeer::new(&NetworkName::default_network()).await;
    flooder.dial(&target.addr);
    flooder
        .run_until(Duration::from_secs(10), "connection", |e| {
            matches!(e, SwarmEvent::ConnectionEstablished { .. }).then_some(())
        })
        .await;

    let repository = RepositoryId::from_bytes([7; 20]);
    let get_refs = SyncRequest::GetRefs { repository };

    // Within the rate: served.
    for _ in 0..5 {
        flooder.request(&target_id, get_refs.clone());
        let answer = flooder
            .run_until(Duration::from_secs(5), "an answer", |e| {
                sync_response(e).cloned()
            })
            .await;
        assert_eq!(answer, SyncResponse::NotFound);
    }
    // A burst over the rate (bursts of twice the rate, 10, are allowed): the excess is
    // refused, which costs a little score but is no ban.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..15 {
        flooder.request(&target_id, get_refs.clone());
    }
    let mut answers = Vec::new();
    while answers.len() < 15 {
        answers.push(
            flooder
                .run_until(Duration::from_secs(5), "15 answers", |e| {
                    sync_response(e).cloned()
                })
                .await,
        );
    }
    let limited = answers
        .iter()
        .filter(|a| **a == SyncResponse::RateLimited)
        .count();
    assert!(
        limited >= 3,
        "requests over the rate are refused: {answers:?}"
    );
    let status = target.handle.status().await.unwrap();
    assert_eq!(status.connections.banned_peers, 0);
    let flooder_id = flooder.peer_id().to_string();
    let score = target
        .handle
        .peers()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.peer_id == flooder_id)
        .unwrap()
        .score;
    assert!(score < 0.0, "refused requests lowered the score ({score})");

    // A flood: banned and disconnected (answers still queued may be lost with the
    // connection, so only the disconnection is awaited).
    for _ in 0..100 {
        flooder.request(&target_id, get_refs.clone());
    }
    flooder
        .run_until(
            Duration::from_secs(10),
            "the flooder to be disconnected",
            |e| matches!(e, SwarmEvent::ConnectionClosed { .. }).then_some(()),
        )
        .await;
    let banned_at = Instant::now();
    let status = target.handle.status().await.unwrap();
    assert_eq!(status.connections.banned_peers, 1);

    // While banned: every connection is refused (the dialer may see its side of the
    // handshake finish before the node closes it).
    let denied_before = status.connections.denied["banned"];
    flooder.dial(&target.addr);
    flooder
        .run_until(
            Duration::from_secs(5),
            "the refused connection to end",
            |e| match e {
                SwarmEvent::OutgoingConnectionError { .. }
                | SwarmEvent::ConnectionClosed { .. } => Some(()),
                _ => None,
            },
        )
        .await;
    let status = target.handle.status().await.unwrap();
    assert!(
        status.connections.denied["banned"] > denied_before,
        "{:?}",
        status.connections
    );
    assert!(
        target
            .handle
            .peers()
            .await
            .unwrap()
            .iter()
            .all(|p| p.peer_id != flooder_id)
    );

    // After the ban (3 s, checked against the clock at each connection): accepted again, and
    // served, neither before the ban is over nor long after.
    let deadline = banned_at + Duration::from_secs(7);
    loop {
        assert!(
            Instant::now() < deadline,
            "the flooder was never let back in"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        flooder.dial(&target.addr);
        let established = flooder
            .run_until(Duration::from_secs(5), "a dial outcome", |e| match e {
                SwarmEvent::ConnectionEstablished { .. } => Some(true),
                SwarmEvent::OutgoingConnectionError { .. }
                | SwarmEvent::ConnectionClosed { .. } => Some(false),
                _ => None,
            })
            .await;
        if !established {
            continue;
        }
        flooder.request(&target_id, get_refs.clone());
        let answer = flooder
            .run_until(
                Duration::from_secs(5),
                "an answer or a refusal",
                |e| match e {
                    SwarmEvent::ConnectionClosed { .. } => Some(None),
                    e => sync_response(e).map(|r| Some(r.clone())),
                },
            )
            .await;
        if let Some(answer) = answer {
            assert_eq!(answer, SyncResponse::NotFound);
            break;
        }
    }
    let let_back = banned_at.elapsed();
    assert!(
        let_back >= Duration::from_millis(2500),
        "let back after {let_back:?}, inside a 3 s ban"
    );
    assert_eq!(
        target
            .handle
            .status()
            .await
            .unwrap()
            .connections
            .banned_peers,
        0
    );
}

/// A node below its low watermark dials peers it knows until it is back at the low
/// watermark. Sixteen DHT peers dial a node with low = 8 and land in its routing table.
/// Once the DHT bootstrap that follows (which dials every peer in the table) has asked
/// all of them and ended, they hang up and never dial again: only the node's own fill
/// can bring it back to 8 (with low = 0 it stays at 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_below_its_low_watermark_dials_peers_it_knows() {
    let node = TestNode::start(|c| {
        c.connections.low_watermark = 8;
        c.connections.high_watermark = 30;
        c.connections.trim_interval = Duration::from_millis(300);
    })
    .await;
    let network = NetworkName::default_network();
    let peers: Vec<DhtPeer> = (0..16).map(|_| DhtPeer::spawn(&network)).collect();
    for peer in &peers {
        peer.connect(&node.addr);
    }
    eventually_async(
        Duration::from_secs(30),
        "16 peers connected and in the routing table, a DHT bootstrap over all of them done",
        || async {
            // The peers answer lookups with nobody, so only a bootstrap that started after
            // all 16 were in the table asks each of them: kad's pending one has run.
            let asked = peers.iter().filter(|p| p.find_node_requests() > 0).count();
            let connected = node.handle.peers().await.map_err(|e| e.to_string())?.len();
            let table = node
                .handle
                .routing_table()
                .await
                .map_err(|e| e.to_string())?
                .len();
            let status = node.handle.status().await.map_err(|e| e.to_string())?;
            let queries = status.connections.dht_queries + status.connections.dht_queries_queued;
            if connected == 16 && table == 16 && asked == 16 && queries == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{connected} connected, {table} in the table, {asked} asked, {queries} queries"
                ))
            }
        },
    )
    .await;
    let dials_before = node
        .handle
        .status()
        .await
        .unwrap()
        .connections
        .dials_started;
    let dialled_in_before: usize = peers.iter().map(DhtPeer::dialled_in).sum();
    let me = node.handle.peer_id();
    for peer in &peers {
        peer.disconnect(me);
    }
    eventually_async(
        Duration::from_secs(30),
        "the node back at 8 peers",
        || async {
            let connected = node.handle.peers().await.map_err(|e| e.to_string())?;
            let outbound = connected
                .iter()
                .filter(|p| p.direction == guts_node::api::types::Direction::Outbound)
                .count();
            if outbound >= 8 {
                Ok(())
            } else {
                Err(format!(
                    "{} connected, {outbound} dialled by the node",
                    connected.len()
                ))
            }
        },
    )
    .await;
    let dials = node
        .handle
        .status()
        .await
        .unwrap()
        .connections
        .dials_started
        - dials_before;
    assert!(dials >= 8, "{dials} dials");
    let dialled_in = peers.iter().map(DhtPeer::dialled_in).sum::<usize>() - dialled_in_before;
    assert!(
        dialled_in >= 8,
        "{dialled_in} connections dialled to the peers"
    );
}

/// The hard cap: with max_connections = 5, the sixth peer is refused, and the refusal is
/// counted under its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_a_hard_cap() {
    let target = TestNode::start(|c| {
        c.connections.max_connections = 5;
        c.connections.high_watermark = 5;
        c.connections.low_watermark = 2;
        c.connections.trim_grace_period = Duration::from_secs(3600);
    })
    .await;
    let mut peers = Vec::new();
    for _ in 0..8 {
        peers.push(TestNode::start(|c| c.connections.low_watermark = 0).await);
    }
    let results = join_all(peers.iter().map(|p| p.handle.connect(target.addr.clone()))).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 5, "{results:?}");
    let status = target.handle.status().await.unwrap();
    assert_eq!(status.connected_peers, 5);
    assert!(
        status.connections.denied["max_connections"] >= 3,
        "{:?}",
        status.connections
    );
}

/// A peer opening a third connection is refused (`max_connections_per_peer` = 2), and
/// handshakes that never finish stop at `max_pending_inbound` = 2: the excess is refused
/// and counted under its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_peer_and_pending_handshakes_are_capped() {
    let node = TestNode::start(|c| {
        c.connections.max_connections_per_peer = 2;
        c.connections.max_pending_inbound = 2;
        c.net.connection_timeout = Duration::from_secs(30);
    })
    .await;
    let mut raw = RawPeer::new(&NetworkName::default_network()).await;
    let raw_id = raw.peer_id().to_string();
    let node_id = node.handle.peer_id();
    let addr = node.addr.clone();
    let (dial, mut dials) = tokio::sync::mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        use futures::StreamExt;
        loop {
            tokio::select! {
                _ = raw.swarm.select_next_some() => {}
                Some(()) = dials.recv() => {
                    // `Always`: a new connection each time, however many are open.
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(node_id)
                        .addresses(vec![addr.clone()])
                        .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                        .build();
                    raw.swarm.dial(opts).expect("dial");
                }
            }
        }
    });
    let open = || async {
        let peers = node.handle.peers().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(
            peers
                .iter()
                .find(|p| p.peer_id == raw_id)
                .map_or(0, |p| p.connections),
        )
    };
    // One at a time, so the handshakes do not meet the pending cap below.
    for n in 1..=2 {
        dial.send(()).unwrap();
        eventually_async(Duration::from_secs(20), "a connection", || async {
            match open().await? {
                k if k >= n => Ok(()),
                k => Err(format!("{k} open")),
            }
        })
        .await;
    }
    dial.send(()).unwrap();
    eventually_async(
        Duration::from_secs(20),
        "two connections from the peer, the third refused",
        || async {
            let status = node.handle.status().await.map_err(|e| e.to_string())?;
            let peers = node.handle.peers().await.map_err(|e| e.to_string())?;
            let open = peers
                .iter()
                .find(|p| p.peer_id == raw_id)
                .map(|p| p.connections);
            let denied = status.connections.denied["max_per_peer"];
            if open == Some(2) && denied >= 1 {
                Ok(())
            } else {
                Err(format!(
                    "{open:?} open, {denied} refused: {:?}",
                    status.connections
                ))
            }
        },
    )
    .await;
    driver.abort();

    // Plain TCP connections that never start the handshake stay pending until the
    // connection timeout; a third is refused at once.
    let port = node
        .addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP address");
    let _silent: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    eventually_async(
        Duration::from_secs(20),
        "two handshakes pending, the third refused",
        || async {
            let c = node
                .handle
                .status()
                .await
                .map_err(|e| e.to_string())?
                .connections;
            let denied = c.denied["max_pending_inbound"];
            if c.pending_inbound == 2 && denied >= 1 {
                Ok(())
            } else {
                Err(format!("{} pending, {denied} refused", c.pending_inbound))
            }
        },
    )
    .await;
    node.shutdown().await;
}
