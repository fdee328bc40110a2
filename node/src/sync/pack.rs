//! The pack protocol, fetching side: one libp2p stream per transfer. The requester sends
//! a [`PackRequest`]; the holder answers a [`PackResponse`] and, for `Pack`, the
//! packfile's bytes until it closes the stream (the serving side is in
//! [`super::serve`]).
//!
//! request-response would buffer a whole pack in memory under one timeout; a stream lets
//! both sides move it in bounded pieces, with a stall timeout instead of a total one.

use std::io;
use std::time::Duration;

use futures::AsyncReadExt;
use guts_protocol::wire::{MAX_PACK_HEADER_SIZE, PackRequest, PackResponse};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::mpsc;

use super::error::FetchError;
use crate::wire::{read_message, write_message};

/// Bytes handed between the pack builder or indexer and the stream at a time.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Time allowed for a requester to send its request, or a holder its answer header.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(20);

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
