//! The node's own Kademlia queries: a queue that keeps them under
//! `max_concurrent_dht_queries` (kad's periodic queries count too), provider lookups
//! answered as soon as a first holder turns up, and peer lookups (a private repository's
//! allowed peer this node has no address of).

use std::collections::{HashMap, VecDeque};

use guts_protocol::RepositoryId;
use libp2p::{Multiaddr, PeerId, kad};
use tokio::sync::oneshot;

use super::discovery::Kad;
use super::nat::Reachability;
use crate::config::DhtMode;

/// The Kademlia mode `dht_mode` asks for once the node's reachability is `now`: `auto`
/// serves the DHT only while others can dial the node, and stops when they no longer
/// can; `None` for a fixed mode, which never changes.
pub(crate) fn mode_for(dht_mode: DhtMode, now: Reachability) -> Option<kad::Mode> {
    (dht_mode == DhtMode::Auto).then_some(match now {
        Reachability::Public => kad::Mode::Server,
        Reachability::Private | Reachability::Unknown => kad::Mode::Client,
    })
}

/// A DHT query the node starts.
pub(crate) enum Query {
    /// Look ourselves up, filling the routing table.
    Bootstrap,
    /// Who provides this repository.
    GetProviders(RepositoryId, oneshot::Sender<Vec<PeerId>>),
    /// Tell the DHT we provide it.
    StartProviding(RepositoryId),
    /// The addresses of a peer, from the peers closest to it.
    FindPeer(PeerId, oneshot::Sender<Vec<Multiaddr>>),
}

/// Queries waiting for a slot, and provider lookups under way.
pub(crate) struct Dht {
    local: PeerId,
    max_in_flight: usize,
    queue: VecDeque<Query>,
    provider_queries: HashMap<kad::QueryId, oneshot::Sender<Vec<PeerId>>>,
    peer_queries: HashMap<kad::QueryId, (PeerId, oneshot::Sender<Vec<Multiaddr>>)>,
}

impl Dht {
    pub(crate) fn new(local: PeerId, max_in_flight: u32) -> Self {
        Dht {
            local,
            max_in_flight: max_in_flight as usize,
            queue: VecDeque::new(),
            provider_queries: HashMap::new(),
            peer_queries: HashMap::new(),
        }
    }

    /// Queries waiting for a slot.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Starts `query` now, or queues it while the limit is reached.
    pub(crate) fn query(&mut self, kad: &mut Kad, query: Query) {
        if kad.iter_queries().count() >= self.max_in_flight {
            let duplicate = matches!(query, Query::Bootstrap)
                && self.queue.iter().any(|q| matches!(q, Query::Bootstrap));
            if !duplicate {
                self.queue.push_back(query);
            }
            return;
        }
        match query {
            Query::Bootstrap => {
                if let Err(e) = kad.bootstrap() {
                    tracing::debug!("DHT bootstrap not started: {e}");
                }
            }
            Query::GetProviders(repository, reply) => {
                // With an empty routing table the query would only wait for its timeout.
                if kad.kbuckets().all(|b| b.num_entries() == 0) {
                    let _ = reply.send(Vec::new());
                    return;
                }
                let id = kad.get_providers(kad::RecordKey::new(&repository.provider_key()));
                self.provider_queries.insert(id, reply);
            }
            Query::FindPeer(peer, reply) => {
                if kad.kbuckets().all(|b| b.num_entries() == 0) {
                    let _ = reply.send(Vec::new());
                    return;
                }
                let id = kad.get_closest_peers(peer);
                self.peer_queries.insert(id, (peer, reply));
            }
            Query::StartProviding(repository) => {
                if let Err(e) = kad.start_providing(kad::RecordKey::new(&repository.provider_key()))
                {
                    tracing::warn!(%repository, "cannot provide: {e}");
                }
            }
        }
    }

    /// Follows kad's events: answers provider lookups and starts queued queries as
    /// others finish.
    pub(crate) fn on_event(&mut self, kad: &mut Kad, event: &kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                ..
            } => {
                // Our own record comes first when we provide the repository ourselves (an
                // older copy): it is no holder to fetch from.
                let found: Vec<PeerId> = match result {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => providers
                        .iter()
                        .copied()
                        .filter(|p| *p != self.local)
                        .collect(),
                    _ => Vec::new(),
                };
                // The first other providers found are enough to start; the rest would
                // only delay.
                if (!found.is_empty() || step.last)
                    && let Some(reply) = self.provider_queries.remove(id)
                {
                    let _ = reply.send(found);
                    if !step.last
                        && let Some(mut query) = kad.query_mut(id)
                    {
                        query.finish();
                    }
                }
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(result),
                step,
                ..
            } => {
                // Addresses come from other peers' answers, unproven: a dial to them is
                // checked by the handshake, which proves the peer id.
                let found = match (result, self.peer_queries.get(id)) {
                    (Ok(ok), Some((target, _))) => ok
                        .peers
                        .iter()
                        .find(|p| p.peer_id == *target)
                        .map(|p| p.addrs.clone())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                if (!found.is_empty() || step.last)
                    && let Some((_, reply)) = self.peer_queries.remove(id)
                {
                    let _ = reply.send(found);
                    if !step.last
                        && let Some(mut query) = kad.query_mut(id)
                    {
                        query.finish();
                    }
                }
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::Bootstrap(result),
                step,
                ..
            } => match result {
                Ok(ok) if step.last => {
                    tracing::debug!(remaining = ok.num_remaining, "DHT bootstrap finished");
                }
                Err(e) => tracing::debug!("DHT bootstrap step failed: {e}"),
                Ok(_) => {}
            },
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                ..
            } => tracing::debug!(%peer, "added to routing table"),
            kad::Event::ModeChanged { new_mode } => {
                tracing::info!("DHT mode is now {new_mode}");
            }
            _ => {}
        }
        if let kad::Event::OutboundQueryProgressed { step, .. } = event
            && step.last
        {
            self.run_queued(kad);
        }
    }

    fn run_queued(&mut self, kad: &mut Kad) {
        while kad.iter_queries().count() < self.max_in_flight {
            let Some(query) = self.queue.pop_front() else {
                break;
            };
            self.query(kad, query);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_serves_only_while_reachable_and_fixed_modes_never_change() {
        use Reachability::*;
        let auto = |now| mode_for(DhtMode::Auto, now);
        assert_eq!(auto(Unknown), Some(kad::Mode::Client));
        assert_eq!(auto(Public), Some(kad::Mode::Server));
        assert_eq!(auto(Private), Some(kad::Mode::Client), "back to client");
        for now in [Unknown, Public, Private] {
            assert_eq!(mode_for(DhtMode::Server, now), None);
            assert_eq!(mode_for(DhtMode::Client, now), None);
        }
    }

    #[test]
    fn queries_past_the_limit_wait_their_turn() {
        let local = PeerId::random();
        let store = crate::network::provider_store::ProviderStore::new(local);
        let protocol = libp2p::StreamProtocol::new("/guts-test/kad/1.0.0");
        let mut kad = Kad::with_config(local, store, kad::Config::new(protocol));
        let mut dht = Dht::new(local, 2);
        for i in 0..5u8 {
            let repository = RepositoryId::from_bytes([i; 20]);
            dht.query(&mut kad, Query::StartProviding(repository));
        }
        assert_eq!(kad.iter_queries().count(), 2, "max_concurrent_dht_queries");
        assert_eq!(dht.queued(), 3);
        // Bootstraps queue once, however often they are asked for.
        dht.query(&mut kad, Query::Bootstrap);
        dht.query(&mut kad, Query::Bootstrap);
        assert_eq!(dht.queued(), 4);
        // A query that ends lets the next one start.
        let running: Vec<kad::QueryId> = kad.iter_queries().map(|q| q.id()).collect();
        if let Some(mut query) = kad.query_mut(&running[0]) {
            query.finish();
        }
        dht.run_queued(&mut kad);
        assert!(kad.iter_queries().count() <= 2);
    }
}
