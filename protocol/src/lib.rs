//! The Guts wire protocol: what nodes say to each other and under which names.
//!
//! This crate does no I/O and knows nothing about libp2p swarms or libgit2; it only
//! defines identifiers, protocol names and messages, and bounds what may be decoded.

pub mod canonical;
pub mod forks;
pub mod identity;
pub mod ids;
pub mod network;
pub mod record;
pub mod refs;
pub mod repository;
pub mod sealed;
pub mod views;
pub mod wire;

pub use canonical::{Ancestry, Canonical};
pub use forks::{ForkLimits, Forks};
pub use identity::{IdentityDoc, IdentityHistory, SignedVersion, VersionId, Visibility};
pub use ids::{ObjectId, RefName, RepoName, RepositoryId};
pub use network::{NetworkName, NetworkNameError};
pub use refs::{SignedHeader, SignedRefs};
pub use repository::{Merged, Published, RepositoryState, SharedState, SharedStateV2};
pub use views::Views;

/// Version of the Guts protocol family spoken by this build; carried in every protocol name.
pub const PROTOCOL_VERSION: &str = "1.0.0";

/// Version of the sync protocol that carries repositories with maintainers
/// ([`wire::SyncResponse::State`]).
pub const SHARED_SYNC_VERSION: &str = "1.1.0";

/// Version of the sync protocol that carries collaborative objects' tips
/// ([`wire::SyncRequest::GetChanges`]).
pub const CHANGES_SYNC_VERSION: &str = "1.2.0";

/// Version of the sync protocol that carries contributors' forks
/// ([`wire::SyncRequest::GetForks`]).
pub const FORKS_SYNC_VERSION: &str = "1.3.0";

/// Version of the sync protocol that carries private repositories
/// ([`wire::SyncResponse::StateV2`], [`wire::SyncRequest::Notify`]).
pub const PRIVATE_SYNC_VERSION: &str = "1.4.0";

/// Version of the sync protocol that carries encrypted repositories
/// ([`identity::Visibility::Sealed`] in a [`wire::SyncResponse::StateV2`]).
pub const SEALED_SYNC_VERSION: &str = "1.5.0";
