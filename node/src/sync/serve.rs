//! Answering peers, off the swarm task: GetRefs and ListRepositories (routed here as
//! [`Event`]s from the event loop), pack requests (streams), and gossiped announcements,
//! which are decoded, verified and compared with what this node holds before gossipsub may
//! relay them.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use guts_protocol::wire::{
    self, Announcement, MAX_ANNOUNCEMENT_SIZE, MAX_LISTED_REPOSITORIES, MAX_PACK_REQUEST_SIZE,
    PackRequest, PackResponse, SyncRequest, SyncResponse,
};
use guts_protocol::{ObjectId, RepositoryId, SignedHeader, SignedRefs};
use guts_storage::Repositories;

use crate::store::Store;
use libp2p::{PeerId, Stream, gossipsub};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::engine::Engine;
use super::pack::{CHUNK, HEADER_TIMEOUT, RateFloor};
use crate::connection_manager::Penalty;
use crate::metrics::{Announcements, TransferMetrics, Verdict};
use crate::network::{Client, Event};
use crate::wire::{PACK_RATE_LIMIT_KEY, penalty_for, read_message, write_message};

/// Requests and announcements judged at once; beyond it they wait in the event queue,
/// and once that is full the event loop turns new ones away.
const CONCURRENT_ANSWERS: usize = 16;
/// Chunks buffered between the pack builder and the stream.
const CHANNEL_DEPTH: usize = 16;

/// What answering peers needs.
#[derive(Clone)]
pub(crate) struct Server {
    pub store: Store,
    pub client: Client,
    pub engine: Engine,
    pub metrics: TransferMetrics,
    /// A write that cannot go on for this long ends the transfer.
    pub stall: Duration,
    /// The least a requester must take in.
    pub floor: RateFloor,
    /// Announcements per owner key.
    pub owners: Arc<OwnerLimiter>,
    /// What became of announcements.
    pub announcements: Announcements,
}

/// A rate limit per owner key.
pub(crate) type OwnerLimiter = governor::DefaultKeyedRateLimiter<[u8; 32]>;

/// Owner keys remembered by the limiter before idle ones are forgotten.
const OWNERS_REMEMBERED: usize = 10_000;

/// The limiter for `per_minute` announcements per owner key.
pub(crate) fn owner_limiter(per_minute: u32) -> Arc<OwnerLimiter> {
    let per_minute = std::num::NonZeroU32::new(per_minute).unwrap_or(std::num::NonZeroU32::MIN);
    Arc::new(governor::RateLimiter::keyed(governor::Quota::per_minute(
        per_minute,
    )))
}

impl Server {
    /// Handles the event loop's events until it stops.
    pub(crate) async fn route(self, mut events: mpsc::Receiver<Event>) {
        let answers = Arc::new(Semaphore::new(CONCURRENT_ANSWERS));
        while let Some(event) = events.recv().await {
            match event {
                Event::PeerConnected { peer, first } => {
                    // Back in touch (start, restart, a healed partition): catch up now
                    // rather than at the next anti-entropy round.
                    if first {
                        self.engine.catch_up(peer);
                    }
                }
                Event::InboundRequest {
                    peer,
                    request,
                    channel,
                } => {
                    let Ok(permit) = answers.clone().acquire_owned().await else {
                        return;
                    };
                    let server = self.clone();
                    tokio::spawn(async move {
                        let response = server.answer(request).await;
                        tracing::trace!(%peer, "answered a sync request");
                        server.client.respond(channel, response);
                        drop(permit);
                    });
                }
                Event::Announcement {
                    propagation_source,
                    message_id,
                    publisher,
                    data,
                } => {
                    let Ok(permit) = answers.clone().acquire_owned().await else {
                        return;
                    };
                    let server = self.clone();
                    tokio::spawn(async move {
                        let (acceptance, verdict) = server
                            .judge_announcement(propagation_source, publisher, &data)
                            .await;
                        server
                            .announcements
                            .get_or_create(&Verdict { verdict })
                            .inc();
                        server
                            .client
                            .validated(message_id, propagation_source, acceptance);
                        drop(permit);
                    });
                }
            }
        }
    }

    /// The answer to a sync request.
    async fn answer(&self, request: SyncRequest) -> SyncResponse {
        self.store
            .run(move |repos| answer(repos, request, MAX_LISTED_REPOSITORIES))
            .await
            .unwrap_or_else(|e| {
                tracing::error!("answering a sync request failed: {e}");
                SyncResponse::NotFound
            })
    }

    /// Whether gossipsub may relay an announcement: it must decode and verify (else the
    /// relaying peer is penalized), and be newer than what this node holds (else it is
    /// old news, ignored). News of a repository this node replicates triggers a sync.
    async fn judge_announcement(
        &self,
        from: PeerId,
        publisher: Option<PeerId>,
        data: &[u8],
    ) -> (gossipsub::MessageAcceptance, &'static str) {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let header = match verified_header(data) {
            Ok(header) => header,
            Err(why) => {
                tracing::info!(%from, "rejected announcement: {why}");
                self.client.penalize(from, Penalty::InvalidAnnouncement);
                return (Reject, "rejected");
            }
        };
        if self.owners.len() > OWNERS_REMEMBERED {
            self.owners.retain_recent();
        }
        if self.owners.check_key(header.signer.as_bytes()).is_err() {
            tracing::debug!(%from, repository = %header.repository(), "over its owner's announcement rate: ignored");
            return (Ignore, "owner_rate");
        }
        let id = header.repository();
        let held = (self.store.run(move |repos| repos.signed_refs(&id)))
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten()
            .map(|s| s.signed.header);
        let origin = publisher.unwrap_or(from);
        if self
            .engine
            .ledger()
            .observe(&header.header, origin, held.as_ref())
        {
            // A second version of a sequence: not relayed, the relayer not blamed.
            return (Ignore, "equivocation");
        }
        if !is_news(&header, held.map_or(0, |h| h.sequence)) {
            // Old news (or a replay): not relayed, no penalty.
            return (Ignore, "old");
        }
        if self.engine.wants(&id).await {
            self.engine
                .trigger_to(id, publisher, header.header.sequence);
        }
        (Accept, "accepted")
    }

    /// Serves pack requests until the node stops; at most `transfers` at once, beyond
    /// which requesters are told `Busy`.
    /// A peer may have `per_peer` pack streams open at once: more are closed unread, so
    /// hundreds of streams announcing maximal requests cost one peer's share, not more.
    pub(crate) async fn serve_packs(
        self,
        mut incoming: libp2p_stream::IncomingStreams,
        transfers: usize,
        per_peer: usize,
    ) {
        let transfers = Arc::new(Semaphore::new(transfers));
        let open: Arc<std::sync::Mutex<HashMap<PeerId, usize>>> = Arc::default();
        while let Some((peer, mut stream)) = incoming.next().await {
            let guard = match StreamSlot::take(&open, peer, per_peer) {
                Some(guard) => guard,
                None => {
                    tracing::debug!(%peer, "over {per_peer} pack streams: closed");
                    self.client.penalize(peer, Penalty::RateLimited);
                    tokio::spawn(async move {
                        let _ = stream.close().await;
                    });
                    continue;
                }
            };
            let (server, transfers) = (self.clone(), transfers.clone());
            tokio::spawn(async move {
                if let Err(e) = server.serve_pack(peer, stream, transfers).await {
                    tracing::debug!(%peer, "pack transfer ended: {e}");
                }
                drop(guard);
            });
        }
    }

    async fn serve_pack(
        &self,
        peer: PeerId,
        mut stream: Stream,
        transfers: Arc<Semaphore>,
    ) -> io::Result<()> {
        let request: PackRequest = match tokio::time::timeout(
            HEADER_TIMEOUT,
            read_message(&mut stream, MAX_PACK_REQUEST_SIZE),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                if let Some(penalty) = penalty_for(&e) {
                    self.client.penalize(peer, penalty);
                }
                return Err(e);
            }
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no request")),
        };
        if !self.client.allow_request(peer, PACK_RATE_LIMIT_KEY).await {
            return reply_and_close(&mut stream, PackResponse::RateLimited).await;
        }
        let Ok(permit) = transfers.try_acquire_owned() else {
            return reply_and_close(&mut stream, PackResponse::Busy).await;
        };
        let id = request.repository;
        // Off the runtime: the snapshot may hold 100,000 refs and the request 245,000
        // wants, so reading one and checking the other is blocking work.
        // Repeats go first: a request of 245,000 copies of one want is one want to git
        // (and to the memory each transfer holds).
        let checked = {
            let PackRequest {
                mut wants,
                mut haves,
                ..
            } = request;
            self.store
                .run(move |repos| {
                    wants.sort_unstable();
                    wants.dedup();
                    haves.sort_unstable();
                    haves.dedup();
                    let snapshot = repos.signed_refs(&id).ok().flatten()?;
                    Some(match unsigned_want(&snapshot, &wants) {
                        Some(want) => Err(format!(
                            "{want} is not a ref target of snapshot {} of {id}",
                            snapshot.sequence()
                        )),
                        None => Ok((wants, haves)),
                    })
                })
                .await
        };
        let (wants, haves) = match checked {
            Ok(Some(Ok(asked))) => asked,
            Ok(Some(Err(reason))) => {
                return reply_and_close(&mut stream, PackResponse::Refused(reason)).await;
            }
            _ => return reply_and_close(&mut stream, PackResponse::NotFound).await,
        };

        // libgit2 writes the pack on a blocking thread; a bounded channel carries it here.
        let (count_tx, count_rx) = oneshot::channel::<usize>();
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
        let build = self.store.run(move |repos| {
            let mut count_tx = Some(count_tx);
            repos.build_pack(
                &id,
                &wants,
                &haves,
                &mut |n| {
                    if let Some(tx) = count_tx.take() {
                        let _ = tx.send(n);
                    }
                },
                &mut |chunk| {
                    chunk
                        .chunks(CHUNK)
                        .all(|piece| chunk_tx.blocking_send(piece.to_vec()).is_ok())
                },
            )
        });
        let objects = match count_rx.await {
            Ok(n) => n,
            Err(_) => {
                let reason = match build.await {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the pack could not be built".to_owned(),
                };
                return reply_and_close(&mut stream, PackResponse::Refused(reason)).await;
            }
        };
        write_message(
            &mut stream,
            &PackResponse::Pack {
                objects: objects as u32,
            },
        )
        .await?;
        // Each write has a deadline and the whole a floor, so a requester that stops
        // reading (or reads a trickle) gives its transfer slot back.
        let (mut sent, mut waited) = (0u64, Duration::ZERO);
        while let Some(chunk) = chunk_rx.recv().await {
            let started = tokio::time::Instant::now();
            match tokio::time::timeout(self.stall, stream.write_all(&chunk)).await {
                Ok(written) => written?,
                Err(_) => {
                    self.client.penalize(peer, Penalty::TooSlow);
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the requester stopped reading",
                    ));
                }
            }
            waited += started.elapsed();
            sent += chunk.len() as u64;
            if let Err(e) = self.floor.check(sent, waited) {
                self.client.penalize(peer, Penalty::TooSlow);
                return Err(io::Error::new(io::ErrorKind::TimedOut, e.to_string()));
            }
        }
        // Dropping the receiver on a write error above aborts the builder.
        build
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        stream.close().await?;
        drop(permit);
        self.metrics.served_packs.inc();
        self.metrics.served_bytes.inc_by(sent);
        tracing::debug!(%peer, repository = %id, objects, bytes = sent, "pack sent");
        Ok(())
    }
}

/// The first of `wants` that no ref of `snapshot` points at: only what the current
/// snapshot points at is served (objects a force push dropped, or that were never signed,
/// are nobody's to ask for). Linear: the targets go into a set once.
fn unsigned_want(snapshot: &SignedRefs, wants: &[ObjectId]) -> Option<ObjectId> {
    let targets: HashSet<&ObjectId> = snapshot.refs.values().collect();
    wants.iter().find(|w| !targets.contains(w)).copied()
}

/// One of a peer's pack streams, counted while it is open.
struct StreamSlot {
    open: Arc<std::sync::Mutex<HashMap<PeerId, usize>>>,
    peer: PeerId,
}

impl StreamSlot {
    /// A slot for `peer`, unless it already has `max` open.
    fn take(
        open: &Arc<std::sync::Mutex<HashMap<PeerId, usize>>>,
        peer: PeerId,
        max: usize,
    ) -> Option<StreamSlot> {
        let mut counts = open.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(peer).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            open: open.clone(),
            peer,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

/// The answer to `request` from what `repos` holds, listing at most `max_listed` ids.
fn answer(repos: &Repositories, request: SyncRequest, max_listed: usize) -> SyncResponse {
    match request {
        SyncRequest::GetRefs { repository } => match repos.signed_refs(&repository) {
            Ok(Some(refs)) => SyncResponse::Refs(Box::new(refs)),
            Ok(None) => SyncResponse::NotFound,
            Err(e) => {
                tracing::error!("{e}");
                SyncResponse::NotFound
            }
        },
        SyncRequest::ListRepositories => {
            let mut ids: Vec<RepositoryId> = repos.list().unwrap_or_else(|e| {
                tracing::error!("{e}");
                Vec::new()
            });
            ids.truncate(max_listed);
            SyncResponse::Repositories(ids)
        }
    }
}

/// The header of a gossiped announcement, if it decodes and its signature verifies.
fn verified_header(data: &[u8]) -> Result<SignedHeader, String> {
    let announcement: Announcement =
        wire::decode(data, MAX_ANNOUNCEMENT_SIZE).map_err(|e| e.to_string())?;
    let header = announcement.header().clone();
    header.verify().map_err(|e| e.to_string())?;
    Ok(header)
}

/// Whether an announcement says more than the snapshot of sequence `held` this node has.
fn is_news(header: &SignedHeader, held: u64) -> bool {
    header.sequence() > held
}

async fn reply_and_close(stream: &mut Stream, response: PackResponse) -> io::Result<()> {
    write_message(stream, &response).await?;
    stream.close().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use guts_protocol::SignedRefs;

    fn store_with_one_repository() -> (tempfile::TempDir, Repositories, SignedRefs) {
        let dir = tempfile::tempdir().unwrap();
        let repos = Repositories::new(dir.path());
        let key = SigningKey::from_bytes(&[9; 32]);
        let snapshot = repos.init("demo".parse().unwrap(), &key).unwrap();
        (dir, repos, snapshot)
    }

    #[test]
    fn get_refs_answers_the_held_snapshot_or_not_found() {
        let (_dir, repos, snapshot) = store_with_one_repository();
        let held = answer(
            &repos,
            SyncRequest::GetRefs {
                repository: snapshot.repository(),
            },
            MAX_LISTED_REPOSITORIES,
        );
        assert_eq!(held, SyncResponse::Refs(Box::new(snapshot)));
        let unknown = answer(
            &repos,
            SyncRequest::GetRefs {
                repository: RepositoryId::from_bytes([1; 20]),
            },
            MAX_LISTED_REPOSITORIES,
        );
        assert_eq!(unknown, SyncResponse::NotFound);
    }

    #[test]
    fn a_repository_list_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let repos = Repositories::new(dir.path());
        let key = SigningKey::from_bytes(&[9; 32]);
        for i in 0..5 {
            repos.init(format!("r{i}").parse().unwrap(), &key).unwrap();
        }
        for (cap, expected) in [(3, 3), (5, 5), (MAX_LISTED_REPOSITORIES, 5)] {
            match answer(&repos, SyncRequest::ListRepositories, cap) {
                SyncResponse::Repositories(ids) => assert_eq!(ids.len(), expected, "cap {cap}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn announcements_must_decode_and_verify() {
        let (_dir, _repos, snapshot) = store_with_one_repository();
        let data = wire::encode(&Announcement::of(&snapshot));
        let header = verified_header(&data).unwrap();
        assert_eq!(header.repository(), snapshot.repository());

        assert!(verified_header(b"garbage").is_err());
        // A flipped byte breaks the decoding or the signature, unless it misses the
        // signed header (the kind of announcement is not signed and changes nothing).
        for i in 0..data.len() {
            let mut forged = data.clone();
            forged[i] ^= 0x01;
            if let Ok(h) = verified_header(&forged) {
                assert_eq!(h, header, "byte {i} flipped changes a verified header");
            }
        }
        let oversized = vec![0u8; MAX_ANNOUNCEMENT_SIZE + 1];
        assert!(verified_header(&oversized).unwrap_err().contains("limit"));
    }

    #[test]
    fn stream_slots_are_counted_per_peer_and_given_back() {
        let open = Arc::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let first = StreamSlot::take(&open, a, 2).unwrap();
        let _second = StreamSlot::take(&open, a, 2).unwrap();
        assert!(StreamSlot::take(&open, a, 2).is_none(), "a third for a");
        assert!(StreamSlot::take(&open, b, 2).is_some(), "b has its own");
        drop(first);
        assert!(StreamSlot::take(&open, a, 2).is_some(), "given back");
    }

    #[test]
    fn only_newer_sequences_are_news() {
        let (_dir, _repos, snapshot) = store_with_one_repository();
        let header = snapshot.signed.clone();
        let seq = header.sequence();
        assert!(is_news(&header, seq - 1));
        assert!(!is_news(&header, seq));
        assert!(!is_news(&header, seq + 1));
    }
}
