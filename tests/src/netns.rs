//! Network namespaces joined by a bridge: several hosts with their own addresses on one
//! machine, where multicast (mDNS) is delivered as on a real LAN. Needs root.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Subnet of the test LANs: hosts get 10.77.<lan>.<n>/24.
const SUBNET: &str = "10.77";

pub(crate) fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Panics with a clear message unless namespaces can be created here.
pub fn require_root() {
    let uid = Command::new("id").arg("-u").output().expect("run id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test creates network namespaces and must run as root (CI does)"
    );
}

/// A LAN: one namespace holding a bridge, and `n` host namespaces each joined to it by a
/// veth pair. Everything is deleted on drop, also when the test fails.
pub struct Lan {
    id: String,
    lan: u32,
    hosts: Vec<String>,
}

static NEXT_LAN: AtomicU32 = AtomicU32::new(0);

impl Lan {
    pub fn new(n: usize) -> Lan {
        require_root();
        remove_stale();
        let seq = NEXT_LAN.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // One /24 per LAN; distinct across concurrently running test processes.
        let lan = (pid.wrapping_mul(7) + seq) % 250 + 1;
        let id = format!("{pid}-{seq}");
        let mut me = Lan {
            id,
            lan,
            hosts: Vec::new(),
        };
        me.build(n)
            .unwrap_or_else(|e| panic!("cannot build test LAN: {e}"));
        me
    }

    fn switch(&self) -> String {
        format!("guts-sw-{}", self.id)
    }

    fn build(&mut self, n: usize) -> Result<(), String> {
        let sw = self.switch();
        ip(&["netns", "add", &sw])?;
        ip(&[
            "-n",
            &sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let host = format!("guts-h{i}-{}", self.id);
            ip(&["netns", "add", &host])?;
            self.hosts.push(host.clone());
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
            let outer = format!("p{i}");
            // Created inside the host namespace so names never clash with other tests.
            ip(&[
                "-n", &host, "link", "add", "eth0", "type", "veth", "peer", "name", &outer,
            ])?;
            ip(&["-n", &host, "link", "set", &outer, "netns", &sw])?;
            ip(&["-n", &sw, "link", "set", &outer, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &outer, "up"])?;
            let addr = format!("{}/24", self.host_ip(i));
            ip(&["-n", &host, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &host, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// Name of host `i`'s namespace.
    pub fn host(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Host `i`'s address.
    pub fn host_ip(&self, i: usize) -> String {
        format!("{SUBNET}.{}.{}", self.lan, i + 1)
    }

    /// Gives host `i` its own `/etc/hosts`: each name resolves to the addresses listed for
    /// it, in order. Processes started in the host's namespace (`ip netns exec`) see it
    /// instead of the machine's; a rewrite reaches those already running, since the file is
    /// written in place (the bind mount holds its inode).
    pub fn set_hosts(&self, i: usize, names: &[(&str, Vec<String>)]) {
        let dir = format!("/etc/netns/{}", self.host(i));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir}: {e}"));
        let mut text = String::from("127.0.0.1 localhost\n");
        for (name, addrs) in names {
            for addr in addrs {
                text.push_str(&format!("{addr} {name}\n"));
            }
        }
        let path = format!("{dir}/hosts");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }

    /// Cuts host `i` off the LAN, or reconnects it.
    pub fn set_link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.switch(), "link", "set", &format!("p{i}"), state])
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.switch())) {
            let _ = ip(&["netns", "del", ns]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}

/// Deletes namespaces left by test processes that no longer exist (e.g. killed by a
/// timeout before their cleanup ran).
pub(crate) fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if !name.starts_with("guts-") {
            continue;
        }
        let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = ip(&["netns", "del", name]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{name}"));
        }
    }
}
