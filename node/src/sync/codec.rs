//! Framing for the sync protocol: a 4-byte big-endian length, then a wire message. The
//! length is checked against the limit before a byte of the body is read.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use guts_protocol::wire::{
    self, MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, SyncRequest, SyncResponse, WireError,
};
use libp2p::StreamProtocol;
use libp2p::request_response;

/// The request-response codec of `/guts/<network>/sync/1.0.0`.
#[derive(Debug, Clone, Default)]
pub struct Codec;

/// The wire error inside an I/O error from this codec, if that is what it is.
pub fn wire_error(e: &io::Error) -> Option<&WireError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<WireError>())
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
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

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
}

fn decode<M: serde::de::DeserializeOwned>(bytes: &[u8], max: usize) -> io::Result<M> {
    wire::decode(bytes, max).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_frame(io, MAX_REQUEST_SIZE).await?, MAX_REQUEST_SIZE)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_frame(io, MAX_RESPONSE_SIZE).await?, MAX_RESPONSE_SIZE)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &wire::encode(&req)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &wire::encode(&res)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use guts_protocol::RepositoryId;
    use request_response::Codec as _;

    fn proto() -> StreamProtocol {
        StreamProtocol::new("/test")
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let req = SyncRequest::GetRefs {
            repository: RepositoryId::from_bytes([1; 20]),
        };
        let mut buf = Cursor::new(Vec::new());
        Codec
            .write_request(&proto(), &mut buf, req.clone())
            .await
            .unwrap();
        let mut read = Cursor::new(buf.into_inner());
        assert_eq!(Codec.read_request(&proto(), &mut read).await.unwrap(), req);
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_reading_the_body() {
        let mut bytes = ((MAX_REQUEST_SIZE + 1) as u32).to_be_bytes().to_vec();
        bytes.extend([0u8; 8]);
        let err = Codec
            .read_request(&proto(), &mut Cursor::new(bytes))
            .await
            .unwrap_err();
        assert!(
            matches!(wire_error(&err), Some(WireError::Oversized { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn garbage_is_undecodable() {
        let mut bytes = 3u32.to_be_bytes().to_vec();
        bytes.extend([1u8, 0xff, 0xff]);
        let err = Codec
            .read_request(&proto(), &mut Cursor::new(bytes))
            .await
            .unwrap_err();
        assert!(
            matches!(wire_error(&err), Some(WireError::Undecodable(_))),
            "{err}"
        );
    }
}
