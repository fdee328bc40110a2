//! The one git form of a change: a blob holding it, a tree holding the blob, and a commit
//! whose parents are the change's parents and then the commit its action names.
//!
//! Every field of the commit follows from the signed change (a fixed author, the change's
//! timestamp, a message naming the action), so a change has exactly one commit id and a
//! node can check that a commit it was sent is that one: a commit with the same change but
//! other parents or another message would be the same signed action replayed elsewhere in
//! the graph, and is refused.

use guts_protocol::ObjectId;

use crate::change::{ChangeError, SignedChange};

/// The file in a change's tree that holds it.
pub const CHANGE_FILE: &str = "change";

/// The git object types a change is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitKind {
    /// The change's bytes.
    Blob,
    /// The tree holding them.
    Tree,
    /// The commit.
    Commit,
}

/// Hashes a git object as git does (the store's libgit2; tests may use anything
/// collision-free).
pub trait GitHasher {
    /// The id of an object of `kind` with `body` (without git's header).
    fn hash(&self, kind: GitKind, body: &[u8]) -> ObjectId;
}

/// A change's objects, as git stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitForm {
    /// The blob's body.
    pub blob: Vec<u8>,
    /// The tree's body.
    pub tree: Vec<u8>,
    /// The commit's body.
    pub commit: Vec<u8>,
    /// The commit's id: the change's id.
    pub id: ObjectId,
}

impl SignedChange {
    /// Its objects and id.
    pub fn git_form(&self, hasher: &dyn GitHasher) -> GitForm {
        let blob = self.encode();
        let blob_id = hasher.hash(GitKind::Blob, &blob);
        let mut tree = format!("100644 {CHANGE_FILE}\0").into_bytes();
        tree.extend_from_slice(&blob_id.0);
        let tree_id = hasher.hash(GitKind::Tree, &tree);
        let change = &self.change;
        let mut commit = format!("tree {tree_id}\n");
        for parent in change
            .parents
            .iter()
            .chain(change.action.related().as_ref())
        {
            commit.push_str(&format!("parent {parent}\n"));
        }
        let kind = change.opens().map(|k| k.as_str()).unwrap_or("object");
        let stamp = format!("guts <guts@guts.invalid> {} +0000", change.timestamp);
        commit.push_str(&format!(
            "author {stamp}\ncommitter {stamp}\n\nguts {kind}: {}\n",
            change.action.name()
        ));
        let commit = commit.into_bytes();
        let id = hasher.hash(GitKind::Commit, &commit);
        GitForm {
            blob,
            tree,
            commit,
            id,
        }
    }

    /// Checks that `commit` is this change's commit.
    pub fn check_commit(
        &self,
        commit: ObjectId,
        hasher: &dyn GitHasher,
    ) -> Result<(), ChangeError> {
        let expected = self.git_form(hasher).id;
        if expected != commit {
            return Err(ChangeError::WrongCommit {
                found: commit,
                expected,
            });
        }
        Ok(())
    }
}
