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

use ed25519_dalek::SigningKey;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use guts_protocol::wire::{Announcement, PackRequest, SyncResponse};
use guts_protocol::{RepoName, RepositoryId, SignedRefs};
use guts_storage::{Repositories, StorageError};
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{Semaphore, mpsc};

use super::pack::{self, FetchError};
use crate::api::types::{SyncOutcome, SyncProgress};
use crate::config::{Config, Replicate};
use crate::connection_manager::Penalty;
use crate::error::NodeError;
use crate::handle::Network;
use crate::metrics::TransferMetrics;

/// Holders asked for refs at once.
const REFS_FANOUT: usize = 6;
/// Time allowed to find providers in the DHT.
const PROVIDERS_TIMEOUT: Duration = Duration::from_secs(10);
/// Above this many packs a repository is repacked into one (in the background).
const REPACK_ABOVE: usize = 4;
/// Background syncs running at once.
const BACKGROUND_SYNCS: usize = 4;
/// A failed background sync is retried this many times, after this delay, doubling.
const RETRIES: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Unknown repositories adopted from one peer's list at a time: bounds what a peer
/// listing made-up ids can cost; the rest come with the next list.
const ADOPT_PER_LIST: usize = 256;

/// What we know of a peer as a holder of a repository.
#[derive(Debug, Clone, Default)]
struct HolderStats {
    /// Smoothed throughput of its past transfers, bytes per second.
    throughput: Option<f64>,
    failures: u32,
}

/// Settings the engine reads from the node config.
#[derive(Debug, Clone)]
struct Settings {
    replicate: Replicate,
    stall: Duration,
    max_pack: u64,
}

/// A cheap, cloneable handle to the sync engine.
#[derive(Clone)]
pub(crate) struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: TransferMetrics,
    repos: Repositories,
    net: Network,
    control: Mutex<libp2p_stream::Control>,
    pack_protocol: StreamProtocol,
    key: SigningKey,
    local: PeerId,
    settings: Settings,
    holders: Mutex<HashMap<RepositoryId, HashMap<PeerId, HolderStats>>>,
    /// One sync per repository at a time.
    running: Mutex<HashMap<RepositoryId, Arc<tokio::sync::Mutex<()>>>>,
    /// Background triggers that arrived while a sync of the repository was running.
    again: Mutex<HashSet<RepositoryId>>,
    background: Arc<Semaphore>,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No peer is known to hold the repository.
    #[error(
        "no holder of {0} found (it is not announced nor provided in the DHT by any reachable peer)"
    )]
    NoHolders(RepositoryId),
    /// Holders were found but none could serve a newer snapshot.
    #[error("no holder of {repository} could serve it: {reasons}")]
    AllFailed {
        /// The repository.
        repository: RepositoryId,
        /// What went wrong with each.
        reasons: String,
    },
    /// Local storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The node stopped.
    #[error("the node has stopped")]
    Stopped,
}

impl Engine {
    pub(crate) fn new(
        config: &Config,
        metrics: TransferMetrics,
        repos: Repositories,
        net: Network,
        control: libp2p_stream::Control,
        key: SigningKey,
        local: PeerId,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                metrics,
                repos,
                net,
                control: Mutex::new(control),
                pack_protocol: pack::protocol(&config.network),
                key,
                local,
                settings: Settings {
                    replicate: config.replicate,
                    stall: config.transfer_stall_timeout,
                    max_pack: config.max_pack_size.as_u64(),
                },
                holders: Mutex::default(),
                running: Mutex::default(),
                again: Mutex::default(),
                background: Arc::new(Semaphore::new(BACKGROUND_SYNCS)),
            }),
        }
    }

    /// Starts serving packs, recovers storage after a crash, provides what this node
    /// holds and catches up on what it follows; then keeps doing so every `interval`.
    pub(crate) async fn start(
        &self,
        incoming: libp2p_stream::IncomingStreams,
        max_transfers: u32,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        let repos = self.inner.repos.clone();
        tokio::task::spawn_blocking(move || repos.recover())
            .await
            .map_err(|e| NodeError::Setup(e.to_string()))??;
        let server = tokio::spawn(pack::serve(
            incoming,
            self.inner.repos.clone(),
            self.inner.net.clone(),
            self.inner.metrics.clone(),
            Arc::new(Semaphore::new(max_transfers as usize)),
        ));
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
                    let peers = engine.inner.net.connected_peers().await;
                    if !peers.is_empty() {
                        let turn = (round / 10) as usize % peers.len();
                        engine.adopt_listed(peers[turn]).await;
                    }
                }
                engine.anti_entropy(tenth).await;
                round += 1;
            }
            server.abort();
        });
        Ok(())
    }

    /// The repositories to keep up to date: those this node owns or follows, and with
    /// `replicate = all` every one it holds. (A repository fetched once with an explicit
    /// sync is not followed by that alone.)
    async fn kept(&self) -> Vec<RepositoryId> {
        let repos = self.inner.repos.clone();
        let owner = self.owner_key();
        let all = self.inner.settings.replicate == Replicate::All;
        tokio::task::spawn_blocking(move || {
            let mut ids = repos.followed().unwrap_or_default();
            for id in repos.list().unwrap_or_default() {
                let owned = || {
                    repos
                        .signed_refs(&id)
                        .ok()
                        .flatten()
                        .is_some_and(|s| s.signed.signer == owner)
                };
                if !ids.contains(&id) && (all || owned()) {
                    ids.push(id);
                }
            }
            ids
        })
        .await
        .unwrap_or_default()
    }

    /// Checks every kept repository against its holders now.
    pub(crate) fn catch_up(&self, peer: PeerId) {
        let engine = self.clone();
        tokio::spawn(async move {
            engine.adopt_listed(peer).await;
            engine.anti_entropy(false).await
        });
    }

    /// With `replicate = all`, fetches the repositories `peer` holds that this node does
    /// not: those announced before it joined (or while it was cut off), which no
    /// announcement repeats. Only ids the peer backs with a valid snapshot are fetched.
    async fn adopt_listed(&self, peer: PeerId) {
        if self.inner.settings.replicate != Replicate::All {
            return;
        }
        let listed = match self.inner.net.list_repositories(peer).await {
            Ok(ids) => ids,
            Err(GetRefsError::Penalty(penalty, reason)) => {
                tracing::info!(%peer, "bad repository list: {reason}");
                self.inner.net.penalize(peer, penalty);
                return;
            }
            Err(GetRefsError::Failed(reason)) => {
                tracing::debug!(%peer, "no repository list: {reason}");
                return;
            }
        };
        let kept: HashSet<RepositoryId> = self.kept().await.into_iter().collect();
        let unknown: Vec<RepositoryId> = listed
            .into_iter()
            .filter(|id| !kept.contains(id))
            .take(ADOPT_PER_LIST)
            .collect();
        if !unknown.is_empty() {
            tracing::info!(%peer, "{} repositories to adopt from its list", unknown.len());
        }
        for id in unknown {
            if !self.ask_refs(&id, &[peer], 0).await.is_empty() && self.wants(&id).await {
                self.trigger(id, Some(peer));
            }
        }
    }

    async fn anti_entropy(&self, provide: bool) {
        for id in self.kept().await {
            if provide && self.holds(&id).await {
                self.inner.net.provide(id);
            }
            self.trigger(id, None);
        }
    }

    async fn holds(&self, id: &RepositoryId) -> bool {
        matches!(self.signed_refs(id).await, Ok(Some(_)))
    }

    async fn signed_refs(&self, id: &RepositoryId) -> Result<Option<SignedRefs>, SyncError> {
        let (repos, id) = (self.inner.repos.clone(), *id);
        Ok(tokio::task::spawn_blocking(move || repos.signed_refs(&id))
            .await
            .map_err(|_| SyncError::Stopped)??)
    }

    /// Whether a verified announcement of `id` is for a repository this node replicates.
    /// With `replicate = all` the node adopts it: it follows it from now on, so a fetch
    /// that fails now is retried by anti-entropy.
    pub(crate) async fn wants(&self, id: &RepositoryId) -> bool {
        if self.inner.settings.replicate == Replicate::All {
            let (repos, id) = (self.inner.repos.clone(), *id);
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || repos.follow(&id)).await {
                tracing::warn!(repository = %id, "cannot follow: {e}");
            }
            return true;
        }
        self.kept().await.contains(id)
    }

    /// Remembers that `peer` holds `id`.
    pub(crate) fn note_holder(&self, id: RepositoryId, peer: PeerId) {
        if peer == self.inner.local {
            return;
        }
        let mut holders = self.inner.holders.lock().unwrap_or_else(|e| e.into_inner());
        holders.entry(id).or_default().entry(peer).or_default();
    }

    /// Known holders of `id`.
    pub(crate) fn holders(&self, id: &RepositoryId) -> Vec<PeerId> {
        let holders = self.inner.holders.lock().unwrap_or_else(|e| e.into_inner());
        holders
            .get(id)
            .map(|h| h.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Syncs `id` in the background; triggers that arrive while it runs make it run once
    /// more afterwards rather than queueing up.
    pub(crate) fn trigger(&self, id: RepositoryId, hint: Option<PeerId>) {
        if let Some(peer) = hint {
            self.note_holder(id, peer);
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let lock = engine.repo_lock(&id);
            let Ok(guard) = lock.try_lock() else {
                engine
                    .inner
                    .again
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id);
                return;
            };
            let Ok(_slot) = engine.inner.background.clone().acquire_owned().await else {
                return;
            };
            let mut retries = 0u32;
            loop {
                let failed = match engine.sync_locked(id, None, None).await {
                    Ok(SyncOutcome::Updated {
                        sequence,
                        objects,
                        bytes,
                        from,
                        ..
                    }) => {
                        tracing::info!(repository = %id, sequence, objects, bytes, %from, "repository updated");
                        false
                    }
                    Ok(SyncOutcome::UpToDate { .. }) => false,
                    Err(SyncError::NoHolders(_)) => {
                        tracing::debug!(repository = %id, "no holders yet");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(repository = %id, "sync failed: {e}");
                        true
                    }
                };
                let again = engine
                    .inner
                    .again
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                // Holders that were busy (or went away) may serve in a moment, and those
                // that just fetched become holders too: retry soon, backing off.
                if failed && retries < RETRIES {
                    tokio::time::sleep(RETRY_DELAY * 2u32.pow(retries)).await;
                    retries += 1;
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
        self.sync_locked(id, prefer, progress).await
    }

    async fn sync_locked(
        &self,
        id: RepositoryId,
        prefer: Option<PeerId>,
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
        for p in self.holders(&id) {
            if !asked.contains(&p) {
                asked.push(p);
            }
        }
        let mut offers = self.ask_refs(&id, &asked, held_seq).await;
        let mut searched = false;
        let mut reasons = Vec::new();
        let mut tried: HashSet<PeerId> = HashSet::new();
        loop {
            if offers.is_empty() || !reasons.is_empty() {
                if searched {
                    break;
                }
                searched = true;
                let found =
                    tokio::time::timeout(PROVIDERS_TIMEOUT, self.inner.net.find_providers(id))
                        .await
                        .unwrap_or_default();
                let fresh: Vec<PeerId> = found
                    .into_iter()
                    .filter(|p| *p != self.inner.local && !asked.contains(p))
                    .collect();
                for p in &fresh {
                    self.note_holder(id, *p);
                }
                asked.extend(&fresh);
                offers.extend(self.ask_refs(&id, &fresh, held_seq).await);
            }
            report(SyncProgress::Holders { asked: asked.len() });
            // The newest verified snapshot on offer, from holders not yet tried.
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
            self.rank(&id, &mut sources, prefer);
            report(SyncProgress::Refs { sequence: best });
            for peer in sources {
                tried.insert(peer);
                match self.fetch(&snapshot, peer, &report).await {
                    Ok(outcome) => {
                        self.inner.net.provide(id);
                        report(SyncProgress::Done(outcome.clone()));
                        return Ok(outcome);
                    }
                    Err(e) => {
                        tracing::info!(repository = %id, %peer, "fetch failed: {e}");
                        reasons.push(format!("{peer}: {e}"));
                    }
                }
            }
        }
        if asked.is_empty() {
            return Err(SyncError::NoHolders(id));
        }
        if reasons.is_empty() {
            return Ok(SyncOutcome::UpToDate { sequence: held_seq });
        }
        Err(SyncError::AllFailed {
            repository: id,
            reasons: reasons.join("; "),
        })
    }

    /// Asks `peers` for their refs of `id`; returns the snapshots that verify and are
    /// newer than `held`. Peers that send something bad are penalized.
    async fn ask_refs(
        &self,
        id: &RepositoryId,
        peers: &[PeerId],
        held: u64,
    ) -> Vec<(PeerId, SignedRefs)> {
        let mut asks = FuturesUnordered::new();
        let mut offers = Vec::new();
        for chunk in peers.chunks(REFS_FANOUT) {
            for peer in chunk {
                let net = self.inner.net.clone();
                let (peer, id) = (*peer, *id);
                asks.push(async move { (peer, net.get_refs(peer, id).await) });
            }
            while let Some((peer, answer)) = asks.next().await {
                match answer {
                    Ok(SyncResponse::Refs(snapshot)) => {
                        let snapshot = *snapshot;
                        if snapshot.repository() != *id {
                            self.inner.net.penalize(peer, Penalty::BadData);
                        } else if let Err(e) = snapshot.verify() {
                            tracing::info!(%peer, repository = %id, "refused snapshot: {e}");
                            self.inner.net.penalize(peer, Penalty::BadData);
                        } else if snapshot.sequence() < held {
                            // Older than what we hold: a rollback attempt, or a peer far
                            // behind; a light penalty that fades either way.
                            tracing::info!(%peer, repository = %id, offered = snapshot.sequence(), held, "refused an older snapshot");
                            self.inner.net.penalize(peer, Penalty::Stale);
                        } else {
                            self.note_holder(*id, peer);
                            if snapshot.sequence() > held {
                                offers.push((peer, snapshot));
                            }
                        }
                    }
                    Ok(SyncResponse::NotFound) | Ok(SyncResponse::RateLimited) => {}
                    Ok(SyncResponse::Repositories(_)) => {
                        self.inner.net.penalize(peer, Penalty::BadData);
                    }
                    Err(GetRefsError::Penalty(penalty, reason)) => {
                        tracing::info!(%peer, repository = %id, "bad refs answer: {reason}");
                        self.inner.net.penalize(peer, penalty);
                    }
                    Err(GetRefsError::Failed(reason)) => {
                        tracing::debug!(%peer, repository = %id, "no refs answer: {reason}");
                    }
                }
            }
        }
        offers
    }

    /// Orders holders best first: the preferred one, then fewest failures, then fastest.
    fn rank(&self, id: &RepositoryId, peers: &mut [PeerId], prefer: Option<PeerId>) {
        let holders = self.inner.holders.lock().unwrap_or_else(|e| e.into_inner());
        let stats = holders.get(id);
        let key = |p: &PeerId| {
            let s = stats.and_then(|h| h.get(p)).cloned().unwrap_or_default();
            (
                Some(*p) != prefer,
                s.failures,
                // Faster first; unmeasured peers after measured ones of any speed.
                std::cmp::Reverse(s.throughput.map(|t| t as u64).unwrap_or(0)),
            )
        };
        peers.sort_by_key(key);
    }

    fn record(&self, id: &RepositoryId, peer: PeerId, throughput: Option<f64>) {
        let mut holders = self.inner.holders.lock().unwrap_or_else(|e| e.into_inner());
        let s = holders.entry(*id).or_default().entry(peer).or_default();
        match throughput {
            Some(t) => {
                s.failures = 0;
                s.throughput = Some(s.throughput.map_or(t, |old| 0.7 * old + 0.3 * t));
            }
            None => s.failures = s.failures.saturating_add(1),
        }
    }

    /// Fetches what `snapshot` needs from `peer` and applies it.
    async fn fetch(
        &self,
        snapshot: &SignedRefs,
        peer: PeerId,
        report: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncOutcome, String> {
        let id = snapshot.repository();
        let repos = self.inner.repos.clone();
        let snap = snapshot.clone();
        let (wants, haves) = tokio::task::spawn_blocking(move || {
            Ok::<_, StorageError>((repos.wants(&snap)?, repos.haves(&snap.repository())?))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let started = Instant::now();
        if wants.is_empty() {
            // Every object is here already (e.g. a ref was deleted): apply the snapshot.
            let (repos, snap) = (self.inner.repos.clone(), snapshot.clone());
            tokio::task::spawn_blocking(move || repos.accept(&snap, None, &mut |_| {}))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| self.judge(peer, e))?;
            return Ok(SyncOutcome::Updated {
                sequence: snapshot.sequence(),
                from: peer.to_string(),
                objects: 0,
                bytes: 0,
                millis: started.elapsed().as_millis() as u64,
            });
        }

        self.inner.net.set_syncing(peer, true);
        let result = self.fetch_pack(snapshot, peer, wants, haves, report).await;
        self.inner.net.set_syncing(peer, false);
        let (objects, bytes) = match result {
            Ok(stats) => stats,
            Err(e) => {
                self.record(&id, peer, None);
                return Err(e);
            }
        };
        let elapsed = started.elapsed();
        self.maybe_repack(id);
        let m = &self.inner.metrics;
        m.fetched_packs.inc();
        m.fetched_objects.inc_by(objects);
        m.fetched_bytes.inc_by(bytes);
        self.record(
            &id,
            peer,
            Some(bytes as f64 / elapsed.as_secs_f64().max(1e-3)),
        );
        self.inner.net.record_useful(peer);
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
        wants: Vec<guts_protocol::ObjectId>,
        haves: Vec<guts_protocol::ObjectId>,
        report: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<(u64, u64), String> {
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
        .await
        .map_err(|e| self.judge_fetch(peer, e))?;

        // The indexer runs on a blocking thread, fed through a bounded channel.
        let (tx, mut rx) = mpsc::channel::<io::Result<Vec<u8>>>(16);
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<guts_storage::PackStats>();
        let (repos, snap) = (self.inner.repos.clone(), snapshot.clone());
        let ingest = tokio::task::spawn_blocking(move || {
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
                self.inner.settings.max_pack,
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
        let accepted = ingest.await.map_err(|e| e.to_string())?;
        if let Err(e) = pumped {
            return Err(self.judge_fetch(peer, e));
        }
        let stats = accepted.map_err(|e| self.judge(peer, e))?;
        report(SyncProgress::Receiving {
            objects: stats.objects as u64,
            total: total as u64,
            bytes: stats.bytes,
        });
        Ok((stats.objects as u64, stats.bytes))
    }

    /// Penalizes `peer` for what storage found wrong with its data; returns the message.
    fn judge(&self, peer: PeerId, e: StorageError) -> String {
        if matches!(
            e,
            StorageError::BadPack(_)
                | StorageError::MissingObject { .. }
                | StorageError::Incomplete { .. }
                | StorageError::InvalidSnapshot(_)
        ) {
            self.inner.net.penalize(peer, Penalty::BadData);
        }
        e.to_string()
    }

    fn judge_fetch(&self, peer: PeerId, e: FetchError) -> String {
        if let Some(penalty) = e.penalty() {
            self.inner.net.penalize(peer, penalty);
        }
        e.to_string()
    }

    /// Imports the local git repository at `path` as a repository owned by this node,
    /// then provides and announces it.
    pub(crate) async fn import(
        &self,
        path: std::path::PathBuf,
        name: Option<RepoName>,
    ) -> Result<guts_storage::Imported, StorageError> {
        let (repos, key) = (self.inner.repos.clone(), self.inner.key.clone());
        let imported = tokio::task::spawn_blocking(move || repos.import(&path, name, &key))
            .await
            .map_err(|e| StorageError::Transfer(e.to_string()))??;
        if imported.changed {
            let id = imported.snapshot.repository();
            self.maybe_repack(id);
            self.inner.net.provide(id);
            self.inner
                .net
                .announce(Announcement::of(&imported.snapshot));
        }
        Ok(imported)
    }

    /// Repacks `id` in the background once its packs pile up, so full fetches from this
    /// node can send one stored pack as it is.
    fn maybe_repack(&self, id: RepositoryId) {
        let repos = self.inner.repos.clone();
        tokio::task::spawn_blocking(move || {
            if repos.pack_count(&id).is_ok_and(|n| n > REPACK_ABOVE)
                && let Err(e) = repos.repack(&id)
            {
                tracing::warn!(repository = %id, "repack failed: {e}");
            }
        });
    }

    /// Creates an empty repository owned by this node, then provides and announces it.
    pub(crate) async fn init(&self, name: RepoName) -> Result<SignedRefs, StorageError> {
        let (repos, key) = (self.inner.repos.clone(), self.inner.key.clone());
        let snapshot = tokio::task::spawn_blocking(move || repos.init(name, &key))
            .await
            .map_err(|e| StorageError::Transfer(e.to_string()))??;
        self.inner.net.provide(snapshot.repository());
        self.inner.net.announce(Announcement::of(&snapshot));
        Ok(snapshot)
    }

    /// A staging area for a push to `id` (refused unless this node owns it).
    pub(crate) async fn push_area(
        &self,
        id: RepositoryId,
    ) -> Result<std::path::PathBuf, StorageError> {
        let (repos, key) = (self.inner.repos.clone(), self.inner.key.clone());
        tokio::task::spawn_blocking(move || repos.create_staging(&id, &key))
            .await
            .map_err(|e| StorageError::Transfer(e.to_string()))?
    }

    /// Applies a push from `area`; a new snapshot is provided and announced.
    pub(crate) async fn push(
        &self,
        id: RepositoryId,
        area: std::path::PathBuf,
        updates: Vec<guts_storage::RefUpdate>,
    ) -> Result<guts_storage::Pushed, StorageError> {
        let (repos, key) = (self.inner.repos.clone(), self.inner.key.clone());
        let pushed = tokio::task::spawn_blocking(move || repos.push(&id, &area, &updates, &key))
            .await
            .map_err(|e| StorageError::Transfer(e.to_string()))??;
        if pushed.changed {
            self.maybe_repack(id);
            self.inner.net.provide(id);
            self.inner.net.announce(Announcement::of(&pushed.snapshot));
        }
        Ok(pushed)
    }

    /// The public key that owns this node's repositories.
    pub(crate) fn owner_key(&self) -> ed25519_dalek::VerifyingKey {
        self.inner.key.verifying_key()
    }

    /// The storage this engine works on.
    pub(crate) fn repos(&self) -> &Repositories {
        &self.inner.repos
    }
}

/// Why a sync request (GetRefs, ListRepositories) gave no answer.
#[derive(Debug)]
pub(crate) enum GetRefsError {
    /// The peer misbehaved (oversized or undecodable answer).
    Penalty(Penalty, String),
    /// No answer (timeout, disconnection, unsupported).
    Failed(String),
}
