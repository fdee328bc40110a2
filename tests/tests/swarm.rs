//! End to end: the Docker Swarm stack users deploy (`deploy/swarm/stack.yml`, the image
//! of `scripts/docker-image`) on a single-node swarm connects through its bootstrap
//! service and the DHT, replicates, takes in newcomers when scaled, and gets over a
//! killed task that swarm reschedules.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use guts_node::api::types::PeerReport;
use guts_tests::docker::{self, run};
use guts_tests::eventually;
use guts_tests::git::WorkRepo;
use guts_tests::swarm::Stack;

const CONVERGE: Duration = Duration::from_secs(90);

/// Waits until each of `nodes` is connected to 2+ peers, one of them `bootstrap` (the
/// bootstrap task's peer id; nodes reach it only through `tasks.bootstrap`, as mDNS is
/// off in the stack), with a non-empty routing table.
fn wait_connected(nodes: &[String], bootstrap: &str) {
    for node in nodes {
        eventually(CONVERGE, &format!("{node} to connect to 2 peers"), || {
            let s = docker::status(node)?;
            if s.connected_peers < 2 || s.routing_table_size == 0 {
                return Err(format!(
                    "{} connected, routing table {}, bootstrap {:?}",
                    s.connected_peers, s.routing_table_size, s.bootstrap
                ));
            }
            if s.peer_id == bootstrap {
                return Ok(());
            }
            let peers: Vec<PeerReport> = docker::guts_json(node, &["peers", "--json"])?;
            if peers.iter().any(|p| p.peer_id == bootstrap) {
                Ok(())
            } else {
                Err(format!(
                    "{} connected, not to the bootstrap node; bootstrap {:?}",
                    s.connected_peers, s.bootstrap
                ))
            }
        });
    }
}

/// Waits until each of `nodes` holds repository `id` with exactly `expected` refs.
fn wait_hold(nodes: &[String], id: &str, expected: &BTreeMap<String, String>) {
    for node in nodes {
        eventually(CONVERGE, &format!("{node} to hold {id}"), || {
            let refs = docker::refs(node, id)?;
            if &refs == expected {
                Ok(())
            } else {
                Err(format!("{refs:?}, expected {expected:?}"))
            }
        });
    }
}

fn peer_id(node: &str) -> String {
    docker::status(node)
        .unwrap_or_else(|e| panic!("status of {node}: {e}"))
        .peer_id
}

/// The distinct peer ids of `nodes`, asserting there is one per node.
fn distinct_ids(nodes: &[String]) -> BTreeSet<String> {
    let ids: BTreeSet<String> = nodes.iter().map(|n| peer_id(n)).collect();
    assert_eq!(
        ids.len(),
        nodes.len(),
        "every task has its own identity (its own volume): {ids:?} for {nodes:?}"
    );
    ids
}

#[test]
fn a_swarm_stack_connects_replicates_scales_and_reschedules_a_killed_task() {
    let stack = Stack::deploy(5);

    // 1. Bootstrap + 5 nodes run, each connected to 2+ peers among them the bootstrap
    //    node, and healthy by the stack's healthcheck, within their resource limits.
    let tasks = stack.wait_for_tasks(5, CONVERGE);
    let deployed = stack.deployed.elapsed();
    let bootstrap = eventually(CONVERGE, "the bootstrap node to answer", || {
        docker::status(&tasks[0]).map(|s| s.peer_id)
    });
    wait_connected(&tasks, &bootstrap);
    let converged = stack.deployed.elapsed();
    distinct_ids(&tasks);
    eventually(CONVERGE, "every task to be healthy", || {
        let healthy = stack.healthy();
        if healthy == tasks.len() {
            Ok(())
        } else {
            Err(format!("{healthy} of {} healthy", tasks.len()))
        }
    });
    let limits = run(Command::new("docker").args([
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}",
        &tasks[1],
    ]));
    assert_eq!(
        limits.trim(),
        "536870912 1000000000 256",
        "memory, CPU and process limits of a node task"
    );

    // 2. A repository imported on node 1 is held with identical refs by all.
    let work = WorkRepo::with_history("demo");
    let id = docker::import(&tasks[1], work.path(), "demo");
    let expected = guts_tests::git::refs(work.path());
    wait_hold(&tasks, &id, &expected);
    let replicated = stack.deployed.elapsed();

    // 3. Scaled to 8: the three newcomers, each on a volume of its own, connect and
    //    catch up on what was imported before they existed.
    let scaling = Instant::now();
    stack.scale(8);
    let all = stack.wait_for_tasks(8, CONVERGE);
    let newcomers: Vec<String> = all.iter().filter(|c| !tasks.contains(c)).cloned().collect();
    assert_eq!(newcomers.len(), 3, "new tasks: {newcomers:?}");
    wait_connected(&newcomers, &bootstrap);
    wait_hold(&newcomers, &id, &expected);
    let scaled = scaling.elapsed();
    distinct_ids(&all);

    // 4. Node 3's container is killed. Swarm starts a new task in its slot: on the same
    //    volume, so with the same identity, and it catches up on a commit made while it
    //    was away; the cluster converges again.
    let victim = stack.node(3).expect("node 3 runs");
    let victim_id = peer_id(&victim);
    let killing = Instant::now();
    run(Command::new("docker").args(["kill", &victim]));
    work.commit(
        "refs/heads/main",
        &[("CHANGELOG", b"while node 3 was away\n".as_slice())],
        "after the kill",
    );
    docker::import(&tasks[1], work.path(), "demo");
    let after = guts_tests::git::refs(work.path());
    assert_ne!(after, expected);
    let replacement = eventually(CONVERGE, "swarm to reschedule node 3", || {
        match stack.node(3) {
            Some(c) if c != victim => Ok(c),
            other => Err(format!("slot 3: {other:?}\n{}", stack.task_history())),
        }
    });
    let replacement_id = eventually(CONVERGE, "the new node 3 to answer", || {
        docker::status(&replacement).map(|s| s.peer_id)
    });
    assert_eq!(
        replacement_id, victim_id,
        "the rescheduled task keeps its slot's identity"
    );
    let now = stack.wait_for_tasks(8, CONVERGE);
    assert!(
        now.contains(&replacement) && !now.contains(&victim),
        "{now:?}"
    );
    wait_connected(&now, &bootstrap);
    wait_hold(&now, &id, &after);
    let rescheduled = killing.elapsed();
    assert!(
        stack.task_history().contains("non-zero exit (137)"),
        "swarm saw the kill: {}",
        stack.task_history()
    );

    eprintln!(
        "swarm: deployed 1+5 in {:.1} s, converged in {:.1} s (a repository on all 6 at {:.1} s), \
         scaled to 8 in {:.1} s, rescheduled in {:.1} s",
        deployed.as_secs_f64(),
        converged.as_secs_f64(),
        replicated.as_secs_f64(),
        scaled.as_secs_f64(),
        rescheduled.as_secs_f64(),
    );
}
