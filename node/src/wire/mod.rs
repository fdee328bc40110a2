//! The node's protocols on the wire: their names, length-prefixed frames of
//! [`guts_protocol::wire`] messages, the request-response codec of the sync protocol
//! (GetRefs, ListRepositories), and what a peer's bad bytes cost it.

mod codec;
mod frame;

use std::time::Duration;

use guts_protocol::NetworkName;
use libp2p::StreamProtocol;
use libp2p::request_response::{self, ProtocolSupport};

pub use codec::Codec;
pub use frame::{penalty_for, wire_error};
pub(crate) use frame::{read_message, write_message};

/// Label under which sync requests are rate-limited per peer.
pub const SYNC_RATE_LIMIT_KEY: &str = "sync";
/// Label under which pack requests are rate-limited per peer.
pub const PACK_RATE_LIMIT_KEY: &str = "pack";
/// Label under which gossiped announcements are rate-limited per relaying peer.
pub const ANNOUNCE_RATE_LIMIT_KEY: &str = "announce";

/// The sync protocol's name on `network`.
pub fn protocol(network: &NetworkName) -> StreamProtocol {
    StreamProtocol::try_from_owned(network.sync_protocol())
        .expect("network names make valid protocol names")
}

/// The pack protocol's name on `network`.
pub fn pack_protocol(network: &NetworkName) -> StreamProtocol {
    StreamProtocol::try_from_owned(network.pack_protocol())
        .expect("network names make valid protocol names")
}

/// The sync protocol's name with repositories that have maintainers (see [`Codec`]).
pub fn shared_protocol(network: &NetworkName) -> StreamProtocol {
    StreamProtocol::try_from_owned(network.shared_sync_protocol())
        .expect("network names make valid protocol names")
}

/// The sync protocol's name with collaborative objects (see [`Codec`]).
pub fn changes_protocol(network: &NetworkName) -> StreamProtocol {
    StreamProtocol::try_from_owned(network.changes_sync_protocol())
        .expect("network names make valid protocol names")
}

/// The sync protocol's name with contributors' forks (see [`Codec`]).
pub fn forks_protocol(network: &NetworkName) -> StreamProtocol {
    StreamProtocol::try_from_owned(network.forks_sync_protocol())
        .expect("network names make valid protocol names")
}

/// The sync protocol's name with private repositories (see [`Codec`]).
pub fn private_protocol(network: &NetworkName) -> StreamProtocol {
    StreamProtocol::try_from_owned(network.private_sync_protocol())
        .expect("network names make valid protocol names")
}

/// The sync protocol's name with encrypted repositories (see [`Codec`]).
pub fn sealed_protocol(network: &NetworkName) -> StreamProtocol {
    StreamProtocol::try_from_owned(network.sealed_sync_protocol())
        .expect("network names make valid protocol names")
}

/// The request-response behaviour of the sync protocol: 1.5.0 first, so two nodes of
/// this release speak it, then 1.4.0 down to 1.0.0 for older peers.
pub fn behaviour(network: &NetworkName, timeout: Duration) -> request_response::Behaviour<Codec> {
    request_response::Behaviour::with_codec(
        Codec,
        [
            (sealed_protocol(network), ProtocolSupport::Full),
            (private_protocol(network), ProtocolSupport::Full),
            (forks_protocol(network), ProtocolSupport::Full),
            (changes_protocol(network), ProtocolSupport::Full),
            (shared_protocol(network), ProtocolSupport::Full),
            (protocol(network), ProtocolSupport::Full),
        ],
        request_response::Config::default().with_request_timeout(timeout),
    )
}
