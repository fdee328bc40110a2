//! The docker-compose cluster of `docker-compose.yml`, run as users run it: the real
//! docker engine, the real compose tool, the node image built by `scripts/docker-image`.
//!
//! A [`Compose`] tears down everything it created when dropped, and prints each
//! container's logs first if the test is failing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::docker::{self, output_text};
// The per-container helpers, shared with the swarm harness, where compose tests have
// always found them.
pub use crate::docker::{copy_out, guts_json, import, refs, repo_root, repos, run, status};

/// A compose project started from the repository's `docker-compose.yml`.
pub struct Compose {
    /// When `compose up` was run (after the image was built).
    pub started: std::time::Instant,
    project: String,
    image: String,
    api_port: u16,
    /// The bootstrap node's git HTTP endpoint, published on this machine's loopback.
    http_port: u16,
    /// The swarm key of a private cluster (`docker-compose.private.yml`).
    swarm_key: Option<PathBuf>,
    /// Containers started outside compose (removed at teardown).
    extra: Vec<String>,
}

impl Compose {
    /// Builds the image from the `guts` binary under test (as `scripts/docker-image`
    /// does for users) and starts the bootstrap node and `nodes` more.
    pub fn up(nodes: usize) -> Compose {
        Self::start(nodes, None)
    }

    /// As [`Compose::up`], as a private network: with `docker-compose.private.yml` and
    /// the swarm key file `key`.
    pub fn up_private(nodes: usize, key: &Path) -> Compose {
        Self::start(nodes, Some(key.to_owned()))
    }

    fn start(nodes: usize, swarm_key: Option<PathBuf>) -> Compose {
        docker::require_engine();
        docker::remove_leftovers();
        let project = docker::test_name();
        let image = format!("guts:{project}");
        docker::build_image(&image);
        let mut compose = Compose {
            started: std::time::Instant::now(),
            project,
            image,
            api_port: 0,
            http_port: 0,
            swarm_key,
            extra: Vec::new(),
        };
        (compose.api_port, compose.http_port) = two_free_ports();
        // The published ports are checked free, then bound by docker: another test's node
        // may take one in between. Such a start is taken down and tried on other ports.
        for attempt in 1.. {
            compose.started = std::time::Instant::now();
            let out = compose
                .compose()
                .args(["up", "--detach", "--scale"])
                .arg(format!("node={nodes}"))
                .output()
                .expect("cannot run compose");
            if out.status.success() {
                break;
            }
            let text = output_text(&out);
            assert!(
                attempt < 5 && text.contains("address already in use"),
                "compose up failed:\n{text}"
            );
            eprintln!(
                "port {} or {} was taken; starting again",
                compose.api_port, compose.http_port
            );
            let _ = compose
                .compose()
                .args(["down", "--volumes", "--remove-orphans", "--timeout", "5"])
                .output();
            (compose.api_port, compose.http_port) = two_free_ports();
        }
        compose
    }

    /// A compose command for this project.
    fn compose(&self) -> Command {
        let plugin = Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
        let mut cmd = if plugin {
            let mut c = Command::new("docker");
            c.arg("compose");
            c
        } else {
            Command::new("docker-compose")
        };
        cmd.current_dir(repo_root()).args([
            "--project-name",
            &self.project,
            "--file",
            "docker-compose.yml",
        ]);
        if let Some(key) = &self.swarm_key {
            cmd.args(["--file", "docker-compose.private.yml"])
                .env("GUTS_SWARM_KEY_FILE", key);
        }
        cmd.env("GUTS_IMAGE", &self.image)
            .env("GUTS_BOOTSTRAP_API_PORT", self.api_port.to_string())
            .env("GUTS_BOOTSTRAP_HTTP_PORT", self.http_port.to_string())
            .env_remove("GUTS_NETWORK")
            .env_remove("GUTS_REPLICATE");
        cmd
    }

    /// The compose network the nodes share.
    pub fn network(&self) -> String {
        format!("{}_default", self.project)
    }

    /// The bootstrap node's control API, as published on this machine's loopback.
    pub fn bootstrap_api(&self) -> String {
        format!("127.0.0.1:{}", self.api_port)
    }

    /// The bootstrap node's git HTTP endpoint, as published on this machine's loopback.
    pub fn bootstrap_http(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// The image the nodes run.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The cluster's containers: the bootstrap node first, then the `node` replicas in
    /// order (so index 0 is "node 1" and index 4 is "node 5").
    pub fn containers(&self) -> Vec<String> {
        let out = run(Command::new("docker").args([
            "ps",
            "--all",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--format",
            "{{.Names}} {{.Label \"com.docker.compose.service\"}} {{.Label \"com.docker.compose.container-number\"}}",
        ]));
        let mut rows: Vec<(u8, u32, String)> = out
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let name = f.next()?.to_owned();
                let service = f.next()?;
                let number = f.next()?.parse().ok()?;
                let rank = if service == "bootstrap" { 0 } else { 1 };
                Some((rank, number, name))
            })
            .collect();
        rows.sort();
        rows.into_iter().map(|(_, _, name)| name).collect()
    }

    /// Starts a node container on the cluster's network with no bootstrap list (torn
    /// down with the cluster).
    pub fn start_lone_node(&mut self, name: &str) -> String {
        self.start_lone_node_with(name, &[])
    }

    /// As [`Compose::start_lone_node`], with more `guts node` arguments.
    pub fn start_lone_node_with(&mut self, name: &str, args: &[&str]) -> String {
        let container = format!("{}-{name}", self.project);
        run(Command::new("docker")
            .args([
                "run",
                "--detach",
                "--name",
                &container,
                "--network",
                &self.network(),
                "--memory",
                "512m",
                "--env",
                "GUTS_REPLICATE=all",
                &self.image,
                "node",
                "--api",
                "0.0.0.0:9080",
            ])
            .args(args));
        self.extra.push(container.clone());
        container
    }

    /// Logs of every container, for a failing test.
    pub fn print_logs(&self) {
        let mut all = self.containers();
        all.extend(self.extra.iter().cloned());
        docker::print_logs(&all);
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        for c in &self.extra {
            let _ = Command::new("docker")
                .args(["rm", "--force", "--volumes", c])
                .output();
        }
        let down = self
            .compose()
            .args(["down", "--volumes", "--remove-orphans", "--timeout", "5"])
            .output();
        if let Ok(out) = &down
            && !out.status.success()
        {
            eprintln!("compose down failed:\n{}", output_text(out));
        }
        let _ = Command::new("docker")
            .args(["image", "rm", "--force", &self.image])
            .output();
    }
}

/// Runs `args` inside `container`'s network namespace, from the host (the image has no
/// shell or tools of its own).
pub fn in_netns(container: &str, args: &[&str]) -> String {
    let pid = run(Command::new("docker").args(["inspect", "-f", "{{.State.Pid}}", container]));
    run(Command::new("nsenter")
        .args(["-t", pid.trim(), "-n"])
        .args(args))
}

/// Slows what `container` receives to `rate` (e.g. "4mbit"): a token bucket on the host
/// side of its veth pair, whose egress is the container's ingress. Gone when the
/// container restarts (it gets a new veth).
pub fn throttle_into(container: &str, rate: &str) {
    // `nsenter -n` switches the network namespace only: /sys is still the host's, but
    // `ip` asks the kernel, and names the peer as "eth0@if<index>".
    let link = in_netns(container, &["ip", "-o", "link", "show", "eth0"]);
    let peer_index = link
        .split("@if")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap_or_else(|| panic!("no veth peer in {link:?}"))
        .to_owned();
    let host_side = std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .flatten()
        .find(|e| {
            std::fs::read_to_string(e.path().join("ifindex")).is_ok_and(|i| i.trim() == peer_index)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("no host interface with index {peer_index}"));
    // Never shape anything but a container's veth.
    assert!(host_side.starts_with("veth"), "{host_side} is not a veth");
    run(Command::new("tc").args([
        "qdisc", "add", "dev", &host_side, "root", "tbf", "rate", rate, "burst", "32kbit",
        "latency", "400ms",
    ]));
}

/// Bytes `container` has received on its network interface.
pub fn rx_bytes(container: &str) -> u64 {
    // /proc/net/dev is the reading process's namespace's (unlike /sys).
    let table = in_netns(container, &["cat", "/proc/net/dev"]);
    table
        .lines()
        .find_map(|l| l.trim().strip_prefix("eth0:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no eth0 in {table}"))
}

/// Two different free ports (see [`free_port`]).
fn two_free_ports() -> (u16, u16) {
    let first = free_port();
    loop {
        let second = free_port();
        if second != first {
            return (first, second);
        }
    }
}

/// A free TCP port on loopback (for the bootstrap node's published API), below the
/// kernel's ephemeral range, where the other tests' nodes (listening on port 0) never
/// land.
fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (10_000u16, low.max(10_100));
    let start = std::process::id() as u16
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u16)
            .unwrap_or(0));
    (0..to - from)
        .map(|i| from + (start.wrapping_add(i) % (to - from)))
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port below the ephemeral range")
}
