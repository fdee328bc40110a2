//! Syncing a repository with maintainers: each holder offers its identity versions and
//! views; whatever one offers beyond what is held is fetched from it and taken in storage,
//! which checks every version and view again with the objects.

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use guts_api::{SyncOutcome, SyncProgress};
use guts_protocol::repository::StateError;
use guts_protocol::wire::SharedAnnouncement;
use guts_protocol::{ObjectId, RepositoryId, RepositoryState, SharedState};
use guts_storage::{Held, SharedAccepted, StorageError};
use libp2p::PeerId;

use super::Engine;
use super::policy::{self, RefsRound};
use crate::connection_manager::Penalty;
use crate::sync::error::{FetchError, SyncError};

/// The holders a sync has asked, in order and as a set.
pub(super) struct Asked {
    pub(super) peers: Vec<PeerId>,
    pub(super) set: HashSet<PeerId>,
}

impl Engine {
    /// The rest of a sync once holders have answered, for a repository that has
    /// maintainers here or on offer. Each offer is judged against what is held (no I/O);
    /// those that bring something are fetched, best holder first. When the holders known
    /// bring nothing, the DHT is asked for more, once, as for a single owner's repository:
    /// after a partition, news may sit with a holder no one has heard from.
    pub(super) async fn sync_shared(
        &self,
        id: RepositoryId,
        held: Option<Held>,
        mut round: RefsRound,
        mut asked: Asked,
        prefer: Option<PeerId>,
        report: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncOutcome, SyncError> {
        let mut base: Option<RepositoryState> = held.map(Held::into_state);
        let mut failures: Vec<(PeerId, FetchError)> = Vec::new();
        let mut updated: Option<SyncOutcome> = None;
        let mut searched = false;
        loop {
            self.take_offers(
                id,
                &mut base,
                &mut round,
                prefer,
                report,
                &mut failures,
                &mut updated,
            )
            .await?;
            // Asking the DHT would tell strangers the id of a private repository.
            let private = base
                .as_ref()
                .is_some_and(|b| b.identity.current().is_private());
            if updated.is_some() || searched || private {
                break;
            }
            searched = true;
            let fresh = self.search_providers(id, &mut asked.set).await;
            if fresh.is_empty() {
                break;
            }
            asked.peers.extend(&fresh);
            self.ask_refs(&id, &fresh, None, None, 0, &mut round).await;
        }
        if let Some(outcome) = updated {
            return Ok(outcome);
        }
        let revision = base.as_ref().map_or(0, RepositoryState::revision);
        policy::conclusion(id, !asked.peers.is_empty(), failures, round, revision)
    }

    /// Judges the states in `round` against `base`, best holder first, and fetches from
    /// each one that brings something; `base` follows what is taken.
    #[allow(clippy::too_many_arguments)]
    async fn take_offers(
        &self,
        id: RepositoryId,
        base: &mut Option<RepositoryState>,
        round: &mut RefsRound,
        prefer: Option<PeerId>,
        report: &(dyn Fn(SyncProgress) + Send + Sync),
        failures: &mut Vec<(PeerId, FetchError)>,
        updated: &mut Option<SyncOutcome>,
    ) -> Result<(), SyncError> {
        let mut states = std::mem::take(&mut round.states);
        let mut order: Vec<PeerId> = states.iter().map(|(p, _)| *p).collect();
        self.inner.holders.rank(&id, &mut order, prefer);
        states.sort_by_key(|(p, _)| order.iter().position(|o| o == p));
        for (peer, offered) in states {
            let judged = news(base.as_ref(), &offered);
            if let Ok((_, equivocations)) = &judged {
                for (signer, sequence) in equivocations {
                    self.inner.ledger.observe_view(id, signer, *sequence, peer);
                }
            }
            match judged {
                Ok((true, _)) => {}
                Ok((false, _)) => continue,
                Err(why) => {
                    tracing::info!(%peer, repository = %id, "refused identity or views: {why}");
                    self.inner.client.penalize(peer, Penalty::BadData);
                    round.misses.push((
                        peer,
                        format!("sent versions or views that do not verify: {why}"),
                    ));
                    continue;
                }
            }
            match self.fetch_shared(id, peer, offered, report).await {
                Ok((accepted, outcome)) => {
                    for refused in &accepted.refused {
                        tracing::debug!(%peer, repository = %id, "not taken: {refused}");
                    }
                    *base = self.held(&id).await?.map(Held::into_state);
                    *updated = Some(outcome);
                }
                Err(e) => {
                    tracing::info!(repository = %id, %peer, "fetch failed: {e}");
                    if let Some(penalty) = e.penalty() {
                        self.inner.client.penalize(peer, penalty);
                    }
                    failures.push((peer, e));
                }
            }
        }
        Ok(())
    }

    /// Fetches from `peer` the objects of the views it offered that this node lacks, and
    /// takes its versions and views with them.
    async fn fetch_shared(
        &self,
        id: RepositoryId,
        peer: PeerId,
        offered: SharedState,
        report: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<(SharedAccepted, SyncOutcome), FetchError> {
        let targets: Vec<ObjectId> = offered
            .views
            .iter()
            .flat_map(|v| v.refs.values().copied())
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
        let started = Instant::now();
        let creator = *offered.genesis.maintainers[0].as_bytes();
        let mut via = None;
        let accepted = if wants.is_empty() {
            self.inner
                .store
                .run(move |repos| repos.accept_shared(&id, offered, None, &mut |_| {}))
                .await??
        } else {
            via = self.direct(peer).await?;
            let result = self
                .fetch_pack(
                    id,
                    creator,
                    peer,
                    wants,
                    haves,
                    report,
                    |a: &SharedAccepted| a.stats,
                    move |repos, chunks, progress| {
                        repos.accept_shared(&id, offered, Some(chunks), progress)
                    },
                )
                .await;
            match result {
                Ok(accepted) => accepted,
                Err(e) => {
                    self.inner.holders.record(&id, peer, None);
                    return Err(e);
                }
            }
        };
        self.adopt(id).await;
        let (objects, bytes) = (accepted.stats.objects as u64, accepted.stats.bytes);
        if objects > 0 {
            self.fetched(id, peer, objects, bytes, started.elapsed())
                .await;
        }
        let revision = self
            .held(&id)
            .await
            .ok()
            .flatten()
            .map_or(0, |h| h.into_state().revision());
        let outcome = SyncOutcome::Updated {
            sequence: revision,
            from: peer.to_string(),
            objects,
            bytes,
            millis: started.elapsed().as_millis() as u64,
            via: match objects {
                0 => None,
                _ => self.path_taken(peer, via).await.map(|r| r.to_string()),
            },
        };
        Ok((accepted, outcome))
    }
}

impl Engine {
    /// Signs this node's first view of `id` if its key has become a maintainer (see
    /// [`guts_storage::Repositories::adopt_view`]), and announces it.
    async fn adopt(&self, id: RepositoryId) {
        let key = self.inner.key.clone();
        match self
            .inner
            .store
            .run(move |repos| repos.adopt_view(&id, &key))
            .await
        {
            Ok(Ok(Some(view))) => {
                tracing::info!(repository = %id, refs = view.refs.len(), "this node's key is a maintainer now: its first view holds the branches as they were");
                crate::publish::publish(
                    &self.inner.store,
                    &self.inner.client,
                    self.inner.local,
                    id,
                    crate::publish::News::Shared(SharedAnnouncement::View(Box::new(view.signed))),
                )
                .await;
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(repository = %id, "cannot sign a first view: {e}"),
            Err(e) => tracing::warn!(repository = %id, "cannot sign a first view: {e}"),
        }
    }
}

/// Whether `offered` brings anything beyond `held` (versions, signatures, newer views),
/// judged by the same rules storage applies; an error if anything in it is forged or
/// malformed (what may fit once more is known is not held against the sender).
fn news(
    held: Option<&RepositoryState>,
    offered: &SharedState,
) -> Result<(bool, Vec<(ed25519_dalek::VerifyingKey, u64)>), String> {
    let mut trial = match held {
        Some(state) => state.clone(),
        None => RepositoryState::new(offered.genesis.clone()).map_err(|e| e.to_string())?,
    };
    if trial.identity.genesis() != &offered.genesis {
        return Err("its first version is not this repository's".into());
    }
    let merged = trial.merge(offered.versions.clone(), offered.views.clone());
    if let Some(bad) = merged.refused.iter().find(|e| is_forged(e)) {
        return Err(bad.to_string());
    }
    Ok((merged.changed, merged.equivocations))
}

/// Whether a refusal means the sender passed on something no honest node would.
fn is_forged(e: &StateError) -> bool {
    StorageError::from(e.clone()).is_peer_fault()
}
