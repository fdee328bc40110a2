//! Finding peers and deciding which found peers belong: the bootstrap list, mDNS (with
//! its service tag), peers of other networks turned away, and identify feeding Kademlia.
//!
//! [`Discovery`] acts only on the two behaviours it needs (Kademlia and the connection
//! manager); the event loop hands them in and carries out its verdicts on the swarm.

mod bootstrap;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use guts_api::BootstrapReport;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, identify, mdns};

use super::scope::{Scope, is_loopback_addr, scope_of};
use crate::config::Config;
use crate::connection_manager::{self, Protection};
use crate::metrics::Metrics;
use bootstrap::Bootstrap;
pub(crate) use bootstrap::{BootstrapLookup, peer_of};

pub(crate) use crate::network::provider_store::Kad;

/// How long a peer found to be on another network (or with another mDNS tag) is not
/// dialled again through discovery.
const REJECT_MEMORY: Duration = Duration::from_secs(10 * 60);

/// What to do with a peer that just identified itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// One of ours: keep it.
    Welcome,
    /// Disconnect it. `reason` is a metric label, `message` says why to a person.
    Reject {
        reason: &'static str,
        message: String,
    },
}

/// Everything the node knows about peers it may connect to.
pub(crate) struct Discovery {
    local: PeerId,
    /// The identify protocol version of our network.
    network_version: String,
    /// Our network's Kademlia protocol: peers that offer it answer DHT queries.
    kad_protocol: String,
    mdns_tag: String,
    bootstrap: Bootstrap,
    /// Peers on another network or with another mDNS tag, and until when to ignore them.
    rejected: HashMap<PeerId, Instant>,
    /// Peers we dialled because mDNS found them (their tag is checked on identify).
    mdns_dialled: HashMap<PeerId, Instant>,
    /// Peers found by mDNS and their addresses, for when the node wants more peers.
    mdns_peers: HashMap<PeerId, Vec<Multiaddr>>,
}

impl Discovery {
    pub(crate) fn new(config: &Config, local: PeerId) -> Self {
        Discovery {
            local,
            network_version: config.network.identify_protocol_version(),
            kad_protocol: config.network.kad_protocol(),
            mdns_tag: config.net.mdns_service_tag.clone(),
            bootstrap: Bootstrap::new(&config.net.bootstrap),
            rejected: HashMap::new(),
            mdns_dialled: HashMap::new(),
            mdns_peers: HashMap::new(),
        }
    }

    /// When the next bootstrap dial is due, if any is waiting.
    pub(crate) fn next_bootstrap_dial(&self) -> Option<Instant> {
        self.bootstrap.next_due()
    }

    /// Dials every bootstrap address whose time has come, and looks up every bootstrap
    /// DNS name whose time has come.
    pub(crate) fn dial_bootstrap(&mut self, manager: &mut connection_manager::Behaviour) {
        self.bootstrap.dial_due(manager);
    }

    /// The next bootstrap name lookup to finish; `None` at once when none is under way.
    pub(crate) async fn next_bootstrap_lookup(&mut self) -> Option<BootstrapLookup> {
        self.bootstrap.next_lookup().await
    }

    /// A bootstrap name lookup finished: each address it gave is dialled, but this node's
    /// own (`own`: its listen addresses).
    pub(crate) fn on_bootstrap_lookup(
        &mut self,
        (name, found): BootstrapLookup,
        own: &[Multiaddr],
        manager: &mut connection_manager::Behaviour,
    ) {
        self.bootstrap.on_lookup(name, found, own);
        self.bootstrap.dial_due(manager);
    }

    /// A connection came up. When it reached a bootstrap peer, that peer is protected and
    /// its address goes to Kademlia; returns true then.
    pub(crate) fn on_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        kad: &mut Kad,
        manager: &mut connection_manager::Behaviour,
        metrics: &Metrics,
    ) -> bool {
        let bootstrap = self.bootstrap.on_established(peer, id, kad, metrics);
        if bootstrap {
            manager.protect(peer, Protection::Bootstrap);
        }
        bootstrap
    }

    /// A dial failed. `connected` names the peer when the dial was refused only because
    /// it is already connected (e.g. found by mDNS first): that still reached it.
    pub(crate) fn on_dial_failed(
        &mut self,
        id: ConnectionId,
        connected: Option<PeerId>,
        skipped: bool,
        error: &str,
        metrics: &Metrics,
    ) {
        if skipped || connected.is_some() {
            self.bootstrap.on_dial_skipped(id, connected);
        } else {
            self.bootstrap.on_dial_failed(id, error, metrics);
        }
    }

    /// The last connection to `peer` closed.
    pub(crate) fn on_disconnected(&mut self, peer: &PeerId) {
        self.bootstrap.on_disconnected(peer);
    }

    /// The peer told us who it is. Peers of another network (or, when found by mDNS,
    /// another mDNS tag) are turned away; the addresses of the rest feed Kademlia.
    pub(crate) fn on_identified(
        &mut self,
        peer: PeerId,
        info: &identify::Info,
        peer_scope: Scope,
        kad: &mut Kad,
        manager: &mut connection_manager::Behaviour,
    ) -> Verdict {
        if info.protocol_version != self.network_version {
            tracing::info!(
                %peer,
                "disconnecting: peer speaks {:?}, this node {:?} (another network)",
                info.protocol_version,
                self.network_version
            );
            self.bootstrap
                .on_other_network(&peer, &info.protocol_version);
            let message = format!(
                "peer {peer} is on another network: it speaks {:?}, this node {:?}",
                info.protocol_version, self.network_version
            );
            return self.reject(peer, "other_network", message, kad, manager);
        }
        if self.mdns_dialled.contains_key(&peer)
            && !self.bootstrap.is_bootstrap_peer(&peer)
            && !manager.is_protected(&peer)
        {
            let tag = mdns_tag_of(&info.agent_version);
            if tag != Some(self.mdns_tag.as_str()) {
                tracing::info!(%peer, ?tag, "disconnecting mDNS peer with another mDNS service tag");
                let message = "another mDNS service tag".to_owned();
                return self.reject(peer, "mdns_tag", message, kad, manager);
            }
        }
        // Only DHT servers go into the routing table: a client (`--dht-mode client`, or
        // `auto` before its address is confirmed) answers no query, so asking it would
        // only wait for a timeout, and dialling it back for one makes churn.
        if info
            .protocols
            .iter()
            .any(|p| p.as_ref() == self.kad_protocol)
        {
            for addr in routable_addrs(&info.listen_addrs, peer_scope) {
                kad.add_address(&peer, addr);
            }
        }
        Verdict::Welcome
    }

    fn reject(
        &mut self,
        peer: PeerId,
        reason: &'static str,
        message: String,
        kad: &mut Kad,
        manager: &mut connection_manager::Behaviour,
    ) -> Verdict {
        self.rejected.insert(peer, Instant::now() + REJECT_MEMORY);
        kad.remove_peer(&peer);
        manager.unprotect_all(&peer);
        Verdict::Reject { reason, message }
    }

    fn is_rejected(&mut self, peer: &PeerId) -> bool {
        let now = Instant::now();
        self.rejected.retain(|_, until| *until > now);
        self.rejected.contains_key(peer)
    }

    /// mDNS found or lost peers. Found ones are dialled while the node is below its low
    /// watermark, and remembered as candidates either way.
    pub(crate) fn on_mdns(
        &mut self,
        event: mdns::Event,
        manager: &mut connection_manager::Behaviour,
    ) {
        let found = match event {
            mdns::Event::Discovered(found) => found,
            mdns::Event::Expired(gone) => {
                for (peer, addr) in gone {
                    if let Some(addrs) = self.mdns_peers.get_mut(&peer) {
                        addrs.retain(|a| *a != addr);
                        if addrs.is_empty() {
                            self.mdns_peers.remove(&peer);
                        }
                    }
                }
                return;
            }
        };
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, addr) in found {
            // A LAN peer's loopback address would lead us to dial ourselves.
            if !is_loopback_addr(&addr) {
                by_peer.entry(peer).or_default().push(addr);
            }
        }
        for (peer, addrs) in by_peer {
            if peer == self.local || self.is_rejected(&peer) {
                continue;
            }
            let known = self.mdns_peers.entry(peer).or_default();
            let mut new = false;
            for addr in addrs {
                if !known.contains(&addr) {
                    known.push(addr);
                    new = true;
                }
            }
            if new {
                tracing::debug!(%peer, addrs = ?known, "found by mDNS");
            }
            // Above the low watermark the peer stays a candidate for later; one that
            // found us first is connected already.
            if manager.is_connected(&peer)
                || manager.connected_peers() >= manager.limits().low_watermark as usize
            {
                continue;
            }
            tracing::debug!(%peer, "dialling a peer found by mDNS");
            self.mdns_dialled.insert(peer, Instant::now());
            let opts = DialOpts::peer_id(peer)
                .addresses(self.mdns_peers[&peer].clone())
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            manager.dial(opts);
        }
    }

    /// Peers worth dialling when the node wants more: those found by mDNS and those in
    /// the routing table, less any turned away.
    pub(crate) fn candidates(&mut self, kad: &mut Kad) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut candidates: Vec<(PeerId, Vec<Multiaddr>)> = self
            .mdns_peers
            .iter()
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        for bucket in kad.kbuckets() {
            for entry in bucket.iter() {
                let peer = *entry.node.key.preimage();
                candidates.push((peer, entry.node.value.iter().cloned().collect()));
            }
        }
        candidates.retain(|(p, _)| !self.rejected.contains_key(p));
        candidates
    }

    /// Each bootstrap address and how it is doing.
    pub(crate) fn bootstrap_reports(&self) -> Vec<BootstrapReport> {
        self.bootstrap.reports()
    }
}

/// The identify agent version: `guts/<version> (mdns-tag: <tag>)`. The mDNS tag rides here
/// because libp2p's mDNS has a fixed service name: peers found by mDNS whose tag differs
/// are dropped once identify tells us their tag.
pub(crate) fn agent_version(mdns_tag: &str) -> String {
    format!("guts/{} (mdns-tag: {mdns_tag})", env!("CARGO_PKG_VERSION"))
}

/// The mDNS tag in a peer's agent version, if it is a Guts node that announces one.
fn mdns_tag_of(agent_version: &str) -> Option<&str> {
    agent_version
        .strip_prefix("guts/")?
        .split_once("(mdns-tag: ")?
        .1
        .strip_suffix(')')
}

/// Addresses taken from one peer's identify: enough for its transports on both IP
/// versions, and no pile a peer could make the routing table carry.
const MAX_ANNOUNCED_ADDRS: usize = 8;

/// The listen addresses a peer announced that are worth giving to the DHT: never
/// unspecified addresses, and none narrower than the scope we reach the peer from
/// (`peer_scope`): a peer that comes from the internet may not plant loopback or LAN
/// addresses (which would have this node, and every node it tells, dial its own host or
/// LAN), and a LAN peer no loopback ones. At most [`MAX_ANNOUNCED_ADDRS`].
fn routable_addrs(announced: &[Multiaddr], peer_scope: Scope) -> Vec<Multiaddr> {
    announced
        .iter()
        .filter(|a| !is_unspecified(a))
        .filter(|a| scope_of(a) >= peer_scope)
        .take(MAX_ANNOUNCED_ADDRS)
        .cloned()
        .collect()
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_unspecified(),
        Some(Protocol::Ip6(ip)) => ip.is_unspecified(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<Multiaddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_peer_plants_no_address_narrower_than_where_it_comes_from() {
        let announced = addrs(&[
            "/ip4/127.0.0.1/tcp/1",
            "/dns4/localhost/tcp/1",
            "/ip4/10.0.0.2/tcp/1",
            "/ip4/192.168.1.1/tcp/1",
            "/ip4/100.64.0.1/tcp/1",
            "/ip6/fd00::1/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/ip4/0.0.0.0/tcp/1",
            "/ip4/203.0.113.9/tcp/1",
            "/dns4/node.example.org/tcp/1",
        ]);
        let global = addrs(&["/ip4/203.0.113.9/tcp/1", "/dns4/node.example.org/tcp/1"]);
        assert_eq!(routable_addrs(&announced, Scope::Global), global);
        let private = routable_addrs(&announced, Scope::Private);
        assert_eq!(private.len(), 7, "{private:?}");
        assert!(private.iter().all(|a| scope_of(a) != Scope::Loopback));
        assert_eq!(
            routable_addrs(&announced, Scope::Loopback).len(),
            MAX_ANNOUNCED_ADDRS,
            "all but the unspecified, up to the cap"
        );
    }

    #[test]
    fn announced_addresses_are_capped() {
        let many: Vec<Multiaddr> = (1..=300u16)
            .map(|port| format!("/ip4/203.0.113.9/tcp/{port}").parse().unwrap())
            .collect();
        assert_eq!(
            routable_addrs(&many, Scope::Global).len(),
            MAX_ANNOUNCED_ADDRS
        );
    }

    #[test]
    fn mdns_tag_round_trips_through_the_agent_version() {
        assert_eq!(mdns_tag_of(&agent_version("lab-2")), Some("lab-2"));
        assert_eq!(mdns_tag_of("rust-libp2p/0.1"), None);
        assert_eq!(mdns_tag_of("guts/0.1.0"), None);
    }
}
