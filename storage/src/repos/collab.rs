//! A repository's patches and issues as the changes this node holds give them: each
//! object replayed (see `guts-cob`) under the identity in effect, with the keys its
//! maintainers hid and this node blocks left out, and each patch judged merged or not
//! against the maintainers' branches.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};

use git2::{Oid, Repository};
use guts_cob::{Context, Graph, Issue, Kind, Moderation, Patch, PatchState};
use guts_protocol::canonical::Ancestry;
use guts_protocol::{IdentityDoc, ObjectId, RepositoryId};

use super::held::GitAncestry;
use super::{Repositories, object_id, oid};
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
    /// Keys whose contributions are left out by the maintainers: those they hid and,
    /// while contributions are off, every author who is not a maintainer.
    pub hidden: BTreeSet<[u8; 32]>,
    /// Whether contributions are on (anyone may open patches and issues).
    pub contributions: bool,
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

/// Whether maintainers' tips reach patches' heads, with one walk of history per tip
/// rather than one per patch and tip: a thousand patches on a long history would
/// otherwise walk it a thousand times.
struct Reach<'a> {
    repo: &'a Repository,
    /// Every revision's head.
    heads: HashSet<Oid>,
    /// For each tip walked, the heads it reaches.
    reached: RefCell<HashMap<Oid, HashSet<Oid>>>,
}

impl<'a> Reach<'a> {
    fn new(repo: &'a Repository, heads: HashSet<Oid>) -> Self {
        Reach {
            repo,
            heads,
            reached: RefCell::default(),
        }
    }

    /// The heads `tip` reaches: one walk, ending once it found them all.
    fn walk(&self, tip: Oid) -> HashSet<Oid> {
        let mut found = HashSet::new();
        let Ok(mut walk) = self.repo.revwalk() else {
            return found;
        };
        if walk.push(tip).is_err() {
            return found;
        }
        for id in walk.flatten() {
            if self.heads.contains(&id) {
                found.insert(id);
                if found.len() == self.heads.len() {
                    break;
                }
            }
        }
        found
    }
}

impl Ancestry for Reach<'_> {
    fn descends(&self, descendant: ObjectId, ancestor: ObjectId) -> bool {
        let (tip, head) = (oid(&descendant), oid(&ancestor));
        if tip == head {
            return true;
        }
        if !self.heads.contains(&head) {
            return GitAncestry(self.repo).descends(descendant, ancestor);
        }
        let mut reached = self.reached.borrow_mut();
        reached
            .entry(tip)
            .or_insert_with(|| self.walk(tip))
            .contains(&head)
    }

    fn merge_base(&self, a: ObjectId, b: ObjectId) -> Option<ObjectId> {
        self.repo.merge_base(oid(&a), oid(&b)).ok().map(object_id)
    }
}

/// Every change of a repository held here, and who may do what in it: what replaying
/// any one object needs, without replaying the others (authoring a change reads this).
#[derive(Debug, Clone)]
pub struct Standing {
    /// The identity version in effect (who maintains the repository).
    pub identity: IdentityDoc,
    /// Keys whose contributions are left out by the maintainers: those they hid and,
    /// while contributions are off, every author who is not a maintainer.
    pub hidden: BTreeSet<[u8; 32]>,
    /// Whether contributions are on (anyone may open patches and issues).
    pub contributions: bool,
    /// Every change held.
    pub graph: Graph,
    /// `hidden` and this node's block list.
    silenced: BTreeSet<[u8; 32]>,
    /// The maintainers' views: where their branches are, for judging merges.
    views: guts_protocol::Views,
}

impl Standing {
    /// Who may do what while replaying.
    pub fn context(&self) -> Context<'_> {
        Context {
            identity: &self.identity,
            silenced: &self.silenced,
        }
    }

    /// The issue `id` as its changes give it (`None`: hidden, or not an issue).
    pub fn issue(&self, id: &guts_cob::ChangeId) -> Option<Issue> {
        (self.graph.kind_of(id) == Some(Kind::Issue))
            .then(|| Issue::replay(self.graph.order_of(*id), &self.context()))
            .flatten()
    }

    /// The patch `id` as its changes give it, not judged merged or not.
    pub fn patch(&self, id: &guts_cob::ChangeId) -> Option<Patch> {
        (self.graph.kind_of(id) == Some(Kind::Patch))
            .then(|| Patch::replay(self.graph.order_of(*id), &self.context()))
            .flatten()
    }

    /// Where `patch` stands: merged once the threshold of maintainers' branches hold a
    /// revision (their views' targets, walked by `ancestry`).
    fn judge(&self, patch: &Patch, ancestry: &dyn Ancestry) -> PatchState {
        let merged = patch.merged_revision(
            &self.identity,
            |k| {
                self.views
                    .of(k)
                    .and_then(|v| v.refs.get(&patch.target))
                    .copied()
            },
            ancestry,
        );
        patch.state(merged)
    }
}

impl Repositories {
    /// Every change of `id` and who may do what in it, leaving out the keys in `blocked`
    /// (this node's block list) and those the maintainers hid. Blocking.
    pub fn standing(
        &self,
        id: &RepositoryId,
        blocked: &BTreeSet<[u8; 32]>,
    ) -> Result<Standing, StorageError> {
        let state = self
            .held(id)?
            .ok_or(StorageError::UnknownRepository(*id))?
            .into_state();
        let graph = self.changes(id)?;
        let identity = state.identity.current().clone();
        let moderation = Moderation::replay(&graph, &identity);
        let mut hidden = moderation.hidden.clone();
        if moderation.closed {
            hidden.extend(
                graph
                    .iter()
                    .map(|(_, c)| c.author)
                    .filter(|k| moderation.excludes(k, &identity))
                    .map(|k| *k.as_bytes()),
            );
        }
        let mut silenced = blocked.clone();
        silenced.extend(hidden.iter().copied());
        Ok(Standing {
            identity,
            hidden,
            contributions: !moderation.closed,
            graph,
            silenced,
            views: state.views,
        })
    }

    /// Whether `patch` of `id` is merged, judged as [`Self::collaboration`] judges every
    /// patch (for one patch, without replaying the others). Blocking.
    pub fn patch_state(
        &self,
        id: &RepositoryId,
        standing: &Standing,
        patch: &Patch,
    ) -> Result<PatchState, StorageError> {
        let repo = Repository::open_bare(self.path(id))
            .map_err(|_| StorageError::UnknownRepository(*id))?;
        let heads = patch.revisions.iter().map(|r| oid(&r.head)).collect();
        Ok(standing.judge(patch, &Reach::new(&repo, heads)))
    }

    /// Every patch and issue of `id` this node holds, as they stand, leaving out the keys
    /// in `blocked` (this node's block list) and those the maintainers hid. Blocking.
    pub fn collaboration(
        &self,
        id: &RepositoryId,
        blocked: &BTreeSet<[u8; 32]>,
    ) -> Result<Collaboration, StorageError> {
        let standing = self.standing(id, blocked)?;
        let repo = Repository::open_bare(self.path(id))
            .map_err(|_| StorageError::UnknownRepository(*id))?;
        let graph = &standing.graph;
        let ctx = standing.context();
        let grouped = graph.grouped();
        let mut heads = HashSet::new();
        for changes in grouped.values() {
            for (_, change) in changes {
                heads.extend(change.action.related().map(|h| oid(&h)));
            }
        }
        let ancestry = Reach::new(&repo, heads);
        let mut issues = Vec::new();
        let mut patches = Vec::new();
        for (root, changes) in grouped {
            match graph.kind_of(&root) {
                Some(Kind::Issue) => issues.extend(Issue::replay(changes, &ctx)),
                Some(Kind::Patch) => {
                    let Some(patch) = Patch::replay(changes, &ctx) else {
                        continue;
                    };
                    let patch_state = standing.judge(&patch, &ancestry);
                    patches.push((patch, patch_state));
                }
                _ => {}
            }
        }
        // Newest first; ties by id, so every node lists them alike.
        issues.sort_by_key(|i| std::cmp::Reverse((i.opened, i.id)));
        patches.sort_by_key(|(p, _)| std::cmp::Reverse((p.opened, p.id)));
        let Standing {
            identity,
            hidden,
            contributions,
            graph,
            ..
        } = standing;
        Ok(Collaboration {
            identity,
            issues,
            patches,
            hidden,
            contributions,
            graph,
        })
    }
}
