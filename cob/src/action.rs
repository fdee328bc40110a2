//! What a change does: one action on a patch, an issue or the moderation record.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::VerifyingKey;
use guts_protocol::{ObjectId, RefName};
use serde::{Deserialize, Serialize};

use crate::change::ChangeId;

/// Longest title, in bytes.
pub const MAX_TITLE: usize = 256;
/// Longest comment, description or review summary, in bytes.
pub const MAX_TEXT: usize = 32 * 1024;
/// Longest label, in bytes.
pub const MAX_LABEL: usize = 64;
/// Most labels or assignees one change adds or removes.
pub const MAX_LIST: usize = 32;
/// Most code comments in one review.
pub const MAX_CODE_COMMENTS: usize = 64;
/// Longest file path a code comment names, in bytes.
pub const MAX_PATH: usize = 4096;

/// The kinds of collaborative object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A proposed change to a branch, with revisions and reviews.
    Patch,
    /// A bug report or a discussion.
    Issue,
    /// The maintainers' record of hidden keys.
    Moderation,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Patch, Kind::Issue, Kind::Moderation];

    /// Its name in refs and in the API: `patches`, `issues`, `moderation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Patch => "patches",
            Kind::Issue => "issues",
            Kind::Moderation => "moderation",
        }
    }
}

impl Kind {
    /// One of its kind, in messages: `patch`, `issue`, `moderation record`.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Patch => "patch",
            Kind::Issue => "issue",
            Kind::Moderation => "moderation record",
        }
    }

    /// The same with its article: `a patch`, `an issue`, `the moderation record`.
    pub fn with_article(self) -> &'static str {
        match self {
            Kind::Patch => "a patch",
            Kind::Issue => "an issue",
            Kind::Moderation => "the moderation record",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown object kind {s:?}: use patches, issues or moderation"))
    }
}

/// A label: 1 to [`MAX_LABEL`] bytes, no whitespace or control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

impl Label {
    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Label {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_LABEL {
            return Err(format!("label {s:?}: use 1 to {MAX_LABEL} bytes"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "label {s:?}: no spaces or control characters (use '-' between words)"
            ));
        }
        Ok(Label(s.to_owned()))
    }
}

impl TryFrom<String> for Label {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Label> for String {
    fn from(l: Label) -> String {
        l.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a patch or an issue stands, as its author or a maintainer set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lifecycle {
    /// Open for discussion (a patch: for review and merge).
    Open,
    /// A patch not yet ready for review (patches only).
    Draft,
    /// Closed: an issue solved or dismissed, a patch withdrawn or refused.
    Closed,
}

/// A review's verdict on a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The reviewer would merge it.
    Accept,
    /// The reviewer would not.
    Reject,
}

/// A review comment on a file, and optionally one line of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeComment {
    /// The file, relative to the repository's root.
    pub path: String,
    /// The line (1-based) in the revision's version of the file.
    pub line: Option<u32>,
    /// What the reviewer says.
    pub body: String,
}

/// One action; which object kinds take it is in [`Action::fits`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Opens an issue; `body` is its first comment.
    OpenIssue {
        /// Its title.
        title: String,
        /// What it is about.
        body: String,
        /// Labels at opening (kept only if the author maintains the repository).
        labels: Vec<Label>,
    },
    /// Opens a patch: merge `head` into `target`; `description` is its first comment and
    /// the description of its first revision.
    OpenPatch {
        /// Its title.
        title: String,
        /// What it changes and why.
        description: String,
        /// The branch it is for.
        target: RefName,
        /// The commit of `target` it was made on.
        base: ObjectId,
        /// The commit to merge.
        head: ObjectId,
        /// Whether it opens as a draft.
        draft: bool,
    },
    /// Starts the maintainers' moderation record.
    OpenModeration,
    /// A comment, in reply to another one or not.
    Comment {
        /// What it says.
        body: String,
        /// The comment it answers.
        reply_to: Option<ChangeId>,
    },
    /// Replaces the text of one of the author's own comments.
    EditComment {
        /// The comment (the id of the change that made it).
        comment: ChangeId,
        /// Its new text.
        body: String,
    },
    /// A new title (the object's author or a maintainer).
    Retitle {
        /// The title.
        title: String,
    },
    /// Labels added and removed (maintainers).
    Label {
        /// Labels added.
        add: Vec<Label>,
        /// Labels removed.
        remove: Vec<Label>,
    },
    /// Assignees added and removed (maintainers).
    Assign {
        /// Keys added.
        add: Vec<VerifyingKey>,
        /// Keys removed.
        remove: Vec<VerifyingKey>,
    },
    /// Opens, closes, or makes a draft (the object's author or a maintainer; only the
    /// author makes a draft).
    SetState {
        /// The new state.
        state: Lifecycle,
    },
    /// A new revision of a patch (its author or a maintainer).
    Revise {
        /// What changed since the last revision.
        note: String,
        /// The commit of the target branch it is made on.
        base: ObjectId,
        /// The commit to merge.
        head: ObjectId,
    },
    /// A review of one revision; a reviewer's later review of the same revision replaces
    /// the earlier one.
    Review {
        /// The revision (the id of the change that made it; the patch's id for the first).
        revision: ChangeId,
        /// Accept or reject, or none for comments only.
        verdict: Option<Verdict>,
        /// What the reviewer says overall.
        summary: String,
        /// Comments on files and lines.
        comments: Vec<CodeComment>,
    },
    /// Hides a key's patches, issues and comments in this repository (maintainers).
    Hide {
        /// The key.
        key: VerifyingKey,
    },
    /// Undoes [`Action::Hide`] (maintainers).
    Unhide {
        /// The key.
        key: VerifyingKey,
    },
}

impl Action {
    /// The kind of object this action creates, if it opens one.
    pub fn opens(&self) -> Option<Kind> {
        match self {
            Action::OpenIssue { .. } => Some(Kind::Issue),
            Action::OpenPatch { .. } => Some(Kind::Patch),
            Action::OpenModeration => Some(Kind::Moderation),
            _ => None,
        }
    }

    /// Whether this action may follow in an object of `kind`.
    pub fn fits(&self, kind: Kind) -> bool {
        match self {
            Action::OpenIssue { .. } | Action::OpenPatch { .. } | Action::OpenModeration => false,
            Action::Comment { .. }
            | Action::EditComment { .. }
            | Action::Retitle { .. }
            | Action::Label { .. }
            | Action::Assign { .. }
            | Action::SetState { .. } => kind != Kind::Moderation,
            Action::Revise { .. } | Action::Review { .. } => kind == Kind::Patch,
            Action::Hide { .. } | Action::Unhide { .. } => kind == Kind::Moderation,
        }
    }

    /// The git commits the action names, which the change's commit has as extra parents
    /// so that they travel with it: a revision's head.
    pub fn related(&self) -> Option<ObjectId> {
        match self {
            Action::OpenPatch { head, .. } | Action::Revise { head, .. } => Some(*head),
            _ => None,
        }
    }

    /// A short name, for the change's commit message and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Action::OpenIssue { .. } => "open issue",
            Action::OpenPatch { .. } => "open patch",
            Action::OpenModeration => "open moderation",
            Action::Comment { .. } => "comment",
            Action::EditComment { .. } => "edit comment",
            Action::Retitle { .. } => "retitle",
            Action::Label { .. } => "label",
            Action::Assign { .. } => "assign",
            Action::SetState { .. } => "set state",
            Action::Revise { .. } => "revise",
            Action::Review { .. } => "review",
            Action::Hide { .. } => "hide",
            Action::Unhide { .. } => "unhide",
        }
    }

    /// Checks sizes and counts; says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let title = |t: &str| {
            if t.trim().is_empty() || t.len() > MAX_TITLE || t.contains(['\n', '\r']) {
                Err(format!(
                    "title of {} bytes: use one line of 1 to {MAX_TITLE} bytes",
                    t.len()
                ))
            } else {
                Ok(())
            }
        };
        let text = |what: &str, t: &str| {
            if t.len() > MAX_TEXT {
                Err(format!("{what} of {} bytes: at most {MAX_TEXT}", t.len()))
            } else {
                Ok(())
            }
        };
        let list = |what: &str, n: usize| {
            if n > MAX_LIST {
                Err(format!("{n} {what} in one change: at most {MAX_LIST}"))
            } else {
                Ok(())
            }
        };
        match self {
            Action::OpenIssue {
                title: t,
                body,
                labels,
            } => {
                title(t)?;
                text("body", body)?;
                list("labels", labels.len())
            }
            Action::OpenPatch {
                title: t,
                description,
                target,
                ..
            } => {
                title(t)?;
                text("description", description)?;
                if !target.as_str().starts_with("refs/heads/") {
                    return Err(format!("target {target} is not a branch"));
                }
                Ok(())
            }
            Action::OpenModeration | Action::SetState { .. } => Ok(()),
            Action::Hide { .. } | Action::Unhide { .. } => Ok(()),
            Action::Comment { body, .. } | Action::EditComment { body, .. } => {
                if body.trim().is_empty() {
                    return Err("empty comment".into());
                }
                text("comment", body)
            }
            Action::Retitle { title: t } => title(t),
            Action::Label { add, remove } => list("labels", add.len() + remove.len()),
            Action::Assign { add, remove } => list("assignees", add.len() + remove.len()),
            Action::Revise { note, .. } => text("note", note),
            Action::Review {
                summary, comments, ..
            } => {
                text("summary", summary)?;
                if comments.len() > MAX_CODE_COMMENTS {
                    return Err(format!(
                        "{} code comments in one review: at most {MAX_CODE_COMMENTS}",
                        comments.len()
                    ));
                }
                for c in comments {
                    if c.path.is_empty() || c.path.len() > MAX_PATH || c.path.contains('\0') {
                        return Err(format!(
                            "code comment on a path of {} bytes: use 1 to {MAX_PATH}, no NUL",
                            c.path.len()
                        ));
                    }
                    text("code comment", &c.body)?;
                }
                Ok(())
            }
        }
    }
}
