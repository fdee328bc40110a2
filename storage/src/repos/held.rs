//! What the store keeps beside a repository's objects: its signed record, one file.
//!
//! Format 1 is the owner's snapshot: a single-owner repository, as every release wrote it.
//! Format 2 is a repository with maintainers: its identity versions and the views held
//! (releases before maintainers existed cannot read format 2: they set such a repository
//! aside at start, saying "wire version 2", and lose nothing). A repository whose identity
//! is back to its creator alone is written as format 1 again. Format 3 is format 2 with
//! each version's visibility, for an identity that is or was private (releases before
//! private repositories set it aside, saying "wire version 3").
//!
//! Git refs follow the record: the canonical refs under `refs/heads/` and `refs/tags/`
//! and, with maintainers, each view under `refs/views/<key>/` (see [`view_ref`]).

use std::collections::BTreeMap;
use std::path::Path;

use git2::Repository;
use guts_protocol::canonical::{Ancestry, Canonical};
use guts_protocol::wire::{self, MAX_RESPONSE_SIZE};
use guts_protocol::{
    IdentityDoc, ObjectId, RefName, RepositoryId, RepositoryState, SharedState, SharedStateV2,
    SignedRefs, Views,
};

use std::fs;
use std::io;

use super::{Repositories, SIGNED_REFS_FILE, oid};
use crate::StorageError;

/// Format byte of a record with maintainers.
const SHARED_FORMAT: u8 = 2;
/// Format byte of a record whose identity has or had a private version: format 2 with
/// each version's visibility.
const PRIVATE_FORMAT: u8 = 3;
/// Largest record with maintainers read: views of up to [`guts_protocol::refs::MAX_REFS`]
/// refs each, a few of them.
pub const MAX_SHARED_SIZE: usize = 4 * MAX_RESPONSE_SIZE;

/// Where each maintainer's view is in the git repository: `refs/views/<key hex>/`.
pub const VIEWS_PREFIX: &str = "refs/views/";

/// A repository's record.
#[derive(Debug, Clone)]
pub enum Held {
    /// A single owner's snapshot.
    Owner(SignedRefs),
    /// A repository with maintainers (or on its way to them).
    Shared(RepositoryState),
}

impl Held {
    /// The repository.
    pub fn repository(&self) -> RepositoryId {
        match self {
            Held::Owner(s) => s.repository(),
            Held::Shared(s) => s.identity.repository(),
        }
    }

    /// The identity history and views, whichever the form: a single owner is genesis with
    /// the owner's snapshot as its one view.
    pub fn into_state(self) -> RepositoryState {
        match self {
            Held::Owner(snapshot) => {
                let genesis = IdentityDoc::genesis(
                    &snapshot.signed.signer,
                    snapshot.signed.header.name.clone(),
                );
                let mut state =
                    RepositoryState::new(genesis).expect("the implied genesis is well-formed");
                state.views = Views::restore([snapshot]);
                state
            }
            Held::Shared(state) => state,
        }
    }

    /// The form `state` is stored in: format 1 while the creator alone maintains it with
    /// only its own view, format 2 otherwise.
    pub fn from_state(state: RepositoryState) -> Held {
        if state.identity.is_genesis_only() {
            let creator = state.identity.genesis().maintainers[0];
            let mut views = state.views.iter();
            if let (Some(view), None) = (views.next(), views.next())
                && view.signed.signer == creator
            {
                return Held::Owner(view.clone());
            }
        }
        Held::Shared(state)
    }

    /// Every object a ref of the record points at (each view's, so the canonical ones
    /// too): what this node holds whole and may serve.
    pub fn targets(&self) -> Vec<ObjectId> {
        let mut all: Vec<ObjectId> = match self {
            Held::Owner(s) => s.refs.values().copied().collect(),
            Held::Shared(s) => s
                .views
                .iter()
                .flat_map(|v| v.refs.values().copied())
                .collect(),
        };
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The refs (full names) git should have, and HEAD.
    pub fn git_refs(&self, repo: &Repository) -> (BTreeMap<String, ObjectId>, Option<RefName>) {
        match self {
            Held::Owner(s) => (
                s.refs
                    .iter()
                    .map(|(n, t)| (n.as_str().to_owned(), *t))
                    .collect(),
                s.signed.header.head.clone(),
            ),
            Held::Shared(state) => {
                let Canonical { refs, head } = state.canonical(&GitAncestry(repo));
                let mut all: BTreeMap<String, ObjectId> = refs
                    .iter()
                    .map(|(n, t)| (n.as_str().to_owned(), *t))
                    .collect();
                // A removed maintainer's view stays in the record, in case the removal
                // loses to a competing version, but not among the refs anyone fetches.
                for view in state
                    .views
                    .iter()
                    .filter(|v| state.identity.may_publish(&v.signed.signer))
                {
                    for (name, target) in &view.refs {
                        all.insert(view_ref(view, name), *target);
                    }
                }
                (all, head)
            }
        }
    }

    /// The record's bytes on disk.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Held::Owner(s) => wire::encode(s),
            Held::Shared(state) if state.identity.ever_private() => {
                postcard::to_extend(&SharedStateV2::from(&state.stored()), vec![PRIVATE_FORMAT])
                    .expect("states always encode")
            }
            Held::Shared(state) => postcard::to_extend(&state.stored(), vec![SHARED_FORMAT])
                .expect("states always encode"),
        }
    }

    /// Reads a record written by [`Self::encode`]; `path` names it in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Held, StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        match bytes.first() {
            Some(&format @ (SHARED_FORMAT | PRIVATE_FORMAT)) => {
                if bytes.len() > MAX_SHARED_SIZE {
                    return Err(corrupt(format!(
                        "{} bytes; at most {MAX_SHARED_SIZE} are read",
                        bytes.len()
                    )));
                }
                let stored: SharedState = if format == PRIVATE_FORMAT {
                    postcard::from_bytes::<SharedStateV2>(&bytes[1..])
                        .map_err(|e| corrupt(e.to_string()))?
                        .into()
                } else {
                    postcard::from_bytes(&bytes[1..]).map_err(|e| corrupt(e.to_string()))?
                };
                RepositoryState::from_stored(stored)
                    .map(Held::Shared)
                    .map_err(|e| corrupt(e.to_string()))
            }
            _ => wire::decode(bytes, MAX_RESPONSE_SIZE)
                .map(Held::Owner)
                .map_err(|e| corrupt(e.to_string())),
        }
    }
}

impl Repositories {
    /// The latest verified snapshot of `id`, if this node holds it as a single owner's
    /// repository (one with maintainers: see [`Self::held`]).
    pub fn signed_refs(&self, id: &RepositoryId) -> Result<Option<SignedRefs>, StorageError> {
        Ok(match self.held(id)? {
            Some(Held::Owner(snapshot)) => Some(snapshot),
            _ => None,
        })
    }

    /// The record of `id` (a single owner's snapshot, or identity and views), if this
    /// node holds the repository.
    pub fn held(&self, id: &RepositoryId) -> Result<Option<Held>, StorageError> {
        let path = self.path(id).join(SIGNED_REFS_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StorageError::Read { path, source }),
        };
        Held::decode(&bytes, &path).map(Some)
    }
}

/// Where `view`'s ref `name` is in git: `refs/views/<key hex>/heads/main` for
/// `refs/heads/main`.
pub fn view_ref(view: &SignedRefs, name: &RefName) -> String {
    let rest = name.as_str().strip_prefix("refs/").unwrap_or(name.as_str());
    format!(
        "{VIEWS_PREFIX}{}/{rest}",
        hex::encode(view.signed.signer.as_bytes())
    )
}

/// Commit ancestry as libgit2 reads it from `repo`; an object it cannot read descends from
/// nothing and has no merge base, so it qualifies only by exact agreement.
pub(crate) struct GitAncestry<'a>(pub &'a Repository);

impl Ancestry for GitAncestry<'_> {
    fn descends(&self, descendant: ObjectId, ancestor: ObjectId) -> bool {
        descendant == ancestor
            || self
                .0
                .graph_descendant_of(oid(&descendant), oid(&ancestor))
                .unwrap_or(false)
    }

    fn merge_base(&self, a: ObjectId, b: ObjectId) -> Option<ObjectId> {
        self.0
            .merge_base(oid(&a), oid(&b))
            .ok()
            .map(super::object_id)
    }
}
