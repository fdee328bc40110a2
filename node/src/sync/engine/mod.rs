//! The sync engine: brings a repository up to its owner's latest snapshot.
//!
//! 1. Find holders: peers known to hold it (they announced it, or served it), a preferred
//!    peer if the caller names one, and Kademlia provider records.
//! 2. Ask them for their signed refs; keep only snapshots that verify (owner, signature,
//!    digest) and are newer than ours. Bad ones cost the sender.
//! 3. Fetch the pack for the newest snapshot from the best of its holders (by measured
//!    throughput and past failures), falling back to the next on failure or stall. The
//!    pack streams into storage, which verifies and applies it or keeps nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use guts_api::{SyncOutcome, SyncProgress};
use guts_protocol::RepositoryId;

use crate::store::Store;
use guts_storage::Held;
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{Semaphore, mpsc};

use super::equivocation::Ledger;
use super::error::{FetchError, SyncError};
use super::holders::Holders;
use super::pack;
use super::quota::Quota;
use crate::config::{Config, Replicate};
use crate::metrics::TransferMetrics;
use crate::network::Client;
use crate::seeding::{Decision, Policies, Scope};

mod changes;
mod fetch;
mod forks;
mod keep;
mod policy;
mod provide;
mod refs;
mod shared;

use policy::{RefsRound, RetryBudget};

/// Time allowed to find providers in the DHT.
const PROVIDERS_TIMEOUT: Duration = Duration::from_secs(10);
/// Holders asked for patches and issues at each background sync.
const CHANGES_HOLDERS: usize = 2;
/// Holders asked at a sync someone asked for (`guts repo sync`): they want what the
/// network has now, whoever holds it.
const CHANGES_HOLDERS_ASKED: usize = 8;
/// Background syncs running at once.
const BACKGROUND_SYNCS: usize = 4;
/// `delay` stretched by a random 0-50 %.
fn jittered(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    delay + delay.mul_f64(f64::from(byte[0]) / 510.0)
}

/// Settings the engine reads from the node config.
#[derive(Debug, Clone)]
struct Settings {
    replicate: Replicate,
    max_followed: usize,
    stall: Duration,
    floor: pack::RateFloor,
    max_pack: u64,
}

/// Who this node is: its peer id, and the key that owns its repositories (and signs its
/// first view of a repository that makes it a maintainer).
pub(crate) struct Me {
    pub peer: PeerId,
    pub key: ed25519_dalek::SigningKey,
}

/// What the engine keeps account of as it fetches: transfer metrics, the storage
/// quota, and the headers seen on the network.
pub(crate) struct Accounts {
    pub transfers: TransferMetrics,
    pub quota: Arc<Quota>,
    pub ledger: Ledger,
}

/// A cheap, cloneable handle to the sync engine.
#[derive(Clone)]
pub(crate) struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: TransferMetrics,
    store: Store,
    client: Client,
    control: Mutex<libp2p_stream::Control>,
    pack_protocol: StreamProtocol,
    /// The owner's key: the repositories it signs are kept whatever `replicate` says.
    owner: VerifyingKey,
    /// Its signing half, for [`guts_storage::Repositories::adopt_view`].
    key: ed25519_dalek::SigningKey,
    local: PeerId,
    settings: Settings,
    holders: Holders,
    /// One sync per repository at a time.
    running: Mutex<HashMap<RepositoryId, Arc<tokio::sync::Mutex<()>>>>,
    /// Background triggers that arrived while a sync of the repository was running, with
    /// the newest sequence they announced (0 if none).
    again: Mutex<HashMap<RepositoryId, u64>>,
    background: Arc<Semaphore>,
    /// With `replicate = all`: how many repositories may still be adopted this hour.
    adoptions: governor::DefaultDirectRateLimiter,
    quota: Arc<Quota>,
    /// Headers seen on the network, for equivocations.
    ledger: Ledger,
    /// Whether each held repository is this node's own: fixed by its id (derived from
    /// the owner's key), so each snapshot is decoded for it once, not at every pass.
    owners: Arc<Mutex<HashMap<RepositoryId, bool>>>,
    /// The seeding policy, and with it what is kept of other keys' contributions.
    policies: Policies,
    /// When each peer last started a catch-up (see `keep.rs`).
    caught_up: Mutex<HashMap<PeerId, keep::CaughtUp>>,
    /// Whether a catch-up pass over every repository is under way, and whether one was
    /// asked for since it started.
    catching_up: std::sync::atomic::AtomicBool,
    catch_up_again: std::sync::atomic::AtomicBool,
    /// Whether a paced renewal of provider records is under way (see `provide.rs`).
    providing: std::sync::atomic::AtomicBool,
}

impl Engine {
    pub(crate) fn new(
        config: &Config,
        store: Store,
        client: Client,
        control: libp2p_stream::Control,
        me: Me,
        accounts: Accounts,
        policies: Policies,
    ) -> Self {
        let Accounts {
            transfers: metrics,
            quota,
            ledger,
        } = accounts;
        Engine {
            inner: Arc::new(Inner {
                metrics,
                store,
                client,
                control: Mutex::new(control),
                pack_protocol: crate::wire::pack_protocol(&config.network),
                owner: me.key.verifying_key(),
                key: me.key,
                local: me.peer,
                settings: Settings {
                    replicate: config.replication.replicate,
                    max_followed: config.replication.max_followed as usize,
                    stall: config.replication.transfer_stall_timeout,
                    floor: pack::RateFloor::of(config),
                    max_pack: config.replication.max_pack_size.as_u64(),
                },
                holders: Holders::new(me.peer),
                running: Mutex::default(),
                again: Mutex::default(),
                background: Arc::new(Semaphore::new(BACKGROUND_SYNCS)),
                quota,
                ledger,
                owners: Arc::default(),
                policies,
                caught_up: Mutex::default(),
                catching_up: std::sync::atomic::AtomicBool::new(false),
                catch_up_again: std::sync::atomic::AtomicBool::new(false),
                providing: std::sync::atomic::AtomicBool::new(false),
                adoptions: governor::RateLimiter::direct(governor::Quota::per_hour(
                    std::num::NonZeroU32::new(config.replication.max_adoptions_per_hour)
                        .unwrap_or(std::num::NonZeroU32::MIN),
                )),
            }),
        }
    }

    /// What the node has seen of owners' signed headers.
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// What this node keeps of other keys' patches and issues (the seeding policy's
    /// blocked keys among the blocked).
    pub(crate) fn change_policy(&self) -> guts_storage::ChangePolicy {
        self.inner.policies.changes()
    }

    /// The seeding policy.
    pub(crate) fn policies(&self) -> &Policies {
        &self.inner.policies
    }

    /// What the seeding policy decides for `id`: by its id, the keys of what is held of
    /// it, and `keys` (those of what a peer offers).
    pub(crate) async fn decision(&self, id: &RepositoryId, keys: &[VerifyingKey]) -> Decision {
        let policy = self.inner.policies.current();
        let id = *id;
        let mut all = keys.to_vec();
        if policy.names_keys()
            && let Ok(Ok(Some(held))) = self.inner.store.run(move |repos| repos.held(&id)).await
        {
            all.extend(crate::seeding::keys_of(&held));
        }
        policy.decide(&id, &all)
    }

    /// What is kept of `id`'s patches, issues and forks: the change policy, with only
    /// the maintainers' if its seed rule says so; `None` if it keeps none (or blocks it).
    pub(crate) async fn contributions_policy(
        &self,
        id: &RepositoryId,
    ) -> Option<guts_storage::ChangePolicy> {
        let mut policy = self.change_policy();
        match self.decision(id, &[]).await {
            Decision::Block | Decision::Seed(Scope::None) => return None,
            Decision::Seed(Scope::Maintainers) => policy.maintainers_only = true,
            Decision::Seed(Scope::All) | Decision::Default => {}
        }
        Some(policy)
    }

    /// The node's `replicate` setting.
    pub(crate) fn default_replicate(&self) -> Replicate {
        self.inner.settings.replicate
    }

    /// How repositories no rule names are kept: the policy's default, else `replicate`.
    fn replicate(&self) -> Replicate {
        self.inner
            .policies
            .current()
            .default
            .unwrap_or(self.inner.settings.replicate)
    }

    /// Keeps every kept repository up to date: now (providing what this node holds),
    /// then every `interval` until `shutdown` changes.
    pub(crate) fn start(
        &self,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut round = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => break,
                }
                // Provider records are renewed every tenth round (and at start); then
                // too, one peer in turn is asked what it holds.
                let tenth = round.is_multiple_of(10);
                if tenth && round > 0 && engine.replicate() == Replicate::All {
                    let peers = engine.inner.client.connected_peers().await;
                    if !peers.is_empty() {
                        let turn = (round / 10) as usize % peers.len();
                        engine.adopt_listed(peers[turn]).await;
                    }
                }
                engine.anti_entropy(tenth).await;
                round += 1;
            }
        });
    }

    /// Remembers that `peer` holds `id`.
    pub(crate) fn note_holder(&self, id: RepositoryId, peer: PeerId) {
        self.inner.holders.note(id, peer);
    }

    /// Known holders of `id`.
    pub(crate) fn holders(&self, id: &RepositoryId) -> Vec<PeerId> {
        self.inner.holders.of(id)
    }

    /// Syncs `id` in the background; triggers that arrive while it runs make it run once
    /// more afterwards rather than queueing up.
    pub(crate) fn trigger(&self, id: RepositoryId, hint: Option<PeerId>) {
        self.trigger_to(id, hint, 0);
    }

    /// [`Self::trigger`] for an announcement of sequence `announced`: the sync goes ahead
    /// as soon as a holder offers it, and until one has, it counts as failed and is
    /// retried (holders that were busy, or had not fetched it yet, will have it soon).
    pub(crate) fn trigger_to(&self, id: RepositoryId, hint: Option<PeerId>, announced: u64) {
        if let Some(peer) = hint {
            self.note_holder(id, peer);
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let lock = engine.repo_lock(&id);
            let Ok(guard) = lock.try_lock() else {
                let mut again = engine.inner.again.lock().unwrap_or_else(|e| e.into_inner());
                let target = again.entry(id).or_default();
                *target = (*target).max(announced);
                return;
            };
            let Ok(_slot) = engine.inner.background.clone().acquire_owned().await else {
                return;
            };
            let mut budget = RetryBudget::default();
            let mut target = announced;
            loop {
                let result = engine
                    .sync_locked(id, None, target, None, CHANGES_HOLDERS)
                    .await;
                match &result {
                    Ok(SyncOutcome::Updated {
                        sequence,
                        objects,
                        bytes,
                        from,
                        ..
                    }) => {
                        tracing::info!(repository = %id, sequence, objects, bytes, %from, "repository updated");
                    }
                    Ok(SyncOutcome::UpToDate { sequence }) if *sequence < target => {
                        tracing::debug!(repository = %id, sequence, announced = target, "the announced snapshot is not on offer yet");
                    }
                    Ok(SyncOutcome::UpToDate { .. }) => {}
                    Err(SyncError::NoHolders(_)) => {
                        tracing::debug!(repository = %id, "no holders yet");
                    }
                    Err(e) if e.only_busy() => {
                        tracing::debug!(repository = %id, "holders busy: {e}");
                    }
                    // Holders that went offline are common; not worth a warning.
                    Err(e @ SyncError::NoRefs { .. }) => {
                        tracing::info!(repository = %id, "sync failed: {e}");
                    }
                    Err(e) => {
                        tracing::warn!(repository = %id, "sync failed: {e}");
                    }
                }
                let retry = policy::retry_after(&result, target);
                let again = engine
                    .inner
                    .again
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                if let Some(announced) = again {
                    target = target.max(announced);
                }
                let again = again.is_some();
                // Holders that were busy (or went away) may serve in a moment, and those
                // that just fetched become holders too: retry soon, backing off.
                if let Some(delay) = budget.next_delay(retry) {
                    tokio::time::sleep(jittered(delay)).await;
                    continue;
                }
                if !again {
                    break;
                }
            }
            drop(guard);
        });
    }

    fn repo_lock(&self, id: &RepositoryId) -> Arc<tokio::sync::Mutex<()>> {
        let mut running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        running.entry(*id).or_default().clone()
    }

    /// Brings `id` up to date now (waiting for a sync already running), trying
    /// `prefer` first. Progress goes to `progress`.
    pub(crate) async fn sync(
        &self,
        id: RepositoryId,
        prefer: Option<PeerId>,
        progress: Option<mpsc::UnboundedSender<SyncProgress>>,
    ) -> Result<SyncOutcome, SyncError> {
        let lock = self.repo_lock(&id);
        let _guard = lock.lock().await;
        self.sync_locked(id, prefer, 0, progress, CHANGES_HOLDERS_ASKED)
            .await
    }

    /// A sync, for a caller holding the repository's lock: refs and their objects, then
    /// patches, issues and forks from up to `change_holders` connected holders. A holder offering
    /// `announced` (a sequence heard announced; 0 if none) ends the refs round at once.
    async fn sync_locked(
        &self,
        id: RepositoryId,
        prefer: Option<PeerId>,
        announced: u64,
        progress: Option<mpsc::UnboundedSender<SyncProgress>>,
        change_holders: usize,
    ) -> Result<SyncOutcome, SyncError> {
        if self.decision(&id, &[]).await == Decision::Block {
            return Err(SyncError::Blocked(id));
        }
        let outcome = self
            .sync_refs_locked(id, prefer, announced, progress)
            .await?;
        // Only holders connected now, and at once: a holder that went away must not hold
        // the sync up for a dial timeout.
        let connected: HashSet<PeerId> = self
            .inner
            .client
            .connected_peers()
            .await
            .into_iter()
            .collect();
        let mut holders = self.holders(&id);
        if let Some(p) = prefer {
            holders.retain(|h| *h != p);
            holders.insert(0, p);
        }
        let asks = holders
            .into_iter()
            .filter(|h| connected.contains(h))
            .take(change_holders)
            .map(|peer| async move {
                if let Err(e) = self.sync_changes(id, peer, None).await {
                    tracing::debug!(repository = %id, %peer, "no changes taken: {e}");
                }
                if let Err(e) = self.sync_forks(id, peer).await {
                    tracing::debug!(repository = %id, %peer, "no forks taken: {e}");
                }
            });
        futures::future::join_all(asks).await;
        Ok(outcome)
    }

    /// The refs and objects part of [`Self::sync_locked`].
    async fn sync_refs_locked(
        &self,
        id: RepositoryId,
        prefer: Option<PeerId>,
        announced: u64,
        progress: Option<mpsc::UnboundedSender<SyncProgress>>,
    ) -> Result<SyncOutcome, SyncError> {
        let report = |p: SyncProgress| {
            if let Some(tx) = &progress {
                let _ = tx.send(p);
            }
        };
        let held_record = self.held(&id).await?;
        let held = match &held_record {
            Some(Held::Owner(snapshot)) => Some(snapshot.clone()),
            _ => None,
        };
        let held_seq = held.as_ref().map_or(0, |s| s.sequence());

        // Known holders first; the DHT only if they have nothing newer, or if fetching
        // from them fails.
        let mut asked: Vec<PeerId> = prefer.into_iter().collect();
        // Beside `asked`, so membership is constant time (holders are capped, the DHT's
        // answers are not).
        let mut asked_set: HashSet<PeerId> = asked.iter().copied().collect();
        for p in self.holders(&id) {
            if asked_set.insert(p) {
                asked.push(p);
            }
        }
        // Holders that failed us lately (gone offline: provider records outlive them by
        // hours) are asked last, after the ones that answer.
        self.inner.holders.rank(&id, &mut asked, prefer);
        let held_header = held.as_ref().map(|s| s.signed.header.clone());
        let mut round = RefsRound::default();
        self.ask_refs(
            &id,
            &asked,
            held_header.as_ref(),
            prefer,
            announced,
            &mut round,
        )
        .await;
        self.refuse_blocked(&id, &round).await?;
        if matches!(held_record, Some(Held::Shared(_))) || !round.states.is_empty() {
            let holders = shared::Asked {
                peers: asked,
                set: asked_set,
            };
            return self
                .sync_shared(id, held_record, round, holders, prefer, &report)
                .await;
        }
        let mut searched = false;
        let mut failures: Vec<(PeerId, FetchError)> = Vec::new();
        let mut tried: HashSet<PeerId> = HashSet::new();
        loop {
            if round.offers.is_empty() || !failures.is_empty() {
                if !policy::search_dht(searched, round.offers.len(), failures.len()) {
                    break;
                }
                searched = true;
                let fresh = self.search_providers(id, &mut asked_set).await;
                asked.extend(&fresh);
                self.ask_refs(
                    &id,
                    &fresh,
                    held_header.as_ref(),
                    None,
                    announced,
                    &mut round,
                )
                .await;
                self.refuse_blocked(&id, &round).await?;
                // Holders found on the DHT may answer with maintainers' state: a
                // repository this node does not hold yet, that has maintainers.
                if !round.states.is_empty() {
                    let holders = shared::Asked {
                        peers: asked,
                        set: asked_set,
                    };
                    return self
                        .sync_shared(id, held_record, round, holders, prefer, &report)
                        .await;
                }
            }
            report(SyncProgress::Holders { asked: asked.len() });
            // The newest verified snapshot on offer, from holders not yet tried.
            let offers = &mut round.offers;
            offers.retain(|(p, _)| !tried.contains(p));
            let Some(best) = offers.iter().map(|(_, s)| s.sequence()).max() else {
                break;
            };
            let snapshot = offers
                .iter()
                .find(|(_, s)| s.sequence() == best)
                .map(|(_, s)| s.clone())
                .expect("the best offer exists");
            let mut sources: Vec<PeerId> = offers
                .iter()
                .filter(|(_, s)| *s == snapshot)
                .map(|(p, _)| *p)
                .collect();
            self.inner.holders.rank(&id, &mut sources, prefer);
            report(SyncProgress::Refs { sequence: best });
            for peer in sources {
                tried.insert(peer);
                match self.fetch(&snapshot, peer, &report).await {
                    Ok(outcome) => {
                        // A provider record names the repository, not a snapshot: a
                        // new holder says so once, and anti-entropy renews it. Providing
                        // again on every fetch cost every node a DHT write per commit.
                        if held.is_none() {
                            self.inner.client.provide(id);
                        }
                        return Ok(outcome);
                    }
                    Err(e) => {
                        tracing::info!(repository = %id, %peer, "fetch failed: {e}");
                        if let Some(penalty) = e.penalty() {
                            self.inner.client.penalize(peer, penalty);
                        }
                        failures.push((peer, e));
                    }
                }
            }
        }
        policy::conclusion(id, !asked.is_empty(), failures, round, held_seq)
    }

    /// Stops a sync whose offers name a key the seeding policy blocks, before anything
    /// of it is fetched.
    async fn refuse_blocked(&self, id: &RepositoryId, round: &RefsRound) -> Result<(), SyncError> {
        let keys: Vec<VerifyingKey> = round
            .offers
            .iter()
            .map(|(_, s)| s.signed.signer)
            .chain(round.states.iter().flat_map(keep::offered_keys))
            .collect();
        if !keys.is_empty() && self.decision(id, &keys).await == Decision::Block {
            return Err(SyncError::Blocked(*id));
        }
        Ok(())
    }

    /// Holders of `id` the DHT names that are not in `asked` (added to it), remembered.
    async fn search_providers(&self, id: RepositoryId, asked: &mut HashSet<PeerId>) -> Vec<PeerId> {
        let found = tokio::time::timeout(PROVIDERS_TIMEOUT, self.inner.client.find_providers(id))
            .await
            .unwrap_or_default();
        let fresh: Vec<PeerId> = found
            .into_iter()
            .filter(|p| *p != self.inner.local && asked.insert(*p))
            .collect();
        for p in &fresh {
            self.note_holder(id, *p);
        }
        fresh
    }
}
