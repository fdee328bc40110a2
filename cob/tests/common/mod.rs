//! Helpers: keys, a hasher, and a replica that writes changes as a node would.
#![allow(dead_code)]

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use guts_cob::{Action, Change, ChangeId, Context, GitHasher, GitKind, Graph, SignedChange};
use guts_protocol::{IdentityDoc, ObjectId, RepoName, RepositoryId};
use sha2::{Digest, Sha256};

/// Any collision-free hash will do for ordering; git's SHA-1 is the store's business.
pub struct TestHasher;

impl GitHasher for TestHasher {
    fn hash(&self, kind: GitKind, body: &[u8]) -> ObjectId {
        let mut h = Sha256::new();
        h.update(format!("{kind:?}").as_bytes());
        h.update(body);
        let d = h.finalize();
        let mut id = [0; 20];
        id.copy_from_slice(&d[..20]);
        ObjectId(id)
    }
}

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A repository created by `key(1)`.
pub fn identity() -> IdentityDoc {
    IdentityDoc::genesis(
        &key(1).verifying_key(),
        "project".parse::<RepoName>().unwrap(),
    )
}

pub fn repository() -> RepositoryId {
    identity().repository
}

/// Signs a change and returns it with its id, checked as a store would.
pub fn make(
    author: &SigningKey,
    object: Option<ChangeId>,
    parents: Vec<ChangeId>,
    timestamp: u64,
    action: Action,
) -> (ChangeId, SignedChange) {
    let change = Change {
        repository: repository(),
        object,
        parents,
        author: author.verifying_key(),
        timestamp,
        action,
    };
    let signed = SignedChange::sign(change, author).expect("a well-formed change");
    let id = signed.git_form(&TestHasher).id;
    signed
        .check_commit(id, &TestHasher)
        .expect("its own commit");
    (id, signed)
}

/// One node's changes, and a change written on top of what it holds.
#[derive(Default, Clone)]
pub struct Replica {
    pub graph: Graph,
    pub all: Vec<(ChangeId, SignedChange)>,
}

impl Replica {
    pub fn take(&mut self, id: ChangeId, change: &SignedChange) {
        change.verify().expect("signed");
        if self.graph.insert(id, change.change.clone()) {
            self.all.push((id, change.clone()));
        }
    }

    pub fn act(
        &mut self,
        author: &SigningKey,
        root: ChangeId,
        ts: u64,
        action: Action,
    ) -> ChangeId {
        let mut parents = self.graph.tips(root);
        parents.sort();
        let (id, c) = make(author, Some(root), parents, ts, action);
        self.take(id, &c);
        id
    }

    pub fn sync_from(&mut self, other: &Replica) {
        for (id, c) in &other.all {
            self.take(*id, c);
        }
    }
}

pub fn ctx<'a>(identity: &'a IdentityDoc, silenced: &'a BTreeSet<[u8; 32]>) -> Context<'a> {
    Context { identity, silenced }
}
