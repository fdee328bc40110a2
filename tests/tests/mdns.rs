//! mDNS discovery between hosts of a LAN made of network namespaces (needs root).

use std::time::Duration;

use guts_tests::eventually;
use guts_tests::netns::Lan;
use guts_tests::process::NodeSpec;

/// Two nodes on a LAN with no bootstrap list find each other by mDNS; a third with another
/// mDNS service tag is found too, but dropped once identify tells its tag.
#[test]
fn mdns_finds_lan_peers_and_respects_the_service_tag() {
    let lan = Lan::new(3);
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeSpec::on_lan(&lan, 0, &tmp.path().join("a")).spawn();
    let b = NodeSpec::on_lan(&lan, 1, &tmp.path().join("b")).spawn();
    let other = NodeSpec::on_lan(&lan, 2, &tmp.path().join("c"))
        .args(["--mdns-service-tag", "elsewhere"])
        .spawn();
    let (a_id, b_id, other_id) = (
        a.status().peer_id,
        b.status().peer_id,
        other.status().peer_id,
    );

    let seen = eventually(
        Duration::from_secs(30),
        "a and b to find each other by mDNS",
        || {
            let a_peers = a.peers();
            let b_peers = b.peers();
            let a_sees_b = a_peers.iter().find(|p| p.peer_id == b_id);
            let b_sees_a = b_peers.iter().any(|p| p.peer_id == a_id);
            match a_sees_b {
                Some(p) if b_sees_a => Ok(p.clone()),
                _ => Err(format!("a peers {a_peers:?}, b peers {b_peers:?}")),
            }
        },
    );
    // Over the LAN, from b's own address: not loopback, not a bootstrap list.
    let b_ip = lan.host_ip(1);
    assert!(
        seen.addresses
            .iter()
            .any(|addr| addr.contains(&format!("/ip4/{b_ip}/"))),
        "{seen:?}"
    );
    assert!(a.status().bootstrap.is_empty());

    // The node with another tag is found, identified and dropped, by whichever side
    // dialled because mDNS found the other.
    eventually(
        Duration::from_secs(30),
        "a and the node with another tag to drop each other",
        || {
            let tag_drop = |log: String, id: &str| {
                log.lines()
                    .any(|l| l.contains("another mDNS service tag") && l.contains(id))
            };
            let dropped = tag_drop(a.log_text(), &other_id) || tag_drop(other.log_text(), &a_id);
            let connected = a.peers().iter().any(|p| p.peer_id == other_id);
            if dropped && !connected {
                Ok(())
            } else {
                Err(format!(
                    "dropped logged: {dropped}, still connected: {connected}"
                ))
            }
        },
    );
    eventually(
        Duration::from_secs(10),
        "b to drop the node with another tag",
        || {
            if b.peers().iter().any(|p| p.peer_id == other_id) {
                Err("still connected".to_owned())
            } else {
                Ok(())
            }
        },
    );
}

/// A node with an allow-list keeps the listed LAN peer and refuses a stranger that found
/// it by mDNS, in both directions, while the stranger and the listed peer get on fine.
#[test]
fn an_allow_list_node_refuses_a_stranger_found_by_mdns() {
    let lan = Lan::new(3);
    let tmp = tempfile::tempdir().unwrap();
    let b_dir = tmp.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let out = guts_tests::process::guts(&["id", "--create", "--data-dir", b_dir.to_str().unwrap()]);
    assert!(out.status.success());
    let b_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let a = NodeSpec::on_lan(&lan, 0, &tmp.path().join("a"))
        .args(["--allow-peer", &b_id])
        .spawn();
    let b = NodeSpec::on_lan(&lan, 1, &b_dir).spawn();
    let c = NodeSpec::on_lan(&lan, 2, &tmp.path().join("c")).spawn();
    let (a_id, c_id) = (a.status().peer_id, c.status().peer_id);
    assert_eq!(b.status().peer_id, b_id);
    assert_eq!(a.status().allowed_peers, Some(1));
    assert_eq!(b.status().allowed_peers, None);

    let connected =
        |x: &guts_tests::process::GutsNode, id: &str| x.peers().iter().any(|p| p.peer_id == id);
    eventually(
        Duration::from_secs(30),
        "a to connect to b, and b to c",
        || {
            if connected(&a, &b_id) && connected(&b, &c_id) {
                Ok(())
            } else {
                Err(format!("a peers {:?}, b peers {:?}", a.peers(), b.peers()))
            }
        },
    );
    eventually(Duration::from_secs(30), "a to refuse c", || {
        let denied = a
            .status()
            .connections
            .denied
            .get("not_allowed")
            .copied()
            .unwrap_or(0);
        let logged = a
            .log_text()
            .lines()
            .any(|l| l.contains("not_allowed") && l.contains(&c_id));
        if denied > 0 && logged {
            Ok(())
        } else {
            Err(format!("{denied} denials, logged: {logged}"))
        }
    });
    assert!(!connected(&a, &c_id), "a admitted a stranger");
    assert!(!connected(&c, &a_id), "the stranger reached a");
    assert!(connected(&a, &b_id), "a kept the peer it allows");
}
