//! Discovery through the DHT, and isolation between networks, with in-process nodes.

use std::time::Duration;

use guts_tests::cluster::{TestNode, import, star};
use guts_tests::eventually_async;

/// 30 nodes, each told only node 0's address, fill their routing tables from the DHT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_bootstrapped_from_one_find_each_other() {
    let nodes = star(30, |_| {}).await;
    eventually_async(
        Duration::from_secs(90),
        "every node to hold at least 10 peers in its routing table",
        || async {
            let mut sizes = Vec::new();
            for n in &nodes {
                sizes.push(
                    n.handle
                        .routing_table()
                        .await
                        .map_err(|e| e.to_string())?
                        .len(),
                );
            }
            if sizes.iter().all(|s| *s >= 10) {
                Ok(())
            } else {
                Err(format!("routing table sizes {sizes:?}"))
            }
        },
    )
    .await;
    // The tables hold real members of the cluster, not just counts.
    let members: Vec<_> = nodes.iter().map(|n| n.handle.peer_id()).collect();
    for n in &nodes {
        for peer in n.handle.routing_table().await.unwrap() {
            assert!(
                members.contains(&peer),
                "unknown peer {peer} in a routing table"
            );
            assert_ne!(peer, n.handle.peer_id(), "a node lists itself");
        }
    }
    for n in nodes {
        n.shutdown().await;
    }
}

/// A node of another network that dials in is identified and dropped: it never enters a
/// routing table or the peer list, while a node of the same network does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_different_networks_never_connect_at_the_protocol_level() {
    let alpha = TestNode::start(|c| c.network = "alpha".parse().unwrap()).await;
    let boot = alpha.addr.clone();
    let beta = TestNode::start(|c| {
        c.network = "beta".parse().unwrap();
        c.net.bootstrap = vec![boot.clone()];
    })
    .await;
    let alpha2 = TestNode::start(|c| {
        c.network = "alpha".parse().unwrap();
        c.net.bootstrap = vec![boot.clone()];
    })
    .await;

    // The beta node reaches alpha, learns it is on another network, and gives up on it.
    let state = eventually_async(
        Duration::from_secs(20),
        "beta to give up on alpha",
        || async {
            let status = beta.handle.status().await.map_err(|e| e.to_string())?;
            let state = status.bootstrap[0].state.clone();
            if state.starts_with("other network") {
                Ok(state)
            } else {
                Err(state)
            }
        },
    )
    .await;
    assert!(state.contains("/guts/alpha/"), "{state}");

    // Same-network control: alpha2 is accepted and lands in alpha's routing table.
    let alpha2_id = alpha2.handle.peer_id();
    eventually_async(
        Duration::from_secs(20),
        "alpha2 in alpha's routing table",
        || async {
            let table = alpha
                .handle
                .routing_table()
                .await
                .map_err(|e| e.to_string())?;
            table
                .contains(&alpha2_id)
                .then_some(())
                .ok_or(format!("{table:?}"))
        },
    )
    .await;

    // And beta is in neither direction, and not connected.
    eventually_async(
        Duration::from_secs(10),
        "beta and alpha disconnected",
        || async {
            let alpha_peers = alpha.handle.peers().await.map_err(|e| e.to_string())?;
            let beta_peers = beta.handle.peers().await.map_err(|e| e.to_string())?;
            let beta_id = beta.handle.peer_id().to_string();
            if alpha_peers.iter().any(|p| p.peer_id == beta_id) || !beta_peers.is_empty() {
                Err(format!(
                    "alpha peers {alpha_peers:?}, beta peers {beta_peers:?}"
                ))
            } else {
                Ok(())
            }
        },
    )
    .await;
    assert!(
        !alpha
            .handle
            .routing_table()
            .await
            .unwrap()
            .contains(&beta.handle.peer_id())
    );
    assert!(beta.handle.routing_table().await.unwrap().is_empty());

    for n in [alpha, beta, alpha2] {
        n.shutdown().await;
    }
}

/// A node in `dht_mode = client` queries the DHT but answers none, so servers keep it
/// out of their routing tables (asking it would only time out), while it finds servers
/// through them. Two servers and a client all bootstrap from a first server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_clients_find_servers_and_stay_out_of_routing_tables() {
    use guts_node::config::DhtMode;
    let hub = TestNode::start(|_| {}).await;
    let boot = hub.addr.clone();
    let server = TestNode::start(|c| c.net.bootstrap = vec![boot.clone()]).await;
    let client = TestNode::start(|c| {
        c.net.bootstrap = vec![boot.clone()];
        c.net.dht_mode = DhtMode::Client;
    })
    .await;
    let (hub_id, server_id, client_id) = (
        hub.handle.peer_id(),
        server.handle.peer_id(),
        client.handle.peer_id(),
    );
    eventually_async(
        Duration::from_secs(30),
        "the client to know both servers, and each server the other",
        || async {
            let of_client = client
                .handle
                .routing_table()
                .await
                .map_err(|e| e.to_string())?;
            let of_hub = hub
                .handle
                .routing_table()
                .await
                .map_err(|e| e.to_string())?;
            let of_server = server
                .handle
                .routing_table()
                .await
                .map_err(|e| e.to_string())?;
            if of_client.contains(&hub_id)
                && of_client.contains(&server_id)
                && of_hub.contains(&server_id)
                && of_server.contains(&hub_id)
            {
                Ok(())
            } else {
                Err(format!(
                    "client {of_client:?}, hub {of_hub:?}, server {of_server:?}"
                ))
            }
        },
    )
    .await;
    // The hub is connected to the client (its bootstrap) yet never lists it.
    let peers = hub.handle.peers().await.unwrap();
    assert!(peers.iter().any(|p| p.peer_id == client_id.to_string()));
    for n in [&hub, &server] {
        let table = n.handle.routing_table().await.unwrap();
        assert!(!table.contains(&client_id), "a DHT client in {table:?}");
    }
    assert_eq!(client.handle.status().await.unwrap().dht_mode, "client");
    for n in [hub, server, client] {
        n.shutdown().await;
    }
}

/// A loopback TCP address on a port free a moment ago, for a node that must know its
/// own address before it starts.
fn loopback_tcp() -> guts_node::Multiaddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("/ip4/127.0.0.1/tcp/{port}")
        .parse()
        .expect("multiaddr")
}

/// `dht_mode = auto` answers no query until an external address is confirmed: a node
/// told none stays out of a server's routing table, one told its address
/// (`external_addresses`) turns server and is listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_mode_auto_turns_server_once_an_external_address_is_confirmed() {
    use guts_node::config::DhtMode;
    let hub = TestNode::start(|_| {}).await;
    let boot = hub.addr.clone();
    let unconfirmed = TestNode::start(|c| {
        c.net.bootstrap = vec![boot.clone()];
        c.net.dht_mode = DhtMode::Auto;
    })
    .await;
    let public = loopback_tcp();
    let confirmed = TestNode::start(|c| {
        c.net.bootstrap = vec![boot.clone()];
        c.net.dht_mode = DhtMode::Auto;
        c.net.listen = vec![public.clone()];
        c.net.external_addresses = vec![public.clone()];
    })
    .await;
    let (unconfirmed_id, confirmed_id) = (unconfirmed.handle.peer_id(), confirmed.handle.peer_id());
    eventually_async(
        Duration::from_secs(30),
        "the hub to list the node with a confirmed address",
        || async {
            let table = hub
                .handle
                .routing_table()
                .await
                .map_err(|e| e.to_string())?;
            if table.contains(&confirmed_id) {
                Ok(())
            } else {
                Err(format!("hub {table:?}"))
            }
        },
    )
    .await;
    assert_eq!(confirmed.handle.status().await.unwrap().dht_mode, "server");
    assert_eq!(
        unconfirmed.handle.status().await.unwrap().dht_mode,
        "client"
    );
    let peers = hub.handle.peers().await.unwrap();
    assert!(
        peers
            .iter()
            .any(|p| p.peer_id == unconfirmed_id.to_string())
    );
    let table = hub.handle.routing_table().await.unwrap();
    assert!(
        !table.contains(&unconfirmed_id),
        "a DHT client in {table:?}"
    );
    for n in [hub, unconfirmed, confirmed] {
        n.shutdown().await;
    }
}

/// A relay server (`relay_server`) lets a node listen through it
/// (`<relay>/p2p-circuit`: a reservation the node asks for once it runs), another node
/// reach that one by its circuit address, hole punching (DCUtR) add a direct connection
/// beside the relayed one, and a repository replicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_listening_through_a_relay_is_reached_and_replicated_from() {
    use guts_tests::git::WorkRepo;
    let public = loopback_tcp();
    let relay = TestNode::start(|c| {
        c.net.relay_server = true;
        c.net.listen = vec![public.clone()];
        c.net.external_addresses = vec![public.clone()];
    })
    .await;
    let circuit: guts_node::Multiaddr = format!("{}/p2p-circuit", relay.addr)
        .parse()
        .expect("multiaddr");
    let behind = TestNode::start(|c| c.net.listen = vec![loopback_tcp(), circuit.clone()]).await;
    let behind_id = behind.handle.peer_id();
    let via_relay: guts_node::Multiaddr = format!("{circuit}/p2p/{behind_id}")
        .parse()
        .expect("multiaddr");
    eventually_async(
        Duration::from_secs(30),
        "a reservation on the relay",
        || async {
            let status = behind.handle.status().await.map_err(|e| e.to_string())?;
            let active = status
                .reservations
                .iter()
                .any(|r| r.state == "active" && !r.automatic);
            let listening = status
                .listen_addresses
                .iter()
                .any(|a| a.contains("/p2p-circuit"));
            if active && listening {
                Ok(())
            } else {
                Err(format!(
                    "reservations {:?}, listening on {:?}",
                    status.reservations, status.listen_addresses
                ))
            }
        },
    )
    .await;
    let work = WorkRepo::with_history("relayed");
    let id = import(&behind.handle, work.path()).await;

    // Dialled by its circuit address alone: the connection goes through the relay.
    let reacher = TestNode::start(|_| {}).await;
    assert_eq!(reacher.handle.connect(via_relay).await.unwrap(), behind_id);
    eventually_async(
        Duration::from_secs(30),
        "hole punching to add a direct connection",
        || async {
            let peers = reacher.handle.peers().await.map_err(|e| e.to_string())?;
            match peers.iter().find(|p| p.peer_id == behind_id.to_string()) {
                Some(p) if !p.relayed => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    reacher.handle.follow(id).await.unwrap();
    reacher
        .handle
        .sync(id, Some(behind_id), None)
        .await
        .unwrap();
    let held = reacher.handle.repository(id).await.unwrap().expect("held");
    let source = behind.handle.repository(id).await.unwrap().expect("held");
    assert!(!source.refs.is_empty());
    assert_eq!(held.refs, source.refs);
    for n in [reacher, behind, relay] {
        n.shutdown().await;
    }
}
