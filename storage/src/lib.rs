//! Guts node storage: everything a node keeps on disk under its data dir.
//!
//! This crate knows nothing about the network. It owns the data dir's layout, its lock, and
//! the node's identity key (which also signs the repositories the node owns).

mod data_dir;
mod error;
mod identity;
mod repos;

pub use data_dir::DataDir;
pub use error::StorageError;
pub use identity::{IDENTITY_FILE, Identity};
pub use repos::{Imported, PackStats, Repositories};
