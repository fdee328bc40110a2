//! `guts node` processes on loopback, driven through the `guts` CLI.

use std::time::Duration;

use guts_tests::eventually;
use guts_tests::process::{GutsNode, NodeSpec, guts, http_get};

fn peer_ids(node: &GutsNode) -> Vec<String> {
    node.peers().into_iter().map(|p| p.peer_id).collect()
}

fn wait_connected(node: &GutsNode, others: &[&str]) {
    eventually(Duration::from_secs(30), "peers to connect", || {
        let ids = peer_ids(node);
        if others.iter().all(|o| ids.iter().any(|i| i == o)) {
            Ok(())
        } else {
            Err(format!("peers {ids:?}, want {others:?}"))
        }
    });
}

/// Three nodes, two bootstrapped from the first (one over TCP with its peer id, one over
/// QUIC without): each ends up seeing the other two, and a restarted node keeps its id.
#[test]
fn three_nodes_find_each_other_and_a_restart_keeps_the_peer_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (1..=3).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let n1 = NodeSpec::loopback(&dirs[0]).spawn();
    let tcp_boot = n1.tcp_addr();
    let quic_boot = n1.addr_with_prefix("/ip4/127.0.0.1/udp/");
    let quic_without_id = quic_boot.split("/p2p/").next().unwrap().to_owned();
    let n2_spec = NodeSpec::loopback(&dirs[1]).args(["--bootstrap", &tcp_boot]);
    let mut n2 = n2_spec.spawn();
    let n3 = NodeSpec::loopback(&dirs[2])
        .args(["--bootstrap", &quic_without_id])
        .spawn();

    let ids: Vec<String> = [&n1, &n2, &n3].iter().map(|n| n.status().peer_id).collect();
    wait_connected(&n1, &[&ids[1], &ids[2]]);
    wait_connected(&n2, &[&ids[0], &ids[2]]);
    wait_connected(&n3, &[&ids[0], &ids[1]]);

    let status = n3.status();
    assert!(status.connected_peers >= 2, "{status:?}");
    assert!(status.routing_table_size >= 2, "{status:?}");
    assert_eq!(status.bootstrap.len(), 1);
    assert_eq!(status.bootstrap[0].state, "connected");
    assert_eq!(
        status.bootstrap[0].peer_id.as_deref(),
        Some(ids[0].as_str())
    );
    // n3 reached n1 over QUIC; the peer report says so.
    let n1_seen_by_n3 = n3
        .peers()
        .into_iter()
        .find(|p| p.peer_id == ids[0])
        .unwrap();
    assert!(
        n1_seen_by_n3
            .addresses
            .iter()
            .any(|a| a.contains("/quic-v1")),
        "{n1_seen_by_n3:?}"
    );
    assert!(n1_seen_by_n3.protected, "bootstrap peers are protected");
    assert!(
        n1_seen_by_n3
            .agent_version
            .as_deref()
            .unwrap_or("")
            .starts_with("guts/")
    );
    assert_eq!(
        n1_seen_by_n3.protocol_version.as_deref(),
        Some("/guts/guts/1.0.0")
    );

    // A clean SIGINT stop, then the same data dir gives the same peer id.
    let (exit, took) = n2.stop_with("INT", Duration::from_secs(5));
    assert!(exit.success(), "exit {exit}:\n{}", n2.log_text());
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let offline = guts(&["id", "--data-dir", dirs[1].to_str().unwrap()]);
    assert!(offline.status.success());
    assert_eq!(String::from_utf8_lossy(&offline.stdout).trim(), ids[1]);
    let n2 = n2_spec.spawn();
    assert_eq!(n2.status().peer_id, ids[1]);
    wait_connected(&n2, &[&ids[0]]);
    wait_connected(&n1, &[&ids[1]]);
}

/// With `--log-format json` every log line is a JSON object, the status line included.
#[test]
fn json_logs_are_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeSpec::loopback(&tmp.path().join("n"))
        .args(["--log-format", "json"])
        .spawn();
    let status_line = eventually(Duration::from_secs(20), "a JSON status line", || {
        let log = node.log_text();
        for line in log.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("not JSON: {line:?}: {e}"))?;
            if v["message"] == "status" {
                return Ok(v);
            }
        }
        Err("no status line yet".into())
    });
    assert_eq!(status_line["connected_peers"], 0, "{status_line}");
    assert!(
        status_line["peer"].as_str().unwrap().contains('…'),
        "{status_line}"
    );
    assert_eq!(status_line["level"], "INFO");
    // Every line of a whole run, shutdown included, is one JSON object with a time, a
    // level and where it came from.
    let mut node = node;
    node.stop();
    let log = node.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() > 3, "{log}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
        for field in ["timestamp", "level", "target"] {
            assert!(v.get(field).is_some(), "no {field} in {line}");
        }
    }
    assert!(log.contains("shutting down"), "{log}");
}

/// The one-line text status log: every status interval, the peer and the counts.
#[test]
fn the_text_status_line_reports_peers_and_routing_table() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeSpec::loopback(&tmp.path().join("a")).spawn();
    let b = NodeSpec::loopback(&tmp.path().join("b"))
        .args(["--bootstrap", &a.tcp_addr()])
        .spawn();
    let a_id = a.status().peer_id;
    let short = format!("{}…{}", &a_id[..6], &a_id[a_id.len() - 6..]);
    eventually(
        Duration::from_secs(20),
        "a status line with one peer",
        || {
            let log = a.log_text();
            let line = log
                .lines()
                .rfind(|l| l.contains("guts::status") && l.contains(" status "))
                .ok_or("no status line yet")?
                .to_owned();
            if line.contains(&format!("peer={short}"))
                && line.contains("connected_peers=1")
                && line.contains("routing_table=1")
            {
                Ok(())
            } else {
                Err(line)
            }
        },
    );
    drop(b);
}

/// `guts connect` dials a peer and keeps it; the text and JSON outputs agree; health and
/// metrics answer.
#[test]
fn connect_status_health_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeSpec::loopback(&tmp.path().join("a")).spawn();
    let b = NodeSpec::loopback(&tmp.path().join("b")).spawn();
    let a_id = a.status().peer_id;

    let out = b.client(["connect", &a.tcp_addr()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("connected to {a_id}")
    );
    let seen = b
        .peers()
        .into_iter()
        .find(|p| p.peer_id == a_id)
        .expect("a in b's peers");
    assert!(seen.protected, "peers added by guts connect are protected");

    // Text output carries the same facts.
    let text = String::from_utf8_lossy(&b.client(["peers"]).stdout).into_owned();
    assert!(text.contains(&format!("{a_id}*")), "{text}");
    let text = String::from_utf8_lossy(&b.client(["status"]).stdout).into_owned();
    assert!(text.contains("1 connected"), "{text}");

    // Connecting to a closed port fails with the address in the message.
    let out = b.client(["connect", "/ip4/127.0.0.1/tcp/1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/ip4/127.0.0.1/tcp/1"), "{err}");

    let (code, body) = http_get(b.api(), "/health").unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = http_get(b.api(), "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("guts_connected_peers 1"), "{body}");
    // Every metric docs/configuration.md lists is exported, with its type.
    for name in [
        "connected_peers",
        "routing_table_size",
        "bootstrap_dials",
        "peers_rejected",
        "announcements",
        "equivocations",
        "fetched_packs",
        "fetched_objects",
        "fetched_bytes",
        "served_packs",
        "served_bytes",
        "connections",
        "connections_denied",
        "connections_trimmed",
        "dials_queued",
        "dials_in_flight",
        "dials_started",
        "dials_failed",
        "penalties",
        "bans",
        "banned_peers",
    ] {
        assert!(
            body.contains(&format!("# TYPE guts_{name} ")),
            "guts_{name} is not exported:\n{body}"
        );
    }
    assert!(
        body.contains("libp2p_identify_"),
        "libp2p's own metrics are exported"
    );
    let (code, _) = http_get(b.api(), "/nope").unwrap();
    assert_eq!(code, 401, "unknown paths need the token too");
}

/// `--external-address` is what a node tells others it can be reached at: it shows in
/// its status, and a peer that identified it lists it among the node's addresses.
#[test]
fn an_external_address_is_announced_to_peers() {
    const EXTERNAL: &str = "/ip4/198.51.100.7/tcp/4001";
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeSpec::loopback(&tmp.path().join("a"))
        .args(["--external-address", EXTERNAL])
        .spawn();
    let a_id = a.status().peer_id;
    assert!(
        a.status().external_addresses.iter().any(|x| x == EXTERNAL),
        "{:?}",
        a.status().external_addresses
    );
    let b = NodeSpec::loopback(&tmp.path().join("b"))
        .args(["--bootstrap", &a.tcp_addr()])
        .spawn();
    eventually(Duration::from_secs(30), "b to learn a's addresses", || {
        let told = b
            .peers()
            .into_iter()
            .find(|p| p.peer_id == a_id)
            .map(|p| p.listen_addresses)
            .unwrap_or_default();
        if told.iter().any(|x| x == EXTERNAL) {
            Ok(())
        } else {
            Err(format!("a told b {told:?}"))
        }
    });
}

/// A bootstrap peer that goes away and comes back (same identity, same port) is dialled
/// again by the node that had it in its list, with no one asking: the redial after a
/// lost connection, in real processes. The restarted peer has no list of its own, so the
/// connection can only come from the node's side.
#[test]
fn a_bootstrap_peer_that_restarts_is_dialled_again() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut boot_spec = NodeSpec::loopback(&tmp.path().join("boot"));
    for arg in &mut boot_spec.args {
        if arg == "/ip4/127.0.0.1/tcp/0" {
            *arg = format!("/ip4/127.0.0.1/tcp/{port}");
        }
    }
    let mut boot = boot_spec.spawn();
    let boot_id = boot.status().peer_id;
    let node = NodeSpec::loopback(&tmp.path().join("node"))
        .args([
            "--bootstrap",
            &format!("/ip4/127.0.0.1/tcp/{port}/p2p/{boot_id}"),
        ])
        .spawn();
    let bootstrap_state = |node: &GutsNode| node.status().bootstrap[0].state.clone();
    eventually(
        Duration::from_secs(30),
        "the first connection",
        || match bootstrap_state(&node).as_str() {
            "connected" => Ok(()),
            other => Err(other.to_owned()),
        },
    );
    let dials = |node: &GutsNode| {
        node.log_text()
            .matches("connected to bootstrap peer")
            .count()
    };
    assert_eq!(dials(&node), 1);

    boot.stop();
    eventually(Duration::from_secs(30), "the loss to be noticed", || {
        if peer_ids(&node).contains(&boot_id) {
            Err("still connected".into())
        } else {
            Ok(())
        }
    });
    // Down for a while: the node's redials fail and back off.
    eventually(Duration::from_secs(30), "a failed redial", || {
        let state = bootstrap_state(&node);
        if state.starts_with("retrying in") && dials(&node) == 1 {
            Ok(())
        } else {
            Err(state)
        }
    });
    let boot = boot_spec.spawn();
    assert_eq!(boot.status().peer_id, boot_id);
    eventually(Duration::from_secs(60), "the node to dial it again", || {
        if dials(&node) == 2 && bootstrap_state(&node) == "connected" {
            Ok(())
        } else {
            Err(format!(
                "{} dials, {}",
                dials(&node),
                bootstrap_state(&node)
            ))
        }
    });
    wait_connected(&boot, &[&node.status().peer_id]);
}
