//! Inbound connections per remote IP, counted from the pending stage so a host is
//! refused before the handshake costs anything. An IPv6 host usually holds a whole /64
//! (and picks a new address in it at will), so IPv6 addresses count by prefix.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;

/// The group an address counts in: the address itself for IPv4, its first
/// `v6_prefix` bits for IPv6 (one host's usual allocation is a /64).
pub(crate) fn ip_group(ip: IpAddr, v6_prefix: u8) -> IpNet {
    match ip {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => Ipv6Net::new(v6, v6_prefix.min(128))
            .map(|n| IpNet::V6(n.trunc()))
            .unwrap_or(IpNet::V6(Ipv6Net::from(v6))),
    }
}

pub(super) struct InboundIps {
    by_connection: HashMap<ConnectionId, IpNet>,
    counts: HashMap<IpNet, u32>,
    allow: Vec<IpNet>,
    v6_prefix: u8,
}

impl InboundIps {
    pub fn new(allow: Vec<IpNet>, v6_prefix: u8) -> Self {
        InboundIps {
            by_connection: HashMap::new(),
            counts: HashMap::new(),
            allow,
            v6_prefix,
        }
    }

    /// The group `ip` counts in.
    pub fn group(&self, ip: IpAddr) -> IpNet {
        ip_group(ip, self.v6_prefix)
    }

    /// The count limit does not apply to this IP (loopback, or allow-listed).
    pub fn is_exempt(&self, ip: &IpAddr) -> bool {
        ip.is_loopback() || self.allow.iter().any(|net| net.contains(ip))
    }

    /// Connections counted in `ip`'s group.
    pub fn count(&self, ip: &IpAddr) -> u32 {
        self.counts.get(&self.group(*ip)).copied().unwrap_or(0)
    }

    pub fn add(&mut self, id: ConnectionId, ip: IpAddr) {
        let group = self.group(ip);
        self.by_connection.insert(id, group);
        *self.counts.entry(group).or_default() += 1;
    }

    pub fn remove(&mut self, id: ConnectionId) {
        if let Some(ip) = self.by_connection.remove(&id)
            && let Some(n) = self.counts.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&ip);
            }
        }
    }
}

/// The IP address a multiaddr starts with, if any.
pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ip_of_a_multiaddr_is_its_first_part_v4_or_v6() {
        let ip = |a: &str| ip_of(&a.parse().unwrap());
        assert_eq!(
            ip("/ip4/192.0.2.1/tcp/1"),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            ip("/ip6/2001:db8::1/tcp/1"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(ip("/dns4/example.com/tcp/1"), None);
    }

    #[test]
    fn ipv6_addresses_count_by_prefix() {
        let mut ips = InboundIps::new(vec![], 64);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        ips.add(ConnectionId::new_unchecked(1), a);
        ips.add(ConnectionId::new_unchecked(2), b);
        assert_eq!(ips.count(&a), 2, "one /64");
        assert_eq!(ips.count(&other), 0);
        assert_eq!(ips.group(a).to_string(), "2001:db8:1:2::/64");
        let exact = InboundIps::new(vec![], 128);
        assert_eq!(exact.group(a).to_string(), "2001:db8:1:2::1/128");
        assert_eq!(
            ip_group("192.0.2.7".parse().unwrap(), 64).to_string(),
            "192.0.2.7/32"
        );
    }

    #[test]
    fn counts_per_ip_and_exempts_loopback_and_allowed() {
        let mut ips = InboundIps::new(vec!["10.1.0.0/16".parse().unwrap()], 64);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        ips.add(ConnectionId::new_unchecked(1), a);
        ips.add(ConnectionId::new_unchecked(2), a);
        assert_eq!(ips.count(&a), 2);
        ips.remove(ConnectionId::new_unchecked(1));
        ips.remove(ConnectionId::new_unchecked(1));
        assert_eq!(ips.count(&a), 1);
        assert!(ips.is_exempt(&"127.0.0.9".parse().unwrap()));
        assert!(ips.is_exempt(&"10.1.2.3".parse().unwrap()));
        assert!(!ips.is_exempt(&a));
        assert_eq!(
            ip_of(&"/ip4/192.0.2.1/udp/5/quic-v1".parse().unwrap()),
            Some(a)
        );
    }
}
