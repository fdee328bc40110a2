//! Guts node storage: everything a node keeps on disk under its data dir.
//!
//! This crate knows nothing about the network. It owns the data dir's layout, its lock, and
//! the node's identity key (which also signs the repositories the node owns).

pub mod clone_check;
mod data_dir;
mod error;
mod fs;
mod identity;
mod ownership;
mod repos;

pub mod failpoints;

pub use data_dir::DataDir;
pub use error::StorageError;
pub use fs::write_atomically as write_file_atomically;
pub use identity::{IDENTITY_FILE, Identity};
pub use repos::changes::{CHANGES_PREFIX, ChangePolicy, ChangesAccepted, GitObjectHasher};
pub use repos::check_workers::{CHECK_WORKER_ARG, use_check_workers};
pub use repos::collab::{Collaboration, Standing};
pub use repos::entry_rules::{check_entry_name, check_gitmodules};
pub use repos::forks::{FORKS_PREFIX, ForksAccepted, fork_ref};
pub use repos::held::{Held, VIEWS_PREFIX, view_ref};
pub use repos::import_source::ImportSource;
pub use repos::sealed::SEALED_REF;
pub use repos::shared::SharedAccepted;
pub use repos::verify::check_worker_main;
pub use repos::{Imported, Limits, PackStats, Pushed, Recovered, RefUpdate, Repositories};

/// Pack data libgit2 maps at once: windows of this size...
const MWINDOW_SIZE: usize = 2 << 20;
/// ...up to this much in total. libgit2's 64-bit defaults (1 GiB windows, 8 GiB in all)
/// make serving a repository map all of it, so a node's memory would grow with the
/// largest repository it serves. 8 MiB (from 32) took 15 MiB off the peak of a node
/// receiving tokio's history, at no cost in speed the replication benchmark could see.
const MWINDOW_MAPPED_LIMIT: usize = 8 << 20;

/// Sets libgit2's globals for a node: bounds the memory it maps for pack data (see
/// [`MWINDOW_MAPPED_LIMIT`]); turns off its object cache, which only grew the node with
/// the repository it checked (verification reads each object once: with the cache,
/// checking a million objects spent 12 % longer evicting and peaked 12 MiB higher,
/// tokio's history 11 MiB higher, no faster); and turns off hashing each object again
/// on every read. Every object enters the store through git's index-pack, which hashes
/// it; git itself does not hash again on reads either.
///
/// # Safety
///
/// Sets libgit2 globals without synchronization: call it before any other thread starts
/// (first thing in `main`).
pub unsafe fn tune_libgit2() -> Result<(), git2::Error> {
    // SAFETY: the caller guarantees no other thread is running.
    unsafe {
        git2::opts::set_mwindow_size(MWINDOW_SIZE)?;
        git2::opts::set_mwindow_mapped_limit(MWINDOW_MAPPED_LIMIT)?;
    }
    git2::opts::enable_caching(false);
    git2::opts::strict_hash_verification(false);
    Ok(())
}
