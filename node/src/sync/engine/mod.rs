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
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use guts_api::{SyncOutcome, SyncProgress};
use guts_protocol::refs::RefsHeader;
use guts_protocol::wire::{PackRequest, SyncResponse};
use guts_protocol::{ObjectId, RepositoryId, SignedRefs};
use guts_storage::StorageError;

use crate::store::Store;
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{Semaphore, mpsc};

use super::equivocation::Ledger;
use super::error::{FetchError, SyncError};
use super::holders::Holders;
use super::pack;
use super::quota::Quota;
use crate::author::repack_if_needed;
use crate::config::{Config, Replicate};
use crate::connection_manager::Penalty;
use crate::identity::peer_of_owner;
use crate::metrics::TransferMetrics;
use crate::network::{Client, RequestError};

/// Holders asked for refs at once.
const REFS_FANOUT: usize = 6;
mod keep;
mod policy;

use policy::RetryBudget;

/// How long other holders may still answer once one has.
const REFS_GRACE: Duration = Duration::from_secs(1);
/// How long a fetch waits for a direct connection to a holder reached only through relays.
const DIRECT_WAIT: Duration = Duration::from_secs(15);
/// Time allowed to find providers in the DHT.
const PROVIDERS_TIMEOUT: Duration = Duration::from_secs(10);
/// Background syncs running at once.
const BACKGROUND_SYNCS: usize = 4;
/// `delay` stretched by a random 0-50 %.
fn jittered(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    delay + delay.mul_f64(f64::from(byte[0]) / 510.0)
}

/// What one sync's refs requests brought.
#[derive(Default)]
struct RefsRound {
    /// Verified snapshots newer than what this node holds, and who offered each.
    offers: Vec<(PeerId, SignedRefs)>,
    /// Whether any holder answered with verified refs, newer or not.
    heard: bool,
    /// Each peer whose answer was not refs this node could use, and why.
    misses: Vec<(PeerId, String)>,
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

/// Who this node is: its peer id, and the key that owns its repositories.
pub(crate) struct Me {
    pub peer: PeerId,
    pub owner: VerifyingKey,
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
}

impl Engine {
    pub(crate) fn new(
        config: &Config,
        store: Store,
        client: Client,
        control: libp2p_stream::Control,
        me: Me,
        accounts: Accounts,
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
                owner: me.owner,
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
                if tenth && round > 0 && engine.inner.settings.replicate == Replicate::All {
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
                let result = engine.sync_locked(id, None, target, None).await;
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
        self.sync_locked(id, prefer, 0, progress).await
    }

    /// A sync, for a caller holding the repository's lock. A holder offering `announced`
    /// (a sequence heard announced; 0 if none) ends the refs round at once.
    async fn sync_locked(
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
        let held = self.signed_refs(&id).await?;
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
        let mut searched = false;
        let mut failures: Vec<(PeerId, FetchError)> = Vec::new();
        let mut tried: HashSet<PeerId> = HashSet::new();
        loop {
            if round.offers.is_empty() || !failures.is_empty() {
                if !policy::search_dht(searched, round.offers.len(), failures.len()) {
                    break;
                }
                searched = true;
                let found =
                    tokio::time::timeout(PROVIDERS_TIMEOUT, self.inner.client.find_providers(id))
                        .await
                        .unwrap_or_default();
                let fresh: Vec<PeerId> = found
                    .into_iter()
                    .filter(|p| *p != self.inner.local && asked_set.insert(*p))
                    .collect();
                for p in &fresh {
                    self.note_holder(id, *p);
                }
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
                        report(SyncProgress::Done(outcome.clone()));
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
        policy::conclusion(
            id,
            !asked.is_empty(),
            failures,
            round.heard,
            held_seq,
            round.misses,
        )
    }

    /// Asks `peers` for their refs of `id`; adds to `round` the snapshots that verify and
    /// are newer than `held` (and are not a second version of a sequence seen already),
    /// and why each other peer offered none. Peers that send something bad are
    /// penalized. The round ends once the owner's own node, or a holder of the sequence
    /// `announced` (when above 0), has answered, and `prefer` (a peer the caller named) too.
    async fn ask_refs(
        &self,
        id: &RepositoryId,
        peers: &[PeerId],
        held_header: Option<&RefsHeader>,
        prefer: Option<PeerId>,
        announced: u64,
        round: &mut RefsRound,
    ) {
        let held = held_header.map_or(0, |h| h.sequence);
        let mut asks = FuturesUnordered::new();
        let mut unanswered: HashSet<PeerId> = HashSet::new();
        // Once one holder has answered, the rest get REFS_GRACE: a holder that went away
        // (its dial waits for the connection timeout) must not hold every sync up.
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut newest_heard = false;
        // A peer named by the caller is heard out: `--from` means "try this one".
        let mut awaited = prefer.filter(|p| peers.contains(p));
        for chunk in peers.chunks(REFS_FANOUT) {
            if deadline.is_some_and(|d| d <= tokio::time::Instant::now()) {
                break;
            }
            for peer in chunk {
                unanswered.insert(*peer);
                let client = self.inner.client.clone();
                let (peer, id) = (*peer, *id);
                asks.push(async move { (peer, client.get_refs(peer, id).await) });
            }
            loop {
                let next = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, asks.next()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    },
                    None => asks.next().await,
                };
                let Some((peer, answer)) = next else { break };
                unanswered.remove(&peer);
                let mut miss = |why: String| round.misses.push((peer, why));
                if awaited == Some(peer) {
                    awaited = None;
                    if newest_heard {
                        deadline = Some(tokio::time::Instant::now());
                    }
                }
                match answer {
                    Ok(SyncResponse::Refs(snapshot)) => {
                        let snapshot = *snapshot;
                        if snapshot.repository() != *id {
                            self.inner.client.penalize(peer, Penalty::BadData);
                            miss("answered with another repository's refs".into());
                            continue;
                        }
                        if let Err(e) = snapshot.verify() {
                            tracing::info!(%peer, repository = %id, "refused snapshot: {e}");
                            self.inner.client.penalize(peer, Penalty::BadData);
                            miss(format!("sent refs that do not verify: {e}"));
                            continue;
                        }
                        round.heard = true;
                        // The owner's own node holds the newest snapshot there is: no
                        // need to wait for anyone else (but a peer the caller named).
                        newest_heard |= peer_of_owner(&snapshot.signed.signer) == Some(peer)
                            || (announced > held && snapshot.sequence() >= announced);
                        if newest_heard && awaited.is_none() {
                            deadline = Some(tokio::time::Instant::now());
                        } else {
                            deadline
                                .get_or_insert_with(|| tokio::time::Instant::now() + REFS_GRACE);
                        }
                        if self
                            .inner
                            .ledger
                            .observe(&snapshot.signed.header, peer, held_header)
                        {
                            // The owner signed this sequence twice: the peer is not at
                            // fault, and the version seen first stays.
                            miss(format!(
                                "offered a second version of sequence {}",
                                snapshot.sequence()
                            ));
                        } else if snapshot.sequence() < held {
                            // Older than what we hold: a rollback attempt, or a peer far
                            // behind; a light penalty that fades either way.
                            tracing::info!(%peer, repository = %id, offered = snapshot.sequence(), held, "refused an older snapshot");
                            self.inner.client.penalize(peer, Penalty::Stale);
                        } else {
                            self.note_holder(*id, peer);
                            if snapshot.sequence() > held {
                                round.offers.push((peer, snapshot));
                            }
                        }
                    }
                    Ok(SyncResponse::NotFound) => miss("does not hold it".into()),
                    Ok(SyncResponse::RateLimited) => miss("busy (rate-limited)".into()),
                    Ok(SyncResponse::Repositories(_)) => {
                        self.inner.client.penalize(peer, Penalty::BadData);
                        miss("answered with a repository list".into());
                    }
                    Err(RequestError::Misbehaved { penalty, reason }) => {
                        tracing::info!(%peer, repository = %id, "bad refs answer: {reason}");
                        self.inner.client.penalize(peer, penalty);
                        miss(format!("bad answer: {reason}"));
                    }
                    Err(RequestError::Failed(reason)) => {
                        tracing::debug!(%peer, repository = %id, "no refs answer: {reason}");
                        self.inner.holders.record(id, peer, None);
                        miss(format!("unreachable: {reason}"));
                    }
                }
            }
        }
        for peer in peers.iter().filter(|p| unanswered.contains(p)) {
            round
                .misses
                .push((*peer, "no answer before another holder's".into()));
        }
    }

    /// Fetches what `snapshot` needs from `peer` and applies it.
    async fn fetch(
        &self,
        snapshot: &SignedRefs,
        peer: PeerId,
        report: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncOutcome, FetchError> {
        let id = snapshot.repository();
        let snap = snapshot.clone();
        let (wants, haves) = self
            .inner
            .store
            .run(move |repos| {
                Ok::<_, StorageError>((repos.wants(&snap)?, repos.haves(&snap.repository())?))
            })
            .await??;
        let started = Instant::now();
        if wants.is_empty() {
            // Every object is here already (e.g. a ref was deleted): apply the snapshot.
            let snap = snapshot.clone();
            (self.inner.store)
                .run(move |repos| repos.accept(&snap, None, &mut |_| {}))
                .await??;
            return Ok(SyncOutcome::Updated {
                sequence: snapshot.sequence(),
                from: peer.to_string(),
                objects: 0,
                bytes: 0,
                millis: started.elapsed().as_millis() as u64,
            });
        }

        // Hole punching (DCUtR) may need a moment to turn a relayed connection direct.
        let direct = self.inner.client.await_direct(peer);
        if tokio::time::timeout(DIRECT_WAIT, direct).await.is_err() {
            return Err(FetchError::RelayedOnly(DIRECT_WAIT));
        }
        self.inner.client.set_syncing(peer, true);
        let result = self.fetch_pack(snapshot, peer, wants, haves, report).await;
        self.inner.client.set_syncing(peer, false);
        let (objects, bytes) = match result {
            Ok(stats) => stats,
            Err(e) => {
                self.inner.holders.record(&id, peer, None);
                return Err(e);
            }
        };
        let elapsed = started.elapsed();
        {
            let quota = self.inner.quota.clone();
            let measured = self
                .inner
                .store
                .run(move |repos| quota.measure(repos, &id))
                .await;
            if let Ok(Err(e)) = measured {
                tracing::warn!(repository = %id, "cannot measure its disk usage: {e}");
            }
        }
        repack_if_needed(&self.inner.store, id);
        let m = &self.inner.metrics;
        m.fetched_packs.inc();
        m.fetched_objects.inc_by(objects);
        m.fetched_bytes.inc_by(bytes);
        self.inner.holders.record(
            &id,
            peer,
            Some(bytes as f64 / elapsed.as_secs_f64().max(1e-3)),
        );
        self.inner.client.record_useful(peer);
        Ok(SyncOutcome::Updated {
            sequence: snapshot.sequence(),
            from: peer.to_string(),
            objects,
            bytes,
            millis: elapsed.as_millis() as u64,
        })
    }

    async fn fetch_pack(
        &self,
        snapshot: &SignedRefs,
        peer: PeerId,
        wants: Vec<ObjectId>,
        haves: Vec<ObjectId>,
        report: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<(u64, u64), FetchError> {
        tracing::debug!(repository = %snapshot.repository(), %peer, sequence = snapshot.sequence(), wants = wants.len(), "fetching a pack");
        // The quota for the owner caps the transfer below the pack size limit.
        let room = self
            .inner
            .quota
            .room(snapshot.signed.signer.as_bytes())
            .await;
        let max = room.map_or(self.inner.settings.max_pack, |r| {
            r.min(self.inner.settings.max_pack)
        });
        let request = PackRequest {
            repository: snapshot.repository(),
            wants,
            haves,
        };
        let mut control = self
            .inner
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (mut stream, total) = pack::request(
            &mut control,
            self.inner.pack_protocol.clone(),
            peer,
            &request,
        )
        .await?;

        // The indexer runs on a blocking thread, fed through a bounded channel.
        let (tx, mut rx) = mpsc::channel::<io::Result<Vec<u8>>>(16);
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<guts_storage::PackStats>();
        let snap = snapshot.clone();
        let ingest = self.inner.store.run(move |repos| {
            let mut chunks = std::iter::from_fn(|| rx.blocking_recv());
            repos.accept(&snap, Some(&mut chunks), &mut |stats| {
                let _ = progress_tx.send(stats);
            })
        });
        let pumped = {
            let pump = pack::pump(
                &mut stream,
                &tx,
                self.inner.settings.stall,
                self.inner.settings.floor,
                max,
            );
            tokio::pin!(pump);
            loop {
                tokio::select! {
                    result = &mut pump => break result,
                    Some(stats) = progress_rx.recv() => report(SyncProgress::Receiving {
                        objects: stats.objects as u64,
                        total: total as u64,
                        bytes: stats.bytes,
                    }),
                }
            }
        };
        if let Err(e) = &pumped {
            // The indexer must not take a cut-off pack for a whole one.
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
        }
        drop(tx);
        let accepted = ingest.await?;
        match pumped {
            Err(FetchError::Oversized(_)) if room.is_some_and(|r| r == max) => {
                return Err(FetchError::OverQuota(max));
            }
            other => other?,
        };
        let stats = accepted?;
        report(SyncProgress::Receiving {
            objects: stats.objects as u64,
            total: total as u64,
            bytes: stats.bytes,
        });
        Ok((stats.objects as u64, stats.bytes))
    }
}
