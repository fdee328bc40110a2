use std::io;
use std::path::PathBuf;

use guts_protocol::identity::IdentityError;
use guts_protocol::refs::RefsError;
use guts_protocol::views::ViewError;
use guts_protocol::{ObjectId, RepositoryId};

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
    /// A data dir, a directory above it or the identity key that another user owns or
    /// can change (or, for the key, read).
    #[error(
        "{path} {reason}; refused, as another user could have chosen or could change this node's identity and data: {fix}"
    )]
    UnsafePath {
        /// The path.
        path: PathBuf,
        /// What is wrong with its owner or mode.
        reason: String,
        /// What to do.
        fix: String,
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
    /// Every slot of a shared data dir is held by a running node.
    #[error("all {slots} node-N slots in shared data dir {pool} are in use by running guts nodes")]
    NoFreeSlot {
        /// The shared data dir.
        pool: PathBuf,
        /// How many slots were tried.
        slots: u32,
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
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// libgit2 failed.
    #[error("{context}: {source}")]
    Git {
        /// What was being done.
        context: String,
        /// libgit2's error.
        source: git2::Error,
    },
    /// git's `pack-objects` could not run, or failed.
    #[error("git pack-objects in {path}: {reason}")]
    PackObjects {
        /// The repository it was packing.
        path: PathBuf,
        /// What went wrong, in git's words where it said any.
        reason: String,
    },
    /// An import source is not a git repository git can open (none there, or one git
    /// refuses, e.g. for its owner).
    #[error("{path} is not a git repository this node can open: {reason}")]
    NotAGitRepository {
        /// The path given.
        path: PathBuf,
        /// Why, in libgit2's words.
        reason: String,
    },
    /// An import source has no branches or tags.
    #[error("{path} has no branches or tags to import")]
    NothingToImport {
        /// The path given.
        path: PathBuf,
    },
    /// A repository name taken from a path is not valid.
    #[error("cannot name a repository after {path}: {reason}; pass a name")]
    BadName {
        /// The path.
        path: PathBuf,
        /// Why its name does not do.
        reason: String,
    },
    /// This node does not hold the repository.
    #[error("no repository {0} on this node")]
    UnknownRepository(RepositoryId),
    /// The store was closed for shutdown; nothing more is written.
    #[error("the node is shutting down; nothing more is written to its store")]
    Closed,
    /// The repository is owned by another key.
    #[error(
        "repository {repository} is owned by key {owner}, not by this node; only its owner can push to it"
    )]
    NotOwner {
        /// The repository.
        repository: RepositoryId,
        /// The owner's public key, hex.
        owner: String,
    },
    /// `init` of a repository that exists.
    #[error("repository {0} already exists")]
    AlreadyExists(RepositoryId),
    /// Signing the next snapshot would reuse a sequence another node already signed with
    /// this key: two different snapshots with one sequence (equivocation).
    #[error(
        "guts://{repository}: the network holds sequence {network}, this node only {held}: \
         another node signs with this node's key (a copy of its identity, or a restored \
         backup); `guts repo sync {repository}` first, then try again"
    )]
    BehindNetwork {
        /// The repository.
        repository: RepositoryId,
        /// The newest sequence this node holds (0: none).
        held: u64,
        /// The newest sequence seen on the network.
        network: u64,
    },
    /// A push names a staging area this node did not create.
    #[error("{0} is not a push area of this repository")]
    BadStaging(PathBuf),
    /// A snapshot does not verify.
    #[error(transparent)]
    InvalidSnapshot(#[from] RefsError),
    /// An identity version is refused (or a local change to the identity is not valid).
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A maintainer's view is refused.
    #[error(transparent)]
    View(#[from] ViewError),
    /// An import into a repository with maintainers (each publishes a view by pushing).
    #[error("repository {0} has maintainers: push to it with git, which updates your view")]
    HasMaintainers(RepositoryId),
    /// The key may not publish for this repository.
    #[error(
        "key {key} is not a maintainer of {repository} (identity version {version}); ask a maintainer to add it"
    )]
    NotMaintainer {
        /// The repository.
        repository: RepositoryId,
        /// The key, hex.
        key: String,
        /// The identity version in effect.
        version: u64,
    },
    /// A snapshot is not newer than the one held: a rollback or a replay.
    #[error("snapshot {offered} of {repository} is not newer than the one held ({held})")]
    Stale {
        /// The repository.
        repository: RepositoryId,
        /// Sequence held.
        held: u64,
        /// Sequence offered.
        offered: u64,
    },
    /// A received pack is not a valid pack, or breaks a limit.
    #[error("bad pack: {0}")]
    BadPack(String),
    /// An object breaks a rule every stored object must follow (a tree too deep, an
    /// entry git would refuse to check out).
    #[error("object {object} of {repository} is refused: {reason}")]
    BadObject {
        /// The repository.
        repository: RepositoryId,
        /// The object.
        object: ObjectId,
        /// The rule it breaks.
        reason: String,
    },
    /// An object a snapshot needs is not there.
    #[error("object {object} of {repository} is missing")]
    MissingObject {
        /// The repository.
        repository: RepositoryId,
        /// The object.
        object: ObjectId,
    },
    /// History is not complete.
    #[error("history of {repository} is incomplete: {reason}")]
    Incomplete {
        /// The repository.
        repository: RepositoryId,
        /// What libgit2 found missing.
        reason: String,
    },
    /// A change a peer sent is not one this store may hold.
    #[error("change {change} of {repository} refused: {reason}")]
    BadChange {
        /// The repository.
        repository: RepositoryId,
        /// The change (its commit).
        change: ObjectId,
        /// What is wrong.
        reason: String,
    },
    /// A fork a peer sent does not verify.
    #[error("fork of {repository} by {key} refused: {reason}")]
    BadFork {
        /// The repository.
        repository: RepositoryId,
        /// The fork's key, hex.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// This node does not keep the fork a push would make.
    #[error("guts://{repository} takes no fork from this key: {reason}")]
    ForkRefused {
        /// The repository.
        repository: RepositoryId,
        /// Why.
        reason: String,
    },
    /// A patch names a branch the repository does not have.
    #[error("guts://{repository} has no branch {branch} (its branches: {})", if branches.is_empty() { "none".to_owned() } else { branches.join(", ") })]
    NoBranch {
        /// The repository.
        repository: RepositoryId,
        /// The branch named.
        branch: String,
        /// Its branches.
        branches: Vec<String>,
    },
    /// A change this node was asked to write is not one.
    #[error(transparent)]
    Change(#[from] guts_cob::ChangeError),
    /// The pack stream failed.
    #[error("transfer failed: {0}")]
    Transfer(String),
    /// The consumer of a pack stopped reading.
    #[error("the pack was abandoned")]
    Aborted,
    /// The system random number generator failed.
    #[error("cannot generate a key: system randomness unavailable: {0}")]
    Randomness(String),
    /// An encrypted repository's sealed form could not be made or opened.
    #[error("encrypted repository {repository}: {reason}")]
    Sealed {
        /// The repository.
        repository: RepositoryId,
        /// What went wrong.
        reason: String,
    },
}

impl StorageError {
    /// Whether the error comes from bad data a peer sent (so that peer deserves a penalty),
    /// rather than from this node (disk, config) or its owner.
    pub fn is_peer_fault(&self) -> bool {
        // No wildcard: a new variant must be classified here.
        match self {
            StorageError::BadPack(_)
            | StorageError::BadObject { .. }
            | StorageError::MissingObject { .. }
            | StorageError::Incomplete { .. }
            | StorageError::InvalidSnapshot(_)
            | StorageError::BadChange { .. }
            | StorageError::BadFork { .. } => true,
            // A version or view that may fit once more of the identity is known is no
            // fault of the sender's; a bad signature or a malformed one is.
            StorageError::Identity(e) => matches!(
                e,
                IdentityError::Malformed { .. }
                    | IdentityError::WrongRepository { .. }
                    | IdentityError::Unsigned { .. }
            ),
            StorageError::View(e) => {
                matches!(e, ViewError::Refs(_) | ViewError::WrongRepository { .. })
            }
            StorageError::CreateDir { .. }
            | StorageError::UnsafePath { .. }
            | StorageError::NotWritable { .. }
            | StorageError::Locked { .. }
            | StorageError::NoFreeSlot { .. }
            | StorageError::IdentityRead { .. }
            | StorageError::IdentityCorrupt { .. }
            | StorageError::IdentityWrite { .. }
            | StorageError::Read { .. }
            | StorageError::Corrupt { .. }
            | StorageError::Write { .. }
            | StorageError::Git { .. }
            | StorageError::PackObjects { .. }
            | StorageError::NotAGitRepository { .. }
            | StorageError::NothingToImport { .. }
            | StorageError::BadName { .. }
            | StorageError::UnknownRepository(_)
            | StorageError::NotOwner { .. }
            | StorageError::NotMaintainer { .. }
            | StorageError::HasMaintainers(_)
            | StorageError::AlreadyExists(_)
            | StorageError::BehindNetwork { .. }
            | StorageError::BadStaging(_)
            | StorageError::Stale { .. }
            | StorageError::Change(_)
            | StorageError::NoBranch { .. }
            | StorageError::ForkRefused { .. }
            // Opening happens after the sealed form is verified and taken; what it finds
            // wrong was signed by a maintainer, not sent by the peer.
            | StorageError::Sealed { .. }
            | StorageError::Transfer(_)
            | StorageError::Aborted
            | StorageError::Closed
            | StorageError::Randomness(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bad_peer_data_is_the_peer_fault() {
        let repository = RepositoryId::from_bytes([1; 20]);
        let path = PathBuf::from("/data");
        let os = || io::Error::other("disk");
        let peer = [
            StorageError::BadPack("truncated".into()),
            StorageError::BadObject {
                repository,
                object: ObjectId([2; 20]),
                reason: "too deep".into(),
            },
            StorageError::MissingObject {
                repository,
                object: ObjectId([2; 20]),
            },
            StorageError::Incomplete {
                repository,
                reason: "no parent".into(),
            },
            StorageError::InvalidSnapshot(RefsError::BadSignature(repository)),
        ];
        for e in &peer {
            assert!(e.is_peer_fault(), "{e}");
        }
        let local = [
            StorageError::CreateDir {
                path: path.clone(),
                source: os(),
            },
            StorageError::NotWritable {
                path: path.clone(),
                source: os(),
            },
            StorageError::Locked {
                path: path.clone(),
                lock: path.clone(),
            },
            StorageError::NoFreeSlot {
                pool: path.clone(),
                slots: 1,
            },
            StorageError::IdentityRead {
                path: path.clone(),
                source: os(),
            },
            StorageError::IdentityCorrupt {
                path: path.clone(),
                reason: "x".into(),
            },
            StorageError::IdentityWrite {
                path: path.clone(),
                source: os(),
            },
            StorageError::Read {
                path: path.clone(),
                source: os(),
            },
            StorageError::Corrupt {
                path: path.clone(),
                reason: "x".into(),
            },
            StorageError::Write {
                path: path.clone(),
                source: os(),
            },
            StorageError::Git {
                context: "x".into(),
                source: git2::Error::from_str("x"),
            },
            StorageError::PackObjects {
                path: path.clone(),
                reason: "x".into(),
            },
            StorageError::NotAGitRepository {
                path: path.clone(),
                reason: "x".into(),
            },
            StorageError::NothingToImport { path: path.clone() },
            StorageError::BadName {
                path: path.clone(),
                reason: "x".into(),
            },
            StorageError::UnknownRepository(repository),
            StorageError::NotOwner {
                repository,
                owner: "ab".into(),
            },
            StorageError::AlreadyExists(repository),
            StorageError::BadStaging(path.clone()),
            StorageError::Stale {
                repository,
                held: 2,
                offered: 1,
            },
            StorageError::Transfer("reset".into()),
            StorageError::Aborted,
            StorageError::Randomness("x".into()),
        ];
        for e in &local {
            assert!(!e.is_peer_fault(), "{e}");
        }
    }
}
