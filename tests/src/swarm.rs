//! The Docker Swarm stack of `deploy/swarm/stack.yml`, deployed as users deploy it
//! (`docker stack deploy`) on a single-node swarm, with the node image built by
//! `scripts/docker-image`.
//!
//! A [`Stack`] tears down everything it created when dropped: the stack, its network and
//! volumes, the image, and the swarm itself if it initialised it. It prints the tasks and
//! each container's logs first if the test is failing.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::docker::{self, docker_lines, output_text, run};

/// A stack deployed from the repository's `deploy/swarm/stack.yml`.
pub struct Stack {
    /// When `docker stack deploy` was run (after the image was built).
    pub deployed: Instant,
    name: String,
    image: String,
    /// Set when this test initialised the swarm, which it then leaves at teardown: whether
    /// that also created the `docker_gwbridge` network.
    own_swarm: Option<bool>,
}

/// A running task's container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Task {
    /// `bootstrap` or `node`.
    pub service: String,
    /// The task's slot: 1 for the bootstrap, 1..=N for the nodes. A task rescheduled
    /// after a failure keeps its slot (and so its volume).
    pub slot: u32,
    /// The container's name, for `docker exec` and `docker kill`.
    pub container: String,
}

impl Stack {
    /// Makes sure this machine is a single-node swarm manager (initialising a swarm if
    /// it is in none), builds the image from the `guts` binary under test, and deploys
    /// the stack with `nodes` node tasks. Returns once the deploy command has run; the
    /// tasks start in the background ([`Stack::wait_for_tasks`]).
    pub fn deploy(nodes: usize) -> Stack {
        docker::require_engine();
        docker::remove_leftovers();
        let name = docker::test_name();
        let own_swarm = join_single_node_swarm();
        // From here on, a failure still leaves the swarm it made (by Drop).
        let mut stack = Stack {
            deployed: Instant::now(),
            image: format!("guts:{name}"),
            name,
            own_swarm,
        };
        docker::build_image(&stack.image);
        // By id, not by tag: swarm then skips the pull it tries first for a tag, so no
        // registry is asked about an image that exists only here.
        let id = run(Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &stack.image,
        ]));
        stack.deployed = Instant::now();
        run(Command::new("docker")
            .current_dir(docker::repo_root())
            .args(["stack", "deploy", "--resolve-image", "never"])
            .args(["--compose-file", "deploy/swarm/stack.yml", &stack.name])
            .env("GUTS_IMAGE", id.trim())
            .env("GUTS_NODES", nodes.to_string())
            .env_remove("GUTS_NETWORK")
            .env_remove("GUTS_REPLICATE"));
        stack
    }

    /// The running tasks, the bootstrap first, then the nodes by slot.
    pub fn tasks(&self) -> Vec<Task> {
        let prefix = format!("{}_", self.name);
        let mut tasks: Vec<Task> = docker_lines(&[
            "ps",
            "--filter",
            &format!("label=com.docker.stack.namespace={}", self.name),
            "--format",
            "{{.Names}}",
        ])
        .into_iter()
        .filter_map(|container| {
            // <stack>_<service>.<slot>.<task id>
            let mut parts = container.strip_prefix(&prefix)?.split('.');
            let service = parts.next()?.to_owned();
            let slot = parts.next()?.parse().ok()?;
            Some(Task {
                service,
                slot,
                container,
            })
        })
        .collect();
        tasks.sort_by_key(|t| (t.service != "bootstrap", t.slot));
        tasks
    }

    /// Waits until the bootstrap and `nodes` node tasks are running, and returns their
    /// containers (the bootstrap first, then the nodes by slot).
    pub fn wait_for_tasks(&self, nodes: usize, timeout: Duration) -> Vec<String> {
        crate::eventually(
            timeout,
            &format!("1 bootstrap and {nodes} node tasks to run"),
            || {
                let tasks = self.tasks();
                let bootstrap = tasks.iter().filter(|t| t.service == "bootstrap").count();
                let node_slots: std::collections::BTreeSet<u32> = tasks
                    .iter()
                    .filter(|t| t.service == "node")
                    .map(|t| t.slot)
                    .collect();
                let expected: std::collections::BTreeSet<u32> = (1..=nodes as u32).collect();
                if bootstrap == 1 && node_slots == expected && tasks.len() == nodes + 1 {
                    Ok(tasks.into_iter().map(|t| t.container).collect())
                } else {
                    Err(format!("running: {tasks:?}"))
                }
            },
        )
    }

    /// The running container of node task `slot`, if there is one.
    pub fn node(&self, slot: u32) -> Option<String> {
        self.tasks()
            .into_iter()
            .find(|t| t.service == "node" && t.slot == slot)
            .map(|t| t.container)
    }

    /// The full name of one of the stack's services (`bootstrap` or `node`).
    pub fn service(&self, service: &str) -> String {
        format!("{}_{service}", self.name)
    }

    /// How many of the stack's containers run and pass their healthcheck.
    pub fn healthy(&self) -> usize {
        docker_lines(&[
            "ps",
            "--quiet",
            "--filter",
            &format!("label=com.docker.stack.namespace={}", self.name),
            "--filter",
            "health=healthy",
        ])
        .len()
    }

    /// Sets the number of node tasks (`docker service scale`, without waiting: the test
    /// polls for what it expects).
    pub fn scale(&self, nodes: usize) {
        run(Command::new("docker").args([
            "service",
            "scale",
            "--detach",
            &format!("{}={nodes}", self.service("node")),
        ]));
    }

    /// Every task of the stack, with its state and error, as swarm reports them.
    pub fn task_history(&self) -> String {
        let out = Command::new("docker")
            .args(["stack", "ps", "--no-trunc", &self.name])
            .args([
                "--format",
                "{{.Name}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
            ])
            .output();
        out.map(|o| output_text(&o))
            .unwrap_or_else(|e| e.to_string())
    }

    fn print_logs(&self) {
        eprintln!(
            "===== tasks of stack {} =====\n{}",
            self.name,
            self.task_history()
        );
        // Exited containers too: a killed or crashed task's logs say most.
        let containers = docker_lines(&[
            "ps",
            "--all",
            "--filter",
            &format!("label=com.docker.stack.namespace={}", self.name),
            "--format",
            "{{.Names}}",
        ]);
        docker::print_logs(&containers);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        if !docker::remove_stack(&self.name) {
            eprintln!(
                "the containers of stack {} did not go within 60 s",
                self.name
            );
        }
        // `docker stack rm` leaves volumes; those made from the name template carry the
        // stack's label as well. A volume is busy until its container is gone: retry.
        let volumes_gone = docker::wait_until(Duration::from_secs(30), || {
            let volumes = docker_lines(&["volume", "ls", "--quiet", "--filter", &label]);
            volumes.is_empty()
                || Command::new("docker")
                    .args(["volume", "rm", "--force"])
                    .args(&volumes)
                    .output()
                    .is_ok_and(|o| o.status.success())
        });
        // The network goes by itself once its last task has.
        let network_gone = docker::wait_until(Duration::from_secs(30), || {
            docker_lines(&["network", "ls", "--quiet", "--filter", &label]).is_empty()
        });
        if !volumes_gone || !network_gone {
            eprintln!(
                "stack {} left volumes {:?} and networks {:?}",
                self.name,
                docker_lines(&["volume", "ls", "--quiet", "--filter", &label]),
                docker_lines(&["network", "ls", "--filter", &label])
            );
        }
        let _ = Command::new("docker")
            .args(["image", "rm", "--force", &self.image])
            .output();
        if let Some(gwbridge_created) = self.own_swarm {
            docker::leave_swarm(gwbridge_created);
        }
    }
}

/// Makes this machine a swarm manager of a single-node swarm. Returns `Some(whether
/// docker_gwbridge was created)` if it initialised the swarm, `None` if it was one
/// already. Panics if the machine belongs to a swarm the test cannot use alone.
fn join_single_node_swarm() -> Option<bool> {
    let info = run(Command::new("docker").args([
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}}",
    ]));
    let fields: Vec<&str> = info.split_whitespace().collect();
    match fields.as_slice() {
        ["inactive", ..] => {}
        ["active", "true", "1"] => return None,
        ["active", "true", nodes] => panic!(
            "this machine manages a swarm of {nodes} nodes; the swarm test needs a \
             single-node swarm (the image exists only here), or none (it makes one)"
        ),
        ["active", ..] => panic!(
            "this machine is a swarm worker; the swarm test needs a manager of a \
             single-node swarm, or no swarm (it makes one)"
        ),
        _ => panic!("swarm state {info:?}: the swarm test needs none or a single-node one"),
    }
    let gwbridge_existed = Command::new("docker")
        .args(["network", "inspect", "docker_gwbridge"])
        .output()
        .is_ok_and(|o| o.status.success());
    // On loopback: nothing outside this machine can reach the swarm's management and
    // gossip ports, and there is no address to choose among several interfaces.
    run(Command::new("docker").args([
        "swarm",
        "init",
        "--advertise-addr",
        "127.0.0.1",
        "--listen-addr",
        "127.0.0.1:2377",
    ]));
    let gwbridge_created = !gwbridge_existed;
    // So that a later run can tell this swarm from a user's, should this test be killed.
    let node = run(Command::new("docker").args(["info", "--format", "{{.Swarm.NodeID}}"]));
    let labelled = Command::new("docker")
        .args(["node", "update", "--label-add"])
        .arg(format!(
            "{}={}",
            docker::SWARM_OWNER_LABEL,
            std::process::id()
        ))
        .arg("--label-add")
        .arg(format!("{}={gwbridge_created}", docker::GWBRIDGE_LABEL))
        .arg(node.trim())
        .output();
    if !labelled.as_ref().is_ok_and(|o| o.status.success()) {
        docker::leave_swarm(gwbridge_created);
        panic!("cannot label the new swarm's node: {labelled:?}");
    }
    Some(gwbridge_created)
}
