//! Patches and issues in the API: what `GET /api/v1/repos/{id}/issues` and `/patches`
//! show, and the one endpoint that makes changes, `POST /api/v1/repos/{id}/changes`.
//!
//! Keys and ids are hex; an object may be named by a unique prefix of at least
//! [`MIN_PREFIX`] hex digits, as git's abbreviated commit ids.

use serde::{Deserialize, Serialize};

/// Shortest prefix of an object id the node resolves.
pub const MIN_PREFIX: usize = 7;

/// One comment of a discussion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentReport {
    /// Its id (the change that made it).
    pub id: String,
    /// Its author's key.
    pub author: String,
    /// Seconds since the epoch, by the author's clock.
    pub timestamp: u64,
    /// Its text, as its author last edited it.
    pub body: String,
    /// Whether its author edited it.
    pub edited: bool,
    /// The comment it answers.
    pub reply_to: Option<String>,
}

/// An issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueReport {
    /// Its id (the change that opened it).
    pub id: String,
    /// Who opened it.
    pub author: String,
    /// When (seconds since the epoch, by the author's clock).
    pub opened: u64,
    /// The latest of its changes' timestamps.
    pub updated: u64,
    /// Its title.
    pub title: String,
    /// `open` or `closed`.
    pub state: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its assignees' keys.
    pub assignees: Vec<String>,
    /// The discussion; the first comment is the issue's body.
    pub comments: Vec<CommentReport>,
}

/// A review comment on a file (and a line of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeCommentBody {
    /// The file, from the repository's root.
    pub path: String,
    /// The line, 1-based.
    #[serde(default)]
    pub line: Option<u32>,
    /// What the reviewer says.
    pub body: String,
}

/// One review of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewReport {
    /// The change that made it.
    pub id: String,
    /// The reviewer's key.
    pub author: String,
    /// When.
    pub timestamp: u64,
    /// `accept`, `reject`, or none (comments only).
    pub verdict: Option<String>,
    /// What the reviewer says overall.
    pub summary: String,
    /// Comments on files and lines.
    pub comments: Vec<CodeCommentBody>,
}

/// One revision of a patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionReport {
    /// Its id (the patch's id for the first).
    pub id: String,
    /// Who pushed it.
    pub author: String,
    /// When.
    pub timestamp: u64,
    /// What changed since the revision before.
    pub note: String,
    /// The target's commit it was made on.
    pub base: String,
    /// The commit proposed.
    pub head: String,
    /// Reviews: the latest of each reviewer.
    pub reviews: Vec<ReviewReport>,
}

/// A patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchReport {
    /// Its id (the change that opened it).
    pub id: String,
    /// Who opened it.
    pub author: String,
    /// When.
    pub opened: u64,
    /// The latest of its changes' timestamps.
    pub updated: u64,
    /// Its title.
    pub title: String,
    /// The branch it is for (`refs/heads/...`).
    pub target: String,
    /// `open`, `draft`, `closed` or `merged`.
    pub state: String,
    /// The revision merged, when merged.
    pub merged_revision: Option<String>,
    /// Its revisions, oldest first.
    pub revisions: Vec<RevisionReport>,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its assignees' keys.
    pub assignees: Vec<String>,
    /// The discussion; the first comment is the description.
    pub comments: Vec<CommentReport>,
}

/// What a change does, in `POST /api/v1/repos/{id}/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionBody {
    /// Opens an issue.
    OpenIssue {
        /// One line.
        title: String,
        /// What it is about.
        #[serde(default)]
        body: String,
        /// Labels (kept if the author maintains the repository).
        #[serde(default)]
        labels: Vec<String>,
    },
    /// Opens a patch for the commit `head`, pushed into `area` (see
    /// [`ChangeRequest::area`]) unless the node holds it.
    OpenPatch {
        /// One line.
        title: String,
        /// What it changes and why.
        #[serde(default)]
        description: String,
        /// The branch it is for (a name or `refs/heads/...`); the repository's HEAD
        /// branch when absent.
        #[serde(default)]
        target: Option<String>,
        /// The commit to merge (full hex).
        head: String,
        /// Whether it opens as a draft.
        #[serde(default)]
        draft: bool,
    },
    /// A comment.
    Comment {
        /// What it says.
        body: String,
        /// The comment it answers.
        #[serde(default)]
        reply_to: Option<String>,
    },
    /// A new text for one of this node's key's comments.
    EditComment {
        /// The comment.
        comment: String,
        /// Its new text.
        body: String,
    },
    /// A new title.
    Retitle {
        /// One line.
        title: String,
    },
    /// Labels added and removed (maintainers).
    Label {
        /// Added.
        #[serde(default)]
        add: Vec<String>,
        /// Removed.
        #[serde(default)]
        remove: Vec<String>,
    },
    /// Assignees (keys) added and removed (maintainers).
    Assign {
        /// Added.
        #[serde(default)]
        add: Vec<String>,
        /// Removed.
        #[serde(default)]
        remove: Vec<String>,
    },
    /// `open`, `closed`, or `draft` (a patch's author).
    State {
        /// The new state.
        state: String,
    },
    /// A new revision of a patch: the commit `head`, pushed into the area.
    Revise {
        /// What changed since the last revision.
        #[serde(default)]
        note: String,
        /// The commit (full hex).
        head: String,
    },
    /// A review of a revision (the latest when absent).
    Review {
        /// The revision.
        #[serde(default)]
        revision: Option<String>,
        /// `accept`, `reject`, or none.
        #[serde(default)]
        verdict: Option<String>,
        /// What the reviewer says overall.
        #[serde(default)]
        summary: String,
        /// Comments on files and lines.
        #[serde(default)]
        comments: Vec<CodeCommentBody>,
    },
    /// Hides a key's patches, issues and comments in the repository (maintainers).
    Hide {
        /// The key.
        key: String,
    },
    /// Undoes a hide.
    Unhide {
        /// The key.
        key: String,
    },
    /// Turns contributions on or off (maintainers): while off, only the maintainers'
    /// patches, issues and forks are kept and shown.
    SetContributions {
        /// Whether anyone may contribute.
        open: bool,
    },
}

/// `POST /api/v1/repos/{id}/changes`: one change, signed with the node's key, stored
/// and announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// The patch or issue it is about (an id or a unique prefix); none for one that opens
    /// an object, or for moderation.
    #[serde(default)]
    pub object: Option<String>,
    /// The push area holding a patch's commits (from
    /// `POST /api/v1/repos/{id}/contribution-area`), for `open_patch` and `revise`.
    #[serde(default)]
    pub area: Option<String>,
    /// What it does.
    #[serde(flatten)]
    pub action: ActionBody,
}

/// The answer to a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeResponse {
    /// The change made.
    pub change: String,
    /// The patch or issue it belongs to (itself, for one that opens an object).
    pub object: String,
}

/// One thing that happened to a patch or an issue, in `GET /api/v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventReport {
    /// The repository.
    pub repository: String,
    /// `issue` or `patch`.
    pub kind: String,
    /// The issue or patch.
    pub object: String,
    /// Its title now.
    pub title: String,
    /// The change.
    pub change: String,
    /// What it did: `open issue`, `open patch`, `comment`, `revise`, `review`, ...
    pub action: String,
    /// Its author's key.
    pub author: String,
    /// When, by the author's clock (seconds since the epoch).
    pub timestamp: u64,
}

/// Most events one answer lists (the latest).
pub const MAX_EVENTS: usize = 1000;
