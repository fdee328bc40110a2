//! Syncing a repository's patches, issues and moderation: a holder's tips, those this
//! node lacks and would keep fetched in one pack, each change checked again in storage.

use guts_protocol::wire::ChangeTip;
use guts_protocol::{ObjectId, RepositoryId};
use guts_storage::{ChangesAccepted, StorageError};
use libp2p::PeerId;

use super::Engine;
use crate::network::RequestError;
use crate::sync::error::FetchError;

impl Engine {
    /// Takes from `peer` the changes of `id` it holds that this node lacks, given its
    /// tips (from an announcement) or asking it for them. Tips by keys this node blocks
    /// are not asked for. Returns what storage took.
    pub(crate) async fn sync_changes(
        &self,
        id: RepositoryId,
        peer: PeerId,
        tips: Option<Vec<ChangeTip>>,
    ) -> Result<ChangesAccepted, FetchError> {
        let tips = match tips {
            Some(tips) => tips,
            None => match self.inner.client.get_changes(peer, id).await {
                Ok(tips) => tips,
                Err(RequestError::Misbehaved { penalty, reason }) => {
                    self.inner.client.penalize(peer, penalty);
                    return Err(FetchError::NoTips(reason));
                }
                Err(RequestError::Failed(reason)) => return Err(FetchError::NoTips(reason)),
            },
        };
        let Some(policy) = self.contributions_policy(&id).await else {
            return Ok(ChangesAccepted::default());
        };
        let offered: Vec<ObjectId> = tips
            .iter()
            .filter(|t| !policy.blocked.contains(t.author.as_bytes()))
            .map(|t| t.change)
            .collect();
        let (wants, haves, maintainers, creator) = self
            .inner
            .store
            .run(move |repos| {
                let held = repos
                    .held(&id)?
                    .ok_or(StorageError::UnknownRepository(id))?
                    .into_state();
                let maintainers = held.identity.current().maintainers.clone();
                let creator = *held.identity.genesis().maintainers[0].as_bytes();
                Ok::<_, StorageError>((
                    repos.missing(&id, &offered)?,
                    repos.haves(&id)?,
                    maintainers,
                    creator,
                ))
            })
            .await??;
        if wants.is_empty() {
            return Ok(ChangesAccepted::default());
        }
        let offered = wants.clone();
        self.direct(peer).await?;
        let result = self
            .fetch_pack(
                id,
                creator,
                peer,
                wants,
                haves,
                &|_| {},
                |a: &ChangesAccepted| a.stats,
                move |repos, chunks, progress| {
                    repos.accept_changes(
                        &id,
                        &offered,
                        Some(chunks),
                        &policy,
                        &|k| maintainers.contains(k),
                        progress,
                    )
                },
            )
            .await;
        let accepted = match result {
            Ok(a) => a,
            Err(e) => {
                if let Some(penalty) = e.penalty() {
                    tracing::info!(repository = %id, %peer, "refused changes: {e}");
                    self.inner.client.penalize(peer, penalty);
                }
                return Err(e);
            }
        };
        for (change, why) in &accepted.left_out {
            tracing::info!(repository = %id, %peer, %change, "change left out: {why}");
        }
        if !accepted.taken.is_empty() {
            tracing::info!(repository = %id, %peer, changes = accepted.taken.len(), objects = accepted.objects.len(), "took changes");
        }
        Ok(accepted)
    }
}
