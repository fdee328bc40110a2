//! Starting a node and talking to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::api::types::{PeerReport, StatusReport};
use crate::config::Config;
use crate::error::NodeError;
use crate::event_loop::{Command, EventLoop};
use crate::metrics::Metrics;
use crate::{api, swarm};

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    handle: NodeHandle,
    event_loop: JoinHandle<()>,
    api: Option<api::Server>,
}

/// A cheap, cloneable way to drive a running node.
#[derive(Clone)]
pub struct NodeHandle {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    connect_timeout: Duration,
}

impl Node {
    /// Validates `config`, opens the data dir, binds every listen address and the control
    /// API, and starts the node. Returns once the listen addresses are known.
    pub async fn start(config: Config) -> Result<Node, NodeError> {
        config.validate()?;
        let data_dir = guts_storage::DataDir::open(&config.data_dir)?;
        let identity = data_dir.identity()?;
        let keypair = crate::identity::keypair(&identity)?;
        let peer_id = keypair.public().to_peer_id();
        if identity.was_created() {
            tracing::info!(
                "created a new identity in {}: peer id {peer_id}",
                data_dir.path().display()
            );
        }

        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let swarm = swarm::build(keypair, &config, &mut registry, metrics.manager.clone())?;
        let (tx, rx) = mpsc::channel(64);
        let handle = NodeHandle {
            peer_id,
            commands: tx,
            // Dials may wait in the connection manager's queue before they start.
            connect_timeout: config.connection_timeout + Duration::from_secs(30),
        };

        let mut event_loop =
            EventLoop::new(swarm, config.clone(), rx, metrics, data_dir.repositories());
        event_loop.start_listening().await?;
        let api = match config.api {
            Some(addr) => Some(api::Server::start(addr, handle.clone(), Arc::new(registry)).await?),
            None => None,
        };
        tracing::info!(
            network = %config.network,
            "guts node {} started: peer id {peer_id}",
            env!("CARGO_PKG_VERSION")
        );
        let event_loop = tokio::spawn(async move {
            // The data dir stays locked for as long as the node runs.
            let _data_dir = data_dir;
            event_loop.run().await;
        });
        Ok(Node {
            handle,
            event_loop,
            api,
        })
    }

    /// A handle to drive the node.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.handle.peer_id
    }

    /// Where the control API listens, if it is on.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|a| a.local_addr())
    }

    /// Stops the API and the event loop, closing every connection and releasing the data
    /// dir.
    pub async fn shutdown(self) {
        if let Some(api) = self.api {
            api.shutdown().await;
        }
        let _ = self.handle.commands.send(Command::Shutdown).await;
        let _ = self.event_loop.await;
    }
}

impl NodeHandle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// The node's status.
    pub async fn status(&self) -> Result<StatusReport, NodeError> {
        self.ask(Command::Status).await
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerReport>, NodeError> {
        self.ask(Command::Peers).await
    }

    /// The peers in the Kademlia routing table.
    pub async fn routing_table(&self) -> Result<Vec<PeerId>, NodeError> {
        self.ask(Command::RoutingTable).await
    }

    /// Dials `addr` (with or without `/p2p/<peer-id>`) and waits until the peer is
    /// connected and identified as a node of our network. The peer is then protected:
    /// kept connected however idle.
    pub async fn connect(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        let wait = self.ask(|reply| Command::Connect {
            addr: addr.clone(),
            reply,
        });
        match tokio::time::timeout(self.connect_timeout, wait).await {
            Ok(result) => result?,
            Err(_) => Err(NodeError::Dial {
                addr,
                reason: format!("no answer within {}s", self.connect_timeout.as_secs()),
            }),
        }
    }
}
