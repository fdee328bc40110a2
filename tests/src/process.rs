//! `guts` processes: the real binary, its real flags, its real exit codes.

use std::ffi::OsStr;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use guts_node::api::types::{PeerReport, StatusReport};
use serde::de::DeserializeOwned;

use crate::eventually;

/// The `guts` binary under test: `$GUTS_BIN`, or the one beside the test executable
/// (`target/<profile>/guts`, built by `cargo build --bins` before the tests run).
pub fn guts_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("GUTS_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/guts
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("guts"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build --bins` (scripts/test does), or set GUTS_BIN",
        bin.display()
    );
    bin
}

/// Runs `guts <args>` to completion.
pub fn guts(args: &[&str]) -> Output {
    Command::new(guts_bin())
        .args(args)
        .env_remove("GUTS_API")
        .env_remove("GUTS_DATA_DIR")
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

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn spawn(&self) -> GutsNode {
        let log = fs::File::create(&self.log).expect("create log file");
        let mut cmd = match (&self.netns, self.address_space) {
            (Some(ns), _) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(guts_bin());
                c
            }
            // prlimit execs the node: same pid, limit in place.
            (None, Some(bytes)) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--as={bytes}")).arg("--").arg(guts_bin());
                c
            }
            (None, None) => Command::new(guts_bin()),
        };
        cmd.arg("node")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--api", "127.0.0.1:0", "--status-interval", "2s"])
            .args(&self.args)
            .env_remove("GUTS_API")
            .env("RUST_LOG", &self.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().expect("spawn guts node");
        let mut node = GutsNode {
            child: Some(child),
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
    api: Option<SocketAddr>,
    log: PathBuf,
    netns: Option<String>,
}

impl GutsNode {
    fn wait_for_api(&mut self) -> SocketAddr {
        eventually(Duration::from_secs(20), "the node's control API", || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "guts node exited with {status} before starting:\n{}",
                    self.log_text()
                );
            }
            let log = self.log_text();
            // Text or JSON lines: the address runs until a character no address has.
            log.lines()
                .find_map(|l| l.split("control API on http://").nth(1))
                .map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
                        .collect::<String>()
                })
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| "no 'control API on' line yet".to_owned())
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
        cmd.args(args)
            .arg("--api")
            .arg(self.api().to_string())
            .output()
            .expect("run guts client")
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
        let child = self.child.as_mut().expect("running");
        let started = Instant::now();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{signal} failed");
        let status = eventually(grace, "the node to exit", || {
            child
                .try_wait()
                .expect("wait")
                .ok_or_else(|| "still running".to_owned())
        });
        self.child = None;
        (status, started.elapsed())
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
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
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
    Ok((code, body.to_owned()))
}
