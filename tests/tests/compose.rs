//! End to end: the docker-compose cluster users start (`docker-compose.yml`, the image of
//! `scripts/docker-image`) connects, replicates, and survives a partition, a killed node
//! and a newcomer with no bootstrap list.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use guts_tests::compose::{self, Compose, run};
use guts_tests::eventually;
use guts_tests::git::{Synthetic, WorkRepo, fsck};

const CONVERGE: Duration = Duration::from_secs(90);

#[test]
fn a_five_node_compose_cluster_replicates_and_survives_partition_kill_and_newcomers() {
    let mut cluster = Compose::up(4);
    let started = cluster.started;
    let nodes = cluster.containers();
    assert_eq!(
        nodes.len(),
        5,
        "expected bootstrap + 4 nodes, got {nodes:?}"
    );

    // 1. Everyone is connected to at least two others and knows the DHT.
    for node in &nodes {
        eventually(CONVERGE, &format!("{node} to connect to 2 peers"), || {
            let s = compose::status(node)?;
            if s.connected_peers >= 2 && s.routing_table_size > 0 {
                Ok(())
            } else {
                Err(format!(
                    "{} connected, routing table {}",
                    s.connected_peers, s.routing_table_size
                ))
            }
        });
    }
    let connected = started.elapsed();
    let peer_ids: Vec<String> = nodes
        .iter()
        .map(|n| compose::status(n).expect("status").peer_id)
        .collect();
    let distinct: std::collections::BTreeSet<_> = peer_ids.iter().collect();
    assert_eq!(
        distinct.len(),
        5,
        "every replica has its own identity: {peer_ids:?}"
    );

    // 2. A repository imported on node 1 reaches every node with identical refs.
    let work = WorkRepo::with_history("demo");
    let id = compose::import(&nodes[0], work.path(), "demo");
    let expected = guts_tests::git::refs(work.path());
    let all_hold = |targets: &[String], id: &str, expected: &BTreeMap<String, String>| {
        for node in targets {
            eventually(CONVERGE, &format!("{node} to hold {id}"), || {
                let refs = compose::refs(node, id)?;
                if &refs == expected {
                    Ok(())
                } else {
                    Err(format!("{refs:?}, expected {expected:?}"))
                }
            });
        }
    };
    all_hold(&nodes, &id, &expected);
    let replicated = started.elapsed();
    // Through the announcement, not only the 60 s anti-entropy CONVERGE would allow:
    // every other node received it (`old` if a catch-up got there first).
    for node in &nodes[1..] {
        let heard = compose::status(node).expect("status").announcements;
        let received = heard["accepted"] + heard["old"];
        assert!(
            received >= 1,
            "{node} never received an announcement: {heard:?}"
        );
    }

    // The published API answers on this machine's loopback, but only with the node's
    // token: `guts api-token` inside the container prints it (as `scripts/cluster token`
    // does). git-remote-guts here then cannot read a store inside a container, and says
    // so instead of failing obscurely.
    let host_guts = |token: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(guts_tests::process::guts_bin());
        cmd.args(args)
            .env("GUTS_API", cluster.bootstrap_api())
            .env("GUTS_DATA_DIR", "/nonexistent");
        match token {
            Some(t) => cmd.env("GUTS_API_TOKEN", t),
            None => cmd.env_remove("GUTS_API_TOKEN"),
        };
        cmd.output().expect("run guts")
    };
    let denied = host_guts(None, &["status"]);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        !denied.status.success() && stderr.contains("API token"),
        "the host reached a container's API without its token: {stderr}"
    );
    let token =
        run(Command::new("docker").args(["exec", &nodes[0], "/usr/local/bin/guts", "api-token"]));
    let token = token.trim();
    let status = host_guts(Some(token), &["status", "--json"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let clone = Command::new("git")
        .args(["clone", &format!("guts://{id}"), "demo"])
        .current_dir(scratch.path())
        .env("GUTS_API", cluster.bootstrap_api())
        .env("GUTS_API_TOKEN", token)
        .env("PATH", guts_tests::process::path_with_helper())
        .output()
        .expect("run git clone");
    let stderr = String::from_utf8_lossy(&clone.stderr);
    assert!(
        !clone.status.success() && stderr.contains("which this machine cannot see"),
        "git clone from a node in a container: {stderr}"
    );

    // Stock git on this machine, with no node here, clones and shallow-clones it over
    // the bootstrap node's HTTP endpoint.
    let http_url = format!("http://{}/{id}", cluster.bootstrap_http());
    let plain_git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GUTS_API")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    plain_git(
        scratch.path(),
        &[
            "clone",
            "-q",
            "-c",
            "remote.origin.fetch=+refs/guts/*:refs/guts/*",
            &http_url,
            "over-http",
        ],
    );
    plain_git(
        scratch.path(),
        &["clone", "-q", "--depth", "1", &http_url, "shallow"],
    );
    let over_http = scratch.path().join("over-http");
    let main_of = |dir: &Path| plain_git(dir, &["rev-parse", "origin/main"]);
    assert_eq!(Some(&main_of(&over_http)), expected.get("refs/heads/main"));
    assert_eq!(
        plain_git(
            &scratch.path().join("shallow"),
            &["rev-list", "--count", "HEAD"]
        ),
        "1"
    );

    // 3. Partition node 5; a new commit reaches nodes 2-4 but not node 5; on reconnect
    //    node 5 converges by itself.
    let network = cluster.network();
    run(Command::new("docker").args(["network", "disconnect", &network, &nodes[4]]));
    work.commit(
        "refs/heads/main",
        &[("CHANGELOG", b"partitioned\n".as_slice())],
        "while node 5 is away",
    );
    compose::import(&nodes[0], work.path(), "demo");
    let after = guts_tests::git::refs(work.path());
    assert_ne!(after, expected);
    // The clone over HTTP fetches it.
    plain_git(&over_http, &["fetch", "-q"]);
    assert_eq!(Some(&main_of(&over_http)), after.get("refs/heads/main"));
    // And checks, with the guts binary alone, that it is what the owner signed.
    let verified = guts_tests::process::guts(&["verify", over_http.to_str().unwrap()]);
    assert!(
        verified.status.success(),
        "guts verify: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    all_hold(&nodes[1..4], &id, &after);
    assert_eq!(
        compose::refs(&nodes[4], &id).expect("node 5 answers"),
        expected,
        "a partitioned node cannot have the new commit"
    );
    let reconnect = Instant::now();
    run(Command::new("docker").args(["network", "connect", &network, &nodes[4]]));
    all_hold(&nodes[4..5], &id, &after);
    let reconverged = reconnect.elapsed();

    // 4. Kill node 3 while a larger repository replicates; it restarts with the same
    //    identity, an intact store, and converges.
    let node3 = &nodes[2];
    let big = Synthetic {
        commits: 600,
        text_files: 40,
        // About 8 MB of incompressible assets: long enough to be cut mid-transfer.
        binary_every: 20,
        binary_size: 256 * 1024,
        seed: 7,
    }
    .build("big");
    // A slow link into node 3 (4 Mbit/s: the 8 MB take over 15 s), so the kill lands
    // mid-transfer for certain; the qdisc goes with the container's network namespace.
    // A slow link into node 3 (4 Mbit/s: the 8 MB take over 15 s), so the kill lands
    // mid-transfer for certain.
    compose::throttle_into(node3, "4mbit");
    let rx_before = compose::rx_bytes(node3);
    let big_id = compose::import(&nodes[0], big.path(), "big");
    eventually(CONVERGE, "node 3 to be fetching the new repository", || {
        let repos = compose::repos(node3)?;
        let received = compose::rx_bytes(node3) - rx_before;
        if repos.iter().any(|r| r.id == big_id) && received > 1 << 20 {
            Ok(())
        } else {
            Err(format!("{} repositories, {received} bytes in", repos.len()))
        }
    });
    let before_kill = compose::repos(node3).expect("repo list");
    run(Command::new("docker").args(["kill", node3]));
    let big_state = before_kill
        .iter()
        .find(|r| r.id == big_id)
        .map_or(0, |r| r.sequence);
    assert_eq!(big_state, 0, "node 3 was killed mid-transfer, not after it");
    // The store as the crash left it: every repository node 3 held passes fsck.
    for r in before_kill.iter().filter(|r| r.sequence > 0) {
        let copy = compose::copy_out(node3, &r.path);
        fsck(&copy.path().join("copy"));
    }
    run(Command::new("docker").args(["start", node3]));
    eventually(CONVERGE, "node 3 to answer after restart", || {
        compose::status(node3).map(|s| s.peer_id)
    });
    assert_eq!(
        compose::status(node3).expect("status").peer_id,
        peer_ids[2],
        "node 3 keeps its peer id across a kill"
    );
    let big_refs = guts_tests::git::refs(big.path());
    all_hold(&nodes, &big_id, &big_refs);
    all_hold(&nodes[2..3], &id, &after);
    for store in compose::repos(node3)
        .expect("repo list")
        .iter()
        .map(|r| &r.path)
    {
        fsck(&compose::copy_out(node3, store).path().join("copy"));
    }

    // 5. A node with no bootstrap list finds the cluster through mDNS alone, and
    //    replicates from it.
    let newcomer = cluster.start_lone_node("lan");
    eventually(CONVERGE, "the mDNS-only node to join", || {
        let s = compose::status(&newcomer)?;
        if s.bootstrap.is_empty() && s.connected_peers >= 2 {
            Ok(())
        } else {
            Err(format!(
                "{} connected, bootstrap {:?}",
                s.connected_peers, s.bootstrap
            ))
        }
    });
    all_hold(std::slice::from_ref(&newcomer), &id, &after);
    all_hold(std::slice::from_ref(&newcomer), &big_id, &big_refs);

    eprintln!(
        "compose up to every node connected: {connected:.1?}; to replicated everywhere: \
         {replicated:.1?}; reconnect to converged: {reconverged:.1?}; node 3 killed mid-transfer"
    );
}

/// The private variant (`docker-compose.private.yml`): the members, sharing the swarm
/// key, form the cluster; a node on the same network without the key, found by DNS and
/// mDNS alike, never connects to any of them.
#[test]
fn a_private_compose_cluster_admits_only_nodes_with_its_key() {
    let keys = tempfile::tempdir().expect("temp dir");
    let key = keys.path().join("swarm.key");
    let out = guts_tests::process::guts(&["swarm-key"]);
    assert!(out.status.success());
    std::fs::write(&key, &out.stdout).expect("write the key");
    let mut cluster = Compose::up_private(2, &key);
    let members = cluster.containers();
    assert_eq!(members.len(), 3, "{members:?}");
    eventually(CONVERGE, "the members to connect", || {
        for c in &members {
            let s = compose::status(c)?;
            if s.connected_peers < 2 {
                return Err(format!("{c}: {} connected", s.connected_peers));
            }
            if s.listen_addresses.iter().any(|a| a.contains("quic")) {
                return Err(format!("{c} listens on QUIC: {:?}", s.listen_addresses));
            }
        }
        Ok(())
    });
    let outsider =
        cluster.start_lone_node_with("outsider", &["--bootstrap", "/dns4/bootstrap/tcp/9000"]);
    let outsider_id = eventually(CONVERGE, "the outsider's bootstrap dial to fail", || {
        let s = compose::status(&outsider)?;
        // The name's own entry says how it resolved; the address it gave is retried.
        let address = s
            .bootstrap
            .iter()
            .find(|b| b.resolved_from.as_deref() == Some("/dns4/bootstrap/tcp/9000"));
        match address {
            Some(b) if b.state.starts_with("retrying") => Ok(s.peer_id),
            _ => Err(format!("bootstrap {:?}", s.bootstrap)),
        }
    });
    let s = compose::status(&outsider).expect("outsider status");
    assert_eq!(s.connected_peers, 0);
    assert_eq!(s.routing_table_size, 0, "the outsider learned no peer id");
    for c in &members {
        let peers: Vec<guts_node::api::types::PeerReport> =
            compose::guts_json(c, &["peers", "--json"]).expect("peers");
        assert!(
            peers.iter().all(|p| p.peer_id != outsider_id),
            "{c} connected to the outsider"
        );
    }
}
