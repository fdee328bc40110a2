//! Real NAT made of network namespaces: hosts on a public "internet" and hosts behind
//! home-style NAT routers, for tests of nodes behind NAT (AutoNAT, relay reservations,
//! DCUtR hole punching). Needs root, and `iptables` (Debian package `iptables`; the nft or
//! the legacy variant).
//!
//! # Layout
//!
//! `n` is the net's number (one per [`NatNet`], from the process id as [`crate::netns`]
//! numbers its LANs; namespaces are isolated, so a clash would be harmless anyway).
//!
//! - The internet: a bridge in its own namespace. Public host `i` has `198.18.n.(i+1)/24`,
//!   NAT router `k` has its public leg `wan0` at `198.18.n.(101+k)/24`. 198.18.0.0/15 is
//!   reserved for benchmarks (RFC 2544), routed nowhere; libp2p's AutoNAT v2 (the one the
//!   node uses) accepts it, AutoNAT v1 with `only_global_ips` would not.
//! - Behind router `k`: a bridge `lan0` in the router's namespace (a home router's built-in
//!   switch) at `10.(78+k).n.1/24`; its host `i` at `10.(78+k).n.(i+2)/24`, default route
//!   via the router. Every NAT has its own private subnet.
//! - No default routes on the internet: a private address is unreachable from there, and
//!   from behind another NAT, at once (no route, or ICMP net unreachable from the router)
//!   instead of black-holed until a timeout as on the real internet.
//!
//! Each router's rules live in its own namespace (`ip netns exec <router> iptables ...`);
//! the machine's rules (docker's) are untouched. By default
//! ([`RouterBehaviour::SilentDrop`]; [`NatNet::set_behaviour`] picks another, see
//! [Behaviours](#behaviours)):
//! - `nat POSTROUTING -o wan0 -j MASQUERADE`, IPv4 forwarding on;
//! - `FORWARD` policy DROP: the LAN out to the internet; from the internet into the LAN only
//!   `ESTABLISHED,RELATED` (replies to what the LAN sent); `INVALID` dropped;
//! - on `wan0`, `INPUT` only `ESTABLISHED,RELATED`: anything else sent to the router's
//!   public address is dropped silently, no TCP reset or ICMP error, as most home routers do.
//!
//! # What kind of NAT
//!
//! Linux conntrack with MASQUERADE. Checked with plain sockets (the `nat_topology` test;
//! the port collision by hand), except hairpinning, which follows from the rules. By
//! default:
//! - Mapping: port preserving and endpoint independent. A flow keeps its private source
//!   port when that port of the router is free towards its destination, and a later flow
//!   from the same private address and port reuses the mapping, whatever its destination,
//!   while conntrack holds an entry for it (nf_nat looks for an existing mapping of the
//!   source first). So every peer observes the same `router:port`: what identify reports
//!   and hole punching needs. Exceptions: two private hosts on the same port towards one
//!   destination collide, and the second gets another port; mappings end with their
//!   conntrack entries (UDP: after 30 s of silence, 120 s once a flow has had traffic both
//!   ways for a while; TCP: with the connection).
//! - Filtering: address and port dependent. An inbound packet to a mapped port gets in only
//!   if it matches a conntrack entry, that is if it comes from the very address and port
//!   the private side sent to; from another port of that host, or from another host, it is
//!   dropped. RFC 4787: endpoint-independent mapping, address-and-port-dependent filtering;
//!   RFC 3489: a "port restricted cone", not a full cone. Hole punching works because both
//!   sides send at once: each side's outgoing packet opens its NAT for the other's (conntrack
//!   follows a TCP simultaneous open), and a packet that arrives before the other side's
//!   mapping exists is dropped silently, not refused.
//! - No hairpinning: a host cannot reach a peer behind its own NAT through the router's
//!   public address (there is no port forwarding).
//!
//! # Behaviours
//!
//! [`NatNet::set_behaviour`] gives one router a [`RouterBehaviour`], replacing its whole
//! rule set at once (`iptables-restore`); tracked flows keep their mappings.
//! - [`RouterBehaviour::SilentDrop`], the default: all of the above.
//! - [`RouterBehaviour::Reject`]: the same mapping and filtering, but what is not let in,
//!   to the router's public address or forwarded towards its LAN, is answered: TCP with a
//!   reset (a connect is refused at once), UDP with an ICMP port unreachable (a connected
//!   socket's next receive is refused; an unconnected one ignores it). The refused packet's
//!   conntrack entry is never confirmed: the rejecting router keeps no trace of it, and the
//!   port stays free for its own hosts. But the answer crosses the sender's NAT as RELATED
//!   traffic, and there a TCP reset that is a flow's only reply makes conntrack delete
//!   the flow (the mapping) at once; an ICMP error leaves a UDP mapping alone. So in hole
//!   punching across a Reject router, UDP crosses whoever sends first, and TCP crosses
//!   only if the host behind the Reject router sends first (or the SYNs cross in flight):
//!   the other way round the early connect is refused, its mapping is gone, and the late
//!   side's SYN is dropped by the early side's router. A new connect from the refused
//!   side, while the late side still tries, crosses.
//! - [`RouterBehaviour::Symmetric`]: a random public port per flow
//!   (`MASQUERADE --random-fully`, endpoint-dependent mapping), filtering as the default:
//!   a symmetric NAT, which hole punching cannot cross. [`NatNet::set_symmetric`] is the
//!   older switch for it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::netns::{ip, remove_stale, require_root};

mod rules;

pub use rules::RouterBehaviour;

const MAX_PUBLIC_HOSTS: usize = 100;
const MAX_NATS: usize = 100;
const MAX_HOSTS_PER_NAT: usize = 250;

/// Runs `program args` inside namespace `ns`, with `input` on its stdin.
fn exec_in(ns: &str, program: &str, args: &[&str], input: &str) -> Result<String, String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let written = stdin.write_all(input.as_bytes());
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot wait for {program}: {e}"))?;
    written.map_err(|e| format!("cannot write to {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} in {ns} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Public hosts on an internet, and NAT routers each with hosts on a private LAN behind
/// it (see the module docs). Every namespace is deleted on drop, also when the test fails.
pub struct NatNet {
    id: String,
    net: u32,
    internet: String,
    public: Vec<String>,
    routers: Vec<String>,
    private: Vec<Vec<String>>,
    /// Every namespace made so far, to delete.
    made: Vec<String>,
}

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

impl NatNet {
    /// An internet with `public_hosts` hosts and `nats` NAT routers, each with
    /// `hosts_per_nat` hosts behind it.
    pub fn new(public_hosts: usize, nats: usize, hosts_per_nat: usize) -> NatNet {
        require_root();
        assert!(
            public_hosts <= MAX_PUBLIC_HOSTS,
            "at most {MAX_PUBLIC_HOSTS}"
        );
        assert!(nats <= MAX_NATS, "at most {MAX_NATS} NATs");
        assert!(
            hosts_per_nat <= MAX_HOSTS_PER_NAT,
            "at most {MAX_HOSTS_PER_NAT}"
        );
        let has_iptables = Command::new("iptables")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            has_iptables,
            "NAT tests need iptables (Debian package `iptables`)"
        );
        remove_stale();
        let seq = NEXT_NET.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let net = (pid.wrapping_mul(7) + seq) % 250 + 1;
        let id = format!("{pid}-{seq}");
        let mut me = NatNet {
            internet: format!("guts-inet-{id}"),
            id,
            net,
            public: Vec::new(),
            routers: Vec::new(),
            private: Vec::new(),
            made: Vec::new(),
        };
        me.build(public_hosts, nats, hosts_per_nat)
            .unwrap_or_else(|e| panic!("cannot build the NAT test network: {e}"));
        me
    }

    fn add_ns(&mut self, name: String) -> Result<String, String> {
        ip(&["netns", "add", &name])?;
        self.made.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// Joins namespace `ns` to the bridge `bridge` of namespace `switch` by a veth pair:
    /// `inner` in `ns` with `addr`, `port` in `switch`.
    fn plug(
        ns: &str,
        inner: &str,
        addr: &str,
        switch: &str,
        bridge: &str,
        port: &str,
    ) -> Result<(), String> {
        // Made inside `ns`, so names never clash with other tests'.
        ip(&[
            "-n", ns, "link", "add", inner, "type", "veth", "peer", "name", port,
        ])?;
        ip(&["-n", ns, "link", "set", port, "netns", switch])?;
        ip(&["-n", switch, "link", "set", port, "master", bridge])?;
        ip(&["-n", switch, "link", "set", port, "up"])?;
        ip(&["-n", ns, "addr", "add", addr, "dev", inner])?;
        ip(&["-n", ns, "link", "set", inner, "up"])
    }

    fn build(
        &mut self,
        public_hosts: usize,
        nats: usize,
        hosts_per_nat: usize,
    ) -> Result<(), String> {
        let inet = self.add_ns(self.internet.clone())?;
        add_bridge(&inet, "br0")?;
        for i in 0..public_hosts {
            let host = self.add_ns(format!("guts-pub{i}-{}", self.id))?;
            let addr = format!("{}/24", self.public_ip(i));
            Self::plug(&host, "eth0", &addr, &inet, "br0", &format!("p{i}"))?;
            self.public.push(host);
        }
        for k in 0..nats {
            let router = self.add_ns(format!("guts-nat{k}-{}", self.id))?;
            let wan = format!("{}/24", self.router_public_ip(k));
            Self::plug(&router, "wan0", &wan, &inet, "br0", &format!("n{k}"))?;
            add_bridge(&router, "lan0")?;
            let lan = format!("{}/24", self.router_private_ip(k));
            ip(&["-n", &router, "addr", "add", &lan, "dev", "lan0"])?;
            exec_in(
                &router,
                "sh",
                &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
                "",
            )?;
            let rules = RouterBehaviour::default().rules();
            exec_in(&router, "iptables-restore", &["-w"], &rules)?;
            self.routers.push(router.clone());
            self.private.push(Vec::new());
            for i in 0..hosts_per_nat {
                let host = self.add_ns(format!("guts-nat{k}h{i}-{}", self.id))?;
                let addr = format!("{}/24", self.nat_host_ip(k, i));
                Self::plug(&host, "eth0", &addr, &router, "lan0", &format!("h{i}"))?;
                let gateway = self.router_private_ip(k);
                ip(&["-n", &host, "route", "add", "default", "via", &gateway])?;
                self.private[k].push(host);
            }
        }
        Ok(())
    }

    /// Name of public host `i`'s namespace.
    pub fn public_host(&self, i: usize) -> &str {
        &self.public[i]
    }

    /// Public host `i`'s address.
    pub fn public_ip(&self, i: usize) -> String {
        format!("198.18.{}.{}", self.net, i + 1)
    }

    /// Name of NAT router `nat`'s namespace (to look at its rules or mappings with
    /// `ip netns exec`).
    pub fn router(&self, nat: usize) -> &str {
        &self.routers[nat]
    }

    /// The public address of NAT router `nat`: the source of everything its hosts send out.
    pub fn router_public_ip(&self, nat: usize) -> String {
        format!("198.18.{}.{}", self.net, nat + 101)
    }

    /// The private address of NAT router `nat`: its hosts' gateway.
    pub fn router_private_ip(&self, nat: usize) -> String {
        format!("10.{}.{}.1", nat + 78, self.net)
    }

    /// Name of the namespace of host `i` behind NAT router `nat`.
    pub fn nat_host(&self, nat: usize, i: usize) -> &str {
        &self.private[nat][i]
    }

    /// The private address of host `i` behind NAT router `nat`.
    pub fn nat_host_ip(&self, nat: usize, i: usize) -> String {
        format!("10.{}.{}.{}", nat + 78, self.net, i + 2)
    }

    /// Gives NAT router `nat` behaviour `behaviour` (see [`RouterBehaviour`]), replacing
    /// all its rules at once. Flows already tracked keep their mappings (conntrack is not
    /// flushed); new flows follow the new rules.
    pub fn set_behaviour(&self, nat: usize, behaviour: RouterBehaviour) {
        exec_in(
            self.router(nat),
            "iptables-restore",
            &["-w"],
            &behaviour.rules(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Makes NAT router `nat` [`RouterBehaviour::Symmetric`], or, with `false`,
    /// [`RouterBehaviour::SilentDrop`] (whatever it was before).
    pub fn set_symmetric(&self, nat: usize, symmetric: bool) {
        let behaviour = if symmetric {
            RouterBehaviour::Symmetric
        } else {
            RouterBehaviour::SilentDrop
        };
        self.set_behaviour(nat, behaviour);
    }

    /// NAT router `nat`'s rules with their packet counters (`iptables-save -c`), for
    /// failure messages.
    pub fn router_rules(&self, nat: usize) -> String {
        exec_in(self.router(nat), "iptables-save", &["-c"], "")
            .unwrap_or_else(|e| format!("(no rules: {e})"))
    }

    /// NAT router `nat`'s connection tracking table (its mappings), for failure messages.
    pub fn conntrack_table(&self, nat: usize) -> String {
        exec_in(self.router(nat), "cat", &["/proc/net/nf_conntrack"], "")
            .unwrap_or_else(|e| format!("(no conntrack table: {e})"))
    }
}

fn add_bridge(ns: &str, name: &str) -> Result<(), String> {
    ip(&[
        "-n",
        ns,
        "link",
        "add",
        name,
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ])?;
    ip(&["-n", ns, "link", "set", name, "up"])
}

impl Drop for NatNet {
    fn drop(&mut self) {
        for ns in &self.made {
            let _ = ip(&["netns", "del", ns]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}
