//! A stranger that uses the node as its DHT store: ADD_PROVIDER for thousands of keys of
//! any length with hundreds of addresses each, and PUT_VALUE records. Before, the node
//! kept all of it (one peer took a node from 20 to 421 MiB); now it keeps provider
//! records of repository keys only, a few addresses each, a bounded number per peer.

use std::time::{Duration, Instant};

use futures::StreamExt;
use guts_node::api::types::RepoSummary;
use guts_protocol::NetworkName;
use guts_tests::git::WorkRepo;
use guts_tests::peer::tcp_swarm;
use guts_tests::process::NodeSpec;
use guts_tests::procfs::status_kib;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, identify, kad};

#[derive(NetworkBehaviour)]
struct Flooder {
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
}

const KEYS: usize = 3000;

/// The flooder's own store must hold everything it sends.
fn flooder_store(id: PeerId) -> kad::store::MemoryStore {
    let config = kad::store::MemoryStoreConfig {
        max_records: 1 << 20,
        max_value_bytes: 1 << 20,
        max_providers_per_key: 1 << 10,
        max_provided_keys: 1 << 20,
    };
    kad::store::MemoryStore::with_config(id, config)
}
const VALUES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_use_the_node_as_its_store() {
    let tmp = tempfile::tempdir().unwrap();
    // A budget high enough that the flood is stored, not dropped: this test is about
    // what the store keeps (the next one is about the budget).
    let a = NodeSpec::loopback(&tmp.path().join("a"))
        .args(["--requests-per-second-per-peer", "1000"])
        .spawn();
    let work = WorkRepo::with_history("held");
    a.client_ok(&["repo", "import", work.path().to_str().unwrap()]);
    let held: Vec<RepoSummary> = a.client_json("repo list").unwrap();
    let a_addr: Multiaddr = a.tcp_addr().parse().unwrap();
    let a_id: PeerId = a.status().peer_id.parse().unwrap();

    let network = NetworkName::default_network();
    let mut swarm = tcp_swarm(Duration::from_secs(300), |key| {
        let id = key.public().to_peer_id();
        let protocol = libp2p::StreamProtocol::try_from_owned(network.kad_protocol()).unwrap();
        let mut config = kad::Config::new(protocol);
        config.set_periodic_bootstrap_interval(None);
        config.set_max_packet_size(1 << 20);
        Flooder {
            identify: identify::Behaviour::new(identify::Config::new(
                network.identify_protocol_version(),
                key.public(),
            )),
            kad: kad::Behaviour::with_config(id, flooder_store(id), config),
        }
    });
    // Hundreds of addresses in every record it sends.
    for port in 1..=300u16 {
        swarm.add_external_address(format!("/ip4/198.51.100.7/tcp/{port}").parse().unwrap());
    }
    swarm.behaviour_mut().kad.add_address(&a_id, a_addr.clone());
    swarm.dial(a_addr).unwrap();

    let before = status_kib(a.pid(), "VmRSS:").unwrap();
    let mut pending = 0usize;
    for i in 0..KEYS {
        // Keys no repository has: 4,000 bytes each.
        let mut key = vec![b'k'; 4000];
        key[..8].copy_from_slice(&(i as u64).to_be_bytes());
        swarm
            .behaviour_mut()
            .kad
            .start_providing(kad::RecordKey::new(&key))
            .unwrap();
        pending += 1;
    }
    for i in 0..VALUES {
        let record = kad::Record::new(format!("value-{i}").into_bytes(), vec![7u8; 60_000]);
        swarm
            .behaviour_mut()
            .kad
            .put_record(record, kad::Quorum::One)
            .unwrap();
        pending += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while pending > 0 {
        let event = tokio::time::timeout_at(deadline.into(), swarm.select_next_some())
            .await
            .unwrap_or_else(|_| panic!("{pending} queries still running"));
        if let SwarmEvent::Behaviour(FlooderEvent::Kad(kad::Event::OutboundQueryProgressed {
            step,
            ..
        })) = event
            && step.last
        {
            pending -= 1;
        }
    }
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
    let found = loop {
        let event = tokio::time::timeout_at(deadline.into(), swarm.select_next_some())
            .await
            .expect("get_record to end");
        if let SwarmEvent::Behaviour(FlooderEvent::Kad(kad::Event::OutboundQueryProgressed {
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
    let out = b.client(["repo", "sync", &held[0].id]);
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
    // Kademlia's budget is ten times this per second, in bursts of a hundred times.
    let a = NodeSpec::loopback(&tmp.path().join("a"))
        .args(["--requests-per-second-per-peer", "2"])
        .spawn();
    let a_addr: Multiaddr = a.tcp_addr().parse().unwrap();
    let a_id: PeerId = a.status().peer_id.parse().unwrap();
    let network = NetworkName::default_network();
    let mut swarm = tcp_swarm(Duration::from_secs(300), |key| {
        let id = key.public().to_peer_id();
        let protocol = libp2p::StreamProtocol::try_from_owned(network.kad_protocol()).unwrap();
        let mut config = kad::Config::new(protocol);
        config.set_periodic_bootstrap_interval(None);
        Flooder {
            identify: identify::Behaviour::new(identify::Config::new(
                network.identify_protocol_version(),
                key.public(),
            )),
            kad: kad::Behaviour::with_config(id, flooder_store(id), config),
        }
    });
    swarm.behaviour_mut().kad.add_address(&a_id, a_addr.clone());
    swarm.dial(a_addr).unwrap();
    // Far more lookups than the burst allows (each asks the node at least once).
    for _ in 0..2000 {
        swarm
            .behaviour_mut()
            .kad
            .get_closest_peers(PeerId::random());
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut answered = 0usize;
    loop {
        let event = tokio::time::timeout_at(deadline.into(), swarm.select_next_some())
            .await
            .unwrap_or_else(|_| panic!("still connected after {answered} answered lookups"));
        match event {
            SwarmEvent::Behaviour(FlooderEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(_)),
                ..
            })) => answered += 1,
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if peer_id == a_id => break,
            _ => {}
        }
    }
    assert!(
        answered < 2000,
        "every lookup was answered: the budget did not hold"
    );
    // The node goes on serving, and knows why it cut the peer off.
    let status = a.status();
    assert_eq!(status.connections.banned_peers, 1, "{status:?}");
    let log = a.log_text();
    assert!(
        log.contains("(last: rate_limited)"),
        "the ban names its reason:\n{log}"
    );
}
