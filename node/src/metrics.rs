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

/// A `direction` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Direction {
    pub direction: &'static str,
}

/// A `verdict` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Verdict {
    pub verdict: &'static str,
}

/// Gossiped announcements by what became of them: `accepted`, `rejected` (does not
/// verify), `old` (not newer than what is held), `relayer_rate`, `owner_rate`, `busy`
/// (the sync side's queue was full).
pub(crate) type Announcements = Family<Verdict, Counter>;

/// Every verdict an announcement can get.
pub(crate) const ANNOUNCEMENT_VERDICTS: [&str; 7] = [
    "accepted",
    "rejected",
    "old",
    "equivocation",
    "relayer_rate",
    "owner_rate",
    "busy",
];

/// The connection manager's metrics.
#[derive(Clone, Default)]
pub(crate) struct ManagerMetrics {
    pub connections: Family<Direction, Gauge>,
    pub denied: Family<Reason, Counter>,
    pub trimmed: Counter,
    pub dials_queued: Gauge,
    pub dials_in_flight: Gauge,
    pub dials_started: Counter,
    pub dials_failed: Counter,
    pub penalties: Family<Reason, Counter>,
    pub bans: Counter,
    pub banned: Gauge,
}

/// Pack transfers, both ways.
#[derive(Clone, Default)]
pub(crate) struct TransferMetrics {
    pub fetched_packs: Counter,
    pub fetched_objects: Counter,
    pub fetched_bytes: Counter,
    pub served_packs: Counter,
    pub served_bytes: Counter,
}

/// All metrics the node updates.
pub(crate) struct Metrics {
    pub libp2p: libp2p::metrics::Metrics,
    pub connected_peers: Gauge,
    pub routing_table_size: Gauge,
    pub bootstrap_dials: Family<Outcome, Counter>,
    pub peers_rejected: Family<Reason, Counter>,
    pub announcements: Announcements,
    pub manager: ManagerMetrics,
    pub transfers: TransferMetrics,
    pub equivocations: Counter,
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
            announcements: Family::default(),
            manager: ManagerMetrics::default(),
            transfers: TransferMetrics::default(),
            equivocations: Counter::default(),
        };
        guts.register(
            "equivocations",
            "Owner keys seen signing two different snapshots with the same sequence",
            m.equivocations.clone(),
        );
        let t = &m.transfers;
        guts.register(
            "fetched_packs",
            "Packs fetched, verified and applied",
            t.fetched_packs.clone(),
        );
        guts.register(
            "fetched_objects",
            "Objects in fetched packs",
            t.fetched_objects.clone(),
        );
        guts.register(
            "fetched_bytes",
            "Bytes of fetched packs",
            t.fetched_bytes.clone(),
        );
        guts.register(
            "served_packs",
            "Packs sent to peers",
            t.served_packs.clone(),
        );
        guts.register(
            "served_bytes",
            "Bytes of packs sent to peers",
            t.served_bytes.clone(),
        );
        let cm = &m.manager;
        guts.register(
            "connections",
            "Established connections, by direction",
            cm.connections.clone(),
        );
        guts.register(
            "connections_denied",
            "Connections refused, by reason (not_allowed, per_ip, max_connections, max_pending_inbound, max_per_peer, banned, dial_concurrency)",
            cm.denied.clone(),
        );
        guts.register(
            "connections_trimmed",
            "Peers disconnected above the high watermark",
            cm.trimmed.clone(),
        );
        guts.register(
            "dials_queued",
            "Dials waiting for the rate limit or a free slot",
            cm.dials_queued.clone(),
        );
        guts.register(
            "dials_in_flight",
            "Outbound dials under way",
            cm.dials_in_flight.clone(),
        );
        guts.register(
            "dials_started",
            "Dials released from the queue",
            cm.dials_started.clone(),
        );
        guts.register(
            "dials_failed",
            "Dials that failed to connect",
            cm.dials_failed.clone(),
        );
        guts.register(
            "penalties",
            "Penalties given to peers, by reason",
            cm.penalties.clone(),
        );
        guts.register("bans", "Peers banned", cm.bans.clone());
        guts.register("banned_peers", "Peers banned now", cm.banned.clone());
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
            "announcements",
            "Gossiped announcements, by verdict (accepted, rejected, old, equivocation, relayer_rate, owner_rate, busy, blocked, not_held, unjudged)",
            m.announcements.clone(),
        );
        guts.register(
            "peers_rejected",
            "Peers disconnected after identification, by reason",
            m.peers_rejected.clone(),
        );
        // Label values known in advance start at 0, so a dashboard sees each series
        // before its first event (an empty family is not exported at all).
        for outcome in ["connected", "failed"] {
            let _ = m.bootstrap_dials.get_or_create(&Outcome { outcome });
        }
        for reason in ["other_network", "mdns_tag"] {
            let _ = m.peers_rejected.get_or_create(&Reason { reason });
        }
        for verdict in ANNOUNCEMENT_VERDICTS {
            let _ = m.announcements.get_or_create(&Verdict { verdict });
        }
        m
    }
}
