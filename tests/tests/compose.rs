//! End to end: the docker-compose cluster users start (`docker-compose.yml`, the image of
//! `scripts/docker-image`) connects, replicates, and survives a partition, a killed node
//! and a newcomer with no bootstrap list.

use std::collections::BTreeMap;
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

    // The published API answers on this machine's loopback; git-remote-guts here cannot
    // read a store inside a container, and says so instead of failing obscurely.
    let bin_dir = guts_tests::process::guts_bin()
        .parent()
        .expect("bin dir")
        .to_owned();
    let scratch = tempfile::tempdir().expect("temp dir");
    let clone = Command::new("git")
        .args(["clone", &format!("guts://{id}"), "demo"])
        .current_dir(scratch.path())
        .env("GUTS_API", cluster.bootstrap_api())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("run git clone");
    let stderr = String::from_utf8_lossy(&clone.stderr);
    assert!(
        !clone.status.success() && stderr.contains("which this machine cannot see"),
        "git clone from a node in a container: {stderr}"
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
    let big_id = compose::import(&nodes[0], big.path(), "big");
    eventually(CONVERGE, "node 3 to hear of the new repository", || {
        let repos = compose::repos(node3)?;
        if repos.iter().any(|r| r.id == big_id) {
            Ok(())
        } else {
            Err(format!("{} repositories", repos.len()))
        }
    });
    let before_kill = compose::repos(node3).expect("repo list");
    let stores: Vec<String> = before_kill.iter().map(|r| r.path.clone()).collect();
    run(Command::new("docker").args(["kill", node3]));
    let big_state = before_kill
        .iter()
        .find(|r| r.id == big_id)
        .map_or(0, |r| r.sequence);
    // The store as the crash left it: every object it refers to is there.
    for store in &stores {
        let copy = compose::copy_out(node3, store);
        if copy.path().join("copy/objects").exists() {
            fsck(&copy.path().join("copy"));
        }
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

    eprintln!(
        "compose up to every node connected: {connected:.1?}; to replicated everywhere: \
         {replicated:.1?}; reconnect to converged: {reconverged:.1?}; node 3 killed {}",
        if big_state == 0 {
            "before it held the new repository"
        } else {
            "after it held the new repository"
        }
    );
}
