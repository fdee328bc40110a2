//! Nodes running inside the test process, on loopback.

use std::time::Duration;

use guts_node::{Config, Multiaddr, Node, NodeHandle};
use tempfile::TempDir;

/// An in-process node and the temporary data dir it owns.
pub struct TestNode {
    pub node: Node,
    pub handle: NodeHandle,
    /// A TCP loopback address other nodes can dial, with `/p2p/<id>`.
    pub addr: Multiaddr,
    _dir: TempDir,
}

/// A config for a test node: loopback TCP on a free port, no mDNS, no API, short timers.
pub fn test_config(dir: &TempDir) -> Config {
    Config {
        data_dir: dir.path().to_owned(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
        mdns: false,
        api: None,
        status_interval: Duration::from_secs(3600),
        ..Config::default()
    }
}

impl TestNode {
    /// Starts a node; `tweak` adjusts the test config first.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(&dir);
        tweak(&mut config);
        let node = Node::start(config).await.expect("node starts");
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
            _dir: dir,
        }
    }

    pub async fn shutdown(self) {
        self.node.shutdown().await;
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
                c.bootstrap = vec![boot.clone()];
            })
            .await,
        );
    }
    nodes
}
