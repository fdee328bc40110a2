//! What the benchmarks share: running commands, timing them with their peak memory, a
//! `git daemon` to compare with, a node's inbound bytes and peak RSS, and the table's
//! units.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::eventually;
use crate::process::GutsNode;
use crate::procfs;

/// The number in variable `name`, else `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `cmd`, which must succeed; its output.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `git ARGS` in `dir`, which must succeed.
pub fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new("git").current_dir(dir).args(args))
}

/// `git daemon` serving `base` on a free loopback port.
pub struct GitDaemon {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl GitDaemon {
    /// Starts it.
    pub fn start(base: &Path) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // `git daemon` would run `git-daemon` as a child that outlives a kill of the
        // wrapper; start the daemon itself.
        let exec_path =
            String::from_utf8(run(Command::new("git").arg("--exec-path")).stdout).unwrap();
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        eventually(Duration::from_secs(10), "git daemon listening", || {
            TcpStream::connect(("127.0.0.1", port))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        GitDaemon { child, port }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` under GNU time; returns (wall time, peak RSS in bytes).
pub fn timed(cmd: &mut Command) -> (Duration, u64) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let dir = cmd.get_current_dir().map(Path::to_path_buf);
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(report.path())
        .arg(program)
        .args(args);
    if let Some(d) = dir {
        timed.current_dir(d);
    }
    let started = Instant::now();
    run(&mut timed);
    let took = started.elapsed();
    let kib: u64 = std::fs::read_to_string(report.path())
        .unwrap()
        .trim()
        .lines()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    (took, kib * 1024)
}

/// The peak RSS of process `pid` so far, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    procfs::status_kib(pid, "VmHWM:").expect("the node's VmHWM") * 1024
}

/// Bytes `node` received on all its connections (libp2p's bandwidth counter).
pub fn inbound_wire_bytes(node: &GutsNode) -> u64 {
    let (_, metrics) = crate::process::http_get(node.api(), "/metrics").unwrap();
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("libp2p_bandwidth_bytes_total") && l.contains("direction=\"Inbound\"")
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The median of `v`.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `bytes` in MiB, for the table.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// `d` in milliseconds, for the table.
pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
