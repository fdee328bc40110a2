//! The changes a node holds for a repository, and the one order every node replays them in.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::action::Kind;
use crate::change::{Change, ChangeId};

/// Verified changes of any number of objects of one repository.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    changes: BTreeMap<ChangeId, Change>,
}

impl Graph {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a change whose signature and commit were checked; returns whether it is new.
    pub fn insert(&mut self, id: ChangeId, change: Change) -> bool {
        self.changes.insert(id, change).is_none()
    }

    /// The change `id`, if held.
    pub fn get(&self, id: &ChangeId) -> Option<&Change> {
        self.changes.get(id)
    }

    /// Whether `id` is held.
    pub fn contains(&self, id: &ChangeId) -> bool {
        self.changes.contains_key(id)
    }

    /// Every change held, by id, whether it fits or not.
    pub fn iter(&self) -> impl Iterator<Item = (ChangeId, &Change)> {
        self.changes.iter().map(|(id, c)| (*id, c))
    }

    /// How many changes are held.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The kind of the object `id` opens or belongs to, if its opening change is held.
    pub fn kind_of(&self, id: &ChangeId) -> Option<Kind> {
        let change = self.changes.get(id)?;
        self.changes.get(&change.object_id(*id))?.opens()
    }

    /// The objects held (their opening changes), by id.
    pub fn objects(&self) -> impl Iterator<Item = (ChangeId, Kind)> + '_ {
        self.changes
            .iter()
            .filter_map(|(id, c)| Some((*id, c.opens()?)))
    }

    /// Whether `change` may stand in the graph: it opens an object, or it follows changes
    /// of its own object with an action that object's kind takes.
    fn fits(&self, change: &Change) -> bool {
        let Some(root) = change.object else {
            return change.opens().is_some();
        };
        let Some(kind) = self.changes.get(&root).and_then(Change::opens) else {
            return false;
        };
        change.action.fits(kind)
            && change.parents.iter().all(|p| {
                self.changes
                    .get(p)
                    .is_some_and(|parent| parent.object_id(*p) == root)
            })
    }

    /// Every change whose whole ancestry is held and fits, parents before children and
    /// concurrent changes by id: the same order on every node that holds the same
    /// changes, however they arrived. The order of one object's changes within it is the
    /// order that object alone would have.
    pub fn order(&self) -> Vec<ChangeId> {
        let mut waiting: BTreeMap<ChangeId, usize> = BTreeMap::new();
        let mut children: BTreeMap<ChangeId, Vec<ChangeId>> = BTreeMap::new();
        let mut ready = BinaryHeap::new();
        for (id, change) in &self.changes {
            if !self.fits(change) {
                continue;
            }
            if change.parents.is_empty() {
                ready.push(Reverse(*id));
            } else {
                waiting.insert(*id, change.parents.len());
                for p in &change.parents {
                    children.entry(*p).or_default().push(*id);
                }
            }
        }
        let mut out = Vec::with_capacity(self.changes.len());
        while let Some(Reverse(id)) = ready.pop() {
            out.push(id);
            for child in children.get(&id).into_iter().flatten() {
                if let Some(n) = waiting.get_mut(child) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(Reverse(*child));
                    }
                }
            }
        }
        out
    }

    /// Each object's changes in replay order, by the object's id; one pass over the graph.
    pub fn grouped(&self) -> BTreeMap<ChangeId, Vec<(ChangeId, &Change)>> {
        let mut out: BTreeMap<ChangeId, Vec<(ChangeId, &Change)>> = BTreeMap::new();
        for id in self.order() {
            let c = &self.changes[&id];
            out.entry(c.object_id(id)).or_default().push((id, c));
        }
        out
    }

    /// The changes of object `root` in replay order (for many objects, [`Self::grouped`]).
    pub fn order_of(&self, root: ChangeId) -> Vec<(ChangeId, &Change)> {
        self.order()
            .into_iter()
            .filter_map(|id| {
                let c = &self.changes[&id];
                (c.object_id(id) == root).then_some((id, c))
            })
            .collect()
    }

    /// The changes of object `root` that no other change of it follows: what a new change
    /// names as its parents.
    pub fn tips(&self, root: ChangeId) -> Vec<ChangeId> {
        let ordered = self.order_of(root);
        let mut followed = std::collections::BTreeSet::new();
        for (_, c) in &ordered {
            followed.extend(c.parents.iter().copied());
        }
        ordered
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !followed.contains(id))
            .collect()
    }
}
