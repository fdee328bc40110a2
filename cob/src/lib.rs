//! Collaborative objects: patches (with revisions and reviews), issues, and the
//! maintainers' moderation, each a graph of signed changes.
//!
//! A change is signed by its author and names the changes it follows (its parents), so
//! the changes of one object form a graph that only grows. Every node orders that graph
//! the same way (parents first, concurrent changes by id) and replays it into a state, so
//! any two nodes that hold the same changes show the same patch or issue whatever order the
//! changes arrived in. A change is stored as a git commit of a fixed form
//! ([`git_form`]): its id is that commit's id, its parents are the commit's parents, and
//! git's packs carry it between nodes like any other history.
//!
//! This crate does no I/O: the store writes and reads the commits, the node decides which
//! changes it takes.

pub mod action;
pub mod change;
pub mod git_form;
pub mod graph;
pub mod issue;
pub mod moderation;
pub mod patch;
pub mod thread;

pub use action::{Action, CodeComment, Kind, Label, Lifecycle, Verdict};
pub use change::{Change, ChangeError, ChangeId, SignedChange};
pub use git_form::{GitForm, GitHasher, GitKind};
pub use graph::Graph;
pub use issue::Issue;
pub use moderation::{Moderation, everyone};
pub use patch::{Patch, PatchState};
pub use thread::{Comment, Thread};

use std::collections::BTreeSet;

use ed25519_dalek::VerifyingKey;
use guts_protocol::IdentityDoc;

/// Who may do what while a graph is replayed: the identity version in effect (its
/// maintainers may label, assign, close and hide) and the keys whose changes are left out
/// (hidden by the maintainers, or blocked by this node).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The identity version in effect.
    pub identity: &'a IdentityDoc,
    /// Keys whose changes are skipped.
    pub silenced: &'a BTreeSet<[u8; 32]>,
}

impl Context<'_> {
    /// Whether `key` maintains the repository.
    pub fn is_maintainer(&self, key: &VerifyingKey) -> bool {
        self.identity.is_maintainer(key)
    }

    /// Whether `key`'s changes are skipped.
    pub fn is_silenced(&self, key: &VerifyingKey) -> bool {
        self.silenced.contains(key.as_bytes())
    }
}
