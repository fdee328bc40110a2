//! A stranger that uses the node as its DHT store: ADD_PROVIDER for thousands of keys of
//! any length with hundreds of addresses each, and PUT_VALUE records. Before, the node
//! kept all of it (one peer took a node from 20 to 421 MiB); now it keeps provider
//! records of repository keys only, a few addresses each, a bounded number per peer.

use std::time::{Duration, Instant};

use futures::StreamExt;
use guts_protocol::NetworkName;
use guts_tests::git::WorkRepo;
use guts_tests::kad_flood::{KadFlooderEvent, kad_swarm, lookup_flood, store_flood};
use guts_tests::process::NodeSpec;
use guts_tests::procfs::status_kib;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, kad};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_use_the_node_as_its_store() {
    let tmp = tempfile::tempdir().unwrap();
    // A budget high enough that the flood is stored, not dropped: this test is about
    // what the store keeps (the next one is about the budget).
    let a = NodeSpec::loopback(&tmp.path().join("a"))
        .args([
            "--requests-per-second-per-peer",
            "1000",
            "--dht-mode",
            "server",
        ])
        .spawn();
    let work = WorkRepo::with_history("held");
    let held = a.import(work.path());
    let a_addr: Multiaddr = a.tcp_addr().parse().unwrap();
    let a_id: PeerId = a.status().peer_id.parse().unwrap();
    // Hundreds of addresses in every record it sends.
    let mut swarm = kad_swarm(&NetworkName::default_network(), a_id, a_addr, 300);

    let before = status_kib(a.pid(), "VmRSS:").unwrap();
    let running = store_flood(&mut swarm, 3000, 200, Duration::from_secs(120)).await;
    assert_eq!(running, 0, "{running} queries still running");
    // What the node held on to.
    let after = status_kib(a.pid(), "VmRSS:").unwrap();
    let grown = after.saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "the node grew by {grown} KiB ({before} -> {after}) taking a stranger's DHT records"
    );
    // The values are not there to be read back (the flooder forgets its own copy first:
    // a lookup answers from the local store before it asks anyone).
    let value_key = kad::RecordKey::new(&b"value-0".to_vec());
    swarm.behaviour_mut().kad.remove_record(&value_key);
    let id = swarm.behaviour_mut().kad.get_record(value_key);
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let event = tokio::time::timeout_at(deadline.into(), swarm.select_next_some())
            .await
            .expect("get_record to end");
        if let SwarmEvent::Behaviour(KadFlooderEvent::Kad(kad::Event::OutboundQueryProgressed {
            id: query,
            result: kad::QueryResult::GetRecord(result),
            ..
        })) = event
            && query == id
        {
            break result.is_ok();
        }
    };
    assert!(!found, "the node kept a PUT_VALUE record");

    // The node's own record is still there: a newcomer finds the holder in the DHT.
    let b = NodeSpec::loopback(&tmp.path().join("b"))
        .args(["--bootstrap", &a.tcp_addr()])
        .spawn();
    let out = b.client(["repo", "sync", &held.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One peer asks as fast as it can: past its budget its messages go unanswered, and a peer
/// that keeps at it is banned while the node goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_kademlia_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    // Kademlia's budget is ten times this per second, in bursts of a hundred times. A DHT
    // server said out loud (the default), since a client answers no Kademlia at all.
    let a = NodeSpec::loopback(&tmp.path().join("a"))
        .args([
            "--requests-per-second-per-peer",
            "2",
            "--dht-mode",
            "server",
        ])
        .spawn();
    let a_addr: Multiaddr = a.tcp_addr().parse().unwrap();
    let a_id: PeerId = a.status().peer_id.parse().unwrap();
    let mut swarm = kad_swarm(&NetworkName::default_network(), a_id, a_addr, 0);
    // Far more lookups than the burst allows.
    let flood = lookup_flood(&mut swarm, a_id, 2000, Duration::from_secs(90)).await;
    assert!(flood.cut_off, "still connected: {flood:?}");
    // The node goes on serving, and knows why it cut the peer off.
    let status = a.status();
    assert_eq!(status.connections.banned_peers, 1, "{status:?}");
    let log = a.log_text();
    assert!(
        log.contains("(last: rate_limited)"),
        "the ban names its reason:\n{log}"
    );
}
