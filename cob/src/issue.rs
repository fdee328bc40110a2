//! An issue: a title, a state, labels, assignees and a discussion.

use std::collections::BTreeSet;

use ed25519_dalek::VerifyingKey;

use crate::Context;
use crate::action::{Action, Label, Lifecycle};
use crate::change::{Change, ChangeId};
use crate::thread::{Comment, Thread};

/// An issue as its changes give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
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
    /// Open or closed.
    pub state: Lifecycle,
    /// Its labels.
    pub labels: BTreeSet<Label>,
    /// Its assignees, by key bytes.
    pub assignees: BTreeSet<[u8; 32]>,
    /// The discussion; the first comment is the issue's body.
    pub thread: Thread,
    /// Changes left out, and why (not allowed to their author, or naming what is not
    /// there).
    pub skipped: Vec<(ChangeId, &'static str)>,
}

/// Applies label and assignee lists.
pub(crate) fn relabel(labels: &mut BTreeSet<Label>, add: &[Label], remove: &[Label]) {
    for l in remove {
        labels.remove(l);
    }
    labels.extend(add.iter().cloned());
}

pub(crate) fn reassign(
    assignees: &mut BTreeSet<[u8; 32]>,
    add: &[VerifyingKey],
    remove: &[VerifyingKey],
) {
    for k in remove {
        assignees.remove(k.as_bytes());
    }
    assignees.extend(add.iter().map(|k| *k.as_bytes()));
}

impl Issue {
    /// Replays one issue's changes, given in [`crate::Graph`] order (opening change
    /// first). `None` when they do not open an issue, or its author is silenced.
    pub fn replay<'a>(
        changes: impl IntoIterator<Item = (ChangeId, &'a Change)>,
        ctx: &Context<'_>,
    ) -> Option<Issue> {
        let mut changes = changes.into_iter();
        let (id, first) = changes.next()?;
        let Action::OpenIssue {
            title,
            body,
            labels,
        } = &first.action
        else {
            return None;
        };
        if ctx.is_silenced(&first.author) {
            return None;
        }
        let mut issue = Issue {
            id,
            author: first.author,
            opened: first.timestamp,
            updated: first.timestamp,
            title: title.clone(),
            state: Lifecycle::Open,
            labels: BTreeSet::new(),
            assignees: BTreeSet::new(),
            thread: Thread::default(),
            skipped: Vec::new(),
        };
        if ctx.is_maintainer(&first.author) {
            issue.labels.extend(labels.iter().cloned());
        }
        issue
            .thread
            .add(Comment {
                id,
                author: first.author,
                timestamp: first.timestamp,
                body: body.clone(),
                edited: false,
                reply_to: None,
            })
            .expect("the first comment answers nothing");
        for (cid, change) in changes {
            if ctx.is_silenced(&change.author) {
                issue.skipped.push((cid, "its author is hidden or blocked"));
                continue;
            }
            match issue.apply(cid, change, ctx) {
                Ok(()) => issue.updated = issue.updated.max(change.timestamp),
                Err(why) => issue.skipped.push((cid, why)),
            }
        }
        Some(issue)
    }

    fn apply(
        &mut self,
        id: ChangeId,
        change: &Change,
        ctx: &Context<'_>,
    ) -> Result<(), &'static str> {
        let by = &change.author;
        let maintainer = ctx.is_maintainer(by);
        let author_or_maintainer = maintainer || *by == self.author;
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
            Action::Retitle { title } if author_or_maintainer => {
                self.title = title.clone();
                Ok(())
            }
            Action::SetState {
                state: state @ (Lifecycle::Open | Lifecycle::Closed),
            } if author_or_maintainer => {
                self.state = *state;
                Ok(())
            }
            Action::SetState {
                state: Lifecycle::Draft,
            } => Err("an issue has no draft state"),
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
            Action::Retitle { .. } | Action::SetState { .. } => {
                Err("only the issue's author or a maintainer may do that")
            }
            _ => Err("not an issue action"),
        }
    }
}
