//! Length-prefixed frames: a 4-byte big-endian length, then a wire message. The length
//! is checked against the limit before a byte of the body is read.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use guts_protocol::wire::{self, WireError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::connection_manager::Penalty;

/// What a frame's buffer starts at, whatever length it announces.
const INITIAL_CAPACITY: usize = 8 * 1024;

/// Reads one frame of at most `max` bytes.
pub(crate) async fn read_frame<T: AsyncRead + Unpin>(
    io: &mut T,
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            WireError::Oversized { len, max },
        ));
    }
    // Grown as bytes arrive, not allocated at the announced length: a peer that
    // announces a maximal frame on many streams and sends nothing costs almost nothing.
    let mut body = Vec::with_capacity(len.min(INITIAL_CAPACITY));
    io.take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame ended after {} of {len} bytes", body.len()),
        ));
    }
    Ok(body)
}

/// Writes one frame (does not close the stream).
pub(crate) async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await
}

/// Reads and decodes one message of at most `max` bytes.
pub(crate) async fn read_message<M: DeserializeOwned + serde::Serialize, T: AsyncRead + Unpin>(
    io: &mut T,
    max: usize,
) -> io::Result<M> {
    let body = read_frame(io, max).await?;
    wire::decode(&body, max).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Encodes and writes one message.
pub(crate) async fn write_message<M: Serialize, T: AsyncWrite + Unpin>(
    io: &mut T,
    msg: &M,
) -> io::Result<()> {
    write_frame(io, &wire::encode(msg)).await
}

/// The wire error inside an I/O error from these functions, if that is what it is.
pub fn wire_error(e: &io::Error) -> Option<&WireError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<WireError>())
}

/// The penalty a peer earns for the bytes behind an I/O error from these functions: the
/// one place that maps wire errors to penalties. `None` when the error is not the
/// peer's data (a reset, a timeout).
pub fn penalty_for(e: &io::Error) -> Option<Penalty> {
    wire_error(e).map(|e| match e {
        WireError::Oversized { .. } => Penalty::Oversized,
        _ => Penalty::Undecodable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that announces a frame of `len` bytes, then sends `sent` of them.
    fn announced(len: u32, sent: usize) -> futures::io::Cursor<Vec<u8>> {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(7u8, sent));
        futures::io::Cursor::new(bytes)
    }

    #[tokio::test]
    async fn a_short_frame_is_an_error_and_a_whole_one_reads() {
        let err = read_frame(&mut announced(100, 10), 1000).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("10 of 100"), "{err}");
        let body = read_frame(&mut announced(100_000, 100_000), 1 << 20)
            .await
            .unwrap();
        assert_eq!(body.len(), 100_000);
    }

    #[test]
    fn penalties_follow_the_wire_error() {
        let oversized = io::Error::new(
            io::ErrorKind::InvalidData,
            WireError::Oversized { len: 10, max: 1 },
        );
        assert_eq!(penalty_for(&oversized), Some(Penalty::Oversized));
        let garbage = wire::decode::<u64>(&[], 8).unwrap_err();
        let garbage = io::Error::new(io::ErrorKind::InvalidData, garbage);
        assert_eq!(penalty_for(&garbage), Some(Penalty::Undecodable));
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(penalty_for(&reset), None);
    }
}
