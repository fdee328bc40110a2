//! Inbound connections per remote IP, counted from the pending stage so a host is
//! refused before the handshake costs anything.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;

#[derive(Default)]
pub(super) struct InboundIps {
    by_connection: HashMap<ConnectionId, IpAddr>,
    counts: HashMap<IpAddr, u32>,
    allow: Vec<IpNet>,
}

impl InboundIps {
    pub fn new(allow: Vec<IpNet>) -> Self {
        InboundIps {
            allow,
            ..Default::default()
        }
    }

    /// The count limit does not apply to this IP (loopback, or allow-listed).
    pub fn is_exempt(&self, ip: &IpAddr) -> bool {
        ip.is_loopback() || self.allow.iter().any(|net| net.contains(ip))
    }

    pub fn count(&self, ip: &IpAddr) -> u32 {
        self.counts.get(ip).copied().unwrap_or(0)
    }

    pub fn add(&mut self, id: ConnectionId, ip: IpAddr) {
        self.by_connection.insert(id, ip);
        *self.counts.entry(ip).or_default() += 1;
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
pub(super) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
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
    fn counts_per_ip_and_exempts_loopback_and_allowed() {
        let mut ips = InboundIps::new(vec!["10.1.0.0/16".parse().unwrap()]);
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
