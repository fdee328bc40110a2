//! The node's Kademlia store: provider records of repositories, and nothing else.
//!
//! As a DHT server the node keeps what others send it. libp2p's `MemoryStore` took
//! ADD_PROVIDER for keys of any length with any number of addresses, and PUT_VALUE
//! records Guts never reads, with no bound per peer: one stranger raised a node's memory
//! from 20 to 421 MiB in seconds, kept for 48 hours, and a flood of keys left no room for
//! the node's own records. This store keeps only provider records of keys shaped like a
//! repository's (`/guts/repo/` and 20 bytes), at most [`ADDRESSES`] short addresses each,
//! [`PER_KEY`] providers per key, [`PER_PEER`] records per providing peer and
//! [`FOREIGN`] in all; the node's own records are always kept. It refuses every
//! PUT_VALUE. Expired records of others go at most [`SWEEP_EVERY`] apart. A record keeps
//! no address narrower than where its provider connects from (as identify's addresses:
//! a peer from the internet cannot make the node hand out loopback or LAN addresses).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::kad::store::{Error, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::{Multiaddr, PeerId};

use super::scope::{Scope, scope_of};

/// The Kademlia behaviour as the node configures it: its store is this one.
pub(crate) type Kad = libp2p::kad::Behaviour<ProviderStore>;
/// Providers kept per key (Kademlia's replication factor).
pub(crate) const PER_KEY: usize = 20;
/// Records one providing peer may hold here.
pub(crate) const PER_PEER: usize = 10_000;
/// Records of other peers held in all: about 400 bytes each, so about 26 MiB.
pub(crate) const FOREIGN: usize = 65_536;
/// Addresses kept per record, and their longest encoding.
pub(crate) const ADDRESSES: usize = 4;
const ADDRESS_BYTES: usize = 64;
/// How often expired records of others are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// A provider key of a repository: `/guts/repo/` and the id's 20 bytes.
fn is_repository_key(key: &RecordKey) -> bool {
    let prefix = b"/guts/repo/";
    key.as_ref().len() == prefix.len() + 20 && key.as_ref().starts_with(prefix)
}

/// The record store the node's Kademlia behaviour uses.
pub(crate) struct ProviderStore {
    local: PeerId,
    providers: HashMap<RecordKey, Vec<ProviderRecord>>,
    provided: HashSet<ProviderRecord>,
    /// Records of each other peer held, and of all of them.
    per_peer: HashMap<PeerId, usize>,
    foreign: usize,
    swept: Instant,
    /// Where each connected peer connects from (the event loop tells): the narrowest
    /// scope its records' addresses may have. A peer not in it counts as global.
    scopes: HashMap<PeerId, Scope>,
}

impl ProviderStore {
    pub fn new(local: PeerId) -> Self {
        ProviderStore {
            local,
            providers: HashMap::new(),
            provided: HashSet::new(),
            per_peer: HashMap::new(),
            foreign: 0,
            swept: Instant::now(),
            scopes: HashMap::new(),
        }
    }

    /// `peer` is connected, from `scope` (the narrowest of its connections).
    pub fn set_scope(&mut self, peer: PeerId, scope: Scope) {
        self.scopes.insert(peer, scope);
    }

    /// `peer` has no connection left.
    pub fn forget_scope(&mut self, peer: &PeerId) {
        self.scopes.remove(peer);
    }

    /// Records of others held, for tests and status.
    #[cfg(test)]
    fn foreign(&self) -> usize {
        self.foreign
    }

    fn forget_foreign(&mut self, provider: &PeerId) {
        self.foreign = self.foreign.saturating_sub(1);
        if let Some(n) = self.per_peer.get_mut(provider) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(provider);
            }
        }
    }

    /// Drops expired records of others (the node renews its own).
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.swept) < SWEEP_EVERY {
            return;
        }
        self.swept = now;
        let local = self.local;
        let mut gone = Vec::new();
        self.providers.retain(|_, list| {
            list.retain(|r| {
                let keep = r.provider == local || !r.is_expired(now);
                if !keep {
                    gone.push(r.provider);
                }
                keep
            });
            !list.is_empty()
        });
        for provider in gone {
            self.forget_foreign(&provider);
        }
    }
}

/// A peer's record as kept: its first few short addresses no narrower than `scope`.
fn trimmed(mut record: ProviderRecord, scope: Scope) -> ProviderRecord {
    record.addresses = record
        .addresses
        .into_iter()
        .filter(|a: &Multiaddr| a.as_ref().len() <= ADDRESS_BYTES && scope_of(a) >= scope)
        .take(ADDRESSES)
        .collect();
    record
}

impl RecordStore for ProviderStore {
    type RecordsIter<'a> = std::iter::Empty<Cow<'a, Record>>;
    type ProvidedIter<'a> = Box<dyn Iterator<Item = Cow<'a, ProviderRecord>> + 'a>;

    fn get(&self, _key: &RecordKey) -> Option<Cow<'_, Record>> {
        None
    }

    /// Guts stores no values: every PUT_VALUE is refused.
    fn put(&mut self, _record: Record) -> Result<()> {
        Err(Error::MaxRecords)
    }

    fn remove(&mut self, _key: &RecordKey) {}

    fn records(&self) -> Self::RecordsIter<'_> {
        std::iter::empty()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        let own = record.provider == self.local;
        if !own {
            if !is_repository_key(&record.key) {
                return Err(Error::MaxProvidedKeys);
            }
            self.sweep(Instant::now());
        }
        let record = if own {
            record
        } else {
            let scope = self.scopes.get(&record.provider).copied();
            trimmed(record, scope.unwrap_or(Scope::Global))
        };
        let list = self.providers.entry(record.key.clone()).or_default();
        if let Some(held) = list.iter_mut().find(|p| p.provider == record.provider) {
            if own {
                self.provided.replace(record.clone());
            }
            *held = record;
            return Ok(());
        }
        if own {
            self.provided.insert(record.clone());
            list.push(record);
            return Ok(());
        }
        let of_peer = self.per_peer.get(&record.provider).copied().unwrap_or(0);
        if list.len() >= PER_KEY || of_peer >= PER_PEER || self.foreign >= FOREIGN {
            if list.is_empty() {
                self.providers.remove(&record.key);
            }
            return Err(Error::MaxProvidedKeys);
        }
        *self.per_peer.entry(record.provider).or_default() += 1;
        self.foreign += 1;
        list.push(record);
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.providers.get(key).cloned().unwrap_or_default()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        Box::new(self.provided.iter().map(Cow::Borrowed))
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        let Some(list) = self.providers.get_mut(key) else {
            return;
        };
        let Some(at) = list.iter().position(|p| p.provider == *provider) else {
            return;
        };
        let record = list.swap_remove(at);
        if list.is_empty() {
            self.providers.remove(key);
        }
        if *provider == self.local {
            self.provided.remove(&record);
        } else {
            self.forget_foreign(provider);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record keeps only addresses as wide as where its provider connects from; a
    /// provider the store was told nothing of counts as global.
    #[test]
    fn addresses_narrower_than_the_provider_are_dropped() {
        let local = PeerId::random();
        let addrs: Vec<Multiaddr> = [
            "/ip4/127.0.0.1/tcp/1",
            "/ip4/10.0.0.1/tcp/1",
            "/ip4/8.8.8.8/tcp/1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for (scope, kept) in [
            (Some(Scope::Loopback), 3),
            (Some(Scope::Private), 2),
            (Some(Scope::Global), 1),
            (None, 1),
        ] {
            let mut store = ProviderStore::new(local);
            let peer = PeerId::random();
            if let Some(scope) = scope {
                store.set_scope(peer, scope);
            }
            let mut record = ProviderRecord::new(key(1), peer, addrs.clone());
            record.expires = None;
            store.add_provider(record).unwrap();
            let held = store.providers(&key(1));
            assert_eq!(
                held[0].addresses.len(),
                kept,
                "{scope:?}: {:?}",
                held[0].addresses
            );
            assert!(held[0].addresses.contains(&addrs[2]));
            store.forget_scope(&peer);
            assert!(store.scopes.is_empty());
        }
    }

    fn key(n: u32) -> RecordKey {
        let mut bytes = b"/guts/repo/".to_vec();
        bytes.extend_from_slice(&[0; 16]);
        bytes.extend_from_slice(&n.to_be_bytes());
        RecordKey::new(&bytes)
    }

    fn record(key: RecordKey, provider: PeerId, addresses: usize) -> ProviderRecord {
        ProviderRecord {
            key,
            provider,
            expires: Some(Instant::now() + Duration::from_secs(3600)),
            addresses: (0..addresses)
                .map(|i| format!("/ip4/192.0.2.1/tcp/{}", 1000 + i).parse().unwrap())
                .collect(),
        }
    }

    #[test]
    fn only_repository_keys_with_a_few_addresses_and_no_values() {
        let mut store = ProviderStore::new(PeerId::random());
        let stranger = PeerId::random();
        let odd = RecordKey::new(&vec![7u8; 4000]);
        assert!(
            store
                .add_provider(record(odd.clone(), stranger, 1))
                .is_err()
        );
        assert!(store.providers(&odd).is_empty());
        store.add_provider(record(key(1), stranger, 300)).unwrap();
        assert_eq!(store.providers(&key(1))[0].addresses.len(), ADDRESSES);
        let value = Record::new(key(2), vec![0; 1000]);
        assert!(store.put(value).is_err());
        assert!(store.get(&key(2)).is_none());
    }

    #[test]
    fn one_peer_holds_at_most_its_share_and_the_node_keeps_room_for_its_own() {
        let local = PeerId::random();
        let mut store = ProviderStore::new(local);
        let stranger = PeerId::random();
        for n in 0..(PER_PEER as u32 + 50) {
            let _ = store.add_provider(record(key(n), stranger, 1));
        }
        assert_eq!(store.foreign(), PER_PEER);
        // Its own records always go in.
        store.add_provider(record(key(1 << 30), local, 1)).unwrap();
        assert_eq!(store.provided().count(), 1);
        // A replaced record is not counted twice; a removed one gives its place back.
        store.add_provider(record(key(0), stranger, 2)).unwrap();
        assert_eq!(store.foreign(), PER_PEER);
        store.remove_provider(&key(0), &stranger);
        assert_eq!(store.foreign(), PER_PEER - 1);
        store
            .add_provider(record(key(99_999), stranger, 1))
            .unwrap();
        // Per key: the first PER_KEY providers.
        for _ in 0..PER_KEY + 5 {
            let _ = store.add_provider(record(key(42_000), PeerId::random(), 1));
        }
        assert_eq!(store.providers(&key(42_000)).len(), PER_KEY);
    }

    #[test]
    fn expired_records_of_others_are_swept() {
        let mut store = ProviderStore::new(PeerId::random());
        let stranger = PeerId::random();
        let mut old = record(key(1), stranger, 1);
        old.expires = Some(Instant::now());
        store.add_provider(old).unwrap();
        store.swept = Instant::now() - SWEEP_EVERY;
        store.add_provider(record(key(2), stranger, 1)).unwrap();
        assert_eq!(store.foreign(), 1);
        assert!(store.providers(&key(1)).is_empty());
    }
}
