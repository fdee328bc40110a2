//! Pack requests, on streams of their own: checked against the held snapshot, built by
//! git on a blocking thread, sent with a deadline on every write and a floor on the rate.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use guts_protocol::ObjectId;
use guts_protocol::wire::{MAX_PACK_REQUEST_SIZE, PackRequest, PackResponse};
use libp2p::{PeerId, Stream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::Server;
use crate::connection_manager::Penalty;
use crate::sync::pack::{CHUNK, HEADER_TIMEOUT};
use crate::wire::{PACK_RATE_LIMIT_KEY, penalty_for, read_message, write_message};

/// Chunks buffered between the pack builder and the stream.
const CHANNEL_DEPTH: usize = 16;

impl Server {
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
        let requester = crate::identity::key_of_peer(&peer);
        let checked = {
            let PackRequest {
                mut wants,
                mut haves,
                ..
            } = request;
            self.store
                .run(move |repos| {
                    // A private repository's objects go to those it allows alone; to
                    // anyone else it is "not found", as one this node does not hold.
                    if !repos.visible_to(&id, requester.as_ref()).ok()? {
                        return None;
                    }
                    wants.sort_unstable();
                    wants.dedup();
                    haves.sort_unstable();
                    haves.dedup();
                    let targets = repos.servable(&id).ok().flatten()?;
                    Some(match unsigned_want(&targets, &wants) {
                        Some(want) => Err(format!(
                            "{want} is not a ref target of what this node holds of {id}"
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
fn unsigned_want(targets: &[ObjectId], wants: &[ObjectId]) -> Option<ObjectId> {
    // `targets` is sorted (Repositories::servable).
    wants
        .iter()
        .find(|w| targets.binary_search(w).is_err())
        .copied()
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

async fn reply_and_close(stream: &mut Stream, response: PackResponse) -> io::Result<()> {
    write_message(stream, &response).await?;
    stream.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
