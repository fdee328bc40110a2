//! What happened lately to the patches and issues a node holds: each change taken and
//! shown, as an event, oldest first. The changes are the record: nothing is kept beside
//! them. Times are their authors' clocks, which a node cannot check; the order within a
//! repository is the replay order every node shares.

use std::collections::{BTreeMap, BTreeSet};

use guts_api::collab::{EventReport, MAX_EVENTS};
use guts_cob::Kind;
use guts_protocol::RepositoryId;
use guts_storage::{Repositories, StorageError};

use crate::maintainers::hex_key;

/// Events of `ids` at or after `since` (seconds since the epoch), the latest
/// [`MAX_EVENTS`] of them, oldest first; `blocked` keys' changes left out.
pub(super) fn events(
    repos: &Repositories,
    ids: &[RepositoryId],
    since: u64,
    blocked: &BTreeSet<[u8; 32]>,
) -> Result<Vec<EventReport>, StorageError> {
    let mut out: Vec<(u64, String, usize, EventReport)> = Vec::new();
    for id in ids {
        let c = match repos.collaboration(id, blocked) {
            Ok(c) => c,
            // Followed, not fetched yet.
            Err(StorageError::UnknownRepository(_)) => continue,
            Err(e) => return Err(e),
        };
        // Only what is shown: objects whose authors are not silenced.
        let mut shown: BTreeMap<_, (Kind, &str)> = BTreeMap::new();
        for i in &c.issues {
            shown.insert(i.id, (Kind::Issue, i.title.as_str()));
        }
        for (p, _) in &c.patches {
            shown.insert(p.id, (Kind::Patch, p.title.as_str()));
        }
        for (n, change_id) in c.graph.order().into_iter().enumerate() {
            let Some(change) = c.graph.get(&change_id) else {
                continue;
            };
            let object = change.object_id(change_id);
            let Some((kind, title)) = shown.get(&object) else {
                continue;
            };
            if change.timestamp < since
                || blocked.contains(change.author.as_bytes())
                || c.hidden.contains(change.author.as_bytes())
            {
                continue;
            }
            out.push((
                change.timestamp,
                id.to_string(),
                n,
                EventReport {
                    repository: id.to_string(),
                    kind: kind.singular().to_owned(),
                    object: object.to_string(),
                    title: (*title).to_owned(),
                    change: change_id.to_string(),
                    action: change.action.name().to_owned(),
                    author: hex_key(&change.author),
                    timestamp: change.timestamp,
                },
            ));
        }
    }
    out.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    let skip = out.len().saturating_sub(MAX_EVENTS);
    Ok(out.into_iter().skip(skip).map(|(.., e)| e).collect())
}
