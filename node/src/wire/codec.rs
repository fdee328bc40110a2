//! The request-response codec of the sync protocol: one frame each way (see
//! [`super::frame`]).

use std::io;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use guts_protocol::wire::{MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, SyncRequest, SyncResponse};
use libp2p::StreamProtocol;
use libp2p::request_response;

use super::frame::{read_message, write_message};

/// The request-response codec of `/guts/<network>/sync/1.0.0` and `/sync/1.1.0`. They
/// differ in one answer: a repository with maintainers goes to a 1.0.0 peer (an older
/// release, which could not read it) as "not found".
#[derive(Debug, Clone, Default)]
pub struct Codec;

/// Whether `protocol` is the sync version that carries repositories with maintainers.
pub fn speaks_shared(protocol: &StreamProtocol) -> bool {
    protocol
        .as_ref()
        .strip_suffix(guts_protocol::SHARED_SYNC_VERSION)
        .is_some_and(|p| p.ends_with("/sync/"))
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io, MAX_REQUEST_SIZE).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io, MAX_RESPONSE_SIZE).await
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
        write_message(io, &req).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        res: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let res = match res {
            SyncResponse::State(state) if !speaks_shared(protocol) => {
                tracing::info!(
                    repository = %state.genesis.repository,
                    "a peer on {protocol} asked for a repository with maintainers, which needs sync {}: answered not found",
                    guts_protocol::SHARED_SYNC_VERSION
                );
                SyncResponse::NotFound
            }
            other => other,
        };
        write_message(io, &res).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::wire_error;
    use super::*;
    use futures::io::Cursor;
    use guts_protocol::RepositoryId;
    use guts_protocol::wire::WireError;
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
    async fn a_peer_on_sync_1_0_0_is_not_sent_what_it_cannot_read() {
        let genesis = guts_protocol::IdentityDoc::genesis(
            &ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key(),
            "shared".parse().unwrap(),
        );
        let state = SyncResponse::State(Box::new(guts_protocol::SharedState {
            genesis,
            versions: Vec::new(),
            views: Vec::new(),
        }));
        let network = guts_protocol::NetworkName::default_network();
        for (protocol, expected) in [
            (network.sync_protocol(), SyncResponse::NotFound),
            (network.shared_sync_protocol(), state.clone()),
        ] {
            let protocol = StreamProtocol::try_from_owned(protocol).unwrap();
            let mut buf = Cursor::new(Vec::new());
            Codec
                .write_response(&protocol, &mut buf, state.clone())
                .await
                .unwrap();
            let mut read = Cursor::new(buf.into_inner());
            let got = Codec.read_response(&protocol, &mut read).await.unwrap();
            assert_eq!(got, expected, "{protocol}");
        }
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
