//! A bootstrap DNS name that resolves to several addresses, as Docker Swarm's
//! `tasks.<service>` and a Kubernetes headless Service do: hosts of a namespace LAN, the name
//! in the newcomer's own `/etc/hosts` (needs root).

use std::time::Duration;

use guts_node::api::types::BootstrapReport;
use guts_tests::eventually;
use guts_tests::netns::Lan;
use guts_tests::process::{GutsNode, NodeSpec};

const NAME: &str = "seeds.guts.test";

/// A node on host `i` listening on TCP port 9000 of every interface, mDNS off: seeds know
/// nothing of each other, so only the newcomer's own dials connect it to each.
fn seed(lan: &Lan, i: usize, dir: &std::path::Path) -> GutsNode {
    let mut spec = NodeSpec::on_lan(lan, i, &dir.join(format!("seed{i}")));
    spec.args = ["--listen", "/ip4/0.0.0.0/tcp/9000", "--mdns", "off"]
        .map(String::from)
        .to_vec();
    spec.spawn()
}

/// The newcomer's bootstrap entries that came from the name.
fn resolved(node: &GutsNode, name: &str) -> Vec<BootstrapReport> {
    node.status()
        .bootstrap
        .into_iter()
        .filter(|b| b.resolved_from.as_deref() == Some(name))
        .collect()
}

/// Every address the name resolves to is dialled and reached, not only the first; when a
/// task goes away and another takes its place under the name, the name is looked up again
/// as the lost address is retried: the new one is reached and the lost one forgotten.
#[test]
fn a_bootstrap_name_reaches_every_address_and_follows_the_name() {
    let lan = Lan::new(5);
    let tmp = tempfile::tempdir().unwrap();
    let ip = |i: usize| lan.host_ip(i);
    let mut seeds: Vec<GutsNode> = (1..=3).map(|i| seed(&lan, i, tmp.path())).collect();
    let ids: Vec<String> = seeds.iter().map(|s| s.status().peer_id).collect();
    lan.set_hosts(0, &[(NAME, vec![ip(1), ip(2), ip(3)])]);

    let name = format!("/dns4/{NAME}/tcp/9000");
    let mut spec = NodeSpec::on_lan(&lan, 0, &tmp.path().join("newcomer"));
    spec.args = [
        "--listen",
        "/ip4/0.0.0.0/tcp/0",
        "--mdns",
        "off",
        "--bootstrap",
    ]
    .map(String::from)
    .to_vec();
    spec.args.push(name.clone());
    let newcomer = spec.spawn();

    let want = |hosts: &[usize], ids: &[String]| -> Vec<(String, String)> {
        let mut want: Vec<(String, String)> = hosts
            .iter()
            .zip(ids)
            .map(|(h, id)| (format!("/ip4/{}/tcp/9000", ip(*h)), id.clone()))
            .collect();
        want.sort();
        want
    };
    let connected = |node: &GutsNode| -> Result<Vec<(String, String)>, String> {
        let entries = resolved(node, &name);
        let mut reached: Vec<(String, String)> = entries
            .iter()
            .filter(|b| b.state == "connected")
            .map(|b| (b.address.clone(), b.peer_id.clone().unwrap_or_default()))
            .collect();
        reached.sort();
        if reached.len() == entries.len() {
            Ok(reached)
        } else {
            Err(format!("not all connected: {entries:?}"))
        }
    };

    let expected = want(&[1, 2, 3], &ids);
    eventually(
        Duration::from_secs(30),
        "the newcomer to reach all three seeds by the name",
        || match connected(&newcomer) {
            Ok(reached) if reached == expected => Ok(()),
            Ok(reached) => Err(format!("reached {reached:?}")),
            Err(e) => Err(e),
        },
    );
    let status = newcomer.status();
    let entry = status
        .bootstrap
        .iter()
        .find(|b| b.address == name)
        .expect("the name is listed in the status");
    assert!(
        entry.state.starts_with("resolved to 3 address(es)"),
        "{entry:?}"
    );
    // Each seed was dialled by the newcomer, not found through another seed.
    let newcomer_id = status.peer_id;
    for seed in &seeds {
        let peers = seed.peers();
        assert!(
            peers.iter().any(|p| p.peer_id == newcomer_id),
            "seed {} does not see the newcomer: {peers:?}",
            seed.status().peer_id
        );
    }

    // Seed 3's task goes away; seed 4 comes up and the name now gives it instead.
    seeds[2].stop();
    let seed4 = seed(&lan, 4, tmp.path());
    let id4 = seed4.status().peer_id;
    lan.set_hosts(0, &[(NAME, vec![ip(1), ip(2), ip(4)])]);
    let expected = want(&[1, 2, 4], &[ids[0].clone(), ids[1].clone(), id4]);
    eventually(
        Duration::from_secs(30),
        "the newcomer to reach the seed that took seed 3's place, and forget seed 3",
        || match connected(&newcomer) {
            Ok(reached) if reached == expected => Ok(()),
            Ok(reached) => Err(format!("reached {reached:?}")),
            Err(e) => Err(e),
        },
    );
}

/// A name that resolves to nothing is retried with backoff, and says so in the status,
/// while the node runs on; once the name resolves, its address is reached.
#[test]
fn an_unresolvable_bootstrap_name_is_retried_until_it_resolves() {
    let lan = Lan::new(2);
    let tmp = tempfile::tempdir().unwrap();
    let seed = seed(&lan, 1, tmp.path());
    let seed_id = seed.status().peer_id;
    lan.set_hosts(0, &[]);

    let name = format!("/dns4/{NAME}/tcp/9000");
    let mut spec = NodeSpec::on_lan(&lan, 0, &tmp.path().join("newcomer"));
    spec.args = [
        "--listen",
        "/ip4/0.0.0.0/tcp/0",
        "--mdns",
        "off",
        "--bootstrap",
    ]
    .map(String::from)
    .to_vec();
    spec.args.push(name.clone());
    let newcomer = spec.spawn();
    eventually(
        Duration::from_secs(20),
        "the name's lookup to fail and be retried",
        || {
            let status = newcomer.status();
            let entry = status.bootstrap.iter().find(|b| b.address == name);
            match entry {
                Some(b) if b.state.starts_with("not resolved: ") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    assert!(
        newcomer.log_text().contains("bootstrap name not resolved"),
        "no warning in the log"
    );

    lan.set_hosts(0, &[(NAME, vec![lan.host_ip(1)])]);
    eventually(
        Duration::from_secs(30),
        "the newcomer to reach the seed once the name resolves",
        || {
            let entries = resolved(&newcomer, &name);
            match entries.as_slice() {
                [b] if b.state == "connected" && b.peer_id.as_deref() == Some(&seed_id) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
}
