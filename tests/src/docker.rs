//! What the docker-compose and Docker Swarm harnesses share: running docker, the node
//! image under test, removing what killed test runs left behind, and the `guts` CLI run
//! inside a node's container.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use guts_node::api::types::{RepoDetail, RepoSummary, StatusReport};
use serde::de::DeserializeOwned;

use crate::process::guts_bin;

/// The repository root (where `docker-compose.yml`, `deploy/` and `scripts/` are).
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

/// A command's stdout then stderr, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `docker <args>` and returns its stdout lines, or none if it fails: for listings
/// where "nothing" and "cannot tell" lead to the same next step.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    Command::new("docker")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Panics with a clear message unless a Docker engine answers.
pub fn require_engine() {
    assert!(
        Command::new("docker")
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success()),
        "this test needs a running Docker engine (`docker info` failed)"
    );
}

/// Test projects, stacks and images are named this plus the test process's id.
pub const TEST_PREFIX: &str = "gutse2e";

/// The name for this test process's project or stack (and image tag).
pub fn test_name() -> String {
    format!("{TEST_PREFIX}{}", std::process::id())
}

/// Swarm node label: the id of the test process that initialised this machine's swarm
/// (so a later run can tell a swarm a killed test left from one a user made).
pub const SWARM_OWNER_LABEL: &str = "gutse2e.swarm-owner";

/// Swarm node label, set when the test that initialised the swarm also caused Docker to
/// create the `docker_gwbridge` network (which outlives the swarm).
pub const GWBRIDGE_LABEL: &str = "gutse2e.gwbridge-created";

/// Whether `name` (a prefixed test name) belongs to a test process that is still running.
fn owner_alive(name: &str) -> bool {
    let digits: String = name
        .strip_prefix(TEST_PREFIX)
        .unwrap_or(name)
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    match digits.parse::<u32>() {
        Ok(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        // Not one of ours: never touch it.
        Err(_) => true,
    }
}

/// Polls `done` every 200 ms until it holds or `timeout` passes; says whether it held.
/// For teardown, which must not panic.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Removes a stack and waits for its containers to go (they stop within their grace
/// period); its volumes and network are left to the caller. Says whether they went.
pub fn remove_stack(stack: &str) -> bool {
    let _ = Command::new("docker").args(["stack", "rm", stack]).output();
    let label = format!("label=com.docker.stack.namespace={stack}");
    wait_until(Duration::from_secs(60), || {
        docker_lines(&["ps", "--all", "--quiet", "--filter", &label]).is_empty()
    })
}

/// Leaves the swarm (forcibly: it is a single-node test swarm) and removes the
/// `docker_gwbridge` network if the swarm's creation made it.
pub fn leave_swarm(gwbridge_created: bool) {
    let left = Command::new("docker")
        .args(["swarm", "leave", "--force"])
        .output();
    if let Ok(out) = &left
        && !out.status.success()
    {
        eprintln!("docker swarm leave failed:\n{}", output_text(out));
    }
    if gwbridge_created {
        let _ = Command::new("docker")
            .args(["network", "rm", "docker_gwbridge"])
            .output();
    }
}

/// Removes what earlier test processes left when they were killed before their teardown
/// ran (a test timeout): their swarm stacks (whose services would restart any container
/// removed alone), a swarm one of them initialised, then their containers (which would
/// otherwise restart forever: `restart: unless-stopped`), volumes, networks and images.
pub fn remove_leftovers() {
    let stale = |names: Vec<String>| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| n.starts_with(TEST_PREFIX) && !owner_alive(n))
            .collect()
    };
    // Fails (and lists nothing) when this machine is no swarm manager.
    for stack in stale(docker_lines(&["stack", "ls", "--format", "{{.Name}}"])) {
        eprintln!("removing the stack {stack} of a killed test run");
        remove_stack(&stack);
    }
    let labels = docker_lines(&[
        "node",
        "inspect",
        "self",
        "--format",
        &format!(
            "{{{{index .Spec.Labels \"{SWARM_OWNER_LABEL}\"}}}} {{{{index .Spec.Labels \"{GWBRIDGE_LABEL}\"}}}}"
        ),
    ]);
    if let Some(line) = labels.first() {
        let mut fields = line.split_whitespace();
        if let Some(owner) = fields.next()
            && !owner_alive(&format!("{TEST_PREFIX}{owner}"))
        {
            eprintln!("leaving the swarm a killed test run (process {owner}) initialised");
            leave_swarm(fields.next() == Some("true"));
        }
    }
    let filter = format!("name={TEST_PREFIX}");
    let leftovers: [(&[&str], Vec<String>); 4] = [
        (
            &["rm", "--force", "--volumes"],
            stale(docker_lines(&[
                "ps",
                "--all",
                "--filter",
                &filter,
                "--format",
                "{{.Names}}",
            ])),
        ),
        (
            &["volume", "rm", "--force"],
            stale(docker_lines(&[
                "volume",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}}",
            ])),
        ),
        (
            &["network", "rm"],
            stale(docker_lines(&[
                "network",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}}",
            ])),
        ),
        (
            &["image", "rm", "--force"],
            stale(docker_lines(&[
                "image", "ls", "guts", "--format", "{{.Tag}}",
            ]))
            .into_iter()
            .map(|tag| format!("guts:{tag}"))
            .collect(),
        ),
    ];
    for (remove, names) in leftovers {
        if !names.is_empty() {
            eprintln!("removing leftovers of killed test runs: {names:?}");
            let _ = Command::new("docker").args(remove).args(&names).output();
        }
    }
}

/// Builds the node image `tag` from the `guts` binary under test, as
/// `scripts/docker-image` does for users.
pub fn build_image(tag: &str) {
    run(Command::new(repo_root().join("scripts/docker-image"))
        .arg("--binary")
        .arg(guts_bin())
        .arg(tag));
}

/// Prints the logs of each container, for a failing test.
pub fn print_logs(containers: &[String]) {
    for c in containers {
        let logs = Command::new("docker")
            .args(["logs", "--timestamps", c])
            .output()
            .map(|o| output_text(&o))
            .unwrap_or_else(|e| e.to_string());
        eprintln!("===== logs of {c} =====\n{logs}");
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
pub fn refs(container: &str, id: &str) -> Result<BTreeMap<String, String>, String> {
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
