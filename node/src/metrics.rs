//! Prometheus metrics of our own, beside libp2p's.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A `reason` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Reason {
    pub reason: &'static str,
}

/// An `outcome` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Outcome {
    pub outcome: &'static str,
}

/// All metrics the node updates.
pub(crate) struct Metrics {
    pub libp2p: libp2p::metrics::Metrics,
    pub connected_peers: Gauge,
    pub routing_table_size: Gauge,
    pub bootstrap_dials: Family<Outcome, Counter>,
    pub peers_rejected: Family<Reason, Counter>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let libp2p = libp2p::metrics::Metrics::new(registry);
        let guts = registry.sub_registry_with_prefix("guts");
        let m = Metrics {
            libp2p,
            connected_peers: Gauge::default(),
            routing_table_size: Gauge::default(),
            bootstrap_dials: Family::default(),
            peers_rejected: Family::default(),
        };
        guts.register(
            "connected_peers",
            "Peers with at least one open connection",
            m.connected_peers.clone(),
        );
        guts.register(
            "routing_table_size",
            "Peers in the Kademlia routing table",
            m.routing_table_size.clone(),
        );
        guts.register(
            "bootstrap_dials",
            "Dials to bootstrap peers, by outcome",
            m.bootstrap_dials.clone(),
        );
        guts.register(
            "peers_rejected",
            "Peers disconnected after identification, by reason",
            m.peers_rejected.clone(),
        );
        m
    }
}
