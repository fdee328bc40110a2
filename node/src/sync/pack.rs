//! The pack protocol: one libp2p stream per transfer. The requester sends a
//! [`PackRequest`]; the holder answers a [`PackResponse`] and, for `Pack`, the packfile's
//! bytes until it closes the stream.
//!
//! request-response would buffer a whole pack in memory under one timeout; a stream lets
//! both sides move it in bounded pieces, with a stall timeout instead of a total one.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use guts_protocol::NetworkName;
use guts_protocol::wire::{
    MAX_PACK_HEADER_SIZE, MAX_PACK_REQUEST_SIZE, PackRequest, PackResponse, WireError,
};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::frame::{read_message, wire_error, write_message};
use crate::connection_manager::Penalty;
use crate::handle::Network;
use crate::metrics::TransferMetrics;

/// Bytes handed between the pack builder or indexer and the stream at a time.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the stream and the pack builder or indexer.
const CHANNEL_DEPTH: usize = 16;
/// Time allowed for a requester to send its request, or a holder its answer header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// Label under which pack requests are rate-limited per peer.
const RATE_LIMIT_KEY: &str = "pack";

/// The protocol name for `network`.
pub fn protocol(network: &NetworkName) -> StreamProtocol {
    StreamProtocol::try_from_owned(network.pack_protocol())
        .expect("network names make valid protocol names")
}

/// Serves pack requests until the node stops.
pub(crate) async fn serve(
    mut incoming: libp2p_stream::IncomingStreams,
    repos: guts_storage::Repositories,
    net: Network,
    metrics: TransferMetrics,
    transfers: Arc<Semaphore>,
) {
    while let Some((peer, stream)) = incoming.next().await {
        let (repos, net, transfers) = (repos.clone(), net.clone(), transfers.clone());
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(peer, stream, repos, net, metrics, transfers).await {
                tracing::debug!(%peer, "pack transfer ended: {e}");
            }
        });
    }
}

async fn serve_one(
    peer: PeerId,
    mut stream: Stream,
    repos: guts_storage::Repositories,
    net: Network,
    metrics: TransferMetrics,
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
            match wire_error(&e) {
                Some(WireError::Oversized { .. }) => net.penalize(peer, Penalty::Oversized),
                Some(_) => net.penalize(peer, Penalty::Undecodable),
                None => {}
            }
            return Err(e);
        }
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no request")),
    };
    if !net.allow_request(peer, RATE_LIMIT_KEY).await {
        return reply_and_close(&mut stream, PackResponse::RateLimited).await;
    }
    let Ok(permit) = transfers.try_acquire_owned() else {
        return reply_and_close(&mut stream, PackResponse::Busy).await;
    };
    let id = request.repository;
    let held = {
        let repos = repos.clone();
        tokio::task::spawn_blocking(move || repos.signed_refs(&id)).await
    };
    if !matches!(held, Ok(Ok(Some(_)))) {
        return reply_and_close(&mut stream, PackResponse::NotFound).await;
    }

    // libgit2 writes the pack on a blocking thread; a bounded channel carries it here.
    let (count_tx, count_rx) = oneshot::channel::<usize>();
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    let build = tokio::task::spawn_blocking(move || {
        let mut count_tx = Some(count_tx);
        repos.build_pack(
            &id,
            &request.wants,
            &request.haves,
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
    let mut sent = 0u64;
    while let Some(chunk) = chunk_rx.recv().await {
        stream.write_all(&chunk).await?;
        sent += chunk.len() as u64;
    }
    // Dropping the receiver on a write error above aborts the builder.
    match build.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(io::Error::other(e.to_string())),
        Err(e) => return Err(io::Error::other(e.to_string())),
    }
    stream.close().await?;
    drop(permit);
    metrics.served_packs.inc();
    metrics.served_bytes.inc_by(sent);
    tracing::debug!(%peer, repository = %id, objects, bytes = sent, "pack sent");
    Ok(())
}

async fn reply_and_close(stream: &mut Stream, response: PackResponse) -> io::Result<()> {
    write_message(stream, &response).await?;
    stream.close().await
}

/// Why a fetch from one holder failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("cannot open a stream: {0}")]
    Open(String),
    #[error("the holder answered {0:?}")]
    Declined(PackResponse),
    #[error("bad answer header: {0}")]
    BadHeader(io::Error),
    #[error("no data for {0:?}")]
    Stalled(Duration),
    #[error("pack larger than the {0}-byte limit")]
    Oversized(u64),
    #[error("transfer failed: {0}")]
    Io(io::Error),
}

impl FetchError {
    /// The penalty the holder deserves, if any.
    pub(crate) fn penalty(&self) -> Option<Penalty> {
        match self {
            FetchError::BadHeader(e) => match wire_error(e) {
                Some(WireError::Oversized { .. }) => Some(Penalty::Oversized),
                Some(_) => Some(Penalty::Undecodable),
                None => None,
            },
            FetchError::Oversized(_) => Some(Penalty::Oversized),
            _ => None,
        }
    }
}

/// Opens a pack stream to `peer` and sends `request`; returns the stream positioned at
/// the pack's first byte, and the object count announced.
pub(crate) async fn request(
    control: &mut libp2p_stream::Control,
    protocol: StreamProtocol,
    peer: PeerId,
    request: &PackRequest,
) -> Result<(Stream, u32), FetchError> {
    let mut stream = tokio::time::timeout(HEADER_TIMEOUT, control.open_stream(peer, protocol))
        .await
        .map_err(|_| FetchError::Open("timed out".into()))?
        .map_err(|e| FetchError::Open(e.to_string()))?;
    write_message(&mut stream, request)
        .await
        .map_err(FetchError::Io)?;
    let header: PackResponse = tokio::time::timeout(
        HEADER_TIMEOUT,
        read_message(&mut stream, MAX_PACK_HEADER_SIZE),
    )
    .await
    .map_err(|_| FetchError::Stalled(HEADER_TIMEOUT))?
    .map_err(FetchError::BadHeader)?;
    match header {
        PackResponse::Pack { objects } => Ok((stream, objects)),
        other => Err(FetchError::Declined(other)),
    }
}

/// Moves the pack from `stream` into `sink`, a chunk at a time, until the holder closes
/// the stream. Gives up when nothing arrives for `stall` or more than `max` bytes do.
pub(crate) async fn pump(
    stream: &mut Stream,
    sink: &mpsc::Sender<io::Result<Vec<u8>>>,
    stall: Duration,
    max: u64,
) -> Result<u64, FetchError> {
    let mut total = 0u64;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = tokio::time::timeout(stall, stream.read(&mut buf))
            .await
            .map_err(|_| FetchError::Stalled(stall))?
            .map_err(FetchError::Io)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        if total > max {
            return Err(FetchError::Oversized(max));
        }
        buf.truncate(n);
        if sink.send(Ok(buf)).await.is_err() {
            // The indexer stopped (it found the pack bad): nothing more to move.
            return Ok(total);
        }
    }
}
