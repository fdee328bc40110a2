//! Syncing contributors' forks of a repository: a holder's forks newer than those held,
//! judged before anything is fetched (a blocked key, contributions off, limits), then the
//! objects of those kept in one pack, each fork checked again in storage.

use std::collections::BTreeSet;

use guts_protocol::forks::ForkSeen;
use guts_protocol::views::ViewAdded;
use guts_protocol::wire::MAX_KNOWN_FORKS;
use guts_protocol::{ObjectId, RepositoryId, SignedRefs};
use guts_storage::{ForksAccepted, StorageError};
use libp2p::PeerId;

use super::Engine;
use crate::connection_manager::Penalty;
use crate::network::RequestError;
use crate::sync::error::FetchError;

impl Engine {
    /// Takes from `peer` the forks of `id` newer than this node's that it would keep.
    pub(crate) async fn sync_forks(
        &self,
        id: RepositoryId,
        peer: PeerId,
    ) -> Result<ForksAccepted, FetchError> {
        let Some(policy) = self.contributions_policy(&id).await else {
            return Ok(ForksAccepted::default());
        };
        if policy.forks.max_forks == 0 {
            return Ok(ForksAccepted::default());
        }
        let (held, identity, closed) = self
            .inner
            .store
            .run(move |repos| {
                let identity = repos
                    .held(&id)?
                    .ok_or(StorageError::UnknownRepository(id))?
                    .into_state()
                    .identity;
                let closed = repos.contributions_closed(&id, &identity)?;
                Ok::<_, StorageError>((repos.forks(&id)?, identity, closed))
            })
            .await??;
        if closed {
            return Ok(ForksAccepted::default());
        }
        let mut known: Vec<ForkSeen> = held.seen();
        known.truncate(MAX_KNOWN_FORKS);
        let offered = match self.inner.client.get_forks(peer, id, known).await {
            Ok(forks) => forks,
            Err(RequestError::Misbehaved { penalty, reason }) => {
                self.inner.client.penalize(peer, penalty);
                return Err(FetchError::NoForks(reason));
            }
            Err(RequestError::Failed(reason)) => return Err(FetchError::NoForks(reason)),
        };
        // Judged as storage will, before fetching: only what would be kept is asked for.
        let mut trial = held;
        let mut wanted: Vec<SignedRefs> = Vec::new();
        for fork in offered {
            if policy.blocked.contains(fork.signed.signer.as_bytes()) {
                continue;
            }
            match trial.add(fork.clone(), &identity, &policy.forks) {
                Ok(ViewAdded::Unchanged | ViewAdded::Equivocation { kept: false }) => {}
                Ok(_) => wanted.push(fork),
                Err(e) if e.is_forged() => {
                    tracing::info!(repository = %id, %peer, "refused a fork: {e}");
                    self.inner.client.penalize(peer, Penalty::BadData);
                    return Err(FetchError::NoForks(e.to_string()));
                }
                Err(e) => tracing::debug!(repository = %id, %peer, "fork left out: {e}"),
            }
        }
        if wanted.is_empty() {
            return Ok(ForksAccepted::default());
        }
        let targets: Vec<ObjectId> = wanted
            .iter()
            .flat_map(|f| f.refs.values().copied())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (wants, haves) = self
            .inner
            .store
            .run(move |repos| {
                Ok::<_, StorageError>((repos.missing(&id, &targets)?, repos.haves(&id)?))
            })
            .await??;
        let accepted = if wants.is_empty() {
            self.inner
                .store
                .run(move |repos| repos.accept_forks(&id, wanted, None, &policy, &mut |_| {}))
                .await??
        } else {
            self.direct(peer).await?;
            let creator = *identity.genesis().maintainers[0].as_bytes();
            let result = self
                .fetch_pack(
                    id,
                    creator,
                    peer,
                    wants,
                    haves,
                    &|_| {},
                    |a: &ForksAccepted| a.stats,
                    move |repos, chunks, progress| {
                        repos.accept_forks(&id, wanted, Some(chunks), &policy, progress)
                    },
                )
                .await;
            match result {
                Ok(a) => a,
                Err(e) => {
                    if let Some(penalty) = e.penalty() {
                        tracing::info!(repository = %id, %peer, "refused forks: {e}");
                        self.inner.client.penalize(peer, penalty);
                    }
                    return Err(e);
                }
            }
        };
        for (key, sequence) in &accepted.equivocations {
            self.inner.ledger.observe_view(id, key, *sequence, peer);
        }
        for (key, why) in &accepted.left_out {
            tracing::info!(repository = %id, %peer, key = %hex::encode(key.as_bytes()), "fork left out: {why}");
        }
        if !accepted.taken.is_empty() {
            tracing::info!(repository = %id, %peer, forks = accepted.taken.len(), "took forks");
        }
        Ok(accepted)
    }
}
