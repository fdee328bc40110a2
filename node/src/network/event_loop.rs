//! The event loop: the one task that owns the swarm. Everything else talks to it through
//! [`Command`]s sent by a [`crate::NodeHandle`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures::StreamExt;
use guts_protocol::RepositoryId;
use guts_protocol::wire::{
    self, Announcement, MAX_ANNOUNCEMENT_SIZE, SyncRequest, SyncResponse, WireError,
};
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::metrics::Recorder;
use libp2p::request_response::{self, InboundFailure};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns, ping};
use tokio::sync::{mpsc, oneshot};

use crate::api::types::{ConnectionsReport, LimitsReport, PeerReport, StatusReport};
use crate::behaviour::{Behaviour, BehaviourEvent, mdns_tag_of};
use crate::config::Config;
use crate::connection_manager::{self, Penalty, Protection};
use crate::discovery::{self, Bootstrap};
use crate::error::NodeError;
use crate::metrics::{Metrics, Reason};
use crate::peers::PeerTable;
use crate::sync::engine::{Engine, GetRefsError};

/// How long a peer found to be on another network (or with another mDNS tag) is not
/// dialled again through discovery.
const REJECT_MEMORY: Duration = Duration::from_secs(10 * 60);

/// Requests to the event loop.
pub(crate) enum Command {
    Status(oneshot::Sender<StatusReport>),
    Peers(oneshot::Sender<Vec<PeerReport>>),
    RoutingTable(oneshot::Sender<Vec<PeerId>>),
    Connect {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NodeError>>,
    },
    AllowRequest {
        peer: PeerId,
        key: &'static str,
        reply: oneshot::Sender<bool>,
    },
    SyncRequest {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, GetRefsError>>,
    },
    FindProviders {
        repository: RepositoryId,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Provide {
        repository: RepositoryId,
    },
    Announce {
        announcement: Box<Announcement>,
    },
    Penalize {
        peer: PeerId,
        penalty: Penalty,
    },
    SetSyncing {
        peer: PeerId,
        syncing: bool,
    },
    RecordUseful {
        peer: PeerId,
    },
    /// The verdict on a gossiped announcement, reached off the event loop.
    Validated {
        message_id: gossipsub::MessageId,
        propagation_source: PeerId,
        acceptance: gossipsub::MessageAcceptance,
    },
    Shutdown,
}

/// A `guts connect` waiting for its outcome.
struct PendingConnect {
    addr: Multiaddr,
    reply: oneshot::Sender<Result<PeerId, NodeError>>,
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    config: Config,
    commands: mpsc::Receiver<Command>,
    metrics: Metrics,
    peers: PeerTable,
    bootstrap: Bootstrap,
    /// Peers on another network or with another mDNS tag, and until when to ignore them.
    rejected: HashMap<PeerId, Instant>,
    /// Peers we dialled because mDNS found them (their tag is checked on identify).
    mdns_dialled: HashMap<PeerId, Instant>,
    /// Connect requests whose dial is under way.
    dialling: HashMap<ConnectionId, PendingConnect>,
    /// Connect requests whose connection is up, waiting for identify.
    identifying: HashMap<PeerId, Vec<PendingConnect>>,
    /// Peers found by mDNS and their addresses, for when the node wants more peers.
    mdns_peers: HashMap<PeerId, Vec<Multiaddr>>,
    /// Our DHT queries waiting for a slot under `max_concurrent_dht_queries`.
    dht_queue: VecDeque<DhtQuery>,
    /// Provider lookups under way, with the providers found so far.
    provider_queries: HashMap<kad::QueryId, oneshot::Sender<Vec<PeerId>>>,
    /// GetRefs requests under way.
    refs_requests: HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<SyncResponse, GetRefsError>>,
    >,
    engine: Engine,
    /// A clone of our own command sender, for work finished off the loop.
    loopback: mpsc::Sender<Command>,
    started: Instant,
}

/// A DHT query the node starts (kad's own periodic ones are not counted here).
enum DhtQuery {
    Bootstrap,
    GetProviders(RepositoryId, oneshot::Sender<Vec<PeerId>>),
    StartProviding(RepositoryId),
}

impl EventLoop {
    pub fn new(
        swarm: Swarm<Behaviour>,
        config: Config,
        commands: mpsc::Receiver<Command>,
        metrics: Metrics,
        engine: Engine,
        loopback: mpsc::Sender<Command>,
    ) -> Self {
        let bootstrap = Bootstrap::new(&config.bootstrap);
        EventLoop {
            swarm,
            config,
            commands,
            metrics,
            peers: PeerTable::default(),
            bootstrap,
            rejected: HashMap::new(),
            mdns_dialled: HashMap::new(),
            dialling: HashMap::new(),
            identifying: HashMap::new(),
            mdns_peers: HashMap::new(),
            dht_queue: VecDeque::new(),
            provider_queries: HashMap::new(),
            refs_requests: HashMap::new(),
            engine,
            loopback,
            started: Instant::now(),
        }
    }

    /// Opens every listener and waits until each has reported its address, so the node's
    /// addresses are known (port 0 resolved) when `Node::start` returns.
    pub async fn start_listening(&mut self) -> Result<(), NodeError> {
        let mut waiting: HashMap<ListenerId, Multiaddr> = HashMap::new();
        for addr in self.config.listen.clone() {
            let id = self
                .swarm
                .listen_on(addr.clone())
                .map_err(|e| NodeError::Listen {
                    addr: addr.clone(),
                    reason: transport_error_text(&e),
                })?;
            waiting.insert(id, addr);
        }
        for addr in self.config.external_addresses.clone() {
            self.swarm.add_external_address(addr);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !waiting.is_empty() {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| NodeError::Listen {
                    addr: waiting
                        .values()
                        .next()
                        .cloned()
                        .unwrap_or_else(Multiaddr::empty),
                    reason: "no address reported within 10 s".into(),
                })?;
            match &event {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    waiting.remove(listener_id);
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason: Err(e),
                    ..
                } => {
                    if let Some(addr) = waiting.remove(listener_id) {
                        return Err(NodeError::Listen {
                            addr,
                            reason: e.to_string(),
                        });
                    }
                }
                _ => {}
            }
            self.on_swarm_event(event);
        }
        Ok(())
    }

    pub async fn run(mut self) {
        let mut status_tick = tokio::time::interval(self.config.status_interval);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        status_tick.tick().await;
        self.bootstrap.dial_due(&mut self.swarm);
        loop {
            let next_dial = self
                .bootstrap
                .next_due()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                _ = status_tick.tick() => self.log_status(),
                _ = tokio::time::sleep_until(next_dial) => {
                    self.bootstrap.dial_due(&mut self.swarm);
                }
            }
        }
        tracing::info!("node stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Peers(reply) => {
                let _ = reply.send(
                    self.peers
                        .reports(&self.swarm.behaviour().connection_manager),
                );
            }
            Command::RoutingTable(reply) => {
                let _ = reply.send(self.swarm.behaviour_mut().routing_table());
            }
            Command::Connect { addr, reply } => self.connect(addr, reply),
            Command::AllowRequest { peer, key, reply } => {
                let allowed = self
                    .swarm
                    .behaviour_mut()
                    .connection_manager
                    .allow_request(peer, key);
                let _ = reply.send(allowed);
            }
            Command::SyncRequest {
                peer,
                request,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.refs_requests.insert(id, reply);
            }
            Command::FindProviders { repository, reply } => {
                self.dht(DhtQuery::GetProviders(repository, reply));
            }
            Command::Provide { repository } => self.dht(DhtQuery::StartProviding(repository)),
            Command::Announce { announcement } => self.announce(&announcement),
            Command::Penalize { peer, penalty } => {
                self.swarm
                    .behaviour_mut()
                    .connection_manager
                    .penalize(peer, penalty);
            }
            Command::SetSyncing { peer, syncing } => {
                let manager = &mut self.swarm.behaviour_mut().connection_manager;
                if syncing {
                    manager.protect(peer, Protection::Syncing);
                } else {
                    manager.unprotect(&peer, Protection::Syncing);
                }
            }
            Command::RecordUseful { peer } => {
                self.swarm
                    .behaviour_mut()
                    .connection_manager
                    .record_useful(peer);
            }
            Command::Validated {
                message_id,
                propagation_source,
                acceptance,
            } => {
                let accepted = matches!(acceptance, gossipsub::MessageAcceptance::Accept);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
                if accepted {
                    self.swarm
                        .behaviour_mut()
                        .connection_manager
                        .record_useful(propagation_source);
                }
            }
            Command::Shutdown => {}
        }
    }

    fn status(&mut self) -> StatusReport {
        let routing_table_size = self.swarm.behaviour_mut().routing_table_size();
        self.update_gauges(routing_table_size);
        StatusReport {
            peer_id: self.swarm.local_peer_id().to_string(),
            network: self.config.network.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            listen_addresses: self.swarm.listeners().map(|a| a.to_string()).collect(),
            external_addresses: self
                .swarm
                .external_addresses()
                .map(|a| a.to_string())
                .collect(),
            connected_peers: self.peers.len(),
            routing_table_size,
            gossip_mesh_peers: {
                let topic = gossipsub::IdentTopic::new(self.config.network.announce_topic()).hash();
                self.swarm.behaviour().gossipsub.mesh_peers(&topic).count()
            },
            uptime_secs: self.started.elapsed().as_secs(),
            dht_mode: self.swarm.behaviour().kad.mode().to_string(),
            mdns: self.swarm.behaviour().mdns.is_enabled(),
            relay_server: self.swarm.behaviour().relay_server.is_enabled(),
            bootstrap: self.bootstrap.reports(),
            limits: self.limits_report(),
            connections: self.connections_report(),
            transfers: {
                let t = &self.metrics.transfers;
                crate::api::types::TransfersReport {
                    fetched_packs: t.fetched_packs.get(),
                    fetched_objects: t.fetched_objects.get(),
                    fetched_bytes: t.fetched_bytes.get(),
                    served_packs: t.served_packs.get(),
                    served_bytes: t.served_bytes.get(),
                }
            },
        }
    }

    fn limits_report(&self) -> LimitsReport {
        let l = self.swarm.behaviour().connection_manager.limits();
        LimitsReport {
            max_connections: l.max_connections,
            max_pending_inbound: l.max_pending_inbound,
            max_connections_per_peer: l.max_connections_per_peer,
            max_peers_per_ip: l.max_peers_per_ip,
            low_watermark: l.low_watermark,
            high_watermark: l.high_watermark,
            dials_per_second: self.config.dials_per_second,
            max_concurrent_dials: self.config.max_concurrent_dials,
            max_concurrent_dht_queries: self.config.max_concurrent_dht_queries,
            requests_per_second_per_peer: self.config.requests_per_second_per_peer,
        }
    }

    fn connections_report(&self) -> ConnectionsReport {
        let counts = self.swarm.behaviour().connection_manager.counts();
        let m = &self.metrics.manager;
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
            dht_queries: self.swarm.behaviour().kad.iter_queries().count(),
            dht_queries_queued: self.dht_queue.len(),
        }
    }

    fn update_gauges(&self, routing_table_size: usize) {
        self.metrics.connected_peers.set(self.peers.len() as i64);
        self.metrics
            .routing_table_size
            .set(routing_table_size as i64);
    }

    fn log_status(&mut self) {
        let status = self.status();
        tracing::info!(
            target: "guts::status",
            peer = %short_peer_id(self.swarm.local_peer_id()),
            connected_peers = status.connected_peers,
            routing_table = status.routing_table_size,
            "status"
        );
    }

    fn connect(&mut self, addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, NodeError>>) {
        let target = discovery::peer_of(&addr);
        if target.as_ref() == Some(self.swarm.local_peer_id()) {
            let _ = reply.send(Err(NodeError::Dial {
                addr,
                reason: "that is this node's own peer id".into(),
            }));
            return;
        }
        let opts = match target {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::Disconnected)
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let id = self.swarm.behaviour_mut().connection_manager.dial(opts);
        self.dialling.insert(id, PendingConnect { addr, reply });
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.libp2p.record(&event);
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .with_p2p(*self.swarm.local_peer_id())
                    .unwrap_or_else(|a| a);
                tracing::info!("listening on {full}");
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => match reason {
                Ok(()) => tracing::info!(?addresses, "listener closed"),
                Err(e) => tracing::error!(?addresses, "listener failed: {e}"),
            },
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!("listener error: {error}");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connection_established(peer_id, connection_id, endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(%peer_id, ?cause, "connection closed");
                self.peers.connection_closed(&peer_id, connection_id);
                if num_established == 0 {
                    self.bootstrap.on_disconnected(&peer_id);
                    for pending in self.identifying.remove(&peer_id).into_iter().flatten() {
                        let _ = pending.reply.send(Err(NodeError::Dial {
                            addr: pending.addr,
                            reason: "the connection closed before the peer identified itself"
                                .into(),
                        }));
                    }
                }
                self.metrics.connected_peers.set(self.peers.len() as i64);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                // Failures of dials we asked for come from the connection manager.
                tracing::debug!(?peer_id, "dial failed: {}", dial_error_text(&error));
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(%send_back_addr, "inbound connection failed: {error}");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!("external address confirmed: {address}");
            }
            _ => {}
        }
    }

    fn on_connection_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        endpoint: ConnectedPoint,
    ) {
        tracing::debug!(%peer, addr = %endpoint.get_remote_address(), "connection established");
        let was_alone = self.peers.len() == 0;
        self.peers.connection_established(peer, id, endpoint);
        if was_alone {
            // Back in touch (start, restart, a healed partition): catch up now rather than
            // at the next anti-entropy round.
            self.engine.catch_up(peer);
        }
        self.metrics.connected_peers.set(self.peers.len() as i64);
        if self
            .bootstrap
            .on_established(peer, id, &mut self.swarm, &self.metrics)
        {
            self.swarm
                .behaviour_mut()
                .connection_manager
                .protect(peer, Protection::Bootstrap);
            // Look ourselves up now rather than after kad's automatic-bootstrap delay, so
            // a joining node fills its routing table at once.
            self.dht(DhtQuery::Bootstrap);
        }
        if let Some(pending) = self.dialling.remove(&id) {
            self.swarm
                .behaviour_mut()
                .connection_manager
                .protect(peer, Protection::Explicit);
            self.identifying.entry(peer).or_default().push(pending);
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(event) => {
                self.metrics.libp2p.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    self.on_identified(peer_id, info);
                }
            }
            BehaviourEvent::Kad(event) => {
                self.metrics.libp2p.record(&event);
                self.on_kad_event(event);
            }
            BehaviourEvent::Mdns(event) => self.on_mdns_event(event),
            BehaviourEvent::Ping(event) => {
                self.metrics.libp2p.record(&event);
                if let ping::Event {
                    peer,
                    result: Ok(rtt),
                    ..
                } = event
                {
                    self.peers.pinged(&peer, rtt);
                }
            }
            BehaviourEvent::Gossipsub(event) => {
                self.metrics.libp2p.record(&event);
                match event {
                    gossipsub::Event::Subscribed { peer_id, topic } => {
                        tracing::debug!(%peer_id, %topic, "peer subscribed");
                    }
                    gossipsub::Event::Message {
                        propagation_source,
                        message_id,
                        message,
                    } => self.on_announcement(propagation_source, message_id, message),
                    _ => {}
                }
            }
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            BehaviourEvent::RelayServer(event) => {
                self.metrics.libp2p.record(&event);
                tracing::debug!(?event, "relay server");
            }
            BehaviourEvent::RelayClient(event) => tracing::debug!(?event, "relay client"),
            BehaviourEvent::ConnectionManager(event) => self.on_manager_event(event),
            // libp2p-stream reports nothing; its streams are handled by the sync engine.
            BehaviourEvent::Stream(()) => {}
        }
    }

    /// The peer told us who it is. Peers of another network (or, when found by mDNS,
    /// another mDNS tag) are dropped; the rest feed the DHT.
    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        let ours = self.config.network.identify_protocol_version();
        if info.protocol_version != ours {
            tracing::info!(
                %peer,
                "disconnecting: peer speaks {:?}, this node {ours:?} (another network)",
                info.protocol_version
            );
            self.bootstrap
                .on_other_network(&peer, &info.protocol_version);
            let reason = format!(
                "peer {peer} is on another network: it speaks {:?}, this node {ours:?}",
                info.protocol_version
            );
            self.reject(peer, "other_network", &reason);
            return;
        }
        if self.mdns_dialled.contains_key(&peer)
            && !self.bootstrap.is_bootstrap_peer(&peer)
            && !self
                .swarm
                .behaviour()
                .connection_manager
                .is_protected(&peer)
        {
            let tag = mdns_tag_of(&info.agent_version);
            if tag != Some(self.config.mdns_service_tag.as_str()) {
                tracing::info!(%peer, ?tag, "disconnecting mDNS peer with another mDNS service tag");
                self.reject(peer, "mdns_tag", "another mDNS service tag");
                return;
            }
        }
        let on_loopback = self.peers.is_loopback(&peer);
        let kad = &mut self.swarm.behaviour_mut().kad;
        for addr in discovery::routable_addrs(&info.listen_addrs, on_loopback) {
            kad.add_address(&peer, addr);
        }
        self.peers.identified(&peer, info);
        for pending in self.identifying.remove(&peer).into_iter().flatten() {
            let _ = pending.reply.send(Ok(peer));
        }
    }

    fn reject(&mut self, peer: PeerId, reason: &'static str, message: &str) {
        self.metrics
            .peers_rejected
            .get_or_create(&Reason { reason })
            .inc();
        self.rejected.insert(peer, Instant::now() + REJECT_MEMORY);
        let behaviour = self.swarm.behaviour_mut();
        behaviour.kad.remove_peer(&peer);
        behaviour.connection_manager.unprotect_all(&peer);
        for pending in self.identifying.remove(&peer).into_iter().flatten() {
            let _ = pending.reply.send(Err(NodeError::Dial {
                addr: pending.addr,
                reason: message.to_owned(),
            }));
        }
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn is_rejected(&mut self, peer: &PeerId) -> bool {
        let now = Instant::now();
        self.rejected.retain(|_, until| *until > now);
        self.rejected.contains_key(peer)
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        if let kad::Event::OutboundQueryProgressed {
            id,
            result: kad::QueryResult::GetProviders(result),
            step,
            ..
        } = &event
        {
            let local = *self.swarm.local_peer_id();
            // Our own record comes first when we provide the repository ourselves (an
            // older copy): it is no holder to fetch from.
            let found: Vec<PeerId> = match result {
                Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                    providers.iter().copied().filter(|p| *p != local).collect()
                }
                _ => Vec::new(),
            };
            // The first other providers found are enough to start; the rest would only delay.
            if (!found.is_empty() || step.last)
                && let Some(reply) = self.provider_queries.remove(id)
            {
                let _ = reply.send(found);
                if !step.last
                    && let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(id)
                {
                    query.finish();
                }
            }
        }
        if let kad::Event::OutboundQueryProgressed { step, .. } = &event
            && step.last
        {
            self.run_queued_dht();
        }
        match event {
            kad::Event::RoutingUpdated {
                peer, is_new_peer, ..
            } => {
                if is_new_peer {
                    tracing::debug!(%peer, "added to routing table");
                }
                let size = self.swarm.behaviour_mut().routing_table_size();
                self.metrics.routing_table_size.set(size as i64);
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::Bootstrap(result),
                step,
                ..
            } => match result {
                Ok(ok) if step.last => {
                    tracing::debug!(remaining = ok.num_remaining, "DHT bootstrap finished");
                }
                Err(e) => tracing::debug!("DHT bootstrap step failed: {e}"),
                Ok(_) => {}
            },
            kad::Event::ModeChanged { new_mode } => {
                tracing::info!("DHT mode is now {new_mode}");
            }
            _ => {}
        }
    }

    fn on_mdns_event(&mut self, event: mdns::Event) {
        let found = match event {
            mdns::Event::Discovered(found) => found,
            mdns::Event::Expired(gone) => {
                for (peer, addr) in gone {
                    if let Some(addrs) = self.mdns_peers.get_mut(&peer) {
                        addrs.retain(|a| *a != addr);
                        if addrs.is_empty() {
                            self.mdns_peers.remove(&peer);
                        }
                    }
                }
                return;
            }
        };
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, addr) in found {
            // A LAN peer's loopback address would lead us to dial ourselves.
            if !crate::peers::is_loopback_addr(&addr) {
                by_peer.entry(peer).or_default().push(addr);
            }
        }
        for (peer, addrs) in by_peer {
            if peer == *self.swarm.local_peer_id() || self.is_rejected(&peer) {
                continue;
            }
            let known = self.mdns_peers.entry(peer).or_default();
            for addr in addrs {
                if !known.contains(&addr) {
                    known.push(addr);
                }
            }
            let manager = &self.swarm.behaviour().connection_manager;
            // Above the low watermark the peer stays a candidate for later.
            if self.swarm.is_connected(&peer)
                || manager.connected_peers() >= manager.limits().low_watermark
            {
                continue;
            }
            tracing::debug!(%peer, addrs = ?self.mdns_peers[&peer], "found by mDNS; dialling");
            self.mdns_dialled.insert(peer, Instant::now());
            let opts = DialOpts::peer_id(peer)
                .addresses(self.mdns_peers[&peer].clone())
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            self.swarm.behaviour_mut().connection_manager.dial(opts);
        }
    }

    fn on_manager_event(&mut self, event: connection_manager::Event) {
        match event {
            connection_manager::Event::NeedPeers(n) => {
                let mut candidates: Vec<(PeerId, Vec<Multiaddr>)> = self
                    .mdns_peers
                    .iter()
                    .filter(|(p, _)| !self.rejected.contains_key(p))
                    .map(|(p, a)| (*p, a.clone()))
                    .collect();
                for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
                    for entry in bucket.iter() {
                        let peer = *entry.node.key.preimage();
                        candidates.push((peer, entry.node.value.iter().cloned().collect()));
                    }
                }
                candidates.retain(|(p, _)| !self.rejected.contains_key(p));
                tracing::debug!(
                    wanted = n,
                    candidates = candidates.len(),
                    "below the low watermark"
                );
                self.swarm
                    .behaviour_mut()
                    .connection_manager
                    .dial_candidates(candidates, n);
            }
            connection_manager::Event::DialFailed {
                id,
                peer,
                error,
                already_connected,
            } => {
                let connected = peer.is_some_and(|p| self.swarm.is_connected(&p));
                // A dial refused because the peer is already connected (e.g. found by
                // mDNS first, then over the per-peer limit) still reached it.
                if already_connected || connected {
                    self.bootstrap
                        .on_dial_skipped(id, peer.filter(|_| connected));
                } else {
                    self.bootstrap.on_dial_failed(id, &error, &self.metrics);
                }
                if let Some(pending) = self.dialling.remove(&id) {
                    let result = match peer {
                        Some(peer) if already_connected && connected => {
                            self.swarm
                                .behaviour_mut()
                                .connection_manager
                                .protect(peer, Protection::Explicit);
                            Ok(peer)
                        }
                        _ => Err(NodeError::Dial {
                            addr: pending.addr,
                            reason: error,
                        }),
                    };
                    let _ = pending.reply.send(result);
                }
            }
            connection_manager::Event::Banned { peer, penalty, ban } => {
                tracing::warn!(
                    %peer,
                    "banned for {}s after repeated misbehaviour (last: {})",
                    ban.as_secs(),
                    penalty.label()
                );
                self.swarm.behaviour_mut().kad.remove_peer(&peer);
            }
        }
    }

    fn on_sync_event(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let manager = &mut self.swarm.behaviour_mut().connection_manager;
                let response = if !manager.allow_request(peer, crate::sync::RATE_LIMIT_KEY) {
                    SyncResponse::RateLimited
                } else {
                    self.serve(request)
                };
                // An error here means the peer went away; nothing to do.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.refs_requests.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.refs_requests.remove(&request_id) {
                    let failure = match &error {
                        request_response::OutboundFailure::Io(e) => {
                            match crate::sync::wire_error(e) {
                                Some(WireError::Oversized { .. }) => {
                                    GetRefsError::Penalty(Penalty::Oversized, e.to_string())
                                }
                                Some(_) => {
                                    GetRefsError::Penalty(Penalty::Undecodable, e.to_string())
                                }
                                None => GetRefsError::Failed(e.to_string()),
                            }
                        }
                        other => GetRefsError::Failed(other.to_string()),
                    };
                    let _ = reply.send(Err(failure));
                }
            }
            request_response::Event::InboundFailure {
                peer,
                error: InboundFailure::Io(e),
                ..
            } => {
                let penalty = match crate::sync::wire_error(&e) {
                    Some(WireError::Oversized { .. }) => Some(Penalty::Oversized),
                    Some(_) => Some(Penalty::Undecodable),
                    None => None,
                };
                tracing::debug!(%peer, "bad sync request: {e}");
                if let Some(penalty) = penalty {
                    self.swarm
                        .behaviour_mut()
                        .connection_manager
                        .penalize(peer, penalty);
                }
            }
            other => tracing::debug!(?other, "sync"),
        }
    }

    fn serve(&self, request: SyncRequest) -> SyncResponse {
        match request {
            SyncRequest::GetRefs { repository } => {
                match self.engine.repos().signed_refs(&repository) {
                    Ok(Some(refs)) => SyncResponse::Refs(Box::new(refs)),
                    Ok(None) => SyncResponse::NotFound,
                    Err(e) => {
                        tracing::error!("{e}");
                        SyncResponse::NotFound
                    }
                }
            }
            SyncRequest::ListRepositories => {
                let mut ids = self.engine.repos().list().unwrap_or_else(|e| {
                    tracing::error!("{e}");
                    Vec::new()
                });
                ids.truncate(guts_protocol::wire::MAX_LISTED_REPOSITORIES);
                SyncResponse::Repositories(ids)
            }
        }
    }

    /// Starts a DHT query now, or queues it while `max_concurrent_dht_queries` are under
    /// way (kad's own periodic queries count toward the limit too).
    fn dht(&mut self, query: DhtQuery) {
        let in_flight = self.swarm.behaviour().kad.iter_queries().count();
        if in_flight >= self.config.max_concurrent_dht_queries as usize {
            let duplicate = matches!(query, DhtQuery::Bootstrap)
                && self
                    .dht_queue
                    .iter()
                    .any(|q| matches!(q, DhtQuery::Bootstrap));
            if !duplicate {
                self.dht_queue.push_back(query);
            }
            return;
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        match query {
            DhtQuery::Bootstrap => {
                if let Err(e) = kad.bootstrap() {
                    tracing::debug!("DHT bootstrap not started: {e}");
                }
            }
            DhtQuery::GetProviders(repository, reply) => {
                // With an empty routing table the query would only wait for its timeout.
                if kad.kbuckets().all(|b| b.num_entries() == 0) {
                    let _ = reply.send(Vec::new());
                    return;
                }
                let id = kad.get_providers(kad::RecordKey::new(&repository.provider_key()));
                self.provider_queries.insert(id, reply);
            }
            DhtQuery::StartProviding(repository) => {
                if let Err(e) = kad.start_providing(kad::RecordKey::new(&repository.provider_key()))
                {
                    tracing::warn!(%repository, "cannot provide: {e}");
                }
            }
        }
    }

    /// Publishes an announcement. Without peers in the mesh it goes nowhere, which is
    /// fine: anti-entropy brings followers up to date.
    fn announce(&mut self, announcement: &Announcement) {
        let topic = gossipsub::IdentTopic::new(self.config.network.announce_topic());
        let data = wire::encode(announcement);
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => tracing::info!(
                repository = %announcement.header().repository(),
                sequence = announcement.header().sequence(),
                "announced"
            ),
            Err(e) => tracing::debug!("announcement not published: {e}"),
        }
    }

    /// A gossiped announcement: verified here (signature and owner, cheap), then checked
    /// against what this node holds off the loop; relayed only if valid and newer.
    fn on_announcement(
        &mut self,
        propagation_source: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let announcement: Announcement = match wire::decode(&message.data, MAX_ANNOUNCEMENT_SIZE) {
            Ok(a) => a,
            Err(e) => {
                return self.reject_announcement(propagation_source, &message_id, &e.to_string());
            }
        };
        let header = announcement.header().clone();
        if let Err(e) = header.verify() {
            return self.reject_announcement(propagation_source, &message_id, &e.to_string());
        }
        let (engine, loopback) = (self.engine.clone(), self.loopback.clone());
        let publisher = message.source;
        tokio::spawn(async move {
            let id = header.repository();
            let repos = engine.repos().clone();
            let held = tokio::task::spawn_blocking(move || repos.signed_refs(&id))
                .await
                .ok()
                .and_then(|r| r.ok())
                .flatten()
                .map_or(0, |s| s.sequence());
            let acceptance = if header.sequence() > held {
                if engine.wants(&id).await {
                    engine.trigger(id, publisher);
                }
                gossipsub::MessageAcceptance::Accept
            } else {
                // Old news (or a replay): not relayed, no penalty.
                gossipsub::MessageAcceptance::Ignore
            };
            let _ = loopback
                .send(Command::Validated {
                    message_id,
                    propagation_source,
                    acceptance,
                })
                .await;
        });
    }

    fn reject_announcement(&mut self, from: PeerId, message_id: &gossipsub::MessageId, why: &str) {
        tracing::info!(%from, "rejected announcement: {why}");
        let behaviour = self.swarm.behaviour_mut();
        let _ = behaviour.gossipsub.report_message_validation_result(
            message_id,
            &from,
            gossipsub::MessageAcceptance::Reject,
        );
        behaviour
            .connection_manager
            .penalize(from, Penalty::InvalidAnnouncement);
    }

    fn run_queued_dht(&mut self) {
        let limit = self.config.max_concurrent_dht_queries as usize;
        while self.swarm.behaviour().kad.iter_queries().count() < limit {
            let Some(query) = self.dht_queue.pop_front() else {
                break;
            };
            self.dht(query);
        }
    }
}

/// `12D3Ko…a1b2c3`: enough to tell peers apart in a log line.
pub fn short_peer_id(peer: &PeerId) -> String {
    let s = peer.to_string();
    if s.len() <= 14 {
        return s;
    }
    format!("{}…{}", &s[..6], &s[s.len() - 6..])
}

fn transport_error_text(e: &libp2p::TransportError<std::io::Error>) -> String {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(a) => {
            format!("address {a} is not supported by any transport")
        }
        libp2p::TransportError::Other(io) => io.to_string(),
    }
}

/// A dial error in one line (libp2p's own Display nests the per-address errors).
pub(crate) fn dial_error_text(e: &DialError) -> String {
    match e {
        DialError::Transport(errors) => errors
            .iter()
            .map(|(addr, err)| format!("{addr}: {}", error_chain(err)))
            .collect::<Vec<_>>()
            .join("; "),
        other => error_chain(other),
    }
}

/// An error and its sources in one line. libp2p nests errors and spreads some over
/// several lines ("Multiple dial errors occurred:\n - ..."); keep only what says something.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        for line in err.to_string().lines() {
            let line = line
                .trim()
                .trim_start_matches("- ")
                .trim_end_matches(':')
                .trim();
            if line.is_empty()
                || line == "Multiple dial errors occurred"
                || parts.iter().any(|p| p.contains(line))
            {
                continue;
            }
            parts.push(line.to_owned());
        }
        next = err.source();
    }
    parts.join(": ")
}
