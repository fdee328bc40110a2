//! The event loop: the one task that owns the swarm. It routes: commands from a
//! [`Client`] to the behaviours, swarm events to [`Discovery`], [`Dht`] and the connection
//! manager, and what peers ask or announce out as [`Event`]s for the sync side to judge.
//! It reads no disk and decides no policy of its own.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use guts_protocol::wire::SyncResponse;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::metrics::Recorder;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, gossipsub, identify, ping, relay};
use tokio::sync::{mpsc, oneshot};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::busy::BusyPeers;
use super::client::{Command, Event, RequestError};
use super::dht::{Dht, Query};
use super::discovery::{self, Discovery, Verdict};
use super::nat::{self, Nat, Reachability};
use super::peers::PeerTable;
use super::punch::Punches;
use super::relay_use::RelayUse;
use super::status;
use crate::config::Config;
use crate::connection_manager::{self, Protection};
use crate::error::{NodeError, dial_error_text, transport_error_text};
use crate::metrics::{Metrics, Reason};

mod peer_traffic;
mod traversal;

/// A `guts connect` waiting for its outcome.
struct PendingConnect {
    addr: Multiaddr,
    reply: oneshot::Sender<Result<PeerId, NodeError>>,
}

/// Owns the swarm and everything that must change with it.
pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    config: Config,
    commands: mpsc::Receiver<Command>,
    /// Where inbound requests and announcements go. Bounded: when it is full, requests
    /// are answered `RateLimited` and announcements ignored, so a flood of them never
    /// slows the loop (and with it pings, gossip and every other protocol).
    events: mpsc::Sender<Event>,
    metrics: Metrics,
    peers: PeerTable,
    discovery: Discovery,
    dht: Dht,
    /// Reachability and relay reservations.
    nat: Nat,
    /// The reachability last acted on.
    reachability: Reachability,
    /// Fetches waiting for a direct connection to a peer reached only through relays.
    direct_waiters: HashMap<PeerId, Vec<oneshot::Sender<Option<PeerId>>>>,
    /// Connect requests whose dial is under way.
    dialling: HashMap<ConnectionId, PendingConnect>,
    /// Connect requests whose connection is up, waiting for identify.
    identifying: HashMap<PeerId, Vec<PendingConnect>>,
    /// Sync requests we sent, waiting for their answer.
    requests: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, RequestError>>>,
    /// Peers that said they are busy, not asked again until their pause ends.
    busy: BusyPeers,
    /// Hole punching towards peers reached through relays.
    punches: Punches,
    /// What the relay server carries for others.
    relay_use: RelayUse,
    /// Circuits dialled to start another hole punching round.
    punch_redials: HashSet<ConnectionId>,
    started: Instant,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        config: Config,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        metrics: Metrics,
    ) -> Self {
        let local = *swarm.local_peer_id();
        EventLoop {
            discovery: Discovery::new(&config, local),
            dht: Dht::new(local, config.connections.max_concurrent_dht_queries),
            nat: Nat::new(
                &config
                    .net
                    .listen
                    .iter()
                    .filter(|a| nat::is_relayed(a))
                    .cloned()
                    .collect::<Vec<_>>(),
                &config.net.external_addresses,
                true,
            ),
            reachability: Reachability::Unknown,
            direct_waiters: HashMap::new(),
            swarm,
            config,
            commands,
            events,
            metrics,
            peers: PeerTable::default(),
            dialling: HashMap::new(),
            identifying: HashMap::new(),
            requests: HashMap::new(),
            busy: BusyPeers::default(),
            punches: Punches::default(),
            relay_use: RelayUse::default(),
            punch_redials: HashSet::new(),
            started: Instant::now(),
        }
    }

    /// Opens every listener and waits until each has reported its address, so the node's
    /// addresses are known (port 0 resolved) when `Node::start` returns.
    pub(crate) async fn start_listening(&mut self) -> Result<(), NodeError> {
        let mut waiting: HashMap<ListenerId, Multiaddr> = HashMap::new();
        // Listening through a relay is a reservation: asked for (and retried) once the
        // node runs, not waited on here.
        let direct = self
            .config
            .net
            .listen
            .iter()
            .filter(|a| !nat::is_relayed(a));
        for addr in direct.cloned().collect::<Vec<_>>() {
            let id = self
                .swarm
                .listen_on(addr.clone())
                .map_err(|e| NodeError::Listen {
                    addr: addr.clone(),
                    reason: transport_error_text(&e),
                })?;
            waiting.insert(id, addr);
        }
        for addr in self.config.net.external_addresses.clone() {
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

    pub(crate) async fn run(mut self) {
        let mut status_tick = tokio::time::interval(self.config.status_interval);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        status_tick.tick().await;
        // Hole punching rounds fall due every few seconds at most: a tick is enough.
        let mut punch_tick = tokio::time::interval(Duration::from_secs(1));
        punch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.dial_bootstrap();
        self.on_reachability();
        loop {
            let next_dial = [self.discovery.next_bootstrap_dial(), self.nat.next_due()]
                .into_iter()
                .flatten()
                .min()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                _ = status_tick.tick() => status::log_line(self.sources()),
                _ = punch_tick.tick() => self.punch_again(),
                _ = tokio::time::sleep_until(next_dial) => {
                    self.dial_bootstrap();
                    self.nat.plan(&mut self.swarm);
                }
                Some(lookup) = self.discovery.next_bootstrap_lookup() => {
                    let own: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
                    let manager = &mut self.swarm.behaviour_mut().connection_manager;
                    self.discovery.on_bootstrap_lookup(lookup, &own, manager);
                }
            }
        }
        tracing::info!("node stopped");
    }

    fn sources(&mut self) -> status::Sources<'_> {
        status::Sources {
            swarm: &mut self.swarm,
            config: &self.config,
            peers: &self.peers,
            discovery: &self.discovery,
            dht: &self.dht,
            nat: &self.nat,
            relay_use: &self.relay_use,
            metrics: &self.metrics,
            started: self.started,
        }
    }

    fn dial_bootstrap(&mut self) {
        let manager = &mut self.swarm.behaviour_mut().connection_manager;
        self.discovery.dial_bootstrap(manager);
    }

    /// Acts on what is known of the node's reachability: `--dht-mode auto` serves the
    /// DHT only when others can dial it; a private node reserves slots on relays.
    fn on_reachability(&mut self) {
        let now = self.nat.reachability();
        if now != self.reachability {
            tracing::info!("reachability: {now} (was {})", self.reachability);
            self.reachability = now;
            if let Some(mode) = super::dht::mode_for(self.config.net.dht_mode, now) {
                self.swarm.behaviour_mut().kad.set_mode(Some(mode));
            }
            if now == Reachability::Private && self.config.net.relay_server {
                tracing::warn!(
                    "this node is not reachable from outside: as a relay it serves only peers that can reach it"
                );
            }
        }
        self.nat.plan(&mut self.swarm);
    }

    fn dht(&mut self, query: Query) {
        self.dht.query(&mut self.swarm.behaviour_mut().kad, query);
    }

    fn manager(&mut self) -> &mut connection_manager::Behaviour {
        &mut self.swarm.behaviour_mut().connection_manager
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(status::report(self.sources()));
            }
            Command::RefreshGauges(reply) => {
                status::refresh_gauges(&mut self.swarm, &self.peers, &self.metrics);
                let _ = reply.send(());
            }
            Command::Peers(reply) => {
                let manager = &self.swarm.behaviour().connection_manager;
                let _ = reply.send(self.peers.reports(manager, &self.punches));
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.peers.ids());
            }
            Command::AwaitDirect { peer, reply } => {
                if !self.peers.relayed_only(&peer) {
                    let _ = reply.send(None);
                } else if self.relay_fallback(&peer) {
                    let _ = reply.send(self.peers.relay_of(&peer));
                } else {
                    self.direct_waiters.entry(peer).or_default().push(reply);
                }
            }
            Command::RelayedVia { peer, reply } => {
                let relayed = self.peers.relayed_only(&peer);
                let _ = reply.send(relayed.then(|| self.peers.relay_of(&peer)).flatten());
            }
            Command::RoutingTable(reply) => {
                let _ = reply.send(self.swarm.behaviour_mut().routing_table());
            }
            Command::Connect { addr, reply } => self.connect(addr, reply),
            Command::AllowRequest { peer, key, reply } => {
                let _ = reply.send(self.manager().allow_request(peer, key));
            }
            Command::SyncRequest {
                peer,
                request,
                reply,
            } => {
                if self.busy.paused(&peer, Instant::now()) {
                    let _ = reply.send(Ok(SyncResponse::RateLimited));
                    return;
                }
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.requests.insert(id, reply);
            }
            Command::Respond { channel, response } => {
                // An error here means the peer went away; nothing to do.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            Command::FindProviders { repository, reply } => {
                self.dht(Query::GetProviders(repository, reply));
            }
            Command::FindPeer { peer, reply } => self.dht(Query::FindPeer(peer, reply)),
            Command::Provide { repository } => self.dht(Query::StartProviding(repository)),
            Command::StopProviding { repository } => {
                // Local only: the records others keep expire by themselves.
                let key = libp2p::kad::RecordKey::new(&repository.provider_key());
                self.swarm.behaviour_mut().kad.stop_providing(&key);
            }
            Command::Announce { announcement } => self.announce(&announcement),
            Command::AnnounceShared { announcement } => self.announce_shared(&announcement),
            Command::AnnounceChanges { announcement } => self.announce_changes(&announcement),
            Command::Penalize { peer, penalty } => self.manager().penalize(peer, penalty),
            Command::SetSyncing { peer, syncing } => {
                let manager = self.manager();
                if syncing {
                    manager.protect(peer, Protection::Syncing);
                } else {
                    manager.unprotect(&peer, Protection::Syncing);
                }
            }
            Command::RecordUseful { peer } => self.manager().record_useful(peer),
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
                    self.manager().record_useful(propagation_source);
                }
            }
            Command::Shutdown => {}
        }
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
        let id = self.manager().dial(opts);
        self.dialling.insert(id, PendingConnect { addr, reply });
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.libp2p.record(&event);
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr {
                address,
                listener_id,
            } => {
                if self.nat.on_listen_addr(listener_id) {
                    // Reachable through the relay: identify and provider records carry
                    // the circuit address.
                    self.swarm.add_external_address(address.clone());
                    // A reservation answered after the node found itself public goes now.
                    self.nat.plan(&mut self.swarm);
                }
                let full = address
                    .with_p2p(*self.swarm.local_peer_id())
                    .unwrap_or_else(|a| a);
                tracing::info!("listening on {full}");
            }
            SwarmEvent::ListenerClosed {
                addresses,
                reason,
                listener_id,
            } => {
                for addr in addresses.iter().filter(|a| nat::is_relayed(a)) {
                    self.swarm.remove_external_address(addr);
                }
                // With its sources: a relay's "Failed to get Reservation." says why
                // only in them.
                let error = reason.as_ref().err().map(|e| crate::error::error_chain(e));
                match &error {
                    None => tracing::info!(?addresses, "listener closed"),
                    Some(e) => tracing::warn!(?addresses, "listener failed: {e}"),
                }
                self.nat.on_listener_closed(listener_id, error);
            }
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
                let store = self.swarm.behaviour_mut().kad.store_mut();
                if num_established == 0 {
                    store.forget_scope(&peer_id);
                } else {
                    store.set_scope(peer_id, self.peers.scope(&peer_id));
                }
                if num_established == 0 {
                    // No connection left: a fetch dials afresh.
                    for waiter in self.direct_waiters.remove(&peer_id).into_iter().flatten() {
                        let _ = waiter.send(None);
                    }
                    self.discovery.on_disconnected(&peer_id);
                    self.nat.on_disconnected(&peer_id);
                    self.punches.disconnected(&peer_id);
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
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                self.punch_redial_failed(connection_id, peer_id);
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
                if !nat::is_relayed(&address) {
                    self.nat.on_probe(address, true);
                    self.on_reachability();
                }
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!("external address expired: {address}");
                self.nat.on_external_expired(&address);
                self.on_reachability();
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
        let first = self.peers.len() == 0;
        let direct = !nat::is_relayed_connection(&endpoint);
        if direct {
            self.punch_on_established(peer, &endpoint);
            // Direct now (hole punched, or dialled): relays cut circuits at a few hundred
            // KiB, so nothing more goes through them.
            for relayed in self.peers.relayed_connections(&peer) {
                tracing::info!(%peer, "direct connection up: closing the relayed one");
                self.swarm.close_connection(relayed);
            }
            for waiter in self.direct_waiters.remove(&peer).into_iter().flatten() {
                let _ = waiter.send(None);
            }
        } else if self.peers.has_direct(&peer) {
            tracing::debug!(%peer, "already connected directly: closing a relayed connection");
            self.swarm.close_connection(id);
        } else {
            let local = *self.swarm.local_peer_id();
            // A circuit dialled for another hole punching round replaces the old one.
            let asked = self.is_punch_redial(id) || self.dialling.contains_key(&id);
            let close =
                self.peers
                    .circuits_to_close(&local, &peer, id, endpoint.is_dialer(), asked);
            let stays = !close.contains(&id);
            for circuit in close {
                tracing::debug!(%peer, "one circuit to a peer at most: closing {circuit}");
                self.swarm.close_connection(circuit);
            }
            if stays {
                self.punch_on_established(peer, &endpoint);
            }
        }
        self.peers.connection_established(peer, id, endpoint);
        let scope = self.peers.scope(&peer);
        self.swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .set_scope(peer, scope);
        // Turned away only under a flood; anti-entropy catches up later then.
        let _ = self.emit(Event::PeerConnected { peer, first });
        self.metrics.connected_peers.set(self.peers.len() as i64);
        let behaviour = self.swarm.behaviour_mut();
        let bootstrap = self.discovery.on_established(
            peer,
            id,
            &mut behaviour.kad,
            &mut behaviour.connection_manager,
            &self.metrics,
        );
        if bootstrap {
            // Look ourselves up now rather than after kad's automatic-bootstrap delay, so
            // a joining node fills its routing table at once.
            self.dht(Query::Bootstrap);
        }
        if let Some(pending) = self.dialling.remove(&id) {
            self.manager().protect(peer, Protection::Explicit);
            if self.peers.is_identified(&peer) {
                // Known and welcome on another connection (which may be the one that
                // stays, if this one crossed it): identify will not speak again.
                let _ = pending.reply.send(Ok(peer));
            } else {
                self.identifying.entry(peer).or_default().push(pending);
            }
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
            BehaviourEvent::Kad(super::kad_limit::Event::Kad(event)) => {
                self.metrics.libp2p.record(&event);
                self.dht
                    .on_event(&mut self.swarm.behaviour_mut().kad, &event);
            }
            BehaviourEvent::Kad(super::kad_limit::Event::OverBudget(peer)) => {
                tracing::debug!(%peer, "Kademlia messages over the peer's budget dropped");
                self.manager()
                    .penalize(peer, connection_manager::Penalty::RateLimited);
            }
            BehaviourEvent::Mdns(event) => {
                let manager = &mut self.swarm.behaviour_mut().connection_manager;
                self.discovery.on_mdns(event, manager);
            }
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
                    } => self.on_gossip(propagation_source, message_id, message),
                    _ => {}
                }
            }
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            BehaviourEvent::RelayServer(event) => {
                self.metrics.libp2p.record(&event);
                self.relay_use.on_event(&event);
                tracing::debug!(?event, "relay server");
            }
            BehaviourEvent::RelayClient(event) => self.on_relay_client(event),
            BehaviourEvent::AutonatClient(autonat::v2::client::Event {
                tested_addr,
                server,
                result,
                ..
            }) => {
                match &result {
                    Ok(()) => tracing::info!(%server, "AutoNAT: {tested_addr} is reachable"),
                    Err(e) => {
                        tracing::info!(%server, "AutoNAT: {tested_addr} is not reachable: {e}")
                    }
                }
                self.nat.on_probe(tested_addr, result.is_ok());
                self.on_reachability();
            }
            BehaviourEvent::AutonatV1(autonat::v1::Event::StatusChanged { new, .. }) => {
                tracing::info!("AutoNAT (v1): {new:?}");
                match new {
                    autonat::v1::NatStatus::Public(addr) => self.nat.on_probe(addr, true),
                    autonat::v1::NatStatus::Private => self.nat.on_private(),
                    autonat::v1::NatStatus::Unknown => {}
                }
                self.on_reachability();
            }
            BehaviourEvent::AutonatV1(event) => tracing::debug!(?event, "AutoNAT (v1)"),
            BehaviourEvent::AutonatServer(event) => {
                tracing::debug!(client = %event.client, tested = %event.tested_addr, ok = event.result.is_ok(), "AutoNAT dial-back");
            }
            BehaviourEvent::Dcutr(event) => self.on_dcutr(event),
            BehaviourEvent::ConnectionManager(event) => self.on_manager_event(event),
            // libp2p-stream reports nothing; its streams are served by the sync side.
            BehaviourEvent::Stream(()) => {}
        }
    }

    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        let scope = self.peers.scope(&peer);
        let behaviour = self.swarm.behaviour_mut();
        let verdict = self.discovery.on_identified(
            peer,
            &info,
            scope,
            &mut behaviour.kad,
            &mut behaviour.connection_manager,
        );
        match verdict {
            Verdict::Welcome => {
                if info.protocols.contains(&relay::HOP_PROTOCOL_NAME)
                    && let Some(addr) = self.peers.dialled_address(&peer)
                {
                    self.nat.on_relay_found(peer, addr);
                    self.nat.plan(&mut self.swarm);
                }
                self.observe_over_quic(peer, &info);
                self.peers.identified(&peer, info);
                for pending in self.identifying.remove(&peer).into_iter().flatten() {
                    let _ = pending.reply.send(Ok(peer));
                }
            }
            Verdict::Reject { reason, message } => {
                self.metrics
                    .peers_rejected
                    .get_or_create(&Reason { reason })
                    .inc();
                for pending in self.identifying.remove(&peer).into_iter().flatten() {
                    let _ = pending.reply.send(Err(NodeError::Dial {
                        addr: pending.addr,
                        reason: message.clone(),
                    }));
                }
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    fn on_manager_event(&mut self, event: connection_manager::Event) {
        match event {
            connection_manager::Event::NeedPeers(n) => {
                let candidates = self
                    .discovery
                    .candidates(&mut self.swarm.behaviour_mut().kad);
                tracing::debug!(
                    wanted = n,
                    candidates = candidates.len(),
                    "below the low watermark"
                );
                self.manager().dial_candidates(candidates, n);
            }
            connection_manager::Event::DialFailed {
                id,
                peer,
                error,
                already_connected,
            } => {
                let error = crate::error::with_private_network_hint(
                    error,
                    self.config.net.swarm_key.is_some(),
                );
                let connected = peer.filter(|p| self.swarm.is_connected(p));
                self.discovery.on_dial_failed(
                    id,
                    connected,
                    already_connected,
                    &error,
                    &self.metrics,
                );
                if let Some(pending) = self.dialling.remove(&id) {
                    let result = match connected {
                        Some(peer) if already_connected => {
                            self.manager().protect(peer, Protection::Explicit);
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
}

impl nat::Listeners for Swarm<Behaviour> {
    fn listen(&mut self, addr: &Multiaddr) -> Result<ListenerId, String> {
        self.listen_on(addr.clone())
            .map_err(|e| transport_error_text(&e))
    }

    fn stop(&mut self, id: ListenerId) {
        self.remove_listener(id);
    }
}
