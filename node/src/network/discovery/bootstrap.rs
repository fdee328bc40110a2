//! The bootstrap list: each address dialled with backoff until reached, and again after
//! its peer goes away.
//!
//! A `/dns`, `/dns4` or `/dns6` address is resolved here rather than by the transport:
//! the transport dials one of the addresses a name gives, while a name such as Swarm's
//! `tasks.<service>` or a Kubernetes headless Service stands for every task or pod behind
//! it. Each address it resolves to (up to [`MAX_ADDRESSES_PER_NAME`]) becomes an entry of
//! its own, and the name is looked up again whenever one of them is retried, so tasks and
//! pods that come and go are found.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use guts_api::BootstrapReport;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};

use crate::connection_manager;
use crate::metrics::{Metrics, Outcome};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// At most this many addresses of one name are dialled: a name for a large deployment
/// should not turn one bootstrap entry into hundreds of dials (the DHT finds the rest).
pub(crate) const MAX_ADDRESSES_PER_NAME: usize = 16;
/// How often a name is looked up again while none of its addresses needs a retry, to
/// find tasks or pods that came since.
const RESOLVE_INTERVAL: Duration = Duration::from_secs(60);
/// How long a lookup may take before it counts as failed.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
enum State {
    Due(Instant),
    Dialing(ConnectionId),
    Connected,
    /// The peer speaks another network's protocols: retrying cannot help.
    OtherNetwork(String),
}

/// Where an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The address as configured.
    Configured,
    /// One address of the configured name at this index of `Bootstrap::names`.
    Resolved(usize),
}

#[derive(Debug)]
struct Entry {
    /// As configured (including any `/p2p/<id>`), or as resolved from a name.
    addr: Multiaddr,
    peer: Option<PeerId>,
    state: State,
    backoff: Duration,
    origin: Origin,
}

/// A configured address that starts with a DNS name.
#[derive(Debug)]
struct Name {
    addr: Multiaddr,
    /// `Some` while looked up; else when the next lookup is due.
    due: Option<Instant>,
    backoff: Duration,
    /// What the last lookup gave: how many addresses, or why it failed.
    last: Option<Result<usize, String>>,
}

/// A finished lookup: the name's index in the list of names, and what it resolved to.
pub(crate) type BootstrapLookup = (usize, Result<Vec<IpAddr>, String>);

/// A lookup under way.
type Lookup = BoxFuture<'static, BootstrapLookup>;

/// The bootstrap list and the state of each address in it.
pub(crate) struct Bootstrap {
    entries: Vec<Entry>,
    names: Vec<Name>,
    lookups: FuturesUnordered<Lookup>,
}

impl Bootstrap {
    pub fn new(addrs: &[Multiaddr]) -> Self {
        let now = Instant::now();
        let mut bootstrap = Bootstrap {
            entries: Vec::new(),
            names: Vec::new(),
            lookups: FuturesUnordered::new(),
        };
        for addr in addrs {
            if dns_name(addr).is_some() {
                bootstrap.names.push(Name {
                    addr: addr.clone(),
                    due: Some(now),
                    backoff: FIRST_BACKOFF,
                    last: None,
                });
            } else {
                bootstrap.entries.push(Entry {
                    addr: addr.clone(),
                    peer: peer_of(addr),
                    state: State::Due(now),
                    backoff: FIRST_BACKOFF,
                    origin: Origin::Configured,
                });
            }
        }
        bootstrap
    }

    /// When the next dial or lookup is due, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        let dials = self.entries.iter().filter_map(|e| match e.state {
            State::Due(at) => Some(at),
            _ => None,
        });
        dials.chain(self.names.iter().filter_map(|n| n.due)).min()
    }

    /// Whether `peer` is (or was reached through) a bootstrap address.
    pub fn is_bootstrap_peer(&self, peer: &PeerId) -> bool {
        self.entries.iter().any(|e| e.peer.as_ref() == Some(peer))
    }

    /// Starts a lookup of every name whose time has come, and queues a dial for every
    /// entry whose time has come.
    pub fn dial_due(&mut self, manager: &mut connection_manager::Behaviour) {
        let now = Instant::now();
        for (index, name) in self.names.iter_mut().enumerate() {
            if name.due.is_some_and(|at| at <= now) {
                name.due = None;
                self.lookups
                    .push(Box::pin(resolve(index, name.addr.clone())));
            }
        }
        for entry in &mut self.entries {
            if !matches!(entry.state, State::Due(at) if at <= now) {
                continue;
            }
            if let Some(peer) = entry.peer
                && manager.is_connected(&peer)
            {
                entry.state = State::Connected;
                continue;
            }
            // An address resolved from a name is dialled as an address: the task or pod
            // behind it may have a new identity since the last time.
            let expected = match entry.origin {
                Origin::Configured => entry.peer,
                Origin::Resolved(name) => peer_of(&self.names[name].addr),
            };
            let opts = match expected {
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![entry.addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id()
                    .address(entry.addr.clone())
                    .build(),
            };
            tracing::debug!(addr = %entry.addr, "dialling bootstrap peer");
            let id = manager.dial(opts);
            entry.state = State::Dialing(id);
        }
    }

    /// The next lookup to finish; pending while none is under way or none has finished.
    /// Returns `None` at once when no lookup is under way.
    pub async fn next_lookup(&mut self) -> Option<BootstrapLookup> {
        self.lookups.next().await
    }

    /// A lookup finished: its addresses become entries, due at once (those it no longer
    /// gives are forgotten unless connected). Addresses in `own` (this
    /// node's listen addresses: a headless Service name includes the pod's own) are left
    /// out.
    pub fn on_lookup(
        &mut self,
        index: usize,
        found: Result<Vec<IpAddr>, String>,
        own: &[Multiaddr],
    ) {
        let now = Instant::now();
        let Some(name) = self.names.get_mut(index) else {
            return;
        };
        let found = found.and_then(|ips| {
            if ips.is_empty() {
                Err("no address of the right family".to_owned())
            } else {
                Ok(ips)
            }
        });
        let ips = match found {
            Ok(ips) => ips,
            Err(error) => {
                tracing::warn!(
                    addr = %name.addr,
                    "bootstrap name not resolved: {error}; retrying in {}s",
                    name.backoff.as_secs()
                );
                name.last = Some(Err(error));
                name.due = Some(now + name.backoff);
                name.backoff = (name.backoff * 2).min(MAX_BACKOFF);
                return;
            }
        };
        let addrs: Vec<Multiaddr> = ips
            .iter()
            .take(MAX_ADDRESSES_PER_NAME)
            .filter_map(|ip| with_ip(&name.addr, *ip))
            .filter(|addr| !own.contains(&without_peer_id(addr)))
            .collect();
        tracing::info!(
            addr = %name.addr,
            "bootstrap name resolved to {} address(es): {}",
            ips.len(),
            addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        );
        name.last = Some(Ok(ips.len()));
        name.due = Some(now + RESOLVE_INTERVAL);
        name.backoff = FIRST_BACKOFF;
        let peer = peer_of(&name.addr);
        let origin = Origin::Resolved(index);
        // Kept only if connected: one being dialled again (the lookup starts with its
        // retry) is gone from the name, and its dial's outcome finds no entry.
        self.entries.retain(|e| {
            e.origin != origin || addrs.contains(&e.addr) || e.state == State::Connected
        });
        for addr in addrs {
            let held = self.entries.iter().filter(|e| e.origin == origin).count();
            if held >= MAX_ADDRESSES_PER_NAME {
                break;
            }
            if !self.entries.iter().any(|e| e.addr == addr) {
                self.entries.push(Entry {
                    addr,
                    peer,
                    state: State::Due(now),
                    backoff: FIRST_BACKOFF,
                    origin,
                });
            }
        }
    }

    /// A connection came up; returns true when it reached a bootstrap peer.
    pub fn on_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        kad: &mut crate::network::provider_store::Kad,
        metrics: &Metrics,
    ) -> bool {
        let mut is_bootstrap = false;
        for entry in &mut self.entries {
            let ours = entry.state == State::Dialing(id);
            if ours || entry.peer == Some(peer) {
                if ours {
                    metrics
                        .bootstrap_dials
                        .get_or_create(&Outcome {
                            outcome: "connected",
                        })
                        .inc();
                    tracing::info!(addr = %entry.addr, %peer, "connected to bootstrap peer");
                }
                if !matches!(entry.state, State::OtherNetwork(_)) {
                    entry.state = State::Connected;
                    entry.backoff = FIRST_BACKOFF;
                }
                entry.peer = Some(peer);
                // We reached it at this address, so the DHT can use it.
                kad.add_address(&peer, without_peer_id(&entry.addr));
                is_bootstrap = true;
            }
        }
        is_bootstrap
    }

    /// A dial failed.
    pub fn on_dial_failed(&mut self, id: ConnectionId, error: &str, metrics: &Metrics) {
        let mut retries = Vec::new();
        for entry in &mut self.entries {
            if entry.state == State::Dialing(id) {
                metrics
                    .bootstrap_dials
                    .get_or_create(&Outcome { outcome: "failed" })
                    .inc();
                entry.retry_later(error);
                retries.push(entry.retry());
            }
        }
        self.resolve_again(retries);
    }

    /// A dial was skipped or refused because the peer is already connected (`connected`
    /// names it) or being dialled.
    pub fn on_dial_skipped(&mut self, id: ConnectionId, connected: Option<PeerId>) {
        for entry in &mut self.entries {
            if entry.state == State::Dialing(id) {
                entry.state = match connected {
                    Some(peer) => {
                        tracing::info!(addr = %entry.addr, %peer, "bootstrap peer already connected");
                        entry.peer = Some(peer);
                        entry.backoff = FIRST_BACKOFF;
                        State::Connected
                    }
                    None => State::Due(Instant::now() + entry.backoff),
                };
            }
        }
    }

    /// The last connection to `peer` closed: dial it again after a pause.
    pub fn on_disconnected(&mut self, peer: &PeerId) {
        let mut retries = Vec::new();
        for entry in &mut self.entries {
            if entry.peer.as_ref() == Some(peer) && entry.state == State::Connected {
                entry.state = State::Due(Instant::now() + entry.backoff);
                retries.push(entry.retry());
            }
        }
        self.resolve_again(retries);
    }

    /// Names whose addresses are retried are looked up again by the same time: the task or
    /// pod may be gone, and another may have come in its place.
    fn resolve_again(&mut self, retries: Vec<Option<(usize, Instant)>>) {
        for (index, at) in retries.into_iter().flatten() {
            if let Some(name) = self.names.get_mut(index)
                && let Some(due) = name.due
            {
                name.due = Some(due.min(at));
            }
        }
    }

    /// `peer` turned out to speak another network's protocols.
    pub fn on_other_network(&mut self, peer: &PeerId, their_version: &str) {
        for entry in &mut self.entries {
            if entry.peer.as_ref() == Some(peer) && !matches!(entry.state, State::OtherNetwork(_)) {
                tracing::warn!(
                    addr = %entry.addr,
                    "bootstrap peer {peer} is on another network (it speaks {their_version:?}); not dialling it again"
                );
                entry.state = State::OtherNetwork(their_version.to_owned());
            }
        }
    }

    /// Each name (how its last lookup went), then each address (how it is doing).
    pub fn reports(&self) -> Vec<BootstrapReport> {
        let now = Instant::now();
        let until = |at: Instant| at.saturating_duration_since(now).as_secs();
        let names = self.names.iter().map(|n| BootstrapReport {
            address: n.addr.to_string(),
            peer_id: peer_of(&n.addr).map(|p| p.to_string()),
            state: match (&n.last, n.due) {
                (_, None) => "resolving".to_owned(),
                (None, Some(at)) => format!("resolving in {}s", until(at)),
                (Some(Ok(count)), Some(at)) => {
                    format!("resolved to {count} address(es); again in {}s", until(at))
                }
                (Some(Err(error)), Some(at)) => {
                    format!("not resolved: {error}; retrying in {}s", until(at))
                }
            },
            resolved_from: None,
        });
        let entries = self.entries.iter().map(|e| BootstrapReport {
            address: e.addr.to_string(),
            peer_id: e.peer.map(|p| p.to_string()),
            state: match &e.state {
                State::Connected => "connected".to_owned(),
                State::Dialing(_) => "dialing".to_owned(),
                State::Due(at) => format!("retrying in {}s", until(*at)),
                State::OtherNetwork(v) => format!("other network: {v}"),
            },
            resolved_from: match e.origin {
                Origin::Configured => None,
                Origin::Resolved(index) => Some(self.names[index].addr.to_string()),
            },
        });
        names.chain(entries).collect()
    }
}

impl Entry {
    fn retry_later(&mut self, error: &str) {
        tracing::warn!(
            addr = %self.addr,
            "bootstrap peer unreachable: {error}; retrying in {}s",
            self.backoff.as_secs()
        );
        self.state = State::Due(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// For an address resolved from a name: the name, and when this address is retried.
    fn retry(&self) -> Option<(usize, Instant)> {
        match (self.origin, &self.state) {
            (Origin::Resolved(index), State::Due(at)) => Some((index, *at)),
            _ => None,
        }
    }
}

/// Which addresses a DNS name in a multiaddr stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `/dns`: both.
    Any,
    /// `/dns4`.
    V4,
    /// `/dns6`.
    V6,
}

impl Family {
    fn admits(self, ip: IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }
}

/// The DNS name `addr` starts with, if any. `/dnsaddr` is not one: its TXT records name
/// whole addresses with peer ids, which the transport resolves itself.
fn dns_name(addr: &Multiaddr) -> Option<(String, Family)> {
    match addr.iter().next() {
        Some(Protocol::Dns(name)) => Some((name.into_owned(), Family::Any)),
        Some(Protocol::Dns4(name)) => Some((name.into_owned(), Family::V4)),
        Some(Protocol::Dns6(name)) => Some((name.into_owned(), Family::V6)),
        _ => None,
    }
}

/// `addr` with its leading DNS name replaced by `ip`.
fn with_ip(addr: &Multiaddr, ip: IpAddr) -> Option<Multiaddr> {
    let mut parts = addr.iter();
    let (_, family) = dns_name(addr)?;
    parts.next();
    if !family.admits(ip) {
        return None;
    }
    let first = match ip {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    Some(std::iter::once(first).chain(parts).collect())
}

/// Looks up the name `addr` starts with through the system's resolver (so `/etc/hosts`
/// and the container's DNS both count): every address of its family, once each, in the
/// resolver's order.
async fn resolve(index: usize, addr: Multiaddr) -> BootstrapLookup {
    let Some((host, family)) = dns_name(&addr) else {
        return (index, Err(format!("{addr} does not start with a DNS name")));
    };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host.as_str(), 0)));
    let found = match found.await {
        Err(_) => Err(format!("no answer within {}s", RESOLVE_TIMEOUT.as_secs())),
        Ok(Err(error)) => Err(error.to_string()),
        Ok(Ok(found)) => {
            let mut ips: Vec<IpAddr> = Vec::new();
            for ip in found.map(|socket| socket.ip()) {
                if family.admits(ip) && !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            Ok(ips)
        }
    };
    (index, found)
}

/// The peer id at the end of `addr`, if any.
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// `addr` without a trailing `/p2p/<id>`.
pub(crate) fn without_peer_id(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if let Some(Protocol::P2p(_)) = addr.iter().last() {
        addr.pop();
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<Multiaddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let mut b = Bootstrap::new(&addrs(&["/ip4/10.0.0.1/tcp/1"]));
        let e = &mut b.entries[0];
        for _ in 0..10 {
            e.retry_later("test");
        }
        assert_eq!(e.backoff, MAX_BACKOFF);
        assert!(matches!(e.state, State::Due(_)));
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// The addresses resolved from name `index`, in order.
    fn resolved(b: &Bootstrap, index: usize) -> Vec<String> {
        b.entries
            .iter()
            .filter(|e| e.origin == Origin::Resolved(index))
            .map(|e| e.addr.to_string())
            .collect()
    }

    #[test]
    fn names_are_looked_up_and_addresses_dialled_as_they_are() {
        let b = Bootstrap::new(&addrs(&[
            "/dns4/tasks.node/tcp/9000",
            "/ip4/10.0.0.1/tcp/1",
            "/dnsaddr/bootstrap.libp2p.io",
        ]));
        assert_eq!(b.names.len(), 1);
        assert_eq!(b.names[0].addr.to_string(), "/dns4/tasks.node/tcp/9000");
        // `/dnsaddr` is left to the transport.
        assert_eq!(b.entries.len(), 2);
    }

    #[test]
    fn every_address_of_a_name_becomes_an_entry_with_the_rest_of_the_address() {
        let peer = PeerId::random();
        let mut b = Bootstrap::new(&addrs(&[&format!(
            "/dns/tasks.node/udp/9000/quic-v1/p2p/{peer}"
        )]));
        b.on_lookup(0, Ok(ips(&["10.0.0.2", "fd00::3", "10.0.0.4"])), &[]);
        assert_eq!(
            resolved(&b, 0),
            [
                format!("/ip4/10.0.0.2/udp/9000/quic-v1/p2p/{peer}"),
                format!("/ip6/fd00::3/udp/9000/quic-v1/p2p/{peer}"),
                format!("/ip4/10.0.0.4/udp/9000/quic-v1/p2p/{peer}"),
            ]
        );
        assert!(b.entries.iter().all(|e| e.peer == Some(peer)));
        assert!(b.entries.iter().all(|e| matches!(e.state, State::Due(_))));
        assert_eq!(b.names[0].last, Some(Ok(3)));
        assert!(b.names[0].due.is_some_and(|at| at > Instant::now()));
    }

    #[test]
    fn a_name_leaves_out_this_nodes_own_address() {
        let mut b = Bootstrap::new(&addrs(&["/dns4/guts-peers/tcp/9000"]));
        let own = addrs(&["/ip4/127.0.0.1/tcp/9000", "/ip4/10.0.0.2/tcp/9000"]);
        b.on_lookup(0, Ok(ips(&["10.0.0.2", "10.0.0.3"])), &own);
        assert_eq!(resolved(&b, 0), ["/ip4/10.0.0.3/tcp/9000"]);
    }

    #[test]
    fn dns4_and_dns6_keep_only_their_family() {
        let mut b = Bootstrap::new(&addrs(&["/dns4/a/tcp/1", "/dns6/b/tcp/1"]));
        b.on_lookup(0, Ok(ips(&["10.0.0.2", "fd00::3"])), &[]);
        b.on_lookup(1, Ok(ips(&["10.0.0.2", "fd00::3"])), &[]);
        assert_eq!(resolved(&b, 0), ["/ip4/10.0.0.2/tcp/1"]);
        assert_eq!(resolved(&b, 1), ["/ip6/fd00::3/tcp/1"]);
    }

    #[test]
    fn a_name_gives_at_most_the_cap_of_addresses() {
        let mut b = Bootstrap::new(&addrs(&["/dns4/tasks.node/tcp/9000"]));
        let many: Vec<IpAddr> = (1..=40)
            .map(|i| format!("10.0.1.{i}").parse().unwrap())
            .collect();
        b.on_lookup(0, Ok(many), &[]);
        assert_eq!(resolved(&b, 0).len(), MAX_ADDRESSES_PER_NAME);
        // The count says what the name gave, the entries what is dialled.
        assert_eq!(b.names[0].last, Some(Ok(40)));
    }

    #[test]
    fn a_new_lookup_forgets_addresses_gone_from_the_name_unless_connected() {
        let mut b = Bootstrap::new(&addrs(&["/dns4/tasks.node/tcp/9000"]));
        b.on_lookup(0, Ok(ips(&["10.0.0.1", "10.0.0.2", "10.0.0.3"])), &[]);
        b.entries[0].state = State::Connected;
        // Being dialled again is no reason to keep it.
        b.entries[1].state = State::Dialing(ConnectionId::new_unchecked(7));
        b.on_lookup(0, Ok(ips(&["10.0.0.3", "10.0.0.4"])), &[]);
        assert_eq!(
            resolved(&b, 0),
            [
                "/ip4/10.0.0.1/tcp/9000",
                "/ip4/10.0.0.3/tcp/9000",
                "/ip4/10.0.0.4/tcp/9000"
            ]
        );
    }

    #[test]
    fn a_failed_lookup_is_retried_with_backoff_and_reported() {
        let mut b = Bootstrap::new(&addrs(&["/dns4/tasks.node/tcp/9000"]));
        b.names[0].due = None;
        b.on_lookup(0, Err("no such host".into()), &[]);
        b.names[0].due = None;
        b.on_lookup(0, Ok(Vec::new()), &[]);
        assert_eq!(b.names[0].backoff, FIRST_BACKOFF * 4);
        assert!(b.entries.is_empty());
        let report = &b.reports()[0];
        assert_eq!(report.address, "/dns4/tasks.node/tcp/9000");
        assert!(
            report
                .state
                .starts_with("not resolved: no address of the right family; retrying in"),
            "{report:?}"
        );
    }

    #[test]
    fn a_retried_address_brings_its_name_lookup_forward() {
        let mut b = Bootstrap::new(&addrs(&["/dns4/tasks.node/tcp/9000"]));
        b.on_lookup(0, Ok(ips(&["10.0.0.1"])), &[]);
        let later = b.names[0].due.unwrap();
        let peer = PeerId::random();
        b.entries[0].state = State::Connected;
        b.entries[0].peer = Some(peer);
        b.on_disconnected(&peer);
        let State::Due(retry) = b.entries[0].state else {
            panic!("{:?}", b.entries[0].state);
        };
        assert_eq!(b.names[0].due, Some(retry));
        assert!(retry < later);
        // Reported with the name it came from.
        assert_eq!(
            b.reports()[1].resolved_from.as_deref(),
            Some("/dns4/tasks.node/tcp/9000")
        );
    }

    #[test]
    fn peer_id_suffix_is_understood() {
        let peer = PeerId::random();
        let addr: Multiaddr = format!("/ip4/10.0.0.1/tcp/1/p2p/{peer}").parse().unwrap();
        assert_eq!(peer_of(&addr), Some(peer));
        assert_eq!(
            without_peer_id(&addr),
            "/ip4/10.0.0.1/tcp/1".parse::<Multiaddr>().unwrap()
        );
    }
}
