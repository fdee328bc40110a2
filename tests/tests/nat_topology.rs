//! The NAT test network itself (needs root): what gets through its NAT routers and what
//! does not, with plain sockets (python3) in the namespaces.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guts_tests::eventually;
use guts_tests::nat::{NatNet, RouterBehaviour};

/// Socket tools, one per first argument; each prints what it sees, a line at a time.
const TOOLS: &str = r#"
import select, socket, sys, time

cmd, args = sys.argv[1], sys.argv[2:]

def addr(s):
    ip, port = s.rsplit(":", 1)
    return ip, int(port)

def fmt(a):
    return f"{a[0]}:{a[1]}"

def bound(kind, port):
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    return s

if cmd == "tcp-listen":  # port: prints each peer
    s = bound(socket.SOCK_STREAM, int(args[0]))
    s.listen(16)
    print("listening", flush=True)
    while True:
        c, a = s.accept()
        print("accepted", fmt(a), flush=True)
        c.close()
elif cmd == "tcp-connect":  # source port (0: any), destination, timeout in seconds
    s = bound(socket.SOCK_STREAM, int(args[0]))
    s.settimeout(float(args[2]))
    start = time.monotonic()
    try:
        s.connect(addr(args[1]))
        print("connected", fmt(s.getsockname()), flush=True)
    except OSError as e:
        print("failed", f"after {time.monotonic() - start:.2f}s:", e, flush=True)
elif cmd == "udp-ask":  # destination, timeout: a connected socket sends once, awaits one
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(addr(args[0]))
    s.settimeout(float(args[1]))
    start = time.monotonic()
    s.send(b"hello")
    try:
        print("got", s.recv(1500).decode(), flush=True)
    except OSError as e:
        print("failed", f"after {time.monotonic() - start:.2f}s:", e, flush=True)
elif cmd == "udp-echo":  # port: prints each datagram and answers "reply"
    s = bound(socket.SOCK_DGRAM, int(args[0]))
    print("ready", flush=True)
    while True:
        data, a = s.recvfrom(1500)
        print("from", fmt(a), data.decode(), flush=True)
        s.sendto(b"reply", a)
elif cmd == "udp-send":  # source port (0: any), destination, message
    s = bound(socket.SOCK_DGRAM, int(args[0]))
    s.sendto(args[2].encode(), addr(args[1]))
    print("sent from", s.getsockname()[1], flush=True)
elif cmd == "udp-hello":  # destinations: says hello to each, prints all it gets until "bye"
    s = bound(socket.SOCK_DGRAM, 0)
    print("port", s.getsockname()[1], flush=True)
    for d in args:
        s.sendto(b"hello", addr(d))
    while True:
        data, a = s.recvfrom(1500)
        print("got", data.decode(), "from", fmt(a), flush=True)
        if data == b"bye":
            break
elif cmd == "udp-punch":  # source port, destination, timeout: sends until it hears back
    s = bound(socket.SOCK_DGRAM, int(args[0]))
    dst, deadline = addr(args[1]), time.monotonic() + float(args[2])
    while time.monotonic() < deadline:
        s.sendto(b"punch", dst)
        if select.select([s], [], [], 0.05)[0]:
            data, a = s.recvfrom(1500)
            s.sendto(b"punch", dst)
            print("heard", fmt(a), flush=True)
            break
    else:
        print("failed: heard nothing", flush=True)
"#;

/// A socket tool running in a namespace; killed on drop.
struct Tool {
    what: String,
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Tool {
    fn start(ns: &str, args: &[&str]) -> Tool {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-u", "-c", TOOLS])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ip netns exec python3");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Tool {
            what: format!("{} in {ns}", args.join(" ")),
            child,
            lines,
            stderr,
        }
    }

    /// The next line the tool prints, within `timeout`.
    fn line(&self, timeout: Duration) -> String {
        self.lines.recv_timeout(timeout).unwrap_or_else(|_| {
            panic!(
                "`{}` printed nothing more within {timeout:?}; stderr: {}",
                self.what,
                self.stderr.lock().unwrap()
            )
        })
    }

    /// Runs a tool that prints one line and ends, and returns the line.
    fn run(ns: &str, args: &[&str], timeout: Duration) -> String {
        Tool::start(ns, args).line(timeout)
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SHORT: Duration = Duration::from_secs(10);

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

fn ip_of(addr: &str) -> &str {
    addr.rsplit_once(':').unwrap().0
}

/// The packets that rules of `chain` in `router` with target `target` (for DROP: and the
/// chain's DROP policy) have taken so far.
fn counted(router: &str, chain: &str, target: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", router, "iptables", "-w", "-L", chain])
        .args(["-v", "-x", "-n"])
        .output()
        .expect("run iptables");
    let policy = format!("policy {target} ");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let Some(policy) = line.split(&policy).nth(1) {
                policy.split_whitespace().next()?.parse::<u64>().ok()
            } else if fields.get(2) == Some(&target) {
                fields[0].parse::<u64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// The packets `chain` of `router` dropped so far: by its DROP rules and its policy.
fn dropped(router: &str, chain: &str) -> u64 {
    counted(router, chain, "DROP")
}

/// Waits until rules of `chain` in NAT router `nat` with target `target` have taken a
/// packet more than `before`.
fn await_counted(net: &NatNet, nat: usize, chain: &str, target: &str, before: u64) {
    let what = format!("{target} in {chain} of router {nat}");
    eventually(SHORT, &what, || {
        match counted(net.router(nat), chain, target) > before {
            true => Ok(()),
            false => Err(net.router_rules(nat)),
        }
    });
}

/// Asserts that a tool's line says it was refused within a second: answered, not timed out.
fn assert_refused_at_once(out: &str) {
    let secs: Option<f64> = out
        .strip_prefix("failed after ")
        .and_then(|rest| rest.split_once("s: "))
        .filter(|(_, error)| error.ends_with("Connection refused"))
        .and_then(|(secs, _)| secs.parse().ok());
    assert!(secs.is_some_and(|s| s < 1.0), "not refused at once: {out}");
}

/// The entries of a conntrack table for flows from private port `port`.
fn flow(table: &str, port: u16) -> Vec<String> {
    let from = format!(" sport={port} ");
    let entries = table.lines().filter(|e| e.contains(&from));
    entries
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Gives public host `i` a route to the LAN of NAT router `nat` via the router's public
/// address, as if the ISP routed the private subnet there.
fn route_lan_via_router(net: &NatNet, i: usize, nat: usize) {
    let subnet = format!(
        "{}.0/24",
        net.nat_host_ip(nat, 0).rsplit_once('.').unwrap().0
    );
    let gateway = net.router_public_ip(nat);
    let status = Command::new("ip")
        .args([
            "-n",
            net.public_host(i),
            "route",
            "add",
            &subnet,
            "via",
            &gateway,
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A private host reaches public hosts, which see the router's public address; hosts on
/// one private LAN reach each other directly.
#[test]
fn private_hosts_reach_the_internet_from_the_routers_address() {
    let net = NatNet::new(1, 1, 2);
    let server = Tool::start(net.public_host(0), &["tcp-listen", "8000"]);
    assert_eq!(server.line(SHORT), "listening");
    let target = format!("{}:8000", net.public_ip(0));
    let out = Tool::run(
        net.nat_host(0, 0),
        &["tcp-connect", "0", &target, "5"],
        SHORT,
    );
    let local = out
        .strip_prefix("connected ")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(ip_of(local), net.nat_host_ip(0, 0));
    let seen = server.line(SHORT);
    let seen = seen.strip_prefix("accepted ").unwrap();
    assert_eq!(ip_of(seen), net.router_public_ip(0), "{seen}");
    println!(
        "(1) TCP from {local} seen by the public host as {seen}: port preserved: {}",
        port_of(local) == port_of(seen)
    );

    let lan_server = Tool::start(net.nat_host(0, 0), &["tcp-listen", "8000"]);
    assert_eq!(lan_server.line(SHORT), "listening");
    let target = format!("{}:8000", net.nat_host_ip(0, 0));
    let out = Tool::run(
        net.nat_host(0, 1),
        &["tcp-connect", "0", &target, "5"],
        SHORT,
    );
    assert!(out.starts_with("connected "), "{out}");
    let seen = lan_server.line(SHORT);
    assert!(
        seen.starts_with(&format!("accepted {}:", net.nat_host_ip(0, 1))),
        "{seen}"
    );
}

/// Nothing from the internet gets to a private host: there is no route to its address,
/// and with one the router does not forward; the router's own address drops it silently.
#[test]
fn the_internet_cannot_reach_private_hosts() {
    let net = NatNet::new(1, 1, 2);
    let server = Tool::start(net.nat_host(0, 0), &["tcp-listen", "8000"]);
    assert_eq!(server.line(SHORT), "listening");
    // It listens: its LAN neighbour gets through.
    let target = format!("{}:8000", net.nat_host_ip(0, 0));
    let out = Tool::run(
        net.nat_host(0, 1),
        &["tcp-connect", "0", &target, "5"],
        SHORT,
    );
    assert!(out.starts_with("connected "), "{out}");
    assert!(server.line(SHORT).starts_with("accepted "));

    let public = net.public_host(0);
    let out = Tool::run(public, &["tcp-connect", "0", &target, "1.5"], SHORT);
    println!("(2) public host to a private address: {out}");
    assert!(out.starts_with("failed "), "{out}");

    // As if the ISP routed the private subnet to the router: the router still drops it.
    route_lan_via_router(&net, 0, 0);
    let before = dropped(net.router(0), "FORWARD");
    let out = Tool::run(public, &["tcp-connect", "0", &target, "1.5"], SHORT);
    println!("(2) ... with a route to it via the router: {out}");
    assert!(out.starts_with("failed "), "{out}");
    let after = dropped(net.router(0), "FORWARD");
    assert!(after > before, "FORWARD drops {before} -> {after}");

    let router = format!("{}:8000", net.router_public_ip(0));
    let out = Tool::run(public, &["tcp-connect", "0", &router, "1.5"], SHORT);
    println!("(2) ... to the router's public address: {out}");
    assert!(out.contains("timed out"), "{out}");
    assert!(
        !server
            .lines
            .try_recv()
            .is_ok_and(|l| l.starts_with("accepted")),
        "the private host was reached"
    );
}

/// Hosts behind two NATs cannot reach each other's private addresses, nor each other
/// through the other router's public address (no port forwarding).
#[test]
fn hosts_behind_different_nats_cannot_reach_each_other_directly() {
    let net = NatNet::new(0, 2, 1);
    let server = Tool::start(net.nat_host(1, 0), &["tcp-listen", "8000"]);
    assert_eq!(server.line(SHORT), "listening");
    let target = format!("{}:8000", net.nat_host_ip(1, 0));
    let out = Tool::run(
        net.nat_host(0, 0),
        &["tcp-connect", "0", &target, "1.5"],
        SHORT,
    );
    println!("(3) private host to a private address behind another NAT: {out}");
    assert!(out.starts_with("failed "), "{out}");
    let target = format!("{}:8000", net.router_public_ip(1));
    let out = Tool::run(
        net.nat_host(0, 0),
        &["tcp-connect", "0", &target, "1.5"],
        SHORT,
    );
    println!("(3) ... to the other router's public address: {out}");
    assert!(out.contains("timed out"), "{out}");
}

/// UDP: the router keeps the private source port and uses the same mapping for every
/// destination; it lets in only packets from the address and port the host sent to.
#[test]
fn udp_mapping_preserves_the_port_and_filters_by_address_and_port() {
    let net = NatNet::new(3, 1, 1);
    let echoes: Vec<Tool> = (0..2)
        .map(|i| Tool::start(net.public_host(i), &["udp-echo", "5000"]))
        .collect();
    for echo in &echoes {
        assert_eq!(echo.line(SHORT), "ready");
    }
    let to = |i| format!("{}:5000", net.public_ip(i));
    let client = Tool::start(net.nat_host(0, 0), &["udp-hello", &to(0), &to(1)]);
    let port: u16 = client.line(SHORT)["port ".len()..].parse().unwrap();
    let seen: Vec<String> = echoes
        .iter()
        .map(|echo| {
            let line = echo.line(SHORT);
            line.strip_prefix("from ")
                .unwrap()
                .trim_end_matches(" hello")
                .to_owned()
        })
        .collect();
    for s in &seen {
        assert_eq!(ip_of(s), net.router_public_ip(0), "{s}");
    }
    let mapped = port_of(&seen[0]);
    println!(
        "(4) UDP from private port {port}: public host 0 sees {}, public host 1 sees {}; \
         port preserved: {}, same mapping for both: {}",
        seen[0],
        seen[1],
        mapped == port,
        port_of(&seen[1]) == mapped
    );
    assert_eq!(mapped, port, "the NAT did not keep the source port");
    assert_eq!(
        port_of(&seen[1]),
        mapped,
        "the mapping depends on the destination"
    );
    // The answers come back through the mapping.
    let mut replies = vec![client.line(SHORT), client.line(SHORT)];
    replies.sort();
    assert_eq!(
        replies,
        vec![
            format!("got reply from {}", to(0)),
            format!("got reply from {}", to(1))
        ]
    );

    // Filtering: public host 0 from another port, and public host 2 which was never
    // written to, are dropped by the router.
    let mapping = format!("{}:{mapped}", net.router_public_ip(0));
    let before = dropped(net.router(0), "INPUT");
    let out = Tool::run(
        net.public_host(0),
        &["udp-send", "0", &mapping, "other-port"],
        SHORT,
    );
    assert!(
        out.starts_with("sent from") && !out.ends_with(" 5000"),
        "{out}"
    );
    let out = Tool::run(
        net.public_host(2),
        &["udp-send", "5000", &mapping, "stranger"],
        SHORT,
    );
    assert!(out.starts_with("sent from"), "{out}");
    eventually(Duration::from_secs(5), "the router to drop both", || {
        let n = dropped(net.router(0), "INPUT") - before;
        if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n} dropped\n{}", net.conntrack_table(0)))
        }
    });
    // From the very address and port written to, it gets in.
    drop(echoes);
    let out = Tool::run(
        net.public_host(0),
        &["udp-send", "5000", &mapping, "bye"],
        SHORT,
    );
    assert!(out.starts_with("sent from"), "{out}");
    assert_eq!(client.line(SHORT), format!("got bye from {}", to(0)));
    println!(
        "(4) filtering: from another port of the same host: dropped; from another host: dropped; from the address written to: delivered"
    );
}

/// Two hosts behind two NATs reach each other by hole punching: both send to the other's
/// router address at once (UDP, and a TCP simultaneous open).
#[test]
fn hole_punching_crosses_two_nats() {
    let net = NatNet::new(0, 2, 1);
    let a_to_b = format!("{}:40001", net.router_public_ip(1));
    let b_to_a = format!("{}:40000", net.router_public_ip(0));

    let a = Tool::start(net.nat_host(0, 0), &["udp-punch", "40000", &a_to_b, "5"]);
    let b = Tool::start(net.nat_host(1, 0), &["udp-punch", "40001", &b_to_a, "5"]);
    assert_eq!(a.line(SHORT), format!("heard {a_to_b}"));
    assert_eq!(b.line(SHORT), format!("heard {b_to_a}"));

    let a = Tool::start(
        net.nat_host(0, 0),
        &[
            "tcp-connect",
            "41000",
            &a_to_b.replace("40001", "41001"),
            "5",
        ],
    );
    let b = Tool::start(
        net.nat_host(1, 0),
        &[
            "tcp-connect",
            "41001",
            &b_to_a.replace("40000", "41000"),
            "5",
        ],
    );
    let (a, b) = (a.line(SHORT), b.line(SHORT));
    println!("(5) TCP simultaneous open: a {a}, b {b}");
    assert!(a.starts_with("connected ") && b.starts_with("connected "));
}

/// A symmetric router ([`RouterBehaviour::Symmetric`]) maps each destination to another
/// port, drops what is unsolicited silently, and hole punching fails; set back to
/// port preserving, its new flows keep their port again.
#[test]
fn symmetric_nat_defeats_hole_punching() {
    let net = NatNet::new(2, 2, 1);
    net.set_behaviour(0, RouterBehaviour::Symmetric);
    let echoes: Vec<Tool> = (0..2)
        .map(|i| Tool::start(net.public_host(i), &["udp-echo", "5000"]))
        .collect();
    for echo in &echoes {
        assert_eq!(echo.line(SHORT), "ready");
    }
    let to = |i| format!("{}:5000", net.public_ip(i));
    // The public ports two public hosts see for one private port of host 0 behind router 0.
    let hello = || {
        let client = Tool::start(net.nat_host(0, 0), &["udp-hello", &to(0), &to(1)]);
        let port: u16 = client.line(SHORT)["port ".len()..].parse().unwrap();
        let seen = echoes
            .iter()
            .map(|e| port_of(e.line(SHORT).trim_end_matches(" hello")));
        (port, seen.collect::<Vec<u16>>())
    };
    let (port, seen) = hello();
    println!("(6) symmetric NAT, private port {port}: public hosts see ports {seen:?}");
    assert_ne!(
        seen[0], seen[1],
        "the mapping does not depend on the destination"
    );

    let router = format!("{}:8000", net.router_public_ip(0));
    let unsolicited = Tool::start(net.public_host(0), &["tcp-connect", "0", &router, "1.5"]);
    let a_to_b = format!("{}:40001", net.router_public_ip(1));
    let b_to_a = format!("{}:40000", net.router_public_ip(0));
    let start = Instant::now();
    let a = Tool::start(net.nat_host(0, 0), &["udp-punch", "40000", &a_to_b, "2"]);
    let b = Tool::start(net.nat_host(1, 0), &["udp-punch", "40001", &b_to_a, "2"]);
    let (a, b) = (a.line(SHORT), b.line(SHORT));
    println!(
        "(6) hole punching through it: a {a}, b {b} ({:?})",
        start.elapsed()
    );
    assert!(
        a.starts_with("failed") && b.starts_with("failed"),
        "{a} / {b}"
    );
    let out = unsolicited.line(SHORT);
    println!("(6) TCP to its public address: {out}");
    assert!(out.contains("timed out"), "{out}");

    // The older switch, the other way: port preserving and endpoint independent again.
    net.set_symmetric(0, false);
    let (port, seen) = hello();
    println!("(6) set back, private port {port}: public hosts see ports {seen:?}");
    assert_eq!(seen, [port, port]);
}

/// A [`RouterBehaviour::Reject`] router answers what it does not let in: a TCP reset (a
/// connect is refused at once instead of timing out) and an ICMP port unreachable (a
/// connected UDP socket's receive is refused), for its own public address and towards its
/// LAN alike. The answer leaves no conntrack entry behind. Set back to
/// [`RouterBehaviour::SilentDrop`], it drops all of them silently again.
#[test]
fn a_rejecting_router_refuses_unsolicited_packets_at_once() {
    let net = NatNet::new(1, 1, 1);
    net.set_behaviour(0, RouterBehaviour::Reject);
    let tcp = Tool::start(net.nat_host(0, 0), &["tcp-listen", "8000"]);
    let udp = Tool::start(net.nat_host(0, 0), &["udp-echo", "8001"]);
    assert_eq!(tcp.line(SHORT), "listening");
    assert_eq!(udp.line(SHORT), "ready");
    route_lan_via_router(&net, 0, 0);
    let (wan, lan) = (net.router_public_ip(0), net.nat_host_ip(0, 0));
    let targets = [("INPUT", &wan), ("FORWARD", &lan)];
    for (chain, ip) in targets {
        let before = counted(net.router(0), chain, "REJECT");
        let tcp_to = format!("{ip}:8000");
        let out = Tool::run(
            net.public_host(0),
            &["tcp-connect", "0", &tcp_to, "5"],
            SHORT,
        );
        println!("(7) reject router, TCP to {tcp_to}: {out}");
        assert_refused_at_once(&out);
        let udp_to = format!("{ip}:8001");
        let out = Tool::run(net.public_host(0), &["udp-ask", &udp_to, "5"], SHORT);
        println!("(7) reject router, UDP to {udp_to}: {out}");
        assert_refused_at_once(&out);
        // The router answered, not the private host (which listens on both ports).
        let rejected = counted(net.router(0), chain, "REJECT") - before;
        assert_eq!(rejected, 2, "{}", net.router_rules(0));
    }
    assert!(
        tcp.lines.try_recv().is_err(),
        "the private host was reached"
    );
    assert!(
        udp.lines.try_recv().is_err(),
        "the private host was reached"
    );
    // A refused packet's conntrack entry is never confirmed: nothing of the public host's.
    let table = net.conntrack_table(0);
    println!("(7) reject router's conntrack table afterwards: {table:?}");
    assert!(!table.contains(&net.public_ip(0)), "{table}");

    net.set_behaviour(0, RouterBehaviour::SilentDrop);
    let tools: Vec<Tool> = targets
        .iter()
        .flat_map(|(_, ip)| {
            let tcp_to = format!("{ip}:8000");
            let udp_to = format!("{ip}:8001");
            [
                Tool::start(net.public_host(0), &["tcp-connect", "0", &tcp_to, "1.5"]),
                Tool::start(net.public_host(0), &["udp-ask", &udp_to, "1.5"]),
            ]
        })
        .collect();
    for tool in tools {
        let out = tool.line(SHORT);
        println!("(7) set back to silent drop, {}: {out}", tool.what);
        assert!(out.ends_with("timed out"), "{out}");
    }
}

/// Hole punching between a [`RouterBehaviour::Reject`] router (0) and a
/// [`RouterBehaviour::SilentDrop`] one (1), with the order of the first packets fixed: at
/// once, which reaches the other router first is a race.
/// - UDP crosses in either order. The Reject router answers an early datagram with an
///   ICMP error, which reaches the sender (an unconnected socket ignores it) and leaves its
///   router's mapping alone.
/// - TCP crosses when the host behind the Reject router sends first: the silent router
///   drops its early SYN, as in (5). The other way round, the Reject router answers the
///   early SYN with a reset: that connect is refused at once, and the reset deletes the
///   early side's mapping in its own router (conntrack kills an entry whose only reply is
///   a reset), so the late side's SYN is dropped there too. A new connect from the refused
///   side while the late side still tries crosses.
#[test]
fn hole_punching_between_a_rejecting_and_a_silent_router() {
    let net = NatNet::new(0, 2, 1);
    net.set_behaviour(0, RouterBehaviour::Reject);
    // The packets router k has turned away on its public address so far.
    let target = |k: usize| ["REJECT", "DROP"][k];
    let turned_away = |k: usize| counted(net.router(k), "INPUT", target(k));
    // The host behind router k, from port base + k to the other router's port for it.
    let to = |k: usize, base: u16| format!("{}:{}", net.router_public_ip(k), base + k as u16);
    let send = |k: usize, cmd: &str, base: u16| {
        let from = (base + k as u16).to_string();
        Tool::start(net.nat_host(k, 0), &[cmd, &from, &to(1 - k, base), "5"])
    };
    // The host behind router `first` sends first; the other once its packet was turned away.
    let punch = |first: usize, cmd: &str, base: u16| {
        let other = 1 - first;
        let before = turned_away(other);
        let early = send(first, cmd, base);
        await_counted(&net, other, "INPUT", target(other), before);
        let late = send(other, cmd, base);
        (early.line(SHORT), late.line(SHORT))
    };

    for (first, base) in [(0, 40000), (1, 40010)] {
        let (early, late) = punch(first, "udp-punch", base);
        println!("(8) UDP, behind router {first} first: early {early}, late {late}");
        assert_eq!(early, format!("heard {}", to(1 - first, base)));
        assert_eq!(late, format!("heard {}", to(first, base)));
    }

    let (early, late) = punch(0, "tcp-connect", 41000);
    println!("(8) TCP, behind the Reject router first: early {early}, late {late}");
    assert!(early.starts_with("connected ") && late.starts_with("connected "));

    let out = send(1, "tcp-connect", 41010).line(SHORT);
    println!("(8) TCP, behind the silent router first: early {out}");
    assert_refused_at_once(&out);
    let gone = flow(&net.conntrack_table(1), 41011);
    println!("(8) ... its mapping in its router then: {gone:?}");
    assert!(gone.is_empty(), "the mapping survived the reset: {gone:?}");
    let before = turned_away(1);
    let late = send(0, "tcp-connect", 41010);
    await_counted(&net, 1, "INPUT", "DROP", before);
    let waiting = flow(&net.conntrack_table(0), 41010);
    println!("(8) ... the late SYN, dropped by the silent router: {waiting:?}");
    assert!(
        waiting.iter().any(|e| e.contains("SYN_SENT")),
        "{waiting:?}"
    );
    let again = send(1, "tcp-connect", 41010).line(SHORT);
    let late = late.line(SHORT);
    println!("(8) ... the refused side again: {again}, the late side: {late}");
    assert!(again.starts_with("connected ") && late.starts_with("connected "));
}
