//! A repository's patches and issues as the changes this node holds give them: each
//! object replayed (see `guts-cob`) under the identity in effect, with the keys its
//! maintainers hid and this node blocks left out, and each patch judged merged or not
//! against the maintainers' branches.

use std::collections::BTreeSet;

use git2::Repository;
use guts_cob::{Context, Graph, Issue, Kind, Moderation, Patch, PatchState};
use guts_protocol::{IdentityDoc, RepositoryId};

use super::Repositories;
use super::held::GitAncestry;
use crate::StorageError;

/// What [`Repositories::collaboration`] gives.
#[derive(Debug, Clone)]
pub struct Collaboration {
    /// The identity version in effect (who maintains the repository).
    pub identity: IdentityDoc,
    /// Issues, newest first.
    pub issues: Vec<Issue>,
    /// Patches with their state, newest first.
    pub patches: Vec<(Patch, PatchState)>,
    /// Keys the maintainers hid.
    pub hidden: BTreeSet<[u8; 32]>,
    /// Every change held.
    pub graph: Graph,
}

impl Collaboration {
    /// The issue `id`.
    pub fn issue(&self, id: &guts_cob::ChangeId) -> Option<&Issue> {
        self.issues.iter().find(|i| i.id == *id)
    }

    /// The patch `id`, with its state.
    pub fn patch(&self, id: &guts_cob::ChangeId) -> Option<&(Patch, PatchState)> {
        self.patches.iter().find(|(p, _)| p.id == *id)
    }
}

impl Repositories {
    /// Every patch and issue of `id` this node holds, as they stand, leaving out the keys
    /// in `blocked` (this node's block list) and those the maintainers hid. Blocking.
    pub fn collaboration(
        &self,
        id: &RepositoryId,
        blocked: &BTreeSet<[u8; 32]>,
    ) -> Result<Collaboration, StorageError> {
        let state = self
            .held(id)?
            .ok_or(StorageError::UnknownRepository(*id))?
            .into_state();
        let graph = self.changes(id)?;
        let repo = Repository::open_bare(self.path(id))
            .map_err(|_| StorageError::UnknownRepository(*id))?;
        let identity = state.identity.current().clone();
        let moderation = Moderation::replay(&graph, &identity);
        let mut silenced = blocked.clone();
        silenced.extend(moderation.hidden.iter().copied());
        let ctx = Context {
            identity: &identity,
            silenced: &silenced,
        };
        let ancestry = GitAncestry(&repo);
        let mut issues = Vec::new();
        let mut patches = Vec::new();
        for (root, changes) in graph.grouped() {
            match graph.kind_of(&root) {
                Some(Kind::Issue) => issues.extend(Issue::replay(changes, &ctx)),
                Some(Kind::Patch) => {
                    let Some(patch) = Patch::replay(changes, &ctx) else {
                        continue;
                    };
                    let merged = patch.merged_revision(
                        &identity,
                        |k| {
                            state
                                .views
                                .of(k)
                                .and_then(|v| v.refs.get(&patch.target))
                                .copied()
                        },
                        &ancestry,
                    );
                    let patch_state = patch.state(merged);
                    patches.push((patch, patch_state));
                }
                _ => {}
            }
        }
        // Newest first; ties by id, so every node lists them alike.
        issues.sort_by_key(|i| std::cmp::Reverse((i.opened, i.id)));
        patches.sort_by_key(|(p, _)| std::cmp::Reverse((p.opened, p.id)));
        Ok(Collaboration {
            identity,
            issues,
            patches,
            hidden: moderation.hidden,
            graph,
        })
    }
}
