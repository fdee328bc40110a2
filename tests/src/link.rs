//! A bad link between the two hosts of a namespace LAN: bandwidth (tc `tbf`), random loss
//! (iptables `statistic`) and latency (the `delay-proxy`), since this kernel has no netem
//! qdisc. Needs root.
//!
//! Bandwidth and loss apply to each host's own interface, both ways. Latency applies to
//! what crosses a proxy: host 0 runs its services on loopback only and a proxy on its LAN
//! address in front of each, so host 1 reaches them only over the slow, lossy link and
//! the delay.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::netns::Lan;

/// What the link does to traffic.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Bandwidth each way, Mbit/s.
    pub rate_mbit: u32,
    /// Share of packets dropped at each host (0.02: 2 %).
    pub loss: f64,
    /// Round-trip time added through a proxy.
    pub rtt: Duration,
}

/// Two hosts joined by a shaped link; torn down on drop.
pub struct BadLink {
    /// The LAN: host 0 serves, host 1 reaches it.
    pub lan: Lan,
    shape: Shape,
    proxies: Vec<Child>,
}

fn run(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?} in {ns}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} in {ns} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl BadLink {
    pub fn new(shape: Shape) -> BadLink {
        let lan = Lan::new(2);
        for i in 0..2 {
            let ns = lan.host(i).to_owned();
            let rate = format!("{}mbit", shape.rate_mbit);
            // A burst of a few packets and a queue of 400 ms: a home uplink, roughly.
            run(
                &ns,
                &[
                    "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", &rate, "burst",
                    "32kbit", "latency", "400ms",
                ],
            );
            if shape.loss > 0.0 {
                let p = format!("{}", shape.loss);
                run(
                    &ns,
                    &[
                        "iptables",
                        "-A",
                        "INPUT",
                        "-i",
                        "eth0",
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &p,
                        "-j",
                        "DROP",
                    ],
                );
            }
        }
        BadLink {
            lan,
            shape,
            proxies: Vec::new(),
        }
    }

    /// Puts a delay proxy on host 0's LAN address, port `port`, in front of its loopback
    /// port `target`; returns the proxy's address (`ip:port`) for host 1 to use.
    pub fn proxy(&mut self, port: u16, target: u16) -> String {
        let listen = format!("{}:{port}", self.lan.host_ip(0));
        let delay = (self.shape.rtt / 2).as_millis().to_string();
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.lan.host(0)])
            .arg(delay_proxy_bin())
            .args([&listen, &format!("127.0.0.1:{target}"), &delay])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start delay-proxy");
        // The proxy says it listens, or exits (its stderr says why).
        let mut line = String::new();
        let stdout = child.stdout.take().expect("proxy stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the proxy's first line");
        assert!(
            line.starts_with("listening on"),
            "delay-proxy did not start"
        );
        self.proxies.push(child);
        listen
    }
}

/// The `delay-proxy` binary cargo built beside the running test or benchmark (which run
/// from `target/<profile>/deps`): `CARGO_BIN_EXE_*` is given to test crates, not to this
/// library.
fn delay_proxy_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("delay-proxy"))
        .expect("the test runs from target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} is missing: cargo builds it for tests and benches of guts-tests",
        bin.display()
    );
    bin
}

impl Drop for BadLink {
    fn drop(&mut self) {
        for child in &mut self.proxies {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The namespaces (and with them the qdiscs and rules) go with the LAN.
    }
}
