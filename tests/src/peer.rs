//! A bare libp2p peer that speaks Guts protocols directly, for tests that need a peer to
//! misbehave (flood, send garbage) in ways a real node never would.

use std::time::Duration;

use futures::StreamExt;
use guts_node::wire::Codec;
use guts_protocol::NetworkName;
use guts_protocol::wire::{SyncRequest, SyncResponse};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, identify, noise, tcp, yamux};

/// A swarm with a new identity on TCP (Noise, yamux), its behaviour built from that
/// identity's key, connections closed after `idle` unused.
pub fn tcp_swarm<B: NetworkBehaviour>(
    idle: Duration,
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> Swarm<B> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build()
}

/// Identify (so a node takes it for one of its network) and the sync protocol.
#[derive(NetworkBehaviour)]
pub struct RawBehaviour {
    pub identify: identify::Behaviour,
    pub sync: request_response::Behaviour<Codec>,
}

/// A raw peer on loopback.
pub struct RawPeer {
    pub swarm: Swarm<RawBehaviour>,
}

/// What the raw peer saw.
pub type RawEvent = SwarmEvent<RawBehaviourEvent>;

impl RawPeer {
    /// A peer of `network`, listening on loopback.
    pub async fn new(network: &NetworkName) -> RawPeer {
        Self::build(network, None).await
    }

    /// A peer that tells nodes `agent` as its agent version (identify).
    pub async fn with_agent(network: &NetworkName, agent: &str) -> RawPeer {
        Self::build(network, Some(agent.to_owned())).await
    }

    async fn build(network: &NetworkName, agent: Option<String>) -> RawPeer {
        let mut swarm = tcp_swarm(Duration::from_secs(60), |key| RawBehaviour {
            identify: identify::Behaviour::new({
                let config =
                    identify::Config::new(network.identify_protocol_version(), key.public());
                match agent {
                    Some(agent) => config.with_agent_version(agent),
                    None => config,
                }
            }),
            sync: guts_node::wire::behaviour(network, Duration::from_secs(10)),
        });
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
            .expect("listen");
        RawPeer { swarm }
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Dials `addr` (with `/p2p/<id>`).
    pub fn dial(&mut self, addr: &Multiaddr) {
        self.swarm.dial(addr.clone()).expect("dial");
    }

    /// Sends a sync request to `peer`.
    pub fn request(&mut self, peer: &PeerId, request: SyncRequest) -> OutboundRequestId {
        self.swarm.behaviour_mut().sync.send_request(peer, request)
    }

    /// Runs the swarm until `until` returns `Some`, or panics after `timeout`.
    pub async fn run_until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut until: impl FnMut(&RawEvent) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(event) => {
                    if let Some(v) = until(&event) {
                        return v;
                    }
                }
                Err(_) => panic!("raw peer: timed out after {timeout:?} waiting for {what}"),
            }
        }
    }

    /// Drives the swarm for `period`, collecting every event (for counting answers).
    pub async fn run_for(&mut self, period: Duration) -> Vec<RawEvent> {
        let deadline = tokio::time::Instant::now() + period;
        let mut events = Vec::new();
        while let Ok(event) = tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await
        {
            events.push(event);
        }
        events
    }
}

/// The sync response in an event, if it is one.
pub fn sync_response(event: &RawEvent) -> Option<&SyncResponse> {
    match event {
        SwarmEvent::Behaviour(RawBehaviourEvent::Sync(request_response::Event::Message {
            message: request_response::Message::Response { response, .. },
            ..
        })) => Some(response),
        _ => None,
    }
}

/// What a hostile peer answers.
#[derive(Clone)]
pub struct Script {
    /// Bytes written (after the length prefix is added, unless `raw`) in answer to
    /// GetRefs.
    pub refs: Answer,
    /// Header and body of the answer to a pack request.
    pub pack: Option<(guts_protocol::wire::PackResponse, Vec<u8>)>,
    /// Send the pack body this many bytes at a time, pausing this long between pieces
    /// (a holder that trickles).
    pub pace: Option<(usize, Duration)>,
}

/// An answer on the sync protocol.
#[derive(Clone)]
pub enum Answer {
    /// A well-formed message.
    Message(SyncResponse),
    /// Exactly these bytes, framing included (to lie about lengths).
    Raw(Vec<u8>),
}

/// Identify (to pass for a node of the network) and raw streams for the sync and pack
/// protocols, so every byte of the answers is the test's choice.
#[derive(NetworkBehaviour)]
struct HostileBehaviour {
    identify: identify::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// A swarm that passes for a node of `network` and speaks raw streams.
fn stream_swarm(network: &NetworkName) -> Swarm<HostileBehaviour> {
    tcp_swarm(Duration::from_secs(120), |key| HostileBehaviour {
        identify: identify::Behaviour::new(
            identify::Config::new(network.identify_protocol_version(), key.public())
                .with_agent_version("guts/0.1.0 (mdns-tag: guts)".into()),
        ),
        stream: libp2p_stream::Behaviour::new(),
    })
}

/// A peer that answers Guts requests from a [`Script`], running in the background.
pub struct HostilePeer {
    peer_id: PeerId,
    task: tokio::task::JoinHandle<()>,
    dial: tokio::sync::mpsc::UnboundedSender<Multiaddr>,
}

fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

async fn read_request(stream: &mut libp2p::Stream) -> std::io::Result<()> {
    use futures::AsyncReadExt;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await
}

impl HostilePeer {
    /// Starts a hostile peer of `network` answering from `script`.
    pub fn spawn(network: &NetworkName, script: Script) -> HostilePeer {
        use futures::AsyncWriteExt;
        let mut swarm = stream_swarm(network);
        let peer_id = *swarm.local_peer_id();
        let mut control = swarm.behaviour().stream.new_control();
        // Both versions of the sync protocol, answered alike.
        let mut refs = futures::stream::select(
            control
                .accept(guts_node::wire::protocol(network))
                .expect("sync protocol"),
            control
                .accept(guts_node::wire::shared_protocol(network))
                .expect("sync protocol 1.1.0"),
        );
        let mut packs = control
            .accept(guts_node::wire::pack_protocol(network))
            .expect("pack protocol");
        let (dial, mut dials) = tokio::sync::mpsc::unbounded_channel::<Multiaddr>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = swarm.select_next_some() => {}
                    Some(addr) = dials.recv() => {
                        let _ = swarm.dial(addr);
                    }
                    Some((_, mut stream)) = refs.next() => {
                        let answer = match &script.refs {
                            Answer::Message(m) => frame(guts_protocol::wire::encode(m)),
                            Answer::Raw(bytes) => bytes.clone(),
                        };
                        tokio::spawn(async move {
                            if read_request(&mut stream).await.is_ok() {
                                let _ = stream.write_all(&answer).await;
                                let _ = stream.close().await;
                            }
                        });
                    }
                    Some((_, mut stream)) = packs.next() => {
                        let Some((header, body)) = script.pack.clone() else { continue };
                        let pace = script.pace;
                        tokio::spawn(async move {
                            if read_request(&mut stream).await.is_ok() {
                                let _ = stream.write_all(&frame(guts_protocol::wire::encode(&header))).await;
                                match pace {
                                    None => {
                                        let _ = stream.write_all(&body).await;
                                    }
                                    Some((piece, pause)) => {
                                        for part in body.chunks(piece.max(1)) {
                                            if stream.write_all(part).await.is_err() {
                                                return;
                                            }
                                            let _ = stream.flush().await;
                                            tokio::time::sleep(pause).await;
                                        }
                                    }
                                }
                                let _ = stream.close().await;
                            }
                        });
                    }
                }
            }
        });
        HostilePeer {
            peer_id,
            task,
            dial,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Dials `addr`, so the node under test is connected to this peer.
    pub fn connect(&self, addr: &Multiaddr) {
        let _ = self.dial.send(addr.clone());
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A peer that opens pack streams to a node by hand: to ask for what a real node would
/// not, or to ask and then never read.
pub struct StreamPeer {
    peer_id: PeerId,
    network: NetworkName,
    control: libp2p_stream::Control,
    task: tokio::task::JoinHandle<()>,
    dial: tokio::sync::mpsc::UnboundedSender<Multiaddr>,
}

impl StreamPeer {
    /// A peer of `network`, running in the background.
    pub fn spawn(network: &NetworkName) -> StreamPeer {
        let mut swarm = stream_swarm(network);
        let peer_id = *swarm.local_peer_id();
        let control = swarm.behaviour().stream.new_control();
        let (dial, mut dials) = tokio::sync::mpsc::unbounded_channel::<Multiaddr>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = swarm.select_next_some() => {}
                    Some(addr) = dials.recv() => {
                        let _ = swarm.dial(addr);
                    }
                }
            }
        });
        StreamPeer {
            peer_id,
            network: network.clone(),
            control,
            task,
            dial,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Dials `addr` (with `/p2p/<id>`).
    pub fn connect(&self, addr: &Multiaddr) {
        let _ = self.dial.send(addr.clone());
    }

    /// Opens a pack stream to `peer` and sends `request`; the answer is left unread.
    pub async fn request_pack(
        &self,
        peer: PeerId,
        request: &guts_protocol::wire::PackRequest,
    ) -> std::io::Result<libp2p::Stream> {
        use futures::AsyncWriteExt;
        let mut stream = self
            .control
            .clone()
            .open_stream(peer, guts_node::wire::pack_protocol(&self.network))
            .await
            .map_err(std::io::Error::other)?;
        stream
            .write_all(&frame(guts_protocol::wire::encode(request)))
            .await?;
        stream.flush().await?;
        Ok(stream)
    }

    /// Opens a pack stream to `peer` and writes exactly `bytes` on it (framing included,
    /// to lie about lengths); the stream is left open and unread.
    pub async fn raw_pack_stream(
        &self,
        peer: PeerId,
        bytes: &[u8],
    ) -> std::io::Result<libp2p::Stream> {
        let protocol = guts_node::wire::pack_protocol(&self.network);
        self.raw_stream(peer, protocol, bytes).await
    }

    /// Opens a stream of any `protocol` to `peer` and sends `bytes` on it: libp2p's own
    /// protocols spoken by hand.
    pub async fn raw_stream(
        &self,
        peer: PeerId,
        protocol: libp2p::StreamProtocol,
        bytes: &[u8],
    ) -> std::io::Result<libp2p::Stream> {
        use futures::AsyncWriteExt;
        let mut stream = self
            .control
            .clone()
            .open_stream(peer, protocol)
            .await
            .map_err(std::io::Error::other)?;
        stream.write_all(bytes).await?;
        stream.flush().await?;
        Ok(stream)
    }

    /// Takes the streams of `protocol` a node opens to this peer, reading and dropping
    /// what comes: some libp2p behaviours (gossipsub) listen to a peer only once their
    /// own outbound stream to it is taken.
    pub fn accept(&self, protocol: libp2p::StreamProtocol) {
        use futures::AsyncReadExt;
        let Ok(mut incoming) = self.control.clone().accept(protocol) else {
            return;
        };
        tokio::spawn(async move {
            while let Some((_, mut stream)) = incoming.next().await {
                tokio::spawn(async move {
                    let mut sink = vec![0u8; 1 << 14];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
    }

    /// Reads the answer header a node sends first on a pack stream.
    pub async fn read_pack_header(
        stream: &mut libp2p::Stream,
    ) -> std::io::Result<guts_protocol::wire::PackResponse> {
        use futures::AsyncReadExt;
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await?;
        let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).min(1 << 16)];
        stream.read_exact(&mut body).await?;
        guts_protocol::wire::decode(&body, 1 << 16).map_err(std::io::Error::other)
    }
}

impl Drop for StreamPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Identify and gossipsub on the network's announce topic: a peer that publishes
/// announcements of its own making.
#[derive(NetworkBehaviour)]
struct GossipBehaviour {
    identify: identify::Behaviour,
    gossipsub: libp2p::gossipsub::Behaviour,
}

/// A swarm with identify (as a node of `network` says it) and gossipsub (signed, strict,
/// a node's largest message), idle connections kept `idle`.
fn gossip_swarm(network: &NetworkName, idle: Duration) -> Swarm<GossipBehaviour> {
    use libp2p::gossipsub;
    tcp_swarm(idle, |key| {
        let config = gossipsub::ConfigBuilder::default()
            .protocol_id_prefix(network.gossipsub_protocol_prefix())
            .validation_mode(gossipsub::ValidationMode::Strict)
            .max_transmit_size(1 << 16)
            .build()
            .expect("gossipsub config");
        GossipBehaviour {
            identify: identify::Behaviour::new(
                identify::Config::new(network.identify_protocol_version(), key.public())
                    .with_agent_version("guts/0.1.0 (mdns-tag: guts)".into()),
            ),
            gossipsub: gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                config,
            )
            .expect("gossipsub"),
        }
    })
}

/// A peer that floods a node with announcements, running in the background.
pub struct Flooder {
    peer_id: PeerId,
    task: tokio::task::JoinHandle<()>,
    dial: tokio::sync::mpsc::UnboundedSender<Multiaddr>,
    published: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Flooder {
    /// Connects nowhere yet; once a peer subscribed to the announce topic is connected,
    /// publishes `messages` one after another as fast as gossipsub takes them.
    pub fn spawn(network: &NetworkName, messages: Vec<Vec<u8>>) -> Flooder {
        use libp2p::gossipsub;
        let topic = gossipsub::IdentTopic::new(network.announce_topic());
        let mut swarm = gossip_swarm(network, Duration::from_secs(120));
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .expect("subscribe");
        let peer_id = *swarm.local_peer_id();
        let published = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = published.clone();
        let (dial, mut dials) = tokio::sync::mpsc::unbounded_channel::<Multiaddr>();
        let task = tokio::spawn(async move {
            let mut queue = messages.into_iter().peekable();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tokio::select! {
                    _ = swarm.select_next_some() => {}
                    Some(addr) = dials.recv() => {
                        let _ = swarm.dial(addr);
                    }
                    _ = tick.tick() => {
                        // A batch per tick, so the swarm gets to send between batches.
                        for _ in 0..100 {
                            let Some(message) = queue.peek().cloned() else { break };
                            match swarm.behaviour_mut().gossipsub.publish(topic.clone(), message) {
                                Ok(_) => {
                                    queue.next();
                                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                                // No subscriber yet, or the queues are full: next tick.
                                Err(_) => break,
                            }
                        }
                    }
                }
            }
        });
        Flooder {
            peer_id,
            task,
            dial,
            published,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Dials `addr` (with `/p2p/<id>`).
    pub fn connect(&self, addr: &Multiaddr) {
        let _ = self.dial.send(addr.clone());
    }

    /// Messages published so far.
    pub fn published(&self) -> usize {
        self.published.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A peer subscribed to every topic nodes publish on (announce, shared, changes),
/// keeping each message it receives: what anyone on the network would hear.
pub struct GossipListener {
    task: tokio::task::JoinHandle<()>,
    dial: tokio::sync::mpsc::UnboundedSender<Multiaddr>,
    heard: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl GossipListener {
    /// Connects nowhere yet.
    pub fn spawn(network: &NetworkName) -> GossipListener {
        use libp2p::gossipsub;
        let mut swarm = gossip_swarm(network, Duration::from_secs(300));
        for topic in [
            network.announce_topic(),
            network.shared_announce_topic(),
            network.changes_topic(),
        ] {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&gossipsub::IdentTopic::new(topic))
                .expect("subscribe");
        }
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = heard.clone();
        let (dial, mut dials) = tokio::sync::mpsc::unbounded_channel::<Multiaddr>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    event = swarm.select_next_some() => {
                        if let SwarmEvent::Behaviour(GossipBehaviourEvent::Gossipsub(
                            gossipsub::Event::Message { message, .. },
                        )) = event
                        {
                            keep.lock().expect("heard").push(message.data);
                        }
                    }
                    Some(addr) = dials.recv() => {
                        let _ = swarm.dial(addr);
                    }
                }
            }
        });
        GossipListener { task, dial, heard }
    }

    /// Dials `addr` (with `/p2p/<id>`).
    pub fn connect(&self, addr: &Multiaddr) {
        let _ = self.dial.send(addr.clone());
    }

    /// Every message heard so far.
    pub fn heard(&self) -> Vec<Vec<u8>> {
        self.heard.lock().expect("heard").clone()
    }
}

impl Drop for GossipListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Identify and a Kademlia server on the network's DHT protocol: a peer a node puts in its
/// routing table, which dials and hangs up only when told.
#[derive(NetworkBehaviour)]
struct DhtBehaviour {
    identify: identify::Behaviour,
    kad: libp2p::kad::Behaviour<libp2p::kad::store::MemoryStore>,
}

enum DhtCommand {
    Dial(Multiaddr),
    Disconnect(PeerId),
}

/// A DHT server peer running in the background, counting the connections others open to it.
pub struct DhtPeer {
    peer_id: PeerId,
    task: tokio::task::JoinHandle<()>,
    commands: tokio::sync::mpsc::UnboundedSender<DhtCommand>,
    dialled_in: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    find_nodes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    provided: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl DhtPeer {
    /// A peer of `network`, listening on loopback.
    pub fn spawn(network: &NetworkName) -> DhtPeer {
        use libp2p::kad;
        let mut swarm = tcp_swarm(Duration::from_secs(300), |key| {
            let id = key.public().to_peer_id();
            let protocol = libp2p::StreamProtocol::try_from_owned(network.kad_protocol())
                .expect("kad protocol");
            // Answers queries, never starts one: with nobody in its routing table
            // it has no bootstrap to run that would dial the node it hung up on.
            let mut config = kad::Config::new(protocol);
            config.set_periodic_bootstrap_interval(None);
            config.set_kbucket_inserts(kad::BucketInserts::Manual);
            // Provider records come as events (kept in `provided`), not into a store.
            config.set_record_filtering(kad::StoreInserts::FilterBoth);
            let mut kad = kad::Behaviour::with_config(id, kad::store::MemoryStore::new(id), config);
            kad.set_mode(Some(kad::Mode::Server));
            DhtBehaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    network.identify_protocol_version(),
                    key.public(),
                )),
                kad,
            }
        });
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
            .expect("listen");
        let peer_id = *swarm.local_peer_id();
        let dialled_in = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let find_nodes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (count, asked) = (dialled_in.clone(), find_nodes.clone());
        let provided = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let records = provided.clone();
        let (commands, mut rx) = tokio::sync::mpsc::unbounded_channel::<DhtCommand>();
        let task = tokio::spawn(async move {
            use std::sync::atomic::Ordering::Relaxed;
            loop {
                tokio::select! {
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished { endpoint, .. }
                            if endpoint.is_listener() =>
                        {
                            count.fetch_add(1, Relaxed);
                        }
                        SwarmEvent::Behaviour(DhtBehaviourEvent::Kad(
                            kad::Event::InboundRequest {
                                request: kad::InboundRequest::FindNode { .. },
                            },
                        )) => {
                            asked.fetch_add(1, Relaxed);
                        }
                        SwarmEvent::Behaviour(DhtBehaviourEvent::Kad(
                            kad::Event::InboundRequest {
                                request: kad::InboundRequest::AddProvider { record: Some(record) },
                            },
                        )) => {
                            records.lock().expect("records").push(record.key.to_vec());
                        }
                        _ => {}
                    },
                    Some(command) = rx.recv() => match command {
                        DhtCommand::Dial(addr) => {
                            let _ = swarm.dial(addr);
                        }
                        DhtCommand::Disconnect(peer) => {
                            let _ = swarm.disconnect_peer_id(peer);
                        }
                    },
                }
            }
        });
        DhtPeer {
            peer_id,
            task,
            commands,
            dialled_in,
            find_nodes,
            provided,
        }
    }

    /// The keys others told this peer they provide (`ADD_PROVIDER`) so far.
    pub fn provided_keys(&self) -> Vec<Vec<u8>> {
        self.provided.lock().expect("records").clone()
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Dials `addr` (with `/p2p/<id>`).
    pub fn connect(&self, addr: &Multiaddr) {
        let _ = self.commands.send(DhtCommand::Dial(addr.clone()));
    }

    /// Closes every connection to `peer`.
    pub fn disconnect(&self, peer: PeerId) {
        let _ = self.commands.send(DhtCommand::Disconnect(peer));
    }

    /// Connections others have opened to this peer so far.
    pub fn dialled_in(&self) -> usize {
        self.dialled_in.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// DHT lookups (`FIND_NODE`) others have sent this peer so far.
    pub fn find_node_requests(&self) -> usize {
        self.find_nodes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for DhtPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
