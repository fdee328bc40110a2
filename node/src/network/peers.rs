//! What the node knows about the peers it is connected to.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use libp2p::core::ConnectedPoint;
use libp2p::swarm::ConnectionId;
use libp2p::{PeerId, identify};

use guts_api::{Direction, PeerReport};

use super::nat::is_relayed_connection;
use super::scope::{Scope, scope_of};

/// One connected peer.
#[derive(Debug)]
pub(crate) struct Peer {
    connections: HashMap<ConnectionId, ConnectedPoint>,
    /// Direction of the oldest open connection.
    direction: Direction,
    connected_since: SystemTime,
    identify: Option<identify::Info>,
    last_rtt: Option<Duration>,
}

impl Peer {
    fn is_relayed(&self) -> bool {
        self.connections.values().all(is_relayed_connection)
    }
}

/// Connected peers, keyed by peer id.
#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    peers: HashMap<PeerId, Peer>,
}

impl PeerTable {
    pub fn connection_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        endpoint: ConnectedPoint,
    ) {
        let entry = self.peers.entry(peer).or_insert_with(|| Peer {
            connections: HashMap::new(),
            direction: direction_of(&endpoint),
            connected_since: SystemTime::now(),
            identify: None,
            last_rtt: None,
        });
        entry.connections.insert(id, endpoint);
    }

    /// Returns true when this was the peer's last connection.
    pub fn connection_closed(&mut self, peer: &PeerId, id: ConnectionId) -> bool {
        let Some(entry) = self.peers.get_mut(peer) else {
            return false;
        };
        entry.connections.remove(&id);
        if entry.connections.is_empty() {
            self.peers.remove(peer);
            return true;
        }
        if let Some(oldest) = entry.connections.values().next() {
            entry.direction = direction_of(oldest);
        }
        false
    }

    pub fn identified(&mut self, peer: &PeerId, info: identify::Info) {
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.identify = Some(info);
        }
    }

    /// Whether `peer` has identified itself (and was welcome) on some connection.
    pub fn is_identified(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.identify.is_some())
    }

    /// Whether `peer` is connected only through relays.
    pub fn relayed_only(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(Peer::is_relayed)
    }

    /// Whether some connection to `peer` is direct.
    pub fn has_direct(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.connections.values().any(|e| !is_relayed_connection(e)))
    }

    /// The relayed connections to `peer`.
    pub fn relayed_connections(&self, peer: &PeerId) -> Vec<ConnectionId> {
        self.relayed(peer).into_iter().map(|(id, _)| id).collect()
    }

    /// The relayed connections to `peer`, each with whether this node dialled it.
    fn relayed(&self, peer: &PeerId) -> Vec<(ConnectionId, bool)> {
        self.peers.get(peer).map_or_else(Vec::new, |p| {
            p.connections
                .iter()
                .filter(|(_, e)| is_relayed_connection(e))
                .map(|(id, e)| (*id, e.is_dialer()))
                .collect()
        })
    }

    /// Which relayed connections to close now that `new` (relayed too; `dialled` when
    /// this node dialled it, `asked` when a user asked for it) joins those to `peer`:
    /// see [`circuits_to_close`].
    pub fn circuits_to_close(
        &self,
        local: &PeerId,
        peer: &PeerId,
        new: ConnectionId,
        dialled: bool,
        asked: bool,
    ) -> Vec<ConnectionId> {
        circuits_to_close(local < peer, (new, dialled), asked, &self.relayed(peer))
    }

    /// The circuit address this node dialled `peer` at, if it did.
    pub fn dialled_circuit(&self, peer: &PeerId) -> Option<libp2p::Multiaddr> {
        self.peers
            .get(peer)?
            .connections
            .values()
            .find_map(|e| match e {
                ConnectedPoint::Dialer { address, .. } if is_relayed_connection(e) => {
                    Some(address.clone())
                }
                _ => None,
            })
    }

    /// The relay a relayed connection to `peer` goes through.
    pub fn relay_of(&self, peer: &PeerId) -> Option<PeerId> {
        self.peers.get(peer)?.connections.values().find_map(|e| {
            let addr = match e {
                ConnectedPoint::Dialer { address, .. } => address,
                ConnectedPoint::Listener { local_addr, .. } => local_addr,
            };
            super::nat::relay_of(addr)
        })
    }

    /// Whether a connection to `peer` is over QUIC.
    pub fn has_quic(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| {
            p.connections
                .values()
                .any(|e| super::settings::is_quic(e.get_remote_address()))
        })
    }

    /// Where this node dialled `peer`, if it did (an address that reaches it).
    pub fn dialled_address(&self, peer: &PeerId) -> Option<libp2p::Multiaddr> {
        self.peers
            .get(peer)?
            .connections
            .values()
            .find_map(|e| match e {
                ConnectedPoint::Dialer { address, .. } => Some(address.clone()),
                ConnectedPoint::Listener { .. } => None,
            })
    }

    pub fn pinged(&mut self, peer: &PeerId, rtt: Duration) {
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.last_rtt = Some(rtt);
        }
    }

    /// The connected peers' ids.
    pub fn ids(&self) -> Vec<PeerId> {
        self.peers.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// The narrowest scope among the addresses `peer` is connected from (see
    /// [`Scope`]): where the peer is, as far as this node can tell.
    pub fn scope(&self, peer: &PeerId) -> Scope {
        self.peers
            .get(peer)
            .and_then(|p| {
                p.connections
                    .values()
                    .map(|e| scope_of(e.get_remote_address()))
                    .min()
            })
            .unwrap_or(Scope::Global)
    }

    pub fn reports(
        &self,
        manager: &crate::connection_manager::Behaviour,
        punches: &super::punch::Punches,
    ) -> Vec<PeerReport> {
        let now = SystemTime::now();
        let instant = std::time::Instant::now();
        let mut reports: Vec<_> = self
            .peers
            .iter()
            .map(|(id, p)| {
                let info = p.identify.as_ref();
                PeerReport {
                    peer_id: id.to_string(),
                    addresses: p
                        .connections
                        .values()
                        .map(|e| e.get_remote_address().to_string())
                        .collect(),
                    relayed: p.is_relayed(),
                    direction: p.direction,
                    connections: p.connections.len(),
                    agent_version: info.map(|i| i.agent_version.clone()),
                    protocol_version: info.map(|i| i.protocol_version.clone()),
                    protocols: info
                        .map(|i| i.protocols.iter().map(|p| p.to_string()).collect())
                        .unwrap_or_default(),
                    listen_addresses: info
                        .map(|i| i.listen_addrs.iter().map(|a| a.to_string()).collect())
                        .unwrap_or_default(),
                    connected_since_unix: p
                        .connected_since
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                    connected_secs: now
                        .duration_since(p.connected_since)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                    last_ping_rtt_ms: p.last_rtt.map(|d| d.as_secs_f64() * 1000.0),
                    protected: manager.is_protected(id),
                    score: manager.score(id),
                    hole_punch: punches.report(id, instant),
                }
            })
            .collect();
        reports.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        reports
    }
}

/// One relayed connection per peer at most: two circuits to one peer would start two hole
/// punches at once, which spoil each other. When circuits cross (each side dialled the
/// other), both sides must close the same one, or each closes the other's and none is
/// left: the one dialled by the lower peer id stays (`local_is_lower` says whether that
/// is this node). When one side dialled both, that side alone chooses: the one a user
/// asked for, else the older one. Returns the connections to close, `new` among them
/// if it is the one to go.
fn circuits_to_close(
    local_is_lower: bool,
    (new, dialled): (ConnectionId, bool),
    asked: bool,
    others: &[(ConnectionId, bool)],
) -> Vec<ConnectionId> {
    let mut close = Vec::new();
    let mut close_new = false;
    for &(other, other_dialled) in others {
        let new_stays = if dialled != other_dialled {
            dialled == local_is_lower
        } else if dialled {
            asked
        } else {
            continue;
        };
        if new_stays {
            close.push(other);
        } else {
            close_new = true;
        }
    }
    if close_new {
        close.push(new);
    }
    close
}

fn direction_of(endpoint: &ConnectedPoint) -> Direction {
    if endpoint.is_dialer() {
        Direction::Outbound
    } else {
        Direction::Inbound
    }
}

/// `12D3Ko…a1b2c3`: enough to tell peers apart in a log line.
pub fn short_peer_id(peer: &PeerId) -> String {
    let s = peer.to_string();
    if s.len() <= 14 {
        return s;
    }
    format!("{}…{}", &s[..6], &s[s.len() - 6..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    /// Both ends of two crossing circuits, each seeing them arrive in its own order,
    /// close the same one: the one the lower peer id dialled.
    #[test]
    fn crossing_circuits_leave_the_same_one_on_both_sides() {
        // Circuit 1 dialled by the lower peer (L), circuit 2 by the higher (H).
        for l_first in [true, false] {
            for asked in [true, false] {
                // L sees 1 as outbound, 2 as inbound; H the other way round.
                let l = if l_first {
                    circuits_to_close(true, (id(2), false), false, &[(id(1), true)])
                } else {
                    circuits_to_close(true, (id(1), true), asked, &[(id(2), false)])
                };
                let h = if l_first {
                    circuits_to_close(false, (id(2), true), asked, &[(id(1), false)])
                } else {
                    circuits_to_close(false, (id(1), false), false, &[(id(2), true)])
                };
                assert_eq!(l, vec![id(2)], "L first {l_first}, asked {asked}");
                assert_eq!(h, vec![id(2)], "L first {l_first}, asked {asked}");
            }
        }
    }

    #[test]
    fn the_side_that_dialled_both_chooses_and_the_other_leaves_them() {
        let others = [(id(1), true)];
        assert_eq!(
            circuits_to_close(true, (id(2), true), true, &others),
            vec![id(1)]
        );
        assert_eq!(
            circuits_to_close(false, (id(2), true), false, &others),
            vec![id(2)]
        );
        let inbound = [(id(1), false)];
        assert!(circuits_to_close(true, (id(2), false), false, &inbound).is_empty());
        assert!(circuits_to_close(false, (id(2), false), false, &inbound).is_empty());
        assert!(circuits_to_close(true, (id(2), true), false, &[]).is_empty());
    }
}
