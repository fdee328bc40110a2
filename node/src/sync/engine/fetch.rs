//! Fetching from one holder: the pack a snapshot needs, streamed into storage, which
//! verifies and applies it or keeps nothing.

use std::io;
use std::time::{Duration, Instant};

use guts_api::{SyncOutcome, SyncProgress};
use guts_protocol::wire::PackRequest;
use guts_protocol::{ObjectId, RepositoryId, SignedRefs};
use guts_storage::StorageError;
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::Engine;
use crate::author::repack_if_needed;
use crate::sync::error::FetchError;
use crate::sync::pack;

/// How long a fetch waits for a direct connection to a holder reached only through relays.
const DIRECT_WAIT: Duration = Duration::from_secs(15);

impl Engine {
    /// Fetches what `snapshot` needs from `peer` and applies it.
    pub(super) async fn fetch(
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
                via: None,
            });
        }

        let via = self.direct(peer).await?;
        let snap = snapshot.clone();
        let result = self
            .fetch_pack(
                id,
                *snapshot.signed.signer.as_bytes(),
                peer,
                wants,
                haves,
                report,
                |stats| *stats,
                move |repos, chunks, progress| repos.accept(&snap, Some(chunks), progress),
            )
            .await;
        let (objects, bytes) = match result {
            Ok(stats) => (stats.objects as u64, stats.bytes),
            Err(e) => {
                self.inner.holders.record(&id, peer, None);
                return Err(e);
            }
        };
        self.fetched(id, peer, objects, bytes, started.elapsed())
            .await;
        let via = self.path_taken(peer, via).await;
        Ok(SyncOutcome::Updated {
            sequence: snapshot.sequence(),
            from: peer.to_string(),
            objects,
            bytes,
            millis: started.elapsed().as_millis() as u64,
            via: via.map(|relay| relay.to_string()),
        })
    }

    /// The relay a transfer from `peer` went through, if any: the one it was let through
    /// (`allowed`), or the one it is reached by now (a connection that closed meanwhile
    /// was replaced by a circuit: the stream took whatever connection there was).
    pub(super) async fn path_taken(&self, peer: PeerId, allowed: Option<PeerId>) -> Option<PeerId> {
        match allowed {
            Some(relay) => Some(relay),
            None => self.inner.client.relayed_via(peer).await,
        }
    }

    /// Accounts for a pack of `objects` and `bytes` fetched from `peer` in `elapsed`:
    /// disk usage, a repack if due, metrics, the holder's measured speed.
    pub(super) async fn fetched(
        &self,
        id: RepositoryId,
        peer: PeerId,
        objects: u64,
        bytes: u64,
        elapsed: Duration,
    ) {
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
    }

    /// Fetches the pack of `wants` (beyond `haves`) of `id` from `peer` and hands it,
    /// streamed, to `ingest` in storage, which verifies and applies it. `owner` is the key
    /// whose storage quota it counts against. The peer is marked syncing while it runs;
    /// callers wait for a direct connection first ([`Self::direct`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fetch_pack<T: Send + 'static>(
        &self,
        id: RepositoryId,
        owner: [u8; 32],
        peer: PeerId,
        wants: Vec<ObjectId>,
        haves: Vec<ObjectId>,
        report: &(dyn Fn(SyncProgress) + Send + Sync),
        stats_of: fn(&T) -> guts_storage::PackStats,
        ingest: impl FnOnce(
            &guts_storage::Repositories,
            &mut dyn Iterator<Item = io::Result<Vec<u8>>>,
            &mut dyn FnMut(guts_storage::PackStats),
        ) -> Result<T, StorageError>
        + Send
        + 'static,
    ) -> Result<T, FetchError> {
        self.inner.client.set_syncing(peer, true);
        let result = self
            .fetch_direct(id, owner, peer, wants, haves, report, stats_of, ingest)
            .await;
        self.inner.client.set_syncing(peer, false);
        result
    }

    /// Waits for a direct connection to `peer`: hole punching (DCUtR) may need a moment
    /// to turn a relayed connection direct. Packs go through a relay only once punching
    /// gave up and the relay carries data (most cut circuits at 128 KiB): then that relay.
    pub(super) async fn direct(&self, peer: PeerId) -> Result<Option<PeerId>, FetchError> {
        let direct = self.inner.client.await_direct(peer);
        tokio::time::timeout(DIRECT_WAIT, direct)
            .await
            .map_err(|_| FetchError::RelayedOnly(DIRECT_WAIT))
    }

    /// [`Self::fetch_pack`] while the peer is marked syncing.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_direct<T: Send + 'static>(
        &self,
        id: RepositoryId,
        owner: [u8; 32],
        peer: PeerId,
        wants: Vec<ObjectId>,
        haves: Vec<ObjectId>,
        report: &(dyn Fn(SyncProgress) + Send + Sync),
        stats_of: fn(&T) -> guts_storage::PackStats,
        ingest: impl FnOnce(
            &guts_storage::Repositories,
            &mut dyn Iterator<Item = io::Result<Vec<u8>>>,
            &mut dyn FnMut(guts_storage::PackStats),
        ) -> Result<T, StorageError>
        + Send
        + 'static,
    ) -> Result<T, FetchError> {
        tracing::debug!(repository = %id, %peer, wants = wants.len(), "fetching a pack");
        // The quota for the owner caps the transfer below the pack size limit.
        let room = self.inner.quota.room(&owner).await;
        let max = room.map_or(self.inner.settings.max_pack, |r| {
            r.min(self.inner.settings.max_pack)
        });
        let request = PackRequest {
            repository: id,
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
        let ingest = self.inner.store.run(move |repos| {
            let mut chunks = std::iter::from_fn(|| rx.blocking_recv());
            ingest(repos, &mut chunks, &mut |stats| {
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
        let accepted = accepted?;
        let stats = stats_of(&accepted);
        report(SyncProgress::Receiving {
            objects: stats.objects as u64,
            total: total as u64,
            bytes: stats.bytes,
        });
        Ok(accepted)
    }
}
