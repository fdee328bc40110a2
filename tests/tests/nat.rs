//! Nodes behind real NAT (namespace routers doing iptables MASQUERADE; see
//! `guts_tests::nat`), reaching each other through a relay on the public side and then
//! directly by hole punching. Needs root.

use std::time::Duration;

use guts_node::api::types::{PeerReport, StatusReport};
use guts_tests::eventually;
use guts_tests::git::{WorkRepo, refs};
use guts_tests::nat::NatNet;
use guts_tests::nat_matrix::{active_reservation, data_relay, node};
use guts_tests::process::GutsNode;

fn status_of(node: &GutsNode) -> Result<StatusReport, String> {
    node.client_json("status")
}

/// Alice behind the first NAT and Bob behind the second, bootstrapped from `boot`.
fn behind_two_nats(net: &NatNet, dir: &std::path::Path, boot: &str) -> (GutsNode, GutsNode) {
    let args = ["--bootstrap", boot];
    (
        node(net.nat_host(0, 0), &dir.join("alice"), &args),
        node(net.nat_host(1, 0), &dir.join("bob"), &args),
    )
}

fn peer(node: &GutsNode, id: &str) -> Option<PeerReport> {
    node.peers().into_iter().find(|p| p.peer_id == id)
}

/// Two nodes behind two different NATs, with the built-in settings and only a relay on the
/// public side as bootstrap: each learns it is private (AutoNAT), reserves a slot on the
/// relay by itself, and the relay learns its public address without being told. One
/// reaches the other by its circuit address (both at once, so the circuits cross): first
/// through the relay, then directly once
/// DCUtR has punched through both NATs; and replicates a repository from it, directly.
#[test]
fn nodes_behind_two_nats_meet_through_a_relay_then_directly() {
    let net = NatNet::new(1, 2, 1);
    let tmp = tempfile::tempdir().unwrap();
    let relay = node(
        net.public_host(0),
        &tmp.path().join("relay"),
        &["--relay-server"],
    );
    let relay_id = relay.status().peer_id;
    let boot = format!("/ip4/{}/tcp/9000/p2p/{relay_id}", net.public_ip(0));
    let (alice, bob) = behind_two_nats(&net, tmp.path(), &boot);
    let (alice_id, bob_id) = (alice.status().peer_id, bob.status().peer_id);

    // Each node behind NAT finds out, and takes a slot on the relay by itself.
    let circuit = |n: &GutsNode, who: &str| {
        eventually(
            Duration::from_secs(60),
            &format!("{who} to be private with an active reservation of its own choosing"),
            || {
                let s = status_of(n)?;
                let active = s
                    .reservations
                    .iter()
                    .find(|r| r.automatic && r.state == "active");
                match active {
                    Some(r) if s.reachability == "private" => Ok(r.address.clone()),
                    _ => Err(format!(
                        "reachability {}, reservations {:?}",
                        s.reachability, s.reservations
                    )),
                }
            },
        )
    };
    let alice_circuit = circuit(&alice, "alice");
    let bob_circuit = circuit(&bob, "bob");
    // Bootstrapped over TCP, each also reaches the relay over QUIC: how it learns the
    // address its NAT gives QUIC, which hole punching needs as much as the TCP one.
    for (n, who) in [(&alice, "alice"), (&bob, "bob")] {
        eventually(
            Duration::from_secs(30),
            &format!("{who} to reach the relay over QUIC too"),
            || match peer(n, &relay_id) {
                Some(p) if p.addresses.iter().any(|a| a.contains("/quic-v1")) => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
    // The relay was told no address of its own: AutoNAT confirmed its public one.
    let relay_status = relay.status();
    assert_eq!(relay_status.reachability, "public", "{relay_status:?}");
    let relay_public = format!("/ip4/{}/", net.public_ip(0));
    assert!(
        relay_status
            .external_addresses
            .iter()
            .any(|a| a.starts_with(&relay_public)),
        "{relay_status:?}"
    );

    let work = WorkRepo::with_history("behind-nat");
    let id = alice.import(work.path()).id;

    // Each reaches the other by its circuit address, at once: through the relay, the two
    // circuits crossing. Both ends keep the same one, so both connects succeed...
    let to_alice = format!("{alice_circuit}/p2p/{alice_id}");
    let to_bob = format!("{bob_circuit}/p2p/{bob_id}");
    std::thread::scope(|s| {
        s.spawn(|| alice.client_ok(&["connect", &to_bob]));
        bob.client_ok(&["connect", &to_alice]);
    });
    // ... and then directly, through both NATs; the relayed connections close.
    let alice_router = format!("/ip4/{}/", net.router_public_ip(0));
    eventually(
        Duration::from_secs(60),
        "a direct connection from bob to alice (hole punched), and no relayed one",
        || match peer(&bob, &alice_id) {
            Some(p) if !p.relayed && p.addresses.iter().all(|a| a.starts_with(&alice_router)) => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        },
    );

    bob.client_ok(&["repo", "sync", &id, "--from", &alice_id]);
    let repos: Vec<guts_node::api::types::RepoSummary> = bob.client_json("repo list").unwrap();
    let copy = repos.iter().find(|r| r.id == id).expect("bob holds it");
    assert_eq!(refs(std::path::Path::new(&copy.path)), refs(work.path()));
    assert!(
        peer(&alice, &bob_id).is_some_and(|p| !p.relayed),
        "alice should see bob directly too"
    );
}

/// Two nodes behind symmetric NATs (a port per destination: hole punching cannot work),
/// with a relay whose operator lets circuits carry data. Hole punching is tried, then
/// tried again over a fresh circuit, and `guts peers` shows it; then a repository larger
/// than libp2p's default circuit limit (128 KiB) replicates through the relay, and
/// `guts repo sync` says so.
#[test]
fn nodes_that_cannot_punch_replicate_through_a_relay_that_carries_data() {
    let net = NatNet::new(1, 2, 1);
    net.set_symmetric(0, true);
    net.set_symmetric(1, true);
    let tmp = tempfile::tempdir().unwrap();
    let (relay, boot) = data_relay(
        net.public_host(0),
        &net.public_ip(0),
        &tmp.path().join("relay"),
    );
    let relay_id = relay.status().peer_id;
    let (alice, bob) = behind_two_nats(&net, tmp.path(), &boot);
    let (alice_id, bob_id) = (alice.status().peer_id, bob.status().peer_id);
    let wait = Duration::from_secs(60);
    let to_alice = format!("{}/p2p/{alice_id}", active_reservation(&alice, wait));
    let to_bob = format!("{}/p2p/{bob_id}", active_reservation(&bob, wait));

    let work = WorkRepo::with_history("symmetric");
    let mut noise = guts_tests::git::Noise::new(7);
    work.commit(
        "refs/heads/main",
        &[("blob.bin", noise.bytes(512 * 1024).as_slice())],
        "incompressible, past the default circuit limit",
    );
    let id = alice.import(work.path()).id;
    std::thread::scope(|s| {
        s.spawn(|| alice.client_ok(&["connect", &to_bob]));
        bob.client_ok(&["connect", &to_alice]);
    });

    // Punching is tried, and tried again, and never gets through.
    eventually(
        Duration::from_secs(60),
        "a second hole punching round, failed",
        || {
            let punch = [peer(&bob, &alice_id), peer(&alice, &bob_id)]
                .into_iter()
                .flatten()
                .filter_map(|p| p.hole_punch)
                .max_by_key(|h| h.rounds);
            match punch {
                Some(h) if h.rounds >= 2 && !h.punched => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    assert!(peer(&bob, &alice_id).is_some_and(|p| p.relayed));

    let out = bob.client(["repo", "sync", &id, "--from", &alice_id]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}\n{}", bob.log_text());
    assert!(
        said.contains(&format!("through relay {relay_id}")),
        "{said}"
    );
    let repos: Vec<guts_node::api::types::RepoSummary> = bob.client_json("repo list").unwrap();
    let copy = repos.iter().find(|r| r.id == id).expect("bob holds it");
    assert_eq!(refs(std::path::Path::new(&copy.path)), refs(work.path()));
    // The relay's operator sees what it carried, under which limits.
    let used = relay.status().relay.expect("relay use in status");
    assert_eq!(
        (used.circuit_bytes, used.circuit_secs),
        (0, 3600),
        "{used:?}"
    );
    assert!(
        used.reservations >= 2 && used.circuits_accepted >= 1,
        "{used:?}"
    );
    assert_eq!(used.circuits_cut, 0, "{used:?}");
}
