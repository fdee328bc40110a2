//! The docker-compose cluster of `docker-compose.yml`, run as users run it: the real
//! docker engine, the real compose tool, the node image built by `scripts/docker-image`.
//!
//! A [`Compose`] tears down everything it created when dropped, and prints each
//! container's logs first if the test is failing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use guts_node::api::types::{RepoDetail, RepoSummary, StatusReport};
use serde::de::DeserializeOwned;

use crate::process::guts_bin;

/// The repository root (where `docker-compose.yml` and `scripts/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Runs a command to completion and panics with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Test projects are named this plus the test process's id.
const PROJECT_PREFIX: &str = "gutse2e";

/// Removes what earlier test processes left when they were killed before their teardown
/// ran (a test timeout): their containers would otherwise restart forever
/// (`restart: unless-stopped`), and their volumes, networks and images pile up.
fn remove_leftovers() {
    let alive = |name: &str| {
        let digits: String = name
            .strip_prefix(PROJECT_PREFIX)
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        match digits.parse::<u32>() {
            Ok(pid) => Path::new(&format!("/proc/{pid}")).exists(),
            Err(_) => true,
        }
    };
    let list = |args: &[&str]| -> Vec<String> {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_owned)
                    .filter(|n| n.starts_with(PROJECT_PREFIX) && !alive(n))
                    .collect()
            })
            .unwrap_or_default()
    };
    let filter = format!("name={PROJECT_PREFIX}");
    let stale: [(&[&str], Vec<String>); 4] = [
        (
            &["rm", "--force", "--volumes"],
            list(&["ps", "--all", "--filter", &filter, "--format", "{{.Names}}"]),
        ),
        (
            &["volume", "rm", "--force"],
            list(&["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"]),
        ),
        (
            &["network", "rm"],
            list(&[
                "network",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}}",
            ]),
        ),
        (
            &["image", "rm", "--force"],
            list(&["image", "ls", "guts", "--format", "{{.Tag}}"])
                .into_iter()
                .map(|tag| format!("guts:{tag}"))
                .collect(),
        ),
    ];
    for (remove, names) in stale {
        if !names.is_empty() {
            eprintln!("removing leftovers of killed test runs: {names:?}");
            let _ = Command::new("docker").args(remove).args(&names).output();
        }
    }
}

/// A compose project started from the repository's `docker-compose.yml`.
pub struct Compose {
    /// When `compose up` was run (after the image was built).
    pub started: std::time::Instant,
    project: String,
    image: String,
    api_port: u16,
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
        assert!(
            Command::new("docker")
                .arg("info")
                .output()
                .is_ok_and(|o| o.status.success()),
            "this test needs a running Docker engine (`docker info` failed)"
        );
        remove_leftovers();
        let project = format!("{PROJECT_PREFIX}{}", std::process::id());
        let image = format!("guts:{project}");
        run(Command::new(repo_root().join("scripts/docker-image"))
            .arg("--binary")
            .arg(guts_bin())
            .arg(&image));
        let api_port = free_port();
        let compose = Compose {
            started: std::time::Instant::now(),
            project,
            image,
            api_port,
            swarm_key,
            extra: Vec::new(),
        };
        run(compose
            .compose()
            .args(["up", "--detach", "--scale"])
            .arg(format!("node={nodes}")));
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
        for c in self.containers().into_iter().chain(self.extra.clone()) {
            let logs = Command::new("docker")
                .args(["logs", "--timestamps", &c])
                .output()
                .map(|o| output_text(&o))
                .unwrap_or_else(|e| e.to_string());
            eprintln!("===== logs of {c} =====\n{logs}");
        }
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

/// Runs `guts <args>` inside `container` and parses its JSON output.
pub fn guts_json<T: DeserializeOwned>(container: &str, args: &[&str]) -> Result<T, String> {
    let out = Command::new("docker")
        .args(["exec", container, "/usr/local/bin/guts"])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "guts {args:?} in {container}: {}",
            output_text(&out).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("guts {args:?} in {container}: {e}"))
}

/// A node's status.
pub fn status(container: &str) -> Result<StatusReport, String> {
    guts_json(container, &["status", "--json"])
}

/// A node's branches and tags of repository `id` (empty until it holds a snapshot).
pub fn refs(
    container: &str,
    id: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    guts_json::<RepoDetail>(container, &["repo", "show", id, "--json"]).map(|d| d.refs)
}

/// The repositories a node holds or follows.
pub fn repos(container: &str) -> Result<Vec<RepoSummary>, String> {
    guts_json(container, &["repo", "list", "--json"])
}

/// Copies a local git repository into `container` as `/tmp/<name>`, owned by the node's
/// user, and imports it there as `name`; returns the repository id.
pub fn import(container: &str, source: &Path, name: &str) -> String {
    // A copy owned by the node's user (libgit2 refuses repositories owned by others).
    // `docker cp --archive` cannot resolve the user of an image without a libc passwd
    // lookup, but a tar stream keeps the owners it carries.
    let staged = tempfile::tempdir().expect("temp dir");
    run(Command::new("cp")
        .arg("-a")
        .arg(source)
        .arg(staged.path().join(name)));
    run(Command::new("sh")
        .arg("-c")
        .arg(r#"tar -C "$1" --owner=10001 --group=10001 -c "$2" | docker cp - "$3:/tmp/""#)
        .args(["sh", &staged.path().display().to_string(), name, container]));
    let dest = format!("/tmp/{name}");
    let imported: serde_json::Value = guts_json(
        container,
        &["repo", "import", &dest, "--name", name, "--json"],
    )
    .unwrap_or_else(|e| panic!("import failed: {e}"));
    imported["repository"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {imported}"))
        .to_owned()
}

/// Copies `path` out of `container` (running or not) into a new local directory.
pub fn copy_out(container: &str, path: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    run(Command::new("docker")
        .arg("cp")
        .arg(format!("{container}:{path}"))
        .arg(dir.path().join("copy")));
    dir
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

/// A free TCP port on loopback (for the bootstrap node's published API).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
