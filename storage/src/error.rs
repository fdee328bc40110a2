use std::io;
use std::path::PathBuf;

/// Errors from the data dir and the files in it. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data dir could not be created.
    #[error("cannot create data dir {path}: {source}")]
    CreateDir {
        /// The data dir.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The data dir exists but files cannot be written in it.
    #[error("data dir {path} is not writable: {source}")]
    NotWritable {
        /// The data dir.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Another process holds the data dir's lock.
    #[error(
        "data dir {path} is in use by another guts node (it holds {lock}); stop it or choose another --data-dir"
    )]
    Locked {
        /// The data dir.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The identity file exists but cannot be read.
    #[error("cannot read identity file {path}: {source}")]
    IdentityRead {
        /// The identity file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The identity file exists but does not hold a valid key. It is never replaced
    /// silently: the node's identity, and ownership of its repositories, depend on it.
    #[error(
        "identity file {path} is corrupt: {reason}; restore it from a backup, or move it away to create a new identity (a new peer id, and the loss of ownership of this node's repositories)"
    )]
    IdentityCorrupt {
        /// The identity file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A new identity file could not be written.
    #[error("cannot write identity file {path}: {source}")]
    IdentityWrite {
        /// The identity file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A stored file does not hold what it should.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The system random number generator failed.
    #[error("cannot generate a key: system randomness unavailable: {0}")]
    Randomness(String),
}
