//! Connection benchmark: prints a table; asserts nothing about speed.
//!
//! Targets, each its own process so its memory and CPU can be read from /proc:
//! - `guts`: a real `guts node` (release build), limits raised to hold the load;
//! - `bare`: the reference, a rust-libp2p node with the same transports but only
//!   identify and ping (this binary re-run with `--bare-target`).
//!
//! Measured against each, from a load process of many client swarms on loopback:
//! - memory per idle connection: RSS growth with N established connections, over N;
//! - inbound handshakes per second over TCP (Noise, yamux) and QUIC, and the target's
//!   CPU time per handshake.
//!
//! Run: `scripts/bench connections`. `GUTS_BENCH_CONNECTIONS` (default 1000) and
//! `GUTS_BENCH_HANDSHAKES` (default 500) change the counts.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use guts_protocol::NetworkName;
use guts_tests::process::NodeSpec;
use guts_tests::procfs;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, Swarm, SwarmBuilder, identify, noise, ping, tcp, yamux};
use tokio::sync::mpsc;

#[derive(NetworkBehaviour)]
struct Light {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

fn light_swarm() -> Swarm<Light> {
    let network = NetworkName::default_network();
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_quic()
        .with_behaviour(|key| Light {
            identify: identify::Behaviour::new(identify::Config::new(
                network.identify_protocol_version(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build()
}

/// The reference target: prints its addresses, then serves until killed.
async fn bare_target() {
    let mut swarm = light_swarm();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    swarm
        .listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap())
        .unwrap();
    let peer = *swarm.local_peer_id();
    let mut printed = 0;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            println!("{address}/p2p/{peer}");
            printed += 1;
            if printed == 2 {
                println!("ready");
            }
        }
    }
}

struct Target {
    name: &'static str,
    child: Option<Child>,
    pid: u32,
    tcp: Multiaddr,
    quic: Multiaddr,
    _guts: Option<guts_tests::process::GutsNode>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    fn guts() -> Target {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeSpec::loopback(&dir.path().join("target"))
            .args([
                "--max-connections",
                "5000",
                "--high-watermark",
                "4000",
                "--low-watermark",
                "0",
                "--max-pending-inbound",
                "5000",
                "--max-connections-per-peer",
                "2",
            ])
            .log_filter("warn,guts_node::api=info")
            .spawn();
        let tcp = node.tcp_addr().parse().unwrap();
        let quic = node
            .addr_with_prefix("/ip4/127.0.0.1/udp/")
            .parse()
            .unwrap();
        let pid = node.pid();
        Target {
            name: "guts",
            child: None,
            pid,
            tcp,
            quic,
            _guts: Some(node),
            _dir: Some(dir),
        }
    }

    fn bare() -> Target {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--bare-target")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addrs = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line == "ready" {
                break;
            }
            addrs.push(line);
        }
        let find = |needle: &str| {
            addrs
                .iter()
                .find(|a| a.contains(needle))
                .unwrap()
                .parse()
                .unwrap()
        };
        let (tcp, quic) = (find("/tcp/"), find("/quic-v1"));
        Target {
            name: "bare libp2p",
            pid: child.id(),
            child: Some(child),
            tcp,
            quic,
            _guts: None,
            _dir: None,
        }
    }

    fn rss_kib(&self) -> u64 {
        procfs::status_kib(self.pid, "VmRSS:").expect("the target's VmRSS")
    }

    /// User + system CPU time of the target so far.
    fn cpu(&self) -> Duration {
        procfs::cpu_time(self.pid).expect("the target's CPU time")
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Opens `n` connections to `addr` from `n` client swarms, at most `parallel` handshakes
/// at a time; returns the clients (to keep the connections) and the wall time taken.
async fn connect_many(
    addr: &Multiaddr,
    n: usize,
    parallel: usize,
) -> (Vec<mpsc::Sender<()>>, Duration) {
    let started = Instant::now();
    let mut stops = Vec::new();
    let mut pending = FuturesUnordered::new();
    let mut launched = 0;
    let mut done = 0;
    while done < n {
        while launched < n && pending.len() < parallel {
            let addr = addr.clone();
            let (stop_tx, mut stop_rx) = mpsc::channel::<()>(1);
            let (ok_tx, ok_rx) = tokio::sync::oneshot::channel::<bool>();
            tokio::spawn(async move {
                let mut swarm = light_swarm();
                swarm.dial(addr).unwrap();
                let mut ok_tx = Some(ok_tx);
                loop {
                    tokio::select! {
                        event = swarm.select_next_some() => match event {
                            SwarmEvent::ConnectionEstablished { .. } => {
                                if let Some(tx) = ok_tx.take() { let _ = tx.send(true); }
                            }
                            SwarmEvent::OutgoingConnectionError { .. } => {
                                if let Some(tx) = ok_tx.take() { let _ = tx.send(false); }
                            }
                            _ => {}
                        },
                        _ = stop_rx.recv() => break,
                    }
                }
            });
            stops.push(stop_tx);
            pending.push(ok_rx);
            launched += 1;
        }
        let ok = pending.next().await.unwrap().unwrap_or(false);
        assert!(ok, "a client failed to connect");
        done += 1;
    }
    (stops, started.elapsed())
}

/// RSS once it stops moving (identify exchanges and buffers settle after connecting).
async fn settled_rss(target: &Target) -> u64 {
    let mut last = target.rss_kib();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = target.rss_kib();
        if now.abs_diff(last) * 200 < last {
            return now;
        }
        last = now;
    }
    last
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bare-target") {
        return bare_target().await;
    }
    // `--load ADDR N`: hold N connections to ADDR for a minute (to profile a node).
    if let Some(i) = args.iter().position(|a| a == "--load") {
        let addr: Multiaddr = args[i + 1].parse().expect("multiaddr");
        let n: usize = args[i + 2].parse().expect("count");
        let (_clients, took) = connect_many(&addr, n, 64).await;
        eprintln!("{n} connections in {took:?}; holding for 60 s");
        tokio::time::sleep(Duration::from_secs(60)).await;
        return;
    }
    let conns = env_or("GUTS_BENCH_CONNECTIONS", 1000);
    let handshakes = env_or("GUTS_BENCH_HANDSHAKES", 500);
    let mut memory_rows = Vec::new();
    let mut handshake_rows = Vec::new();
    for make in [Target::guts as fn() -> Target, Target::bare] {
        let target = make();
        let before = settled_rss(&target).await;
        let (clients, took) = connect_many(&target.tcp, conns, 64).await;
        let after = settled_rss(&target).await;
        let per_conn = (after.saturating_sub(before)) as f64 / conns as f64;
        memory_rows.push((target.name, before, after, per_conn, took));
        drop(clients);
        drop(target);

        for (transport, pick) in [("TCP+Noise+yamux", 0), ("QUIC", 1)] {
            let target = make();
            let addr = if pick == 0 {
                target.tcp.clone()
            } else {
                target.quic.clone()
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
            let cpu0 = target.cpu();
            let (clients, took) = connect_many(&addr, handshakes, 128).await;
            let cpu = target.cpu() - cpu0;
            handshake_rows.push((
                target.name,
                transport,
                handshakes as f64 / took.as_secs_f64(),
                cpu / handshakes as u32,
            ));
            drop(clients);
        }
    }
    println!();
    println!("memory per idle connection: {conns} connections over TCP on loopback");
    println!(
        "{:<14} {:>12} {:>12} {:>16} {:>12}",
        "target", "RSS before", "RSS after", "per connection", "connect all"
    );
    for (name, before, after, per, took) in &memory_rows {
        println!(
            "{name:<14} {:>9} KiB {:>9} KiB {:>12.1} KiB {:>10.1} s",
            before,
            after,
            per,
            took.as_secs_f64()
        );
    }
    println!(
        "ratio guts / bare libp2p: {:.2}x",
        memory_rows[0].3 / memory_rows[1].3
    );
    println!();
    println!(
        "inbound handshakes: {handshakes} clients, 128 at a time, on loopback (2 cores shared with the clients)"
    );
    println!(
        "{:<14} {:<17} {:>14} {:>20}",
        "target", "transport", "handshakes/s", "target CPU/handshake"
    );
    for (name, transport, rate, cpu) in &handshake_rows {
        println!(
            "{name:<14} {transport:<17} {rate:>14.0} {:>17.2} ms",
            cpu.as_secs_f64() * 1000.0
        );
    }
}
