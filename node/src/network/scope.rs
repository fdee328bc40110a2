//! How far an address reaches (this host, a private network, anywhere), and so which
//! addresses a peer may give the node: none narrower than where it connects from. Apart
//! from discovery because the DHT's store applies the same rule.

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Whether an address is on loopback (127.0.0.0/8 or ::1).
pub(crate) fn is_loopback_addr(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        Some(Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h)) => h == "localhost",
        _ => false,
    }
}

/// How far an address reaches, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    /// This host only.
    Loopback,
    /// A private network: RFC 1918, CGNAT, link-local, IPv6 unique-local.
    Private,
    /// Anything else: global addresses, DNS names, relayed addresses.
    Global,
}

/// The scope of `addr`.
pub(crate) fn scope_of(addr: &Multiaddr) -> Scope {
    if is_loopback_addr(addr) {
        return Scope::Loopback;
    }
    if super::nat::is_relayed(addr) {
        return Scope::Global;
    }
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => {
            let cgnat = ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64;
            if ip.is_private() || ip.is_link_local() || cgnat {
                Scope::Private
            } else {
                Scope::Global
            }
        }
        Some(Protocol::Ip6(ip)) => {
            let first = ip.segments()[0];
            let unique_local = (first & 0xfe00) == 0xfc00;
            let link_local = (first & 0xffc0) == 0xfe80;
            if unique_local || link_local {
                Scope::Private
            } else {
                Scope::Global
            }
        }
        Some(Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h))
            if h.ends_with(".localhost") =>
        {
            Scope::Loopback
        }
        _ => Scope::Global,
    }
}
