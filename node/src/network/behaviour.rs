//! The composed libp2p behaviour of a Guts node.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, StreamProtocol, autonat, dcutr, gossipsub, identify, identity::Keypair, kad, mdns,
    ping, relay, request_response,
};

use super::discovery::{Kad, agent_version};
use crate::config::{Config, DhtMode};
use crate::connection_manager;
use crate::error::NodeError;
use crate::wire;

/// Every protocol the node speaks. Fields are polled in declaration order and the first
/// to deny a connection wins, so the connection manager comes first.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub connection_manager: connection_manager::Behaviour,
    pub relay_client: relay::client::Behaviour,
    pub relay_server: Toggle<relay::Behaviour>,
    /// Asks peers to dial this node's candidate addresses back: confirms the reachable.
    pub autonat_client: autonat::v2::client::Behaviour,
    /// Dials peers' candidate addresses back for them (only on their own host).
    pub autonat_server: super::autonat_guard::Guarded,
    /// AutoNAT v1 as well: a v2 server answers only on connections the client dialled, so
    /// a node that only ever accepts connections (a relay, a bootstrap node) would never
    /// learn its address; v1 servers answer on any connection.
    pub autonat_v1: autonat::v1::Behaviour,
    /// Turns relayed connections into direct ones (hole punching).
    pub dcutr: dcutr::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: super::kad_limit::Limited<Kad>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub gossipsub: Gossip,
    pub sync: request_response::Behaviour<wire::Codec>,
    pub stream: libp2p_stream::Behaviour,
}

/// Gossipsub taking subscriptions to the node's own two topics only: libp2p's default filter
/// keeps up to 100 topics a peer names, of up to a frame (16 KiB) each, for as long as
/// it stays connected; the node has no use for any but its own.
/// (No count per RPC on top: libp2p logs an error for each RPC over it, which would let a
/// peer fill the node's log instead; an RPC is 16 KiB at most.)
pub type Gossip =
    gossipsub::Behaviour<gossipsub::IdentityTransform, gossipsub::WhitelistSubscriptionFilter>;

/// Gossipsub's peer scoring, tuned for a topic where news is rare: peers lose score for
/// announcements that fail validation (and for gossipsub misbehaviour), never for quiet
/// meshes; below the thresholds their gossip is ignored, then they are cut off. Per-IP
/// limits are the connection manager's job, so IP colocation is not scored (nodes on one
/// host or behind one NAT are normal here).
fn gossip_scoring(
    network: &guts_protocol::NetworkName,
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 50.0,
        // Announcements are rare: silence in the mesh is no fault.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // Each rejected announcement: -20, squared, decaying by half in about a minute.
        invalid_message_deliveries_weight: -20.0,
        invalid_message_deliveries_decay: 0.99,
        ..Default::default()
    };
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    for name in [
        network.announce_topic(),
        network.shared_announce_topic(),
        network.changes_topic(),
    ] {
        params
            .topics
            .insert(gossipsub::IdentTopic::new(name).hash(), topic.clone());
    }
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    };
    (params, thresholds)
}

impl Behaviour {
    pub(crate) fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        config: &Config,
        manager_metrics: crate::metrics::ManagerMetrics,
    ) -> Result<Self, NodeError> {
        let peer_id = key.public().to_peer_id();
        let network = &config.network;

        let identify = identify::Behaviour::new(
            identify::Config::new(network.identify_protocol_version(), key.public())
                .with_agent_version(agent_version(&config.net.mdns_service_tag))
                .with_push_listen_addr_updates(true),
        );

        let kad_protocol = StreamProtocol::try_from_owned(network.kad_protocol())
            .map_err(|e| NodeError::Setup(format!("Kademlia protocol name: {e}")))?;
        let mut kad_config = kad::Config::new(kad_protocol);
        kad_config.set_query_timeout(Duration::from_secs(30));
        // Provider records of repositories only, bounded per peer (see provider_store).
        let store = super::provider_store::ProviderStore::new(peer_id);
        let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
        kad.set_mode(Some(match config.net.dht_mode {
            DhtMode::Server => kad::Mode::Server,
            // `auto` starts as a client; the event loop makes it a server once AutoNAT
            // (or a hand-set external address) shows the node reachable. Not kad's own
            // auto mode: a relayed address would count for it, and DHT peers cannot use
            // a relayed node.
            DhtMode::Client | DhtMode::Auto => kad::Mode::Client,
        }));
        // Kademlia messages are small and come in bursts (a lookup, a node announcing its
        // repositories), so their budget is ten times the per-protocol request rate, in
        // bursts of a hundred times; a peer past it is dropped and penalized (kad_limit).
        let kad_rate = config
            .connections
            .requests_per_second_per_peer
            .saturating_mul(10);
        let kad = super::kad_limit::Limited::new(
            kad,
            kad_rate,
            config
                .connections
                .requests_per_second_per_peer
                .saturating_mul(100),
        );

        // Never in a private network: mDNS answers carry the peer id and addresses in
        // the clear (see Config::apply_private_defaults).
        let mdns = if config.net.mdns && config.net.swarm_key.is_none() {
            let behaviour = mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| NodeError::Setup(format!("mDNS: {e}")))?;
            Some(behaviour)
        } else {
            None
        };

        let gossipsub_config = gossipsub::ConfigBuilder::default()
            .protocol_id_prefix(network.gossipsub_protocol_prefix())
            .validation_mode(gossipsub::ValidationMode::Strict)
            // Announcements are checked (signature, newer sequence) before they are
            // relayed; the event loop reports each one Accept, Reject or Ignore.
            .validate_messages()
            // Content-addressed ids: the same announcement from two relays is one message.
            .message_id_fn(|m| {
                use sha2::Digest;
                gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
            })
            .max_transmit_size(guts_protocol::wire::MAX_SHARED_ANNOUNCEMENT_SIZE * 2)
            .build()
            .map_err(|e| NodeError::Setup(format!("gossipsub: {e}")))?;
        let topic = gossipsub::IdentTopic::new(network.announce_topic());
        let shared_topic = gossipsub::IdentTopic::new(network.shared_announce_topic());
        let changes_topic = gossipsub::IdentTopic::new(network.changes_topic());
        let filter = gossipsub::WhitelistSubscriptionFilter(
            [topic.hash(), shared_topic.hash(), changes_topic.hash()].into(),
        );
        let mut gossipsub = Gossip::new_with_subscription_filter(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossipsub_config,
            filter,
        )
        .map_err(|e| NodeError::Setup(format!("gossipsub: {e}")))?;
        let (params, thresholds) = gossip_scoring(network);
        gossipsub
            .with_peer_score(params, thresholds)
            .map_err(|e| NodeError::Setup(format!("gossipsub peer scoring: {e}")))?;
        for topic in [&topic, &shared_topic, &changes_topic] {
            gossipsub
                .subscribe(topic)
                .map_err(|e| NodeError::Setup(format!("gossipsub subscribe: {e}")))?;
        }

        let relay_server = config
            .net
            .relay_server
            .then(|| relay::Behaviour::new(peer_id, relay_config(config)));

        Ok(Behaviour {
            connection_manager: connection_manager::Behaviour::new(
                &config.connections,
                config.net.allowed_peers()?,
                manager_metrics,
            ),
            relay_client,
            relay_server: relay_server.into(),
            autonat_client: autonat::v2::client::Behaviour::default(),
            autonat_server: super::autonat_guard::Guarded::new(config.connections.ipv6_prefix),
            autonat_v1: autonat::v1::Behaviour::new(
                peer_id,
                autonat::v1::Config {
                    boot_delay: Duration::from_secs(5),
                    retry_interval: Duration::from_secs(30),
                    // Private and LAN deployments (docker networks, namespaces) are real.
                    only_global_ips: false,
                    ..Default::default()
                },
            ),
            dcutr: dcutr::Behaviour::new(peer_id),
            identify,
            ping: ping::Behaviour::new(ping::Config::new().with_interval(config.net.ping_interval)),
            kad,
            mdns: mdns.into(),
            gossipsub,
            sync: wire::behaviour(
                network,
                config.net.connection_timeout + Duration::from_secs(20),
            ),
            stream: libp2p_stream::Behaviour::new(),
        })
    }

    /// Number of peers in the Kademlia routing table.
    pub(crate) fn routing_table_size(&mut self) -> usize {
        self.kad.kbuckets().map(|b| b.num_entries()).sum()
    }

    /// The peers in the Kademlia routing table.
    pub(crate) fn routing_table(&mut self) -> Vec<PeerId> {
        self.kad
            .kbuckets()
            .flat_map(|b| b.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>())
            .collect()
    }
}

/// libp2p's relay limits, with its per-IP rate limits counted per IP group (see
/// [`super::ip_rate`]): a reservation and a circuit a minute, 60 in a burst; and what one
/// circuit may carry, as configured.
fn relay_config(config: &Config) -> relay::Config {
    let v6_prefix = config.connections.ipv6_prefix;
    let per_peer = relay::Config {
        max_circuit_bytes: config.net.relay_circuit_bytes.as_u64(),
        max_circuit_duration: config.net.relay_circuit_duration,
        ..relay::Config::default()
    };
    let minute = std::time::Duration::from_secs(60);
    let mut config = relay::Config {
        reservation_rate_limiters: Vec::new(),
        circuit_src_rate_limiters: Vec::new(),
        ..per_peer
    }
    .reservation_rate_per_peer(std::num::NonZeroU32::new(30).expect("30 > 0"), 2 * minute)
    .circuit_src_per_peer(std::num::NonZeroU32::new(30).expect("30 > 0"), 2 * minute);
    config
        .reservation_rate_limiters
        .push(super::ip_rate::per_ip_group(60, minute, v6_prefix));
    config
        .circuit_src_rate_limiters
        .push(super::ip_rate::per_ip_group(60, minute, v6_prefix));
    config
}
