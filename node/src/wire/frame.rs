//! Length-prefixed frames: a 4-byte big-endian length, then a wire message. The length
//! is checked against the limit before a byte of the body is read.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use guts_protocol::wire::{self, WireError};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
