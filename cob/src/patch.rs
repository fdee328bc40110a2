//! A patch: revisions of a proposed change to a branch, their reviews, a discussion, and
//! whether the maintainers merged it.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;
use guts_protocol::canonical::Ancestry;
use guts_protocol::{IdentityDoc, ObjectId, RefName};

use crate::Context;
use crate::action::{Action, CodeComment, Label, Lifecycle, Verdict};
use crate::change::{Change, ChangeId};
use crate::issue::{reassign, relabel};
use crate::thread::{Comment, Thread};

/// One review of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// The change that made it.
    pub id: ChangeId,
    /// The reviewer.
    pub author: VerifyingKey,
    /// When, by the reviewer's clock.
    pub timestamp: u64,
    /// Accept, reject, or none.
    pub verdict: Option<Verdict>,
    /// What the reviewer says overall.
    pub summary: String,
    /// Comments on files and lines.
    pub comments: Vec<CodeComment>,
}

/// One revision: a commit proposed for the target branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The change that made it (the patch's id for the first).
    pub id: ChangeId,
    /// Who pushed it.
    pub author: VerifyingKey,
    /// When, by the author's clock.
    pub timestamp: u64,
    /// What changed since the revision before (the patch's description for the first).
    pub note: String,
    /// The target's commit it was made on.
    pub base: ObjectId,
    /// The commit proposed.
    pub head: ObjectId,
    /// Reviews, the latest of each reviewer, by key bytes.
    pub reviews: BTreeMap<[u8; 32], Review>,
}

/// Where a patch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchState {
    /// Open for review.
    Open,
    /// Not ready for review.
    Draft,
    /// Withdrawn or refused.
    Closed,
    /// In the target branch of at least the threshold of maintainers.
    Merged {
        /// The revision merged (the newest of those that are).
        revision: ChangeId,
        /// Its head.
        head: ObjectId,
    },
}

/// A patch as its changes give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// Its id: the change that opened it.
    pub id: ChangeId,
    /// Who opened it.
    pub author: VerifyingKey,
    /// When, by the author's clock.
    pub opened: u64,
    /// The latest timestamp among its changes taken.
    pub updated: u64,
    /// Its title.
    pub title: String,
    /// The branch it is for.
    pub target: RefName,
    /// Open, draft or closed, as its author or a maintainer set it (merged is judged
    /// from the maintainers' branches: [`Patch::state`]).
    pub lifecycle: Lifecycle,
    /// Its revisions, oldest first.
    pub revisions: Vec<Revision>,
    /// Its labels.
    pub labels: BTreeSet<Label>,
    /// Its assignees, by key bytes.
    pub assignees: BTreeSet<[u8; 32]>,
    /// The discussion; the first comment is the description.
    pub thread: Thread,
    /// Changes left out, and why.
    pub skipped: Vec<(ChangeId, &'static str)>,
}

impl Patch {
    /// Replays one patch's changes, given in [`crate::Graph`] order (opening change
    /// first). `None` when they do not open a patch, or its author is silenced.
    pub fn replay<'a>(
        changes: impl IntoIterator<Item = (ChangeId, &'a Change)>,
        ctx: &Context<'_>,
    ) -> Option<Patch> {
        let mut changes = changes.into_iter();
        let (id, first) = changes.next()?;
        let Action::OpenPatch {
            title,
            description,
            target,
            base,
            head,
            draft,
        } = &first.action
        else {
            return None;
        };
        if ctx.is_silenced(&first.author) {
            return None;
        }
        let mut patch = Patch {
            id,
            author: first.author,
            opened: first.timestamp,
            updated: first.timestamp,
            title: title.clone(),
            target: target.clone(),
            lifecycle: if *draft {
                Lifecycle::Draft
            } else {
                Lifecycle::Open
            },
            revisions: vec![Revision {
                id,
                author: first.author,
                timestamp: first.timestamp,
                note: description.clone(),
                base: *base,
                head: *head,
                reviews: BTreeMap::new(),
            }],
            labels: BTreeSet::new(),
            assignees: BTreeSet::new(),
            thread: Thread::default(),
            skipped: Vec::new(),
        };
        patch
            .thread
            .add(Comment {
                id,
                author: first.author,
                timestamp: first.timestamp,
                body: description.clone(),
                edited: false,
                reply_to: None,
            })
            .expect("the first comment answers nothing");
        for (cid, change) in changes {
            if ctx.is_silenced(&change.author) {
                patch.skipped.push((cid, "its author is hidden or blocked"));
                continue;
            }
            match patch.apply(cid, change, ctx) {
                Ok(()) => patch.updated = patch.updated.max(change.timestamp),
                Err(why) => patch.skipped.push((cid, why)),
            }
        }
        Some(patch)
    }

    fn apply(
        &mut self,
        id: ChangeId,
        change: &Change,
        ctx: &Context<'_>,
    ) -> Result<(), &'static str> {
        let by = &change.author;
        let maintainer = ctx.is_maintainer(by);
        let is_author = *by == self.author;
        match &change.action {
            Action::Comment { body, reply_to } => self.thread.add(Comment {
                id,
                author: *by,
                timestamp: change.timestamp,
                body: body.clone(),
                edited: false,
                reply_to: *reply_to,
            }),
            Action::EditComment { comment, body } => self.thread.edit(comment, by, body),
            Action::Retitle { title } if maintainer || is_author => {
                self.title = title.clone();
                Ok(())
            }
            Action::SetState { state }
                if is_author || (maintainer && *state != Lifecycle::Draft) =>
            {
                self.lifecycle = *state;
                Ok(())
            }
            Action::Revise { note, base, head } if maintainer || is_author => {
                self.revisions.push(Revision {
                    id,
                    author: *by,
                    timestamp: change.timestamp,
                    note: note.clone(),
                    base: *base,
                    head: *head,
                    reviews: BTreeMap::new(),
                });
                Ok(())
            }
            Action::Review {
                revision,
                verdict,
                summary,
                comments,
            } => {
                let revision = self
                    .revisions
                    .iter_mut()
                    .find(|r| r.id == *revision)
                    .ok_or("a review of a revision not in this patch")?;
                revision.reviews.insert(
                    *by.as_bytes(),
                    Review {
                        id,
                        author: *by,
                        timestamp: change.timestamp,
                        verdict: *verdict,
                        summary: summary.clone(),
                        comments: comments.clone(),
                    },
                );
                Ok(())
            }
            Action::Label { add, remove } if maintainer => {
                relabel(&mut self.labels, add, remove);
                Ok(())
            }
            Action::Assign { add, remove } if maintainer => {
                reassign(&mut self.assignees, add, remove);
                Ok(())
            }
            Action::Label { .. } | Action::Assign { .. } => {
                Err("labels and assignees are the maintainers' to set")
            }
            Action::Retitle { .. } | Action::SetState { .. } | Action::Revise { .. } => {
                Err("only the patch's author or a maintainer may do that (a draft: its author)")
            }
            _ => Err("not a patch action"),
        }
    }

    /// The newest revision.
    pub fn latest(&self) -> &Revision {
        self.revisions
            .last()
            .expect("a patch has its first revision")
    }

    /// The newest revision whose head at least the threshold of `identity`'s maintainers
    /// have in their target branch (`tip` gives each maintainer's tip of it).
    pub fn merged_revision(
        &self,
        identity: &IdentityDoc,
        tip: impl Fn(&VerifyingKey) -> Option<ObjectId>,
        ancestry: &dyn Ancestry,
    ) -> Option<&Revision> {
        let tips: Vec<ObjectId> = identity.maintainers.iter().filter_map(tip).collect();
        let threshold = usize::from(identity.threshold);
        self.revisions.iter().rev().find(|r| {
            tips.iter()
                .filter(|t| ancestry.descends(**t, r.head))
                .count()
                >= threshold
        })
    }

    /// Its state, merged when [`Self::merged_revision`] found one.
    pub fn state(&self, merged: Option<&Revision>) -> PatchState {
        match (merged, self.lifecycle) {
            (Some(r), _) => PatchState::Merged {
                revision: r.id,
                head: r.head,
            },
            (None, Lifecycle::Open) => PatchState::Open,
            (None, Lifecycle::Draft) => PatchState::Draft,
            (None, Lifecycle::Closed) => PatchState::Closed,
        }
    }
}
