//! Replication: the engine that brings repositories up to their owners' latest signed
//! snapshots, the holders it fetches from, the fetching side of the pack protocol, and
//! the answers this node gives to peers doing the same.

mod engine;
mod equivocation;
mod error;
mod holders;
mod pack;
mod quota;
mod serve;
pub mod settings;

pub(crate) use engine::{Accounts, Engine, Me};
pub(crate) use equivocation::Ledger;
pub use error::{FetchError, SyncError};
pub(crate) use pack::RateFloor;
pub(crate) use quota::Quota;
pub(crate) use serve::{Server, owner_limiter};
