//! The request-response codec of the sync protocol: one frame each way (see
//! [`super::frame`]).

use std::io;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use guts_protocol::wire::{MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, SyncRequest, SyncResponse};
use libp2p::StreamProtocol;
use libp2p::request_response;

use super::frame::{read_message, write_message};

/// The request-response codec of `/guts/<network>/sync/1.0.0` to `1.3.0`. Each version
/// adds to the one before: 1.1.0 repositories with maintainers (a 1.0.0 peer, an older
/// release that could not read one, is told "not found"), 1.2.0 the tips of collaborative
/// objects, 1.3.0 contributors' forks, 1.4.0 private repositories and notices of them
/// (never asked of, nor sent to, a peer that does not speak them), 1.5.0 encrypted
/// repositories (a peer on 1.4.0, which could not decode their state, is told "not
/// found").
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
    /// 1.3.0: contributors' forks.
    Forks,
    /// 1.4.0: private repositories.
    Private,
    /// 1.5.0: encrypted repositories.
    Sealed,
}

/// The sync version `protocol` names (the oldest for a name this build does not know).
pub fn sync_version(protocol: &StreamProtocol) -> SyncVersion {
    let name = protocol.as_ref();
    let is = |v: &str| name.strip_suffix(v).is_some_and(|p| p.ends_with("/sync/"));
    if is(guts_protocol::SEALED_SYNC_VERSION) {
        SyncVersion::Sealed
    } else if is(guts_protocol::PRIVATE_SYNC_VERSION) {
        SyncVersion::Private
    } else if is(guts_protocol::FORKS_SYNC_VERSION) {
        SyncVersion::Forks
    } else if is(guts_protocol::CHANGES_SYNC_VERSION) {
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

/// The oldest sync version that carries `request`.
fn needed_for(request: &SyncRequest) -> SyncVersion {
    match request {
        SyncRequest::GetRefs { .. } | SyncRequest::ListRepositories => SyncVersion::Owner,
        SyncRequest::GetChanges { .. } => SyncVersion::Changes,
        SyncRequest::GetForks { .. } => SyncVersion::Forks,
        SyncRequest::Notify { .. } => SyncVersion::Private,
    }
}

/// The oldest sync version that carries `response` whole (a state to a 1.0.0 peer is
/// answered "not found" instead).
fn needed_for_response(response: &SyncResponse) -> SyncVersion {
    match response {
        SyncResponse::Changes(_) => SyncVersion::Changes,
        SyncResponse::Forks(_) => SyncVersion::Forks,
        SyncResponse::Noted => SyncVersion::Private,
        _ => SyncVersion::Owner,
    }
}

fn unsupported(protocol: &StreamProtocol, what: &str, needed: SyncVersion) -> io::Error {
    let version = match needed {
        SyncVersion::Owner => guts_protocol::PROTOCOL_VERSION,
        SyncVersion::Shared => guts_protocol::SHARED_SYNC_VERSION,
        SyncVersion::Changes => guts_protocol::CHANGES_SYNC_VERSION,
        SyncVersion::Forks => guts_protocol::FORKS_SYNC_VERSION,
        SyncVersion::Private => guts_protocol::PRIVATE_SYNC_VERSION,
        SyncVersion::Sealed => guts_protocol::SEALED_SYNC_VERSION,
    };
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} needs sync {version}; this stream speaks {protocol}"),
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
        let request: SyncRequest = read_message(io, MAX_REQUEST_SIZE).await?;
        let needed = needed_for(&request);
        if sync_version(protocol) < needed {
            return Err(unsupported(protocol, "the request", needed));
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
        let needed = needed_for(&req);
        if sync_version(protocol) < needed {
            return Err(unsupported(protocol, "the request", needed));
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
            // Whoever may see a private repository runs a release that reads it; to an
            // older one it is "not found", like any repository it may not see.
            SyncResponse::StateV2(state) if sync_version(protocol) < SyncVersion::Private => {
                tracing::info!(
                    repository = %state.genesis.repository,
                    "a peer on {protocol} asked for a repository that is or was private, which needs sync {}: answered not found",
                    guts_protocol::PRIVATE_SYNC_VERSION
                );
                SyncResponse::NotFound
            }
            SyncResponse::StateV2(state)
                if sync_version(protocol) < SyncVersion::Sealed
                    && state
                        .versions
                        .iter()
                        .any(|(_, v)| matches!(v, guts_protocol::Visibility::Sealed { .. })) =>
            {
                tracing::info!(
                    repository = %state.genesis.repository,
                    "a peer on {protocol} asked for an encrypted repository, which needs sync {}: answered not found",
                    guts_protocol::SEALED_SYNC_VERSION
                );
                SyncResponse::NotFound
            }
            other if sync_version(protocol) < needed_for_response(&other) => {
                return Err(unsupported(
                    protocol,
                    "the answer",
                    needed_for_response(&other),
                ));
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
    async fn changes_and_forks_are_asked_and_answered_only_from_their_sync_version() {
        let network = guts_protocol::NetworkName::default_network();
        let repository = RepositoryId::from_bytes([1; 20]);
        asked_and_answered_only_from(
            &network,
            SyncRequest::GetChanges { repository },
            SyncResponse::Changes(vec![]),
            "1.2.0",
        )
        .await;
        asked_and_answered_only_from(
            &network,
            SyncRequest::GetForks {
                repository,
                known: vec![],
            },
            SyncResponse::Forks(vec![]),
            "1.3.0",
        )
        .await;
        assert_eq!(
            sync_version(&StreamProtocol::new("/guts/x/sync/1.2.0")),
            SyncVersion::Changes
        );
        assert_eq!(
            sync_version(&StreamProtocol::new("/guts/x/sync/1.3.0")),
            SyncVersion::Forks
        );
        assert!(speaks_shared(&StreamProtocol::new("/guts/x/sync/1.2.0")));
        assert!(!speaks_shared(&StreamProtocol::new("/guts/x/sync/1.0.0")));
    }

    /// `ask` and `answer` go over sync `from` and later, and are refused (before a byte
    /// is sent, and on read) on the versions before it.
    async fn asked_and_answered_only_from(
        network: &guts_protocol::NetworkName,
        ask: SyncRequest,
        answer: SyncResponse,
        from: &str,
    ) {
        let newest = StreamProtocol::try_from_owned(network.forks_sync_protocol()).unwrap();
        for name in [
            network.sync_protocol(),
            network.shared_sync_protocol(),
            network.changes_sync_protocol(),
            network.forks_sync_protocol(),
        ] {
            let allowed = name.rsplit('/').next().is_some_and(|v| v >= from);
            let protocol = StreamProtocol::try_from_owned(name).unwrap();
            let mut buf = Cursor::new(Vec::new());
            let wrote = Codec.write_request(&protocol, &mut buf, ask.clone()).await;
            assert_eq!(wrote.is_ok(), allowed, "{protocol}");
            if let Err(e) = wrote {
                assert!(e.to_string().contains(&format!("needs sync {from}")), "{e}");
                assert!(buf.get_ref().is_empty(), "nothing sent");
            }
            // A request that came anyway is refused on read.
            let mut framed = Cursor::new(Vec::new());
            Codec
                .write_request(&newest, &mut framed, ask.clone())
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
