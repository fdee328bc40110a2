//! A Kademlia peer that uses a node as its store, or asks it lookups, as fast as it can:
//! the stranger of `tests/tests/dht_flood.rs` and of the floods benchmark.

use std::time::{Duration, Instant};

use futures::StreamExt;
use guts_protocol::NetworkName;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad};

use crate::peer::tcp_swarm;

/// Identify (so the node takes it for one of its network) and Kademlia.
#[derive(NetworkBehaviour)]
pub struct KadFlooder {
    pub identify: identify::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
}

/// The flooder's swarm.
pub type KadSwarm = Swarm<KadFlooder>;

/// A flooder dialling `node` at `addr`, with `announced` made-up external addresses
/// (each provider record it sends carries them all).
pub fn kad_swarm(network: &NetworkName, node: PeerId, addr: Multiaddr, announced: u16) -> KadSwarm {
    let mut swarm = tcp_swarm(Duration::from_secs(300), |key| {
        let id = key.public().to_peer_id();
        let protocol = libp2p::StreamProtocol::try_from_owned(network.kad_protocol())
            .expect("the network's Kademlia protocol name");
        let mut config = kad::Config::new(protocol);
        config.set_periodic_bootstrap_interval(None);
        config.set_max_packet_size(1 << 20);
        // Its own store must hold everything it sends.
        let store = kad::store::MemoryStore::with_config(
            id,
            kad::store::MemoryStoreConfig {
                max_records: 1 << 20,
                max_value_bytes: 1 << 20,
                max_providers_per_key: 1 << 10,
                max_provided_keys: 1 << 20,
            },
        );
        KadFlooder {
            identify: identify::Behaviour::new(identify::Config::new(
                network.identify_protocol_version(),
                key.public(),
            )),
            kad: kad::Behaviour::with_config(id, store, config),
        }
    });
    for port in 1..=announced {
        let fake: Multiaddr = format!("/ip4/198.51.100.7/tcp/{port}")
            .parse()
            .expect("a made-up address");
        swarm.add_external_address(fake);
    }
    swarm.behaviour_mut().kad.add_address(&node, addr.clone());
    swarm.dial(addr).expect("dial the node");
    swarm
}

/// Asks the node to keep `keys` provider records under keys of 4,000 bytes no
/// repository has, and `values` PUT_VALUE records of 60 KB; runs until every query has
/// ended or `limit` passed. Returns the queries still running then.
pub async fn store_flood(
    swarm: &mut KadSwarm,
    keys: usize,
    values: usize,
    limit: Duration,
) -> usize {
    let mut pending = 0usize;
    for i in 0..keys {
        let mut key = vec![b'k'; 4000];
        key[..8].copy_from_slice(&(i as u64).to_be_bytes());
        if swarm
            .behaviour_mut()
            .kad
            .start_providing(kad::RecordKey::new(&key))
            .is_ok()
        {
            pending += 1;
        }
    }
    for i in 0..values {
        let record = kad::Record::new(format!("value-{i}").into_bytes(), vec![7u8; 60_000]);
        if swarm
            .behaviour_mut()
            .kad
            .put_record(record, kad::Quorum::One)
            .is_ok()
        {
            pending += 1;
        }
    }
    let deadline = Instant::now() + limit;
    while pending > 0 {
        let Ok(event) = tokio::time::timeout_at(deadline.into(), swarm.select_next_some()).await
        else {
            break;
        };
        if let SwarmEvent::Behaviour(KadFlooderEvent::Kad(kad::Event::OutboundQueryProgressed {
            step,
            ..
        })) = event
            && step.last
        {
            pending -= 1;
        }
    }
    pending
}

/// How a lookup flood ended.
#[derive(Debug)]
pub struct LookupFlood {
    /// Lookups that ended (libp2p ends a lookup well even when its peer never answered:
    /// this counts the flooder's progress, not the node's answers).
    pub ended: usize,
    /// Whether the node closed the last connection to the flooder.
    pub cut_off: bool,
}

/// Starts `lookups` lookups of random peers (each asks the node at least once) and runs
/// until all have ended, the node cuts the flooder off, or `limit` passed.
pub async fn lookup_flood(
    swarm: &mut KadSwarm,
    node: PeerId,
    lookups: usize,
    limit: Duration,
) -> LookupFlood {
    for _ in 0..lookups {
        swarm
            .behaviour_mut()
            .kad
            .get_closest_peers(PeerId::random());
    }
    let deadline = Instant::now() + limit;
    let mut flood = LookupFlood {
        ended: 0,
        cut_off: false,
    };
    while flood.ended < lookups {
        let Ok(event) = tokio::time::timeout_at(deadline.into(), swarm.select_next_some()).await
        else {
            break;
        };
        match event {
            SwarmEvent::Behaviour(KadFlooderEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(_),
                step,
                ..
            })) if step.last => flood.ended += 1,
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if peer_id == node => {
                flood.cut_off = true;
                break;
            }
            _ => {}
        }
    }
    flood
}
