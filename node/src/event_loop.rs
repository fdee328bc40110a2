//! The event loop: the one task that owns the swarm. Everything else talks to it through
//! [`Command`]s sent by a [`crate::NodeHandle`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::metrics::Recorder;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns, ping};
use tokio::sync::{mpsc, oneshot};

use crate::api::types::{PeerReport, StatusReport};
use crate::behaviour::{Behaviour, BehaviourEvent, mdns_tag_of};
use crate::config::Config;
use crate::discovery::{self, Bootstrap};
use crate::error::NodeError;
use crate::metrics::{Metrics, Reason};
use crate::peers::PeerTable;

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
    started: Instant,
}

impl EventLoop {
    pub fn new(
        swarm: Swarm<Behaviour>,
        config: Config,
        commands: mpsc::Receiver<Command>,
        metrics: Metrics,
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
        self.bootstrap.dial_due(&mut self.swarm, &self.metrics);
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
                    self.bootstrap.dial_due(&mut self.swarm, &self.metrics);
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
                let manager = &self.swarm.behaviour().connection_manager;
                let _ = reply.send(self.peers.reports(|p| manager.is_protected(p)));
            }
            Command::RoutingTable(reply) => {
                let _ = reply.send(self.swarm.behaviour_mut().routing_table());
            }
            Command::Connect { addr, reply } => self.connect(addr, reply),
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
            uptime_secs: self.started.elapsed().as_secs(),
            dht_mode: self.swarm.behaviour().kad.mode().to_string(),
            mdns: self.swarm.behaviour().mdns.is_enabled(),
            relay_server: self.swarm.behaviour().relay_server.is_enabled(),
            bootstrap: self.bootstrap.reports(),
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
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dialling.insert(id, PendingConnect { addr, reply });
            }
            Err(DialError::DialPeerConditionFalse(_)) => {
                // Already connected: the user still wants it kept.
                if let Some(peer) = target {
                    self.swarm.behaviour_mut().connection_manager.protect(peer);
                    let _ = reply.send(Ok(peer));
                }
            }
            Err(e) => {
                let _ = reply.send(Err(NodeError::Dial {
                    addr,
                    reason: e.to_string(),
                }));
            }
        }
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
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let reason = dial_error_text(&error);
                tracing::debug!(?peer_id, "dial failed: {reason}");
                self.bootstrap
                    .on_dial_failed(connection_id, &reason, &self.metrics);
                if let Some(pending) = self.dialling.remove(&connection_id) {
                    let _ = pending.reply.send(Err(NodeError::Dial {
                        addr: pending.addr,
                        reason,
                    }));
                }
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
        self.peers.connection_established(peer, id, endpoint);
        self.metrics.connected_peers.set(self.peers.len() as i64);
        if self
            .bootstrap
            .on_established(peer, id, &mut self.swarm, &self.metrics)
        {
            self.swarm.behaviour_mut().connection_manager.protect(peer);
        }
        if let Some(pending) = self.dialling.remove(&id) {
            self.swarm.behaviour_mut().connection_manager.protect(peer);
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
                if let gossipsub::Event::Subscribed { peer_id, topic } = event {
                    tracing::debug!(%peer_id, %topic, "peer subscribed");
                }
            }
            BehaviourEvent::RelayServer(event) => {
                self.metrics.libp2p.record(&event);
                tracing::debug!(?event, "relay server");
            }
            BehaviourEvent::RelayClient(event) => tracing::debug!(?event, "relay client"),
            BehaviourEvent::ConnectionManager(()) => {}
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
        behaviour.connection_manager.unprotect(&peer);
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
        let mdns::Event::Discovered(found) = event else {
            return;
        };
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, addr) in found {
            // A LAN peer's loopback address would lead us to dial ourselves.
            if !crate::peers::is_loopback_addr(&addr) {
                by_peer.entry(peer).or_default().push(addr);
            }
        }
        for (peer, addrs) in by_peer {
            if peer == *self.swarm.local_peer_id()
                || self.swarm.is_connected(&peer)
                || self.is_rejected(&peer)
            {
                continue;
            }
            tracing::debug!(%peer, ?addrs, "found by mDNS; dialling");
            self.mdns_dialled.insert(peer, Instant::now());
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, "cannot dial mDNS peer: {e}");
            }
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
fn dial_error_text(e: &DialError) -> String {
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
