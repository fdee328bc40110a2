//! A bare libp2p peer that speaks Guts protocols directly, for tests that need a peer to
//! misbehave (flood, send garbage) in ways a real node never would.

use std::time::Duration;

use futures::StreamExt;
use guts_node::sync::Codec;
use guts_protocol::NetworkName;
use guts_protocol::wire::{SyncRequest, SyncResponse};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, identify, noise, tcp, yamux};

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
        let mut swarm = SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp transport")
            .with_behaviour(|key| RawBehaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    network.identify_protocol_version(),
                    key.public(),
                )),
                sync: guts_node::sync::behaviour(network, Duration::from_secs(10)),
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
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
