//! Nodes running inside the test process, on loopback.

use std::time::Duration;

use guts_node::{Config, Multiaddr, Node, NodeHandle};
use guts_protocol::RepositoryId;
use tempfile::TempDir;

/// An in-process node and the temporary data dir it owns.
pub struct TestNode {
    pub node: Node,
    pub handle: NodeHandle,
    /// A TCP loopback address other nodes can dial, with `/p2p/<id>`.
    pub addr: Multiaddr,
    dir: TempDir,
    config: Config,
}

/// A stopped test node: its data dir and config, ready to start again.
pub struct StoppedNode {
    dir: TempDir,
    config: Config,
}

impl StoppedNode {
    /// Starts the node again on the same data dir (same identity, same repositories).
    pub async fn start(self) -> TestNode {
        TestNode::from_config(self.dir, self.config).await
    }
}

/// Imports the git repository at `path` on `node`, as its owner; returns its id.
pub async fn import(node: &NodeHandle, path: &std::path::Path) -> RepositoryId {
    let (summary, _) = node.import(path.to_owned(), None).await.expect("import");
    summary.id.parse().expect("a repository id")
}

/// A config for a test node: loopback TCP on a free port, no mDNS, no API, short timers.
pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        api: None,
        status_interval: Duration::from_secs(3600),
        ..Config::default()
    };
    config.net.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")];
    config.net.mdns = false;
    config
}

impl TestNode {
    /// Starts a node; `tweak` adjusts the test config first.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(&dir);
        tweak(&mut config);
        TestNode::from_config(dir, config).await
    }

    async fn from_config(dir: TempDir, config: Config) -> TestNode {
        let node = Node::start(config.clone()).await.expect("node starts");
        let handle = node.handle();
        let status = handle.status().await.expect("status");
        let tcp = status
            .listen_addresses
            .iter()
            .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
            .expect("a loopback TCP listen address");
        let addr = format!("{tcp}/p2p/{}", status.peer_id)
            .parse()
            .expect("valid multiaddr");
        TestNode {
            node,
            handle,
            addr,
            dir,
            config,
        }
    }

    /// Waits until the node has at least `n` connected peers; panics after `within`.
    pub async fn wait_for_peers(&self, n: usize, within: Duration) {
        crate::eventually_async(within, &format!("{n} connected peers"), || async {
            let status = self.handle.status().await.map_err(|e| e.to_string())?;
            if status.connected_peers >= n {
                Ok(())
            } else {
                Err(format!("{} peers", status.connected_peers))
            }
        })
        .await;
    }

    pub async fn shutdown(self) {
        self.node.shutdown().await;
    }

    /// Stops the node, keeping its data dir for [`StoppedNode::start`].
    pub async fn stop(self) -> StoppedNode {
        self.node.shutdown().await;
        StoppedNode {
            dir: self.dir,
            config: self.config,
        }
    }

    /// The node's data dir.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Starts `n` nodes, each bootstrapped with the first node's address only.
pub async fn star(n: usize, tweak: impl Fn(&mut Config)) -> Vec<TestNode> {
    let first = TestNode::start(&tweak).await;
    let boot = first.addr.clone();
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(
            TestNode::start(|c| {
                tweak(c);
                c.net.bootstrap = vec![boot.clone()];
            })
            .await,
        );
    }
    nodes
}
