//! A change as the API asks for it (hex, names, prefixes) turned into the action it
//! signs, each bad value named.

use guts_api::collab::{ActionBody, MIN_PREFIX};
use guts_cob::{Action, ChangeId, CodeComment, Graph, Label, Lifecycle, Verdict};
use guts_protocol::{ObjectId, RefName};

use crate::error::NodeError;
use crate::maintainers::parse_key;

fn bad(message: impl Into<String>) -> NodeError {
    NodeError::BadRequest(message.into())
}

/// The change of `graph` that `text` names: its full id or a unique prefix of at least
/// [`MIN_PREFIX`] hex digits.
pub(crate) fn resolve(graph: &Graph, text: &str, what: &str) -> Result<ChangeId, NodeError> {
    let text = text.trim().to_ascii_lowercase();
    if text.len() < MIN_PREFIX || text.len() > 40 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "{what} {text:?}: use its id or at least {MIN_PREFIX} of its first hex digits"
        )));
    }
    let mut found = graph
        .iter()
        .map(|(id, _)| id)
        .filter(|id| id.to_string().starts_with(&text));
    match (found.next(), found.next()) {
        (Some(id), None) => Ok(id),
        (Some(_), Some(_)) => Err(bad(format!(
            "{what} {text:?} is ambiguous: give more of its digits"
        ))),
        (None, _) => Err(NodeError::NotFound(format!("no {what} {text} here"))),
    }
}

/// A full object id.
pub(crate) fn commit(text: &str) -> Result<ObjectId, NodeError> {
    text.trim()
        .parse()
        .map_err(|_| bad(format!("commit {text:?}: expected 40 hex digits")))
}

/// A branch: `main` or `refs/heads/main`.
pub(crate) fn branch(text: &str) -> Result<RefName, NodeError> {
    let full = if text.starts_with("refs/") {
        text.to_owned()
    } else {
        format!("refs/heads/{text}")
    };
    let name: RefName = full
        .parse()
        .map_err(|e| bad(format!("branch {text:?}: {e}")))?;
    if !name.as_str().starts_with("refs/heads/") {
        return Err(bad(format!("{text:?} is not a branch (refs/heads/...)")));
    }
    Ok(name)
}

fn labels(list: &[String]) -> Result<Vec<Label>, NodeError> {
    list.iter().map(|l| l.parse().map_err(bad)).collect()
}

fn keys(list: &[String]) -> Result<Vec<ed25519_dalek::VerifyingKey>, NodeError> {
    list.iter().map(|k| parse_key(k).map_err(bad)).collect()
}

/// What a patch is opened or revised with, besides the action: the commit, and the
/// branch whose tip its base is taken from.
pub(crate) struct Revision {
    /// The commit proposed.
    pub head: ObjectId,
    /// The branch it is for (`None`: the repository's HEAD branch, or the patch's).
    pub target: Option<RefName>,
}

/// The action `body` asks for, about the object `object` (resolved) of `graph`; a patch
/// or revision also gives its commit, whose base the caller fills in.
pub(crate) fn action(
    body: ActionBody,
    graph: &Graph,
) -> Result<(Action, Option<Revision>), NodeError> {
    let resolve_opt = |text: Option<String>, what| -> Result<Option<ChangeId>, NodeError> {
        text.map(|t| resolve(graph, &t, what)).transpose()
    };
    let placeholder = ObjectId([0; 20]);
    Ok(match body {
        ActionBody::OpenIssue {
            title,
            body,
            labels: l,
        } => (
            Action::OpenIssue {
                title,
                body,
                labels: labels(&l)?,
            },
            None,
        ),
        ActionBody::OpenPatch {
            title,
            description,
            target,
            head,
            draft,
        } => {
            let head = commit(&head)?;
            let target = target.as_deref().map(branch).transpose()?;
            (
                Action::OpenPatch {
                    title,
                    description,
                    // Filled in by the caller once the repository's HEAD is known.
                    target: target
                        .clone()
                        .unwrap_or_else(|| "refs/heads/main".parse().expect("a valid name")),
                    base: placeholder,
                    head,
                    draft,
                },
                Some(Revision { head, target }),
            )
        }
        ActionBody::Comment { body, reply_to } => (
            Action::Comment {
                body,
                reply_to: resolve_opt(reply_to, "comment")?,
            },
            None,
        ),
        ActionBody::EditComment { comment, body } => (
            Action::EditComment {
                comment: resolve(graph, &comment, "comment")?,
                body,
            },
            None,
        ),
        ActionBody::Retitle { title } => (Action::Retitle { title }, None),
        ActionBody::Label { add, remove } => (
            Action::Label {
                add: labels(&add)?,
                remove: labels(&remove)?,
            },
            None,
        ),
        ActionBody::Assign { add, remove } => (
            Action::Assign {
                add: keys(&add)?,
                remove: keys(&remove)?,
            },
            None,
        ),
        ActionBody::State { state } => {
            let state = match state.as_str() {
                "open" => Lifecycle::Open,
                "closed" => Lifecycle::Closed,
                "draft" => Lifecycle::Draft,
                other => {
                    return Err(bad(format!("state {other:?}: use open, closed or draft")));
                }
            };
            (Action::SetState { state }, None)
        }
        ActionBody::Revise { note, head } => {
            let head = commit(&head)?;
            (
                Action::Revise {
                    note,
                    base: placeholder,
                    head,
                },
                Some(Revision { head, target: None }),
            )
        }
        ActionBody::Review {
            revision,
            verdict,
            summary,
            comments,
        } => {
            let verdict = match verdict.as_deref() {
                None => None,
                Some("accept") => Some(Verdict::Accept),
                Some("reject") => Some(Verdict::Reject),
                Some(other) => {
                    return Err(bad(format!("verdict {other:?}: use accept or reject")));
                }
            };
            (
                Action::Review {
                    // The latest revision is filled in by the caller.
                    revision: resolve_opt(revision, "revision")?.unwrap_or(placeholder),
                    verdict,
                    summary,
                    comments: comments
                        .into_iter()
                        .map(|c| CodeComment {
                            path: c.path,
                            line: c.line,
                            body: c.body,
                        })
                        .collect(),
                },
                None,
            )
        }
        ActionBody::Hide { key } => (
            Action::Hide {
                key: parse_key(&key).map_err(bad)?,
            },
            None,
        ),
        ActionBody::Unhide { key } => (
            Action::Unhide {
                key: parse_key(&key).map_err(bad)?,
            },
            None,
        ),
        // Contributions go off by hiding the key that stands for everyone (see
        // `guts_cob::everyone`).
        ActionBody::SetContributions { open: false } => (
            Action::Hide {
                key: guts_cob::everyone(),
            },
            None,
        ),
        ActionBody::SetContributions { open: true } => (
            Action::Unhide {
                key: guts_cob::everyone(),
            },
            None,
        ),
    })
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use guts_cob::Change;
    use guts_protocol::RepositoryId;

    use super::*;

    fn graph_of(ids: &[[u8; 20]]) -> Graph {
        let author = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let mut g = Graph::new();
        for id in ids {
            g.insert(
                ObjectId(*id),
                Change {
                    repository: RepositoryId::from_bytes([9; 20]),
                    object: None,
                    parents: vec![],
                    author,
                    timestamp: 0,
                    action: Action::OpenIssue {
                        title: "t".into(),
                        body: String::new(),
                        labels: vec![],
                    },
                },
            );
        }
        g
    }

    #[test]
    fn objects_resolve_from_unique_prefixes_and_bad_ones_are_named() {
        let mut a = [0xab; 20];
        a[5] = 0x01;
        let mut b = [0xab; 20];
        b[5] = 0x02;
        let g = graph_of(&[a, b]);
        let full = ObjectId(a).to_string();
        assert_eq!(resolve(&g, &full, "issue").unwrap(), ObjectId(a));
        assert_eq!(resolve(&g, &full[..12], "issue").unwrap(), ObjectId(a));
        assert_eq!(
            resolve(&g, &full[..12].to_uppercase(), "issue").unwrap(),
            ObjectId(a)
        );
        let ambiguous = resolve(&g, &full[..8], "issue").unwrap_err().to_string();
        assert!(ambiguous.contains("ambiguous"), "{ambiguous}");
        let short = resolve(&g, "abab", "issue").unwrap_err().to_string();
        assert!(short.contains("\"abab\"") && short.contains("7"), "{short}");
        let none = resolve(&g, "0123456789", "patch").unwrap_err();
        assert!(matches!(none, NodeError::NotFound(_)), "{none}");
    }

    #[test]
    fn values_from_the_api_are_checked_and_named() {
        let g = Graph::new();
        let bad_label = action(
            ActionBody::Label {
                add: vec!["two words".into()],
                remove: vec![],
            },
            &g,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(bad_label.contains("two words"), "{bad_label}");
        let bad_state = action(
            ActionBody::State {
                state: "merged".into(),
            },
            &g,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(bad_state.contains("\"merged\""), "{bad_state}");
        let bad_head = action(
            ActionBody::Revise {
                note: String::new(),
                head: "HEAD".into(),
            },
            &g,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(bad_head.contains("\"HEAD\""), "{bad_head}");
        assert_eq!(branch("main").unwrap().as_str(), "refs/heads/main");
        assert!(branch("refs/tags/v1").is_err());
    }
}
