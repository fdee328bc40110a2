//! The sync protocol: `GetRefs` over request-response.

mod codec;
pub(crate) mod engine;
mod frame;
pub(crate) mod pack;

use std::time::Duration;

use guts_protocol::NetworkName;
use libp2p::StreamProtocol;
use libp2p::request_response::{self, ProtocolSupport};

pub use codec::Codec;
pub use frame::wire_error;
pub use pack::protocol as pack_protocol;

/// Label under which sync requests are rate-limited per peer.
pub const RATE_LIMIT_KEY: &str = "sync";

/// The protocol name for `network`.
pub fn protocol(network: &NetworkName) -> StreamProtocol {
    StreamProtocol::try_from_owned(network.sync_protocol())
        .expect("network names make valid protocol names")
}

/// The request-response behaviour.
pub fn behaviour(network: &NetworkName, timeout: Duration) -> request_response::Behaviour<Codec> {
    request_response::Behaviour::with_codec(
        Codec,
        [(protocol(network), ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(timeout),
    )
}
