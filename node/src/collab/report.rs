//! Issues and patches as the API shows them.

use guts_api::collab::{
    CodeCommentBody, CommentReport, IssueReport, PatchReport, ReviewReport, RevisionReport,
};
use guts_cob::{Issue, Lifecycle, Patch, PatchState, Thread, Verdict};

use crate::maintainers::hex_key;

fn key_hex(bytes: &[u8; 32]) -> String {
    hex::encode(bytes)
}

fn comments(thread: &Thread) -> Vec<CommentReport> {
    thread
        .comments
        .iter()
        .map(|c| CommentReport {
            id: c.id.to_string(),
            author: hex_key(&c.author),
            timestamp: c.timestamp,
            body: c.body.clone(),
            edited: c.edited,
            reply_to: c.reply_to.map(|r| r.to_string()),
        })
        .collect()
}

fn lifecycle(state: Lifecycle) -> &'static str {
    match state {
        Lifecycle::Open => "open",
        Lifecycle::Draft => "draft",
        Lifecycle::Closed => "closed",
    }
}

/// An issue.
pub(super) fn issue(i: &Issue) -> IssueReport {
    IssueReport {
        id: i.id.to_string(),
        author: hex_key(&i.author),
        opened: i.opened,
        updated: i.updated,
        title: i.title.clone(),
        state: lifecycle(i.state).to_owned(),
        labels: i.labels.iter().map(|l| l.to_string()).collect(),
        assignees: i.assignees.iter().map(key_hex).collect(),
        comments: comments(&i.thread),
    }
}

/// A patch in `state`.
pub(super) fn patch(p: &Patch, state: &PatchState) -> PatchReport {
    let (state, merged_revision) = match state {
        PatchState::Merged { revision, .. } => ("merged", Some(revision.to_string())),
        PatchState::Open => ("open", None),
        PatchState::Draft => ("draft", None),
        PatchState::Closed => ("closed", None),
    };
    PatchReport {
        id: p.id.to_string(),
        author: hex_key(&p.author),
        opened: p.opened,
        updated: p.updated,
        title: p.title.clone(),
        target: p.target.to_string(),
        state: state.to_owned(),
        merged_revision,
        revisions: p
            .revisions
            .iter()
            .map(|r| RevisionReport {
                id: r.id.to_string(),
                author: hex_key(&r.author),
                timestamp: r.timestamp,
                note: r.note.clone(),
                base: r.base.to_string(),
                head: r.head.to_string(),
                reviews: r
                    .reviews
                    .values()
                    .map(|v| ReviewReport {
                        id: v.id.to_string(),
                        author: hex_key(&v.author),
                        timestamp: v.timestamp,
                        verdict: v.verdict.map(|v| {
                            match v {
                                Verdict::Accept => "accept",
                                Verdict::Reject => "reject",
                            }
                            .to_owned()
                        }),
                        summary: v.summary.clone(),
                        comments: v
                            .comments
                            .iter()
                            .map(|c| CodeCommentBody {
                                path: c.path.clone(),
                                line: c.line,
                                body: c.body.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
        labels: p.labels.iter().map(|l| l.to_string()).collect(),
        assignees: p.assignees.iter().map(key_hex).collect(),
        comments: comments(&p.thread),
    }
}
