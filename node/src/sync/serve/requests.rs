//! GetRefs and ListRepositories: answered from the store.

use guts_protocol::RepositoryId;
use guts_protocol::wire::{MAX_LISTED_REPOSITORIES, SyncRequest, SyncResponse};
use guts_storage::{Held, Repositories};

use super::Server;

impl Server {
    /// The answer to a sync request.
    pub(super) async fn answer(&self, request: SyncRequest) -> SyncResponse {
        self.store
            .run(move |repos| answer(repos, request, MAX_LISTED_REPOSITORIES))
            .await
            .unwrap_or_else(|e| {
                tracing::error!("answering a sync request failed: {e}");
                SyncResponse::NotFound
            })
    }
}

/// The answer to `request` from what `repos` holds, listing at most `max_listed` ids.
fn answer(repos: &Repositories, request: SyncRequest, max_listed: usize) -> SyncResponse {
    match request {
        SyncRequest::GetRefs { repository } => match repos.held(&repository) {
            Ok(Some(Held::Owner(refs))) => SyncResponse::Refs(Box::new(refs)),
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
            ids.truncate(max_listed);
            SyncResponse::Repositories(ids)
        }
    }
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
        );
        assert_eq!(held, SyncResponse::Refs(Box::new(snapshot)));
        let unknown = answer(
            &repos,
            SyncRequest::GetRefs {
                repository: RepositoryId::from_bytes([1; 20]),
            },
            MAX_LISTED_REPOSITORIES,
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
            match answer(&repos, SyncRequest::ListRepositories, cap) {
                SyncResponse::Repositories(ids) => assert_eq!(ids.len(), expected, "cap {cap}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
