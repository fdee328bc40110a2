//! What the node reports about itself: `guts status`, the periodic status line, and the
//! gauges `/metrics` reads off the swarm (set by an explicit refresh, not as a side
//! effect of a report).

use std::time::Instant;

use guts_api::{ConnectionsReport, LimitsReport, StatusReport, TransfersReport};
use libp2p::{Swarm, gossipsub};

use super::behaviour::Behaviour;
use super::dht::Dht;
use super::discovery::Discovery;
use super::nat::Nat;
use super::peers::{PeerTable, short_peer_id};
use crate::config::Config;
use crate::connection_manager::{self, Penalty};
use crate::metrics::{ANNOUNCEMENT_VERDICTS, Metrics, Reason, Verdict};

/// Everything a report is made from, borrowed from the event loop.
pub(super) struct Sources<'a> {
    pub swarm: &'a mut Swarm<Behaviour>,
    pub config: &'a Config,
    pub peers: &'a PeerTable,
    pub discovery: &'a Discovery,
    pub dht: &'a Dht,
    pub nat: &'a Nat,
    pub relay_use: &'a super::relay_use::RelayUse,
    pub metrics: &'a Metrics,
    pub started: Instant,
}

/// The node's status.
pub(super) fn report(s: Sources<'_>) -> StatusReport {
    let routing_table_size = s.swarm.behaviour_mut().routing_table_size();
    let behaviour = s.swarm.behaviour();
    let topic = gossipsub::IdentTopic::new(s.config.network.announce_topic()).hash();
    let t = &s.metrics.transfers;
    StatusReport {
        peer_id: s.swarm.local_peer_id().to_string(),
        // Filled in by the handle, which holds the key.
        key: String::new(),
        network: s.config.network.to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        listen_addresses: s.swarm.listeners().map(|a| a.to_string()).collect(),
        external_addresses: s
            .swarm
            .external_addresses()
            .map(|a| a.to_string())
            .collect(),
        connected_peers: s.peers.len(),
        routing_table_size,
        gossip_mesh_peers: behaviour.gossipsub.mesh_peers(&topic).count(),
        uptime_secs: s.started.elapsed().as_secs(),
        dht_mode: behaviour.kad.mode().to_string(),
        mdns: behaviour.mdns.is_enabled(),
        relay_server: behaviour.relay_server.is_enabled(),
        relay: behaviour.relay_server.is_enabled().then(|| {
            s.relay_use.report(
                s.config.net.relay_circuit_bytes.as_u64(),
                s.config.net.relay_circuit_duration.as_secs(),
            )
        }),
        replicate: match s.config.replication.replicate {
            crate::config::Replicate::Followed => "followed",
            crate::config::Replicate::All => "all",
        }
        .to_owned(),
        private_network: s.config.net.swarm_key.is_some(),
        allowed_peers: behaviour.connection_manager.allowed_count(),
        // Filled in by the handle, from the sync engine's ledger.
        equivocations: Vec::new(),
        recovering: 0,
        announcements: ANNOUNCEMENT_VERDICTS
            .iter()
            .map(|&verdict| {
                let count = s.metrics.announcements.get_or_create(&Verdict { verdict });
                (verdict.to_owned(), count.get())
            })
            .collect(),
        bootstrap: s.discovery.bootstrap_reports(),
        reachability: s.nat.reachability().to_string(),
        reservations: s.nat.reports(),
        limits: limits(behaviour.connection_manager.limits()),
        connections: connections(behaviour, s.dht, s.metrics),
        transfers: TransfersReport {
            fetched_packs: t.fetched_packs.get(),
            fetched_objects: t.fetched_objects.get(),
            fetched_bytes: t.fetched_bytes.get(),
            served_packs: t.served_packs.get(),
            served_bytes: t.served_bytes.get(),
        },
    }
}

fn limits(l: &connection_manager::Limits) -> LimitsReport {
    LimitsReport {
        max_connections: l.max_connections,
        max_pending_inbound: l.max_pending_inbound,
        max_connections_per_peer: l.max_connections_per_peer,
        max_peers_per_ip: l.max_peers_per_ip,
        low_watermark: l.low_watermark,
        high_watermark: l.high_watermark,
        dials_per_second: l.dials_per_second,
        max_concurrent_dials: l.max_concurrent_dials,
        max_concurrent_dht_queries: l.max_concurrent_dht_queries,
        requests_per_second_per_peer: l.requests_per_second_per_peer,
    }
}

fn connections(behaviour: &Behaviour, dht: &Dht, metrics: &Metrics) -> ConnectionsReport {
    let counts = behaviour.connection_manager.counts();
    let m = &metrics.manager;
    let denied = connection_manager::DENIAL_REASONS
        .iter()
        .map(|reason| {
            let n = m.denied.get_or_create(&Reason { reason }).get();
            (reason.to_string(), n)
        })
        .collect();
    ConnectionsReport {
        inbound: counts.inbound,
        outbound: counts.outbound,
        pending_inbound: counts.pending_inbound,
        dials_in_flight: counts.dials_in_flight,
        dials_in_flight_peak: counts.dials_in_flight_peak,
        dials_queued: counts.dials_queued,
        dials_started: m.dials_started.get(),
        dials_failed: m.dials_failed.get(),
        trimmed: m.trimmed.get(),
        banned_peers: counts.banned_peers,
        denied,
        penalties: Penalty::ALL
            .iter()
            .map(|p| {
                let n = m
                    .penalties
                    .get_or_create(&Reason { reason: p.label() })
                    .get();
                (p.label().to_owned(), n)
            })
            .collect(),
        dht_queries: behaviour.kad.iter_queries().count(),
        dht_queries_queued: dht.queued(),
    }
}

/// Sets the gauges that are read off the swarm rather than counted as things happen.
pub(super) fn refresh_gauges(swarm: &mut Swarm<Behaviour>, peers: &PeerTable, metrics: &Metrics) {
    metrics.connected_peers.set(peers.len() as i64);
    let size = swarm.behaviour_mut().routing_table_size();
    metrics.routing_table_size.set(size as i64);
}

/// The periodic status line.
pub(super) fn log_line(s: Sources<'_>) {
    refresh_gauges(s.swarm, s.peers, s.metrics);
    let peer = short_peer_id(s.swarm.local_peer_id());
    let status = report(s);
    tracing::info!(
        target: "guts::status",
        peer = %peer,
        connected_peers = status.connected_peers,
        routing_table = status.routing_table_size,
        "status"
    );
}
