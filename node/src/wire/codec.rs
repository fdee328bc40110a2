//! The request-response codec of the sync protocol: one frame each way (see
//! [`super::frame`]).

use std::io;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use guts_protocol::wire::{MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, SyncRequest, SyncResponse};
use libp2p::StreamProtocol;
use libp2p::request_response;

use super::frame::{read_message, write_message};

/// The request-response codec of `/guts/<network>/sync/1.0.0`, `1.1.0` and `1.2.0`. Each
/// version adds to the one before: 1.1.0 repositories with maintainers (a 1.0.0 peer, an
/// older release that could not read one, is told "not found"), 1.2.0 the tips of
/// collaborative objects and contributors' forks (never asked of a peer that does not
/// speak it).
#[derive(Debug, Clone, Default)]
pub struct Codec;

/// The sync versions, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SyncVersion {
    /// 1.0.0: single-owner snapshots.
    Owner,
    /// 1.1.0: repositories with maintainers.
    Shared,
    /// 1.2.0: collaborative objects.
    Changes,
}

/// The sync version `protocol` names (the oldest for a name this build does not know).
pub fn sync_version(protocol: &StreamProtocol) -> SyncVersion {
    let name = protocol.as_ref();
    let is = |v: &str| name.strip_suffix(v).is_some_and(|p| p.ends_with("/sync/"));
    if is(guts_protocol::CHANGES_SYNC_VERSION) {
        SyncVersion::Changes
    } else if is(guts_protocol::SHARED_SYNC_VERSION) {
        SyncVersion::Shared
    } else {
        SyncVersion::Owner
    }
}

/// Whether `protocol` carries repositories with maintainers.
pub fn speaks_shared(protocol: &StreamProtocol) -> bool {
    sync_version(protocol) >= SyncVersion::Shared
}

/// Whether `request` is one a peer before sync 1.2.0 cannot read.
fn needs_changes_version(request: &SyncRequest) -> bool {
    matches!(
        request,
        SyncRequest::GetChanges { .. } | SyncRequest::GetForks { .. }
    )
}

fn unsupported(protocol: &StreamProtocol, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{what} needs sync {}; this stream speaks {protocol}",
            guts_protocol::CHANGES_SYNC_VERSION
        ),
    )
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let request = read_message(io, MAX_REQUEST_SIZE).await?;
        if needs_changes_version(&request) && sync_version(protocol) < SyncVersion::Changes {
            return Err(unsupported(protocol, "asking for changes or forks"));
        }
        Ok(request)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io, MAX_RESPONSE_SIZE).await
    }

    async fn write_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        // A peer of an older release could not decode it, and would count it against us.
        if needs_changes_version(&req) && sync_version(protocol) < SyncVersion::Changes {
            return Err(unsupported(protocol, "asking for changes or forks"));
        }
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
            SyncResponse::Changes(_) | SyncResponse::Forks(_)
                if sync_version(protocol) < SyncVersion::Changes =>
            {
                return Err(unsupported(protocol, "an answer with changes or forks"));
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
    async fn changes_and_forks_are_asked_and_answered_only_on_sync_1_2_0() {
        let network = guts_protocol::NetworkName::default_network();
        let repository = RepositoryId::from_bytes([1; 20]);
        for (ask, answer) in [
            (
                SyncRequest::GetChanges { repository },
                SyncResponse::Changes(vec![]),
            ),
            (
                SyncRequest::GetForks {
                    repository,
                    known: vec![],
                },
                SyncResponse::Forks(vec![]),
            ),
        ] {
            asked_and_answered_only_on_1_2_0(&network, ask, answer).await;
        }
        assert_eq!(
            sync_version(&StreamProtocol::new("/guts/x/sync/1.2.0")),
            SyncVersion::Changes
        );
        assert!(speaks_shared(&StreamProtocol::new("/guts/x/sync/1.2.0")));
        assert!(!speaks_shared(&StreamProtocol::new("/guts/x/sync/1.0.0")));
    }

    async fn asked_and_answered_only_on_1_2_0(
        network: &guts_protocol::NetworkName,
        ask: SyncRequest,
        answer: SyncResponse,
    ) {
        for (name, allowed) in [
            (network.sync_protocol(), false),
            (network.shared_sync_protocol(), false),
            (network.changes_sync_protocol(), true),
        ] {
            let protocol = StreamProtocol::try_from_owned(name).unwrap();
            let mut buf = Cursor::new(Vec::new());
            let wrote = Codec.write_request(&protocol, &mut buf, ask.clone()).await;
            assert_eq!(wrote.is_ok(), allowed, "{protocol}");
            if let Err(e) = wrote {
                assert!(e.to_string().contains("needs sync 1.2.0"), "{e}");
                assert!(buf.get_ref().is_empty(), "nothing sent");
            }
            // A request that came anyway is refused on read.
            let mut framed = Cursor::new(Vec::new());
            let v12 = StreamProtocol::try_from_owned(network.changes_sync_protocol()).unwrap();
            Codec
                .write_request(&v12, &mut framed, ask.clone())
                .await
                .unwrap();
            let mut read = Cursor::new(framed.into_inner());
            assert_eq!(
                Codec.read_request(&protocol, &mut read).await.is_ok(),
                allowed
            );
            let mut out = Cursor::new(Vec::new());
            let answered = Codec
                .write_response(&protocol, &mut out, answer.clone())
                .await;
            assert_eq!(answered.is_ok(), allowed, "{protocol}");
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
