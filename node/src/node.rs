//! Starting and stopping a node: open the data dir, build the swarm, wire the event loop
//! to the sync side and the API, and take it all down again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api;
use crate::author::Author;
use crate::config::Config;
use crate::error::NodeError;
use crate::handle::NodeHandle;
use crate::metrics::Metrics;
use crate::network::{self, Client, EventLoop};
use crate::store::Store;
use crate::sync::{Engine, Me, Quota, Server};

/// Commands queued for the event loop before senders wait.
const COMMAND_QUEUE: usize = 256;
/// Events queued for the sync side before the event loop turns new ones away.
const EVENT_QUEUE: usize = 256;
/// How long a shutdown waits for writes under way before it leaves the store to the
/// next start's crash recovery (within the binary's 5 s grace).
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    handle: NodeHandle,
    client: Client,
    event_loop: JoinHandle<()>,
    /// The sync side's long-running tasks: the event router and the pack server.
    serving: Vec<JoinHandle<()>>,
    api: Option<api::Server>,
    http: Option<crate::http::Server>,
    /// Tells the sync engine's background tasks to stop.
    stop_engine: watch::Sender<bool>,
    store: Store,
    /// Locked until the store is closed, so no other node opens it in between.
    data_dir: Arc<guts_storage::DataDir>,
}

impl Node {
    /// Validates `config`, opens the data dir, binds every listen address and the control
    /// API, and starts the node. Returns once the listen addresses are known.
    pub async fn start(config: Config) -> Result<Node, NodeError> {
        config.validate()?;
        let data_dir = if config.data_slots {
            let dir = guts_storage::DataDir::claim_slot(&config.data_dir)?;
            tracing::info!(
                "data dir {} (a slot of the shared data dir)",
                dir.path().display()
            );
            dir
        } else {
            guts_storage::DataDir::open(&config.data_dir)?
        };
        let identity = data_dir.identity()?;
        let keypair = crate::identity::keypair(&identity)?;
        let peer_id = keypair.public().to_peer_id();
        if identity.was_created() {
            tracing::info!(
                "created a new identity in {}: peer id {peer_id}",
                data_dir.path().display()
            );
        }
        // A crash may have left a transfer half done: back to the last verified state
        // before anything reads the store.
        let policies = crate::seeding::Policies::load(
            &data_dir.path().join(crate::seeding::POLICY_FILE),
            config.replication.change_policy(),
        )?;
        let repos = data_dir
            .repositories()
            .with_limits(config.replication.storage_limits())
            .with_policy(policies.changes())
            .with_reader(identity.signing_key().clone());
        // The cheap part now; after a crash, the walk of every repository goes on in the
        // background (a write to one not reached yet recovers it first).
        let recovered = Store::new(repos.clone())
            .run(|r| r.recover_start())
            .await??;
        report_recovery(&recovered);

        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let ledger = crate::sync::Ledger::new(metrics.equivocations.clone());
        let store = {
            let ledger = ledger.clone();
            Store::new(repos.with_seen_elsewhere(move |id| ledger.newest_seen(id)))
        };
        let swarm = network::build_swarm(keypair, &config, &mut registry, metrics.manager.clone())?;
        let mut control = swarm.behaviour().stream.new_control();
        let incoming_packs = control
            .accept(crate::wire::pack_protocol(&config.network))
            .map_err(|e| NodeError::Setup(format!("pack protocol: {e}")))?;
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let client = Client::new(commands_tx);
        let key = identity.signing_key().clone();
        let quota = Arc::new(Quota::new(
            *key.verifying_key().as_bytes(),
            config.replication.max_storage.as_u64(),
            config.replication.storage_per_owner(),
        ));
        if recovered.after_crash {
            store.spawn(|repos| match repos.recover_pending() {
                Ok(walked) => {
                    report_recovery(&walked);
                    tracing::info!(
                        "the store was not closed cleanly last time: checked every repository"
                    );
                }
                Err(e) => tracing::error!("recovering the store: {e}"),
            });
        }
        {
            // Measured after start: fetches of replicas wait for it, nothing else does.
            let quota = quota.clone();
            store.spawn(move |repos| quota.load(repos));
        }
        let engine = Engine::new(
            &config,
            store.clone(),
            client.clone(),
            control,
            Me {
                peer: peer_id,
                key: key.clone(),
            },
            crate::sync::Accounts {
                transfers: metrics.transfers.clone(),
                quota,
                ledger,
            },
            policies,
        );
        let collab = crate::collab::Collab::new(
            store.clone(),
            key.clone(),
            client.clone(),
            engine.policies().clone(),
        );
        let author = Author::new(store.clone(), key, client.clone());
        let server = Server {
            store: store.clone(),
            client: client.clone(),
            engine: engine.clone(),
            metrics: metrics.transfers.clone(),
            stall: config.replication.transfer_stall_timeout,
            floor: crate::sync::RateFloor::of(&config),
            owners: crate::sync::owner_limiter(config.replication.owner_announcements_per_minute),
            announcements: metrics.announcements.clone(),
        };
        let handle = NodeHandle {
            peer_id,
            client: client.clone(),
            engine: engine.clone(),
            author,
            collab,
            store: store.clone(),
            data_dir: data_dir.path().to_owned(),
            mirrors: crate::mirrors::list::Mirrors::load(
                &data_dir.path().join(crate::mirrors::list::MIRRORS_FILE),
                &identity.signing_key().verifying_key(),
            )?,
            // Dials may wait in the connection manager's queue before they start.
            connect_timeout: config.net.connection_timeout + Duration::from_secs(30),
        };

        let mut event_loop = EventLoop::new(swarm, config.clone(), commands, events_tx, metrics);
        event_loop.start_listening().await?;
        let api = match config.api {
            Some(addr) => Some(
                api::Server::start(addr, data_dir.path(), handle.clone(), Arc::new(registry))
                    .await?,
            ),
            None => None,
        };
        let http = match config.http {
            Some(addr) => Some(
                crate::http::Server::start(
                    addr,
                    handle.clone(),
                    store.clone(),
                    config.replication.max_concurrent_transfers as usize,
                    api.as_ref()
                        .filter(|_| config.http_push)
                        .map(|api| api.token().clone()),
                )
                .await?,
            ),
            None => None,
        };
        tracing::info!(
            network = %config.network,
            "guts node {} started: peer id {peer_id}",
            env!("CARGO_PKG_VERSION")
        );
        let data_dir = Arc::new(data_dir);
        let event_loop = tokio::spawn({
            // The data dir stays locked for as long as the node runs, even if `Node`
            // is dropped without a shutdown.
            let data_dir = data_dir.clone();
            async move {
                let _data_dir = data_dir;
                event_loop.run().await;
            }
        });
        let serving = vec![
            tokio::spawn(server.clone().route(events)),
            tokio::spawn(server.serve_packs(
                incoming_packs,
                config.replication.max_concurrent_transfers as usize,
                config.replication.max_streams_per_peer as usize,
            )),
        ];
        let (stop_engine, stopped) = watch::channel(false);
        engine.start(config.replication.anti_entropy_interval, stopped);
        crate::mirrors::fetch::start(handle.clone(), stop_engine.subscribe());
        Ok(Node {
            handle,
            client,
            event_loop,
            serving,
            api,
            http,
            stop_engine,
            store,
            data_dir,
        })
    }

    /// A handle to drive the node.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.handle.peer_id()
    }

    /// Where the control API listens, if it is on.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|a| a.local_addr())
    }

    /// Where git over HTTP is served, if it is on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.local_addr())
    }

    /// Stops the API and the event loop, closing every connection and releasing the data
    /// dir.
    pub async fn shutdown(self) {
        if let Some(api) = self.api {
            api.shutdown().await;
        }
        if let Some(http) = self.http {
            http.shutdown().await;
        }
        let _ = self.stop_engine.send(true);
        for task in &self.serving {
            task.abort();
        }
        self.client.shutdown().await;
        let _ = self.event_loop.await;
        match self.store.run(|r| r.close(CLOSE_WAIT)).await {
            Ok(Ok(true)) => tracing::debug!("store closed cleanly"),
            Ok(Ok(false)) => tracing::warn!(
                "writes were still under way at shutdown; the next start checks every repository"
            ),
            Ok(Err(e)) => tracing::warn!("closing the store: {e}"),
            Err(e) => tracing::warn!("closing the store: {e}"),
        }
        drop(self.data_dir);
    }
}

/// Logs what crash recovery did: set-aside repositories loudly (the node runs without
/// them until they are fetched again or restored), the rest quietly.
fn report_recovery(r: &guts_storage::Recovered) {
    if r.after_crash {
        tracing::info!(
            "the store was not closed cleanly last time: checking every repository in the background"
        );
    }
    for (id, path, why) in &r.set_aside {
        tracing::error!(
            "repository {id} could not be recovered ({why}); moved to {} so the node can start, \
             and fetched again if it is followed",
            path.display()
        );
    }
    for id in &r.incomplete {
        tracing::warn!("removed repository {id}: a crash left it without a verified snapshot");
    }
    for lock in &r.stale_locks {
        tracing::warn!("removed stale lock file {} left by a crash", lock.display());
    }
}
