//! The pack protocol, fetching side: one libp2p stream per transfer. The requester sends
//! a [`PackRequest`]; the holder answers a [`PackResponse`] and, for `Pack`, the
//! packfile's bytes until it closes the stream (the serving side is in
//! [`super::serve`]).
//!
//! request-response would buffer a whole pack in memory under one timeout; a stream lets
//! both sides move it in bounded pieces, with a stall timeout instead of a total one.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

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

/// The least a transfer must move: once `grace` of waiting on the network has passed,
/// at least `min_rate` bytes per second of it. Only time spent waiting on the peer
/// counts, never time spent waiting on this node's own indexer or pack builder, so a
/// busy node does not blame a fast peer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateFloor {
    /// Bytes per second.
    pub min_rate: u64,
    pub grace: Duration,
}

impl RateFloor {
    /// The floor `config` sets.
    pub(crate) fn of(config: &crate::config::Config) -> Self {
        RateFloor {
            min_rate: config.replication.min_transfer_rate.as_u64(),
            grace: config.replication.transfer_stall_timeout,
        }
    }

    /// The error when `bytes` moved in `waited` of network time is too slow.
    pub(crate) fn check(&self, bytes: u64, waited: Duration) -> Result<(), FetchError> {
        let owed = waited.saturating_sub(self.grace).as_secs_f64() * self.min_rate as f64;
        if (bytes as f64) < owed {
            return Err(FetchError::TooSlow {
                bytes,
                secs: waited.as_secs(),
                min_rate: self.min_rate,
            });
        }
        Ok(())
    }
}

/// Moves the pack from `stream` into `sink`, a chunk at a time, until the holder closes
/// the stream. Gives up when nothing arrives for `stall`, when the holder falls below
/// `floor`, or when more than `max` bytes arrive.
pub(crate) async fn pump(
    stream: &mut Stream,
    sink: &mpsc::Sender<io::Result<Vec<u8>>>,
    stall: Duration,
    floor: RateFloor,
    max: u64,
) -> Result<u64, FetchError> {
    let mut total = 0u64;
    let mut waited = Duration::ZERO;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let started = Instant::now();
        let n = tokio::time::timeout(stall, stream.read(&mut buf))
            .await
            .map_err(|_| FetchError::Stalled(stall))?
            .map_err(FetchError::Io)?;
        waited += started.elapsed();
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        floor.check(total, waited)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_applies_after_the_grace_period() {
        let floor = RateFloor {
            min_rate: 1000,
            grace: Duration::from_secs(30),
        };
        // Anything goes during the grace period.
        assert!(floor.check(0, Duration::from_secs(30)).is_ok());
        // A byte every 25 s falls behind at once after it.
        assert!(floor.check(2, Duration::from_secs(50)).is_err());
        // 1000 bytes per second past the grace period is enough.
        assert!(floor.check(20_000, Duration::from_secs(50)).is_ok());
        assert!(floor.check(19_000, Duration::from_secs(50)).is_err());
    }
}
