//! Length-prefixed frames: a 4-byte big-endian length, then a wire message. The length
//! is checked against the limit before a byte of the body is read.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use guts_protocol::wire::{self, WireError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::connection_manager::Penalty;

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
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
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
pub(crate) async fn read_message<M: DeserializeOwned, T: AsyncRead + Unpin>(
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
