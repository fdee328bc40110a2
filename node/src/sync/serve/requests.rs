//! GetRefs, ListRepositories, GetChanges and GetForks: answered from the store.

use std::collections::BTreeSet;

use ed25519_dalek::VerifyingKey;
use guts_protocol::RepositoryId;
use guts_protocol::wire::{
    self, MAX_CHANGE_TIPS, MAX_KNOWN_FORKS, MAX_LISTED_REPOSITORIES, MAX_RESPONSE_SIZE,
    SyncRequest, SyncResponse,
};
use guts_storage::{Held, Repositories};
use libp2p::PeerId;

use crate::identity::key_of_peer;

use super::Server;

impl Server {
    /// The answer to a sync request from `peer`.
    pub(super) async fn answer(&self, peer: PeerId, request: SyncRequest) -> SyncResponse {
        let requester = key_of_peer(&peer);
        if let SyncRequest::Notify { repository } = request {
            self.noted(peer, requester, repository).await;
            return SyncResponse::Noted;
        }
        let blocked = self.engine.change_policy().blocked.clone();
        self.store
            .run(move |repos| {
                answer(
                    repos,
                    request,
                    MAX_LISTED_REPOSITORIES,
                    &blocked,
                    requester.as_ref(),
                )
            })
            .await
            .unwrap_or_else(|e| {
                tracing::error!("answering a sync request failed: {e}");
                SyncResponse::NotFound
            })
    }
}

impl Server {
    /// A holder told us (directly: private repositories are never gossiped) that it has
    /// news of `id`: fetched from it if this node keeps `id`. Answered alike whatever
    /// this node does, and ignored from a peer that may not see what this node holds of
    /// `id`, so a notice learns nothing.
    async fn noted(&self, peer: PeerId, requester: Option<VerifyingKey>, id: RepositoryId) {
        let visible = self
            .store
            .run(move |repos| repos.visible_to(&id, requester.as_ref()))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if visible && self.engine.wants(&id, &[]).await {
            self.engine.trigger_to(id, Some(peer), 0);
        }
    }
}

/// The answer to `request` from what `repos` holds, listing at most `max_listed` ids, and
/// nothing of a key in `blocked` (held from before it was blocked): none of its changes,
/// not even as another's ancestors, and not its fork. Of a private repository, nothing to
/// a `requester` it does not allow: "not found", as for one this node does not hold. Of
/// an encrypted one, no changes or forks (they are not sealed) to a seeder.
fn answer(
    repos: &Repositories,
    request: SyncRequest,
    max_listed: usize,
    blocked: &BTreeSet<[u8; 32]>,
    requester: Option<&VerifyingKey>,
) -> SyncResponse {
    let hidden = |id: &RepositoryId| !repos.visible_to(id, requester).unwrap_or(false);
    match request {
        SyncRequest::GetRefs { repository }
        | SyncRequest::GetChanges { repository }
        | SyncRequest::GetForks { repository, .. }
            if hidden(&repository) =>
        {
            SyncResponse::NotFound
        }
        SyncRequest::GetChanges { repository }
            if !repos.readable_by(&repository, requester).unwrap_or(false) =>
        {
            SyncResponse::Changes(Vec::new())
        }
        SyncRequest::GetForks { repository, .. }
            if !repos.readable_by(&repository, requester).unwrap_or(false) =>
        {
            SyncResponse::Forks(Vec::new())
        }
        SyncRequest::GetRefs { repository } => match repos.held(&repository) {
            Ok(Some(Held::Owner(refs))) => SyncResponse::Refs(Box::new(refs)),
            Ok(Some(Held::Shared(state))) if state.identity.ever_private() => {
                SyncResponse::StateV2(Box::new((&state.shared()).into()))
            }
            Ok(Some(Held::Shared(state))) => SyncResponse::State(Box::new(state.shared())),
            Ok(None) => SyncResponse::NotFound,
            Err(e) => {
                tracing::error!("{e}");
                SyncResponse::NotFound
            }
        },
        SyncRequest::ListRepositories => {
            let mut ids: Vec<RepositoryId> = repos.list().unwrap_or_else(|e| {
                tracing::error!("{e}");
                Vec::new()
            });
            ids.retain(|id| !hidden(id));
            ids.truncate(max_listed);
            SyncResponse::Repositories(ids)
        }
        SyncRequest::GetChanges { repository } => match repos.held(&repository) {
            Ok(Some(_)) => match repos.change_tips_without(&repository, blocked) {
                Ok(mut tips) => {
                    tips.truncate(MAX_CHANGE_TIPS);
                    SyncResponse::Changes(tips)
                }
                Err(e) => {
                    tracing::error!("{e}");
                    SyncResponse::NotFound
                }
            },
            Ok(None) => SyncResponse::NotFound,
            Err(e) => {
                tracing::error!("{e}");
                SyncResponse::NotFound
            }
        },
        // Answered by the server itself (it needs the sync engine).
        SyncRequest::Notify { .. } => SyncResponse::Noted,
        SyncRequest::GetForks { repository, known } => match repos.held(&repository) {
            Ok(Some(_)) => match repos.forks(&repository) {
                Ok(forks) => SyncResponse::Forks(newer_forks(forks, &known, blocked)),
                Err(e) => {
                    tracing::error!("{e}");
                    SyncResponse::NotFound
                }
            },
            Ok(None) => SyncResponse::NotFound,
            Err(e) => {
                tracing::error!("{e}");
                SyncResponse::NotFound
            }
        },
    }
}

/// The forks of `forks` newer than the requester's `known` ones, of keys not `blocked`,
/// as many as fit one answer.
fn newer_forks(
    forks: guts_protocol::Forks,
    known: &[guts_protocol::forks::ForkSeen],
    blocked: &BTreeSet<[u8; 32]>,
) -> Vec<guts_protocol::SignedRefs> {
    let known: std::collections::HashMap<[u8; 32], u64> = known
        .iter()
        .take(MAX_KNOWN_FORKS)
        .map(|k| (*k.key.as_bytes(), k.sequence))
        .collect();
    let mut out = Vec::new();
    // Half the answer's limit: the rest is the encoding's slack and the other fields.
    let mut room = MAX_RESPONSE_SIZE / 2;
    for fork in forks.iter() {
        let key = *fork.signed.signer.as_bytes();
        if blocked.contains(&key) || known.get(&key).is_some_and(|s| *s >= fork.sequence()) {
            continue;
        }
        let size = wire::encode(fork).len();
        if size > room || out.len() >= guts_protocol::forks::MAX_FORKS {
            break;
        }
        room -= size;
        out.push(fork.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::serve::test_support::store_with_one_repository;
    use ed25519_dalek::SigningKey;

    #[test]
    fn get_refs_answers_the_held_snapshot_or_not_found() {
        let (_dir, repos, snapshot) = store_with_one_repository();
        let held = answer(
            &repos,
            SyncRequest::GetRefs {
                repository: snapshot.repository(),
            },
            MAX_LISTED_REPOSITORIES,
            &BTreeSet::new(),
            None,
        );
        assert_eq!(held, SyncResponse::Refs(Box::new(snapshot)));
        let unknown = answer(
            &repos,
            SyncRequest::GetRefs {
                repository: RepositoryId::from_bytes([1; 20]),
            },
            MAX_LISTED_REPOSITORIES,
            &BTreeSet::new(),
            None,
        );
        assert_eq!(unknown, SyncResponse::NotFound);
    }

    #[test]
    fn a_repository_list_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let repos = Repositories::new(dir.path());
        let key = SigningKey::from_bytes(&[9; 32]);
        for i in 0..5 {
            repos.init(format!("r{i}").parse().unwrap(), &key).unwrap();
        }
        for (cap, expected) in [(3, 3), (5, 5), (MAX_LISTED_REPOSITORIES, 5)] {
            match answer(
                &repos,
                SyncRequest::ListRepositories,
                cap,
                &BTreeSet::new(),
                None,
            ) {
                SyncResponse::Repositories(ids) => assert_eq!(ids.len(), expected, "cap {cap}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn get_changes_answers_each_tip_with_its_object_and_author() {
        let (_dir, repos, snapshot) = store_with_one_repository();
        let id = snapshot.repository();
        let ask = SyncRequest::GetChanges { repository: id };
        assert_eq!(
            answer(
                &repos,
                ask.clone(),
                MAX_LISTED_REPOSITORIES,
                &BTreeSet::new(),
                None
            ),
            SyncResponse::Changes(vec![])
        );
        let author = SigningKey::from_bytes(&[4; 32]);
        let open = guts_cob::SignedChange::sign(
            guts_cob::Change {
                repository: id,
                object: None,
                parents: vec![],
                author: author.verifying_key(),
                timestamp: 1,
                action: guts_cob::Action::OpenIssue {
                    title: "t".into(),
                    body: "b".into(),
                    labels: vec![],
                },
            },
            &author,
        )
        .unwrap();
        let change = repos.write_change(&id, &open).unwrap();
        let blocked = [*author.verifying_key().as_bytes()].into();
        assert_eq!(
            answer(&repos, ask.clone(), MAX_LISTED_REPOSITORIES, &blocked, None),
            SyncResponse::Changes(vec![]),
            "a blocked key's tips are not served"
        );
        let SyncResponse::Changes(tips) =
            answer(&repos, ask, MAX_LISTED_REPOSITORIES, &BTreeSet::new(), None)
        else {
            panic!("changes expected");
        };
        assert_eq!(tips.len(), 1);
        assert_eq!((tips[0].change, tips[0].object), (change, change));
        assert_eq!(tips[0].author, author.verifying_key());
        // A reply by someone else to the blocked key's issue does not carry it either,
        // while that someone's own issue is offered.
        let other = SigningKey::from_bytes(&[5; 32]);
        let sign = |object: Option<guts_cob::ChangeId>, action| {
            guts_cob::SignedChange::sign(
                guts_cob::Change {
                    repository: id,
                    object,
                    parents: object.into_iter().collect(),
                    author: other.verifying_key(),
                    timestamp: 2,
                    action,
                },
                &other,
            )
            .unwrap()
        };
        repos
            .write_change(
                &id,
                &sign(
                    Some(change),
                    guts_cob::Action::Comment {
                        body: "me too".into(),
                        reply_to: None,
                    },
                ),
            )
            .unwrap();
        let own = repos
            .write_change(
                &id,
                &sign(
                    None,
                    guts_cob::Action::OpenIssue {
                        title: "mine".into(),
                        body: "b".into(),
                        labels: vec![],
                    },
                ),
            )
            .unwrap();
        let SyncResponse::Changes(tips) = answer(
            &repos,
            SyncRequest::GetChanges { repository: id },
            MAX_LISTED_REPOSITORIES,
            &blocked,
            None,
        ) else {
            panic!("changes expected");
        };
        assert_eq!(tips.iter().map(|t| t.change).collect::<Vec<_>>(), vec![own]);
        let unknown = SyncRequest::GetChanges {
            repository: RepositoryId::from_bytes([1; 20]),
        };
        assert_eq!(
            answer(
                &repos,
                unknown,
                MAX_LISTED_REPOSITORIES,
                &BTreeSet::new(),
                None
            ),
            SyncResponse::NotFound
        );
    }
}
