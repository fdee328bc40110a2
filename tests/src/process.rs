//! `guts` processes: the real binary, its real flags, its real exit codes.

use std::ffi::OsStr;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use guts_node::api::types::{ImportResponse, PeerReport, RepoSummary, StatusReport};
use serde::de::DeserializeOwned;

use crate::eventually;

/// The `guts` binary under test: `$GUTS_BIN`, or the one beside the test executable
/// (`target/<profile>/guts`). `cargo test` does not rebuild other packages' binaries, so
/// when `guts` or `git-remote-guts` is missing or older than the sources it is built
/// from, this builds them first: a test never runs yesterday's node.
pub fn guts_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("GUTS_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/guts
    let bin_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned();
    static FRESH: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    FRESH.get_or_init(|| ensure_fresh(&bin_dir));
    bin_dir.join("guts")
}

/// Builds the workspace's binaries into `bin_dir` if either is missing or stale.
fn ensure_fresh(bin_dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let newest_source = ["api", "bin", "git", "node", "protocol", "remote", "storage"]
        .iter()
        .map(|c| newest_mtime(&root.join(c)))
        .chain(["Cargo.toml", "Cargo.lock"].map(|f| newest_mtime(&root.join(f))))
        .max()
        .flatten();
    let stale = ["guts", "git-remote-guts"].iter().any(|b| {
        let built = fs::metadata(bin_dir.join(b))
            .and_then(|m| m.modified())
            .ok();
        match (built, newest_source) {
            (None, _) => true,
            (Some(built), Some(source)) => built < source,
            (Some(_), None) => false,
        }
    });
    if !stale {
        return;
    }
    let profile = bin_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let target_dir = bin_dir.parent().expect("target dir");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--workspace", "--bins", "--profile"])
        .arg(if profile == "debug" { "dev" } else { &profile })
        .env("CARGO_TARGET_DIR", target_dir);
    eprintln!(
        "the guts binaries in {} are stale: {cmd:?}",
        bin_dir.display()
    );
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "building the guts binaries failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // cargo leaves a binary whose inputs did not change as it was, older than sources it
    // does not use: marked fresh, so the next test process does not build again.
    for b in ["guts", "git-remote-guts"] {
        if let Ok(file) = fs::File::open(bin_dir.join(b)) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
    }
}

/// The newest modification time of `path` or anything under it (`target` excluded).
fn newest_mtime(path: &Path) -> Option<std::time::SystemTime> {
    let meta = fs::metadata(path).ok()?;
    let own = meta.modified().ok();
    if !meta.is_dir() {
        return own;
    }
    fs::read_dir(path)
        .ok()?
        .flatten()
        .filter(|e| e.file_name() != "target")
        .filter_map(|e| newest_mtime(&e.path()))
        .chain(own)
        .max()
}

/// Where test processes look for a default config file: nowhere that exists, so a
/// `~/.config/guts/config.toml` on the machine running the tests changes nothing.
pub const NO_CONFIG_HOME: &str = "/nonexistent/guts-tests/config";

/// `PATH` with the directory of the binaries under test first, so git finds this build's
/// `git-remote-guts`.
pub fn path_with_helper() -> String {
    format!(
        "{}:{}",
        guts_bin().parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `git` in `dir` as a user runs it against a node: the helper on `PATH`, the node's API
/// and data dir in the environment (no `GUTS_API_TOKEN`), a fixed author.
pub fn git_against(dir: &Path, api: SocketAddr, data_dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("PATH", path_with_helper())
        .env("GUTS_API", api.to_string())
        .env("GUTS_DATA_DIR", data_dir)
        .env_remove("GUTS_API_TOKEN")
        .env_remove("GUTS_CONFIG")
        .env("XDG_CONFIG_HOME", NO_CONFIG_HOME)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com");
    cmd
}

/// Runs `guts <args>` to completion.
pub fn guts(args: &[&str]) -> Output {
    Command::new(guts_bin())
        .args(args)
        .env_remove("GUTS_API")
        .env_remove("GUTS_DATA_DIR")
        .env_remove("GUTS_CONFIG")
        .env("XDG_CONFIG_HOME", NO_CONFIG_HOME)
        .output()
        .expect("run guts")
}

/// How to start a `guts node` process.
pub struct NodeSpec {
    /// Data dir; created by the caller (so it can outlive one process).
    pub data_dir: PathBuf,
    /// Extra arguments after `guts node`.
    pub args: Vec<String>,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Where the process's stderr goes.
    pub log: PathBuf,
    /// `RUST_LOG` for the process.
    pub log_filter: String,
    /// An address-space limit (RLIMIT_AS, bytes), set with `prlimit`.
    pub address_space: Option<u64>,
    /// A limit on open files (RLIMIT_NOFILE), set with `prlimit`.
    pub open_files: Option<u64>,
    /// More environment variables for the process.
    pub env: Vec<(String, String)>,
}

/// What test nodes log: enough to see what happened when a test fails.
const TEST_LOG_FILTER: &str = "info,libp2p_kad=error,guts_node=debug";

impl NodeSpec {
    /// A node in `data_dir` listening on loopback TCP and QUIC (free ports), API on a free
    /// loopback port, mDNS off.
    pub fn loopback(data_dir: &Path) -> Self {
        NodeSpec {
            data_dir: data_dir.to_owned(),
            args: [
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--listen",
                "/ip4/127.0.0.1/udp/0/quic-v1",
                "--mdns",
                "off",
            ]
            .map(String::from)
            .to_vec(),
            netns: None,
            log: data_dir.with_extension("log"),
            log_filter: TEST_LOG_FILTER.to_owned(),
            address_space: None,
            open_files: None,
            env: Vec::new(),
        }
    }

    /// A node on host `host` of `lan`: listening on all its interfaces (free ports), mDNS
    /// on, no bootstrap list.
    pub fn on_lan(lan: &crate::netns::Lan, host: usize, data_dir: &Path) -> Self {
        NodeSpec {
            data_dir: data_dir.to_owned(),
            args: [
                "--listen",
                "/ip4/0.0.0.0/tcp/0",
                "--listen",
                "/ip4/0.0.0.0/udp/0/quic-v1",
            ]
            .map(String::from)
            .to_vec(),
            netns: Some(lan.host(host).to_owned()),
            log: data_dir.with_extension("log"),
            log_filter: TEST_LOG_FILTER.to_owned(),
            address_space: None,
            open_files: None,
            env: Vec::new(),
        }
    }

    /// Sets `RUST_LOG` (e.g. "warn" for benchmarks, where logging costs CPU).
    pub fn log_filter(mut self, filter: &str) -> Self {
        self.log_filter = filter.to_owned();
        self
    }

    /// Runs the node with at most `bytes` of address space: an allocation past it fails
    /// instead of succeeding lazily, as in a memory-limited container.
    pub fn address_space_limit(mut self, bytes: u64) -> Self {
        self.address_space = Some(bytes);
        self
    }

    /// Runs the node with at most `n` open files, as under `ulimit -n n`.
    pub fn open_files_limit(mut self, n: u64) -> Self {
        self.open_files = Some(n);
        self
    }

    /// Sets an environment variable for the process (e.g. `GUTS_FAILPOINTS`).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Drops the QUIC listen address (private networks are TCP only).
    pub fn without_quic(mut self) -> Self {
        while let Some(i) = self.args.iter().position(|a| a.contains("/quic-v1")) {
            self.args.drain(i - 1..=i);
        }
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn spawn(&self) -> GutsNode {
        let log = fs::File::create(&self.log).expect("create log file");
        let limits: Vec<String> = [
            self.address_space.map(|b| format!("--as={b}")),
            self.open_files.map(|n| format!("--nofile={n}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(guts_bin());
                c
            }
            // prlimit execs the node: same pid, limits in place.
            None if !limits.is_empty() => {
                let mut c = Command::new("prlimit");
                c.args(&limits).arg("--").arg(guts_bin());
                c
            }
            None => Command::new(guts_bin()),
        };
        cmd.arg("node")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--api", "127.0.0.1:0", "--status-interval", "2s"])
            .args(&self.args)
            .env_remove("GUTS_API")
            .env_remove("GUTS_FAILPOINTS")
            .env_remove("GUTS_CONFIG")
            .env("XDG_CONFIG_HOME", NO_CONFIG_HOME)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", &self.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().expect("spawn guts node");
        let mut node = GutsNode {
            child: Some(child),
            data_dir: self.data_dir.clone(),
            api: None,
            log: self.log.clone(),
            netns: self.netns.clone(),
        };
        node.api = Some(node.wait_for_api());
        node
    }
}

/// A running `guts node`. Killed on drop; its log is printed if the test is failing.
pub struct GutsNode {
    child: Option<Child>,
    data_dir: PathBuf,
    api: Option<SocketAddr>,
    log: PathBuf,
    netns: Option<String>,
}

impl GutsNode {
    fn wait_for_api(&mut self) -> SocketAddr {
        eventually(Duration::from_secs(20), "the node's control API", || {
            // Read the exit status first and the log after, so a node that started and
            // then ended (a failpoint) is told apart from one that never started.
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let log = self.log_text();
            // Text or JSON lines: the address runs until a character no address has.
            let api = log
                .lines()
                .find_map(|l| l.split("control API on http://").nth(1))
                .map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
                        .collect::<String>()
                })
                .and_then(|a| a.parse().ok());
            match (api, exited) {
                (Some(api), _) => Ok(api),
                (None, Some(status)) => {
                    panic!("guts node exited with {status} before starting:\n{log}")
                }
                (None, None) => Err("no 'control API on' line yet".to_owned()),
            }
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The control API address.
    pub fn api(&self) -> SocketAddr {
        self.api.expect("API address")
    }

    /// The node's data dir (where its API token is).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The node's current control API token.
    pub fn token(&self) -> String {
        fs::read_to_string(self.data_dir.join("api-token"))
            .expect("read the node's API token")
            .trim()
            .to_owned()
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a `guts` client command against this node (in its namespace, if any).
    pub fn client<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(guts_bin());
                c
            }
            None => Command::new(guts_bin()),
        };
        // As the node's user on its machine: the client finds the token in the data dir.
        cmd.args(args)
            .arg("--api")
            .arg(self.api().to_string())
            .env("GUTS_DATA_DIR", &self.data_dir)
            .env_remove("GUTS_API_TOKEN")
            .env_remove("GUTS_CONFIG")
            .env("XDG_CONFIG_HOME", NO_CONFIG_HOME)
            .output()
            .expect("run guts client")
    }

    /// Runs a client command that must succeed; its stdout. A failure panics with its
    /// stderr and the node's log.
    pub fn client_ok(&self, args: &[&str]) -> String {
        let out = self.client(args);
        assert!(
            out.status.success(),
            "guts {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `guts repo import PATH --json`, which must succeed: the repository as the node
    /// now holds it (its id, sequence, path). A failure panics with stderr and the log.
    pub fn import(&self, path: &Path) -> RepoSummary {
        let out = self.client_ok(&["repo", "import", &path.display().to_string(), "--json"]);
        let reply: ImportResponse = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("guts repo import --json: {e}: {out}"));
        reply.repository
    }

    /// Runs `git <args>` in `dir` against this node (see [`git_against`]).
    pub fn git(&self, dir: &Path, args: &[&str]) -> Output {
        git_against(dir, self.api(), &self.data_dir)
            .args(args)
            .output()
            .expect("run git")
    }

    /// Runs a client command (words separated by spaces) with `--json` and decodes its
    /// output.
    pub fn client_json<T: DeserializeOwned>(&self, command: &str) -> Result<T, String> {
        let out = self.client(command.split_whitespace().chain(["--json"]));
        if !out.status.success() {
            return Err(format!(
                "guts {command} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("guts {command} --json: {e}"))
    }

    /// `guts status --json`.
    pub fn status(&self) -> StatusReport {
        self.client_json("status")
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log_text()))
    }

    /// `guts peers --json`.
    pub fn peers(&self) -> Vec<PeerReport> {
        self.client_json("peers")
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log_text()))
    }

    /// Where the node serves git over HTTP and its web view (`--http`; port 0 allowed),
    /// from its log. Panics if it never says.
    pub fn http_addr(&self) -> SocketAddr {
        crate::eventually(
            Duration::from_secs(30),
            "the HTTP endpoint's address in the log",
            || {
                self.log_text()
                    .lines()
                    .find_map(|l| {
                        let rest = l.split("git over HTTP on http://").nth(1)?;
                        rest.split_whitespace().next()?.parse().ok()
                    })
                    .ok_or_else(|| "not yet".to_owned())
            },
        )
    }

    /// A dialable loopback TCP address with `/p2p/<id>`.
    pub fn tcp_addr(&self) -> String {
        self.addr_with_prefix("/ip4/127.0.0.1/tcp/")
    }

    /// The first listen address starting with `prefix`, with `/p2p/<id>`.
    pub fn addr_with_prefix(&self, prefix: &str) -> String {
        let status = self.status();
        let addr = status
            .listen_addresses
            .iter()
            .find(|a| a.starts_with(prefix))
            .unwrap_or_else(|| {
                panic!(
                    "no listen address starting with {prefix}: {:?}",
                    status.listen_addresses
                )
            });
        format!("{addr}/p2p/{}", status.peer_id)
    }

    /// Sends `signal` and waits up to `grace` for the process to exit.
    pub fn stop_with(&mut self, signal: &str, grace: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{signal} failed");
        let status = self.wait_exit(grace);
        (status, started.elapsed())
    }

    /// Waits up to `limit` for the process to end (by itself, e.g. a failpoint's abort,
    /// or after a signal); its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = eventually(limit, "the node to exit", || {
            child
                .try_wait()
                .expect("wait")
                .ok_or_else(|| "still running".to_owned())
        });
        self.child = None;
        status
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// SIGTERM, expecting a clean exit within 5 s.
    pub fn stop(&mut self) {
        let (status, _) = self.stop_with("TERM", Duration::from_secs(5));
        assert!(
            status.success(),
            "guts node exited with {status}:\n{}",
            self.log_text()
        );
    }
}

impl Drop for GutsNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- log of node at {:?} ({}) ----\n{}",
                self.api,
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// A plain HTTP/1.0 GET; returns (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let host = addr.to_string();
    http(addr, "GET", path, &[("Host", &host)], "").map(|r| (r.code, r.body))
}

/// An HTTP answer.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub code: u16,
    /// Status line and headers.
    pub head: String,
    /// Body.
    pub body: String,
}

impl HttpResponse {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.head, name)
    }
}

/// A header's value in an HTTP head (request or response; case-insensitive name).
pub fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One HTTP/1.0 request with exactly these headers (none added: tests choose `Host`,
/// `Origin` and `Authorization` themselves).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpResponse, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut request = format!("{method} {path} HTTP/1.0\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok(HttpResponse {
        code,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}
