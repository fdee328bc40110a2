//! A stranger that asks the node's AutoNAT v2 server to "check" addresses that are not
//! its own: before, the node paid for the dial data, dialled a port of its own host (or
//! its LAN, or anyone) and reported whether something answered, a port scanner for hire.
//! Now it dials back only the host the asker is connected from.

use std::net::TcpListener;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
use guts_protocol::NetworkName;
use guts_tests::peer::tcp_swarm;
use guts_tests::process::NodeSpec;
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, SwarmEvent, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId, autonat, identify};

/// Hands the AutoNAT client the address the stranger wants probed, as if it had been
/// observed somewhere.
struct Plant(Option<Multiaddr>);

impl NetworkBehaviour for Plant {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.0.take() {
            Some(addr) => Poll::Ready(ToSwarm::NewExternalAddrCandidate(addr)),
            None => Poll::Pending,
        }
    }
}

#[derive(NetworkBehaviour)]
struct Prober {
    identify: identify::Behaviour,
    autonat: autonat::v2::client::Behaviour,
    plant: Plant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autonat_server_dials_back_only_the_asking_host() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeSpec::loopback(&tmp.path().join("a")).spawn();
    let a_addr: Multiaddr = a.tcp_addr().parse().unwrap();

    // A service on another address of the node's host (as a LAN neighbour would be),
    // which the stranger, connected from 127.0.0.1, wants to learn about.
    let victim = TcpListener::bind("127.0.0.3:0").unwrap();
    victim.set_nonblocking(true).unwrap();
    let target: Multiaddr = format!("/ip4/127.0.0.3/tcp/{}", victim.local_addr().unwrap().port())
        .parse()
        .unwrap();

    let network = NetworkName::default_network();
    let mut swarm = tcp_swarm(Duration::from_secs(300), |key| Prober {
        identify: identify::Behaviour::new(identify::Config::new(
            network.identify_protocol_version(),
            key.public(),
        )),
        // Probes every 5 s.
        autonat: autonat::v2::client::Behaviour::default(),
        plant: Plant(Some(target.clone())),
    });
    swarm.dial(a_addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let outcome = loop {
        let event = tokio::time::timeout_at(deadline.into(), swarm.select_next_some())
            .await
            .expect("an AutoNAT verdict on the planted address");
        match event {
            SwarmEvent::Behaviour(ProberEvent::Autonat(event)) if event.tested_addr == target => {
                break event.result;
            }
            _ => {}
        }
    };
    assert!(
        outcome.is_err(),
        "the node told a stranger that something answers on {target}"
    );
    assert!(
        victim.accept().is_err(),
        "the node dialled {target} on a stranger's word"
    );
}
