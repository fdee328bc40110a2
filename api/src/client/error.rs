//! Why a client could not get an answer from its node, each naming the address, file or
//! value at fault. Text that came from the node is escaped (see [`crate::terminal`]).

use std::path::PathBuf;

use crate::ApiAddress;
use crate::auth::AuthError;
use crate::settings::SettingsError;

/// A request to a node's control API that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The config file could not be used.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A variable holds a value that is not what it should be.
    #[error("{var}: {message}")]
    Variable {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The config file turns the node's API off.
    #[error(
        "{} says api = \"off\": that node has no control API; give --api for another",
        file.display()
    )]
    ApiOff {
        /// The config file.
        file: PathBuf,
    },
    /// Nothing listens at the address.
    #[error(
        "no node at {addr} ({why}); start one with `guts node`, or point --api / GUTS_API at a running node"
    )]
    NoNode {
        /// The address.
        addr: ApiAddress,
        /// What the connection attempt said.
        why: String,
    },
    /// The node did not answer within the client's timeout.
    #[error("the node at {addr} did not answer in time")]
    Timeout {
        /// The address.
        addr: ApiAddress,
    },
    /// Anything else HTTP went wrong with.
    #[error("cannot talk to the node at {addr}: {why}")]
    Http {
        /// The address.
        addr: ApiAddress,
        /// What went wrong.
        why: String,
    },
    /// No token could be found to offer the node.
    #[error(
        "no API token in {} (looked for {}): is a node running with this data dir? Start one \
         with `guts node`; run this as the node's user, or point --data-dir / GUTS_DATA_DIR at \
         its data dir ({} for a node whose data dir is elsewhere)",
        dir.display(), file.display(), crate::auth::TOKEN_ENV
    )]
    NoToken {
        /// The data dir searched.
        dir: PathBuf,
        /// The token file looked for.
        file: PathBuf,
    },
    /// A token (its file, or the variable) could not be used.
    #[error(transparent)]
    Token(#[from] AuthError),
    /// A token file this client may not read.
    #[error("{0} (run this as the node's user, or set {env})", env = crate::auth::TOKEN_ENV)]
    TokenUnreadable(AuthError),
    /// Whatever answers could not prove it holds any token this client has.
    #[error(
        "whatever answers at {addr} could not prove it holds the API token in {}, so it is not \
         that node (it may have restarted with a new token, or another program has the port); \
         nothing was sent to it{}",
        sources.join(", "),
        problems.iter().map(|p| format!("; also: {p}")).collect::<String>()
    )]
    NotTheNode {
        /// The address.
        addr: ApiAddress,
        /// Where the tokens tried came from.
        sources: Vec<String>,
        /// Token files that could not be used.
        problems: Vec<String>,
    },
    /// An answer without a valid proof that it comes from the node.
    #[error("the answer from {addr} carries no valid proof that it comes from the node; ignored")]
    NoProof {
        /// The address.
        addr: ApiAddress,
    },
    /// The node refused the handshake.
    #[error("the node at {addr} refused: {message}")]
    Refused {
        /// The address.
        addr: ApiAddress,
        /// The node's reason, escaped.
        message: String,
    },
    /// The node answered with an error.
    #[error("{0}")]
    Node(String),
    /// An open endpoint answered with an error status.
    #[error("the node at {addr} answered {path} with HTTP {status}: {body}")]
    Status {
        /// The address.
        addr: ApiAddress,
        /// The endpoint.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The body, escaped.
        body: String,
    },
    /// An answer this client cannot read.
    #[error("the node at {addr} sent an answer this client cannot read: {why}")]
    Unreadable {
        /// The address.
        addr: ApiAddress,
        /// What was wrong with it.
        why: String,
    },
    /// A path the node named that this machine cannot see.
    #[error(
        "the node at {addr} keeps this repository at {path}, which this machine cannot see; \
         git-remote-guts needs a node on the same filesystem (a node in a container: run \
         `guts repo sync` / `guts repo import` inside it instead)"
    )]
    NotHere {
        /// The address.
        addr: ApiAddress,
        /// The path, escaped.
        path: String,
    },
    /// The node's data dir could not be resolved.
    #[error("resolving the node's data dir {}: {source}", dir.display())]
    DataDir {
        /// The data dir.
        dir: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A path the node named lies outside its data dir.
    #[error(
        "the node at {addr} named {path} as the repository's path, which is outside its data dir {}; refused",
        root.display()
    )]
    OutsideDataDir {
        /// The address.
        addr: ApiAddress,
        /// The path, escaped.
        path: String,
        /// The data dir.
        root: PathBuf,
    },
    /// A streamed answer broke off, or held a line this client cannot read.
    #[error("{0}")]
    Stream(String),
}
