//! What the engine keeps up to date and what it takes on: the repositories it owns,
//! follows or (with `replicate = all`) holds; adoption from peers' lists and
//! announcements, within `max_adoptions_per_hour` and `max_followed`; and the periodic
//! anti-entropy pass over all of them.

use std::collections::{HashMap, HashSet};

use ed25519_dalek::VerifyingKey;
use guts_protocol::RepositoryId;
use guts_storage::{Held, Repositories, StorageError};
use libp2p::PeerId;

use super::Engine;
use super::policy::RefsRound;
use super::policy::{self, Adoption};
use crate::config::Replicate;
use crate::network::RequestError;
use crate::seeding::Decision;
use crate::sync::error::SyncError;

/// Unknown repositories adopted from one peer's list at a time: bounds what a peer
/// listing made-up ids can cost; the rest come with the next list.
const ADOPT_PER_LIST: usize = 256;
/// How many more times a listed repository is asked for when its peer was busy.
const ADOPT_RETRIES: u32 = 3;
/// The least time between two catch-ups for one peer.
const CATCH_UP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// Peers whose last catch-up is remembered before the stale are dropped.
const CAUGHT_UP_REMEMBERED: usize = 4096;

/// When a peer's last catch-up started, and whether another is put off to the end of
/// its interval.
#[derive(Clone, Copy)]
pub(super) struct CaughtUp {
    at: std::time::Instant,
    put_off: bool,
}

impl CaughtUp {
    fn at(at: std::time::Instant) -> Self {
        CaughtUp { at, put_off: false }
    }
}

impl Engine {
    /// The repositories to keep up to date: those this node owns or follows, and with
    /// `replicate = all` every one it holds. (A repository fetched once with an explicit
    /// sync is not followed by that alone.)
    pub(super) async fn kept(&self) -> Vec<RepositoryId> {
        let owner = self.inner.owner;
        let owners = self.inner.owners.clone();
        let all = self.replicate() == Replicate::All;
        self.inner
            .store
            .run(move |repos| {
                let mut ids = repos.followed().unwrap_or_default();
                // A set beside the list: linear in the repositories, not quadratic.
                let mut seen: HashSet<RepositoryId> = ids.iter().copied().collect();
                let listed = repos.list().unwrap_or_default();
                let mut owners = owners.lock().unwrap_or_else(|e| e.into_inner());
                // Removed repositories leave the memo with the list.
                owners.retain(|id, _| listed.binary_search(id).is_ok());
                for id in listed {
                    if seen.contains(&id) {
                        continue;
                    }
                    if all || is_ours(repos, &mut owners, &id, &owner) {
                        seen.insert(id);
                        ids.push(id);
                    }
                }
                ids
            })
            .await
            .unwrap_or_default()
    }

    /// Checks every kept repository against its holders now, and reads `peer`'s list:
    /// once per peer per [`CATCH_UP_EVERY`], and one pass over every repository at a
    /// time (asked during one, it goes once more after). A peer that connects over and
    /// over (a flapping link, a node that bans this one, or on purpose) would otherwise
    /// start a walk of every repository each time: at 10,000 repositories that kept a
    /// node busy with 1 GB of queued syncs.
    pub(crate) fn catch_up(&self, peer: PeerId) {
        // Asked again within the interval, the catch-up is put off to its end rather
        // than dropped: a connection that flapped may have cut the first one short.
        let wait = {
            let mut last = self
                .inner
                .caught_up
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            match last.get_mut(&peer) {
                Some(c) if c.put_off => return,
                Some(c) if now.duration_since(c.at) < CATCH_UP_EVERY => {
                    c.put_off = true;
                    (c.at + CATCH_UP_EVERY).saturating_duration_since(now)
                }
                _ => {
                    if last.len() >= CAUGHT_UP_REMEMBERED {
                        last.retain(|_, c| now.duration_since(c.at) < CATCH_UP_EVERY);
                    }
                    last.insert(peer, CaughtUp::at(now));
                    std::time::Duration::ZERO
                }
            }
        };
        let engine = self.clone();
        tokio::spawn(async move {
            use std::sync::atomic::Ordering::SeqCst;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                let now = std::time::Instant::now();
                (engine.inner.caught_up.lock())
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(peer, CaughtUp::at(now));
            }
            engine.adopt_listed(peer).await;
            let inner = &engine.inner;
            // A pass under way goes once more when it ends, for this peer too: the flag
            // is left for the pass's runner, which looks at it again after letting go
            // (a request between its last look and letting go would otherwise be lost).
            inner.catch_up_again.store(true, SeqCst);
            loop {
                if inner.catching_up.swap(true, SeqCst) {
                    return;
                }
                while inner.catch_up_again.swap(false, SeqCst) {
                    engine.anti_entropy(false).await;
                }
                inner.catching_up.store(false, SeqCst);
                if !inner.catch_up_again.load(SeqCst) {
                    return;
                }
            }
        });
    }

    /// With `replicate = all`, fetches the repositories `peer` holds that this node does
    /// not: those announced before it joined (or while it was cut off), which no
    /// announcement repeats. Only ids the peer backs with a valid snapshot are fetched.
    pub(super) async fn adopt_listed(&self, peer: PeerId) {
        if self.replicate() != Replicate::All && !self.inner.policies.current().seeds_keys() {
            return;
        }
        // A busy peer is asked again a little later: the next list is read only every
        // tenth anti-entropy round.
        let mut attempt = 0;
        let listed = loop {
            match self.inner.client.list_repositories(peer).await {
                Ok(ids) => break ids,
                Err(RequestError::Misbehaved { penalty, reason }) => {
                    tracing::info!(%peer, "bad repository list: {reason}");
                    self.inner.client.penalize(peer, penalty);
                    return;
                }
                Err(RequestError::Failed(reason)) => {
                    tracing::debug!(%peer, "no repository list: {reason}");
                    attempt += 1;
                    if attempt > ADOPT_RETRIES {
                        return;
                    }
                    tokio::time::sleep(CATCH_UP_EVERY * attempt).await;
                }
            }
        };
        let kept: HashSet<RepositoryId> = self.kept().await.into_iter().collect();
        let unknown: Vec<RepositoryId> = listed
            .into_iter()
            .filter(|id| !kept.contains(id))
            .take(ADOPT_PER_LIST)
            .collect();
        if !unknown.is_empty() {
            tracing::info!(%peer, "{} repositories to adopt from its list", unknown.len());
        }
        // Those the peer was too busy to answer for are asked again, as the list is.
        let mut ask = unknown;
        for attempt in 0..=ADOPT_RETRIES {
            if attempt > 0 {
                if ask.is_empty() {
                    break;
                }
                tokio::time::sleep(CATCH_UP_EVERY * attempt).await;
            }
            let mut busy = Vec::new();
            for id in ask {
                let mut round = RefsRound::default();
                self.ask_refs(&id, &[peer], None, None, 0, &mut round).await;
                let keys: Vec<VerifyingKey> = round
                    .offers
                    .iter()
                    .map(|(_, s)| s.signed.signer)
                    .chain(round.states.iter().flat_map(offered_keys))
                    .collect();
                let offered = !round.offers.is_empty() || !round.states.is_empty();
                if offered && self.wants(&id, &keys).await {
                    self.trigger(id, Some(peer));
                } else if !offered && round.busy {
                    busy.push(id);
                }
            }
            ask = busy;
        }
    }

    /// Syncs every kept repository; with `provide`, renews (paced) what this node
    /// tells the DHT it holds.
    pub(super) async fn anti_entropy(&self, provide: bool) {
        let kept = self.kept().await;
        if provide {
            self.provide_paced(kept.clone());
        }
        for id in kept {
            self.trigger(id, None);
        }
    }

    pub(super) async fn holds(&self, id: &RepositoryId) -> bool {
        matches!(self.held(id).await, Ok(Some(_)))
    }

    /// What is held of `id`, either form.
    pub(super) async fn held(&self, id: &RepositoryId) -> Result<Option<Held>, SyncError> {
        let id = *id;
        Ok(self.inner.store.run(move |repos| repos.held(&id)).await??)
    }

    /// Whether a verified announcement of `id`, created or maintained by `keys`, is for a
    /// repository this node replicates. A seeding rule for it (or its keys) adopts it at
    /// once and a block refuses it; else, with `replicate = all` the node adopts it: it
    /// follows it from now on, so a fetch that fails now is retried by anti-entropy.
    /// Adoption by default is bounded: at most `max_adoptions_per_hour`, and none once
    /// `max_followed` repositories are followed (keys are free, so a stranger can sign
    /// new repositories without end).
    pub(crate) async fn wants(&self, id: &RepositoryId, keys: &[VerifyingKey]) -> bool {
        match self.decision(id, keys).await {
            Decision::Block => return false,
            Decision::Seed(_) => return self.follow(*id).await,
            Decision::Default => {}
        }
        if self.replicate() != Replicate::All {
            // Followed, or the node's own: two reads for this one repository, not a
            // listing of all of them (this runs for every verified announcement).
            let (id, owner) = (*id, self.inner.owner);
            let owners = self.inner.owners.clone();
            return self
                .inner
                .store
                .run(move |repos| {
                    let mut owners = owners.lock().unwrap_or_else(|e| e.into_inner());
                    repos.is_followed(&id).unwrap_or(false)
                        || is_ours(repos, &mut owners, &id, &owner)
                })
                .await
                .unwrap_or(false);
        }
        let id = *id;
        let read = self.inner.store.run(move |repos| {
            Ok::<_, StorageError>((
                repos.held(&id)?.is_some(),
                repos.is_followed(&id)?,
                repos.follow_count()?,
            ))
        });
        let (held, followed, count) = match read.await {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => {
                tracing::warn!(repository = %id, "cannot read the follow list: {e}");
                return false;
            }
            Err(_) => return false,
        };
        let adoption = policy::adoption(
            held,
            followed,
            count,
            self.inner.settings.max_followed,
            || self.inner.adoptions.check().is_ok(),
        );
        match adoption {
            Adoption::Kept => return true,
            Adoption::Refused(why) => {
                tracing::debug!(repository = %id, count, "not adopted: {why}");
                return false;
            }
            Adoption::Follow => {}
        }
        self.follow(id).await
    }

    /// Follows `id` (kept from now on); whether it is followed.
    async fn follow(&self, id: RepositoryId) -> bool {
        match self.inner.store.run(move |repos| repos.follow(&id)).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!(repository = %id, "cannot follow: {e}");
                false
            }
            Err(_) => false,
        }
    }
}

/// Whether `owner` signs repository `id`, from `memo` or else from its snapshot (then
/// remembered: the owner is fixed by the id), or maintains it now (not remembered: the
/// maintainers change). Nothing held (or readable now): not ours, and asked again next
/// time. Blocking: it reads the record.
fn is_ours(
    repos: &Repositories,
    memo: &mut HashMap<RepositoryId, bool>,
    id: &RepositoryId,
    owner: &VerifyingKey,
) -> bool {
    if let Some(ours) = memo.get(id) {
        return *ours;
    }
    match repos.held(id) {
        Ok(Some(Held::Owner(snapshot))) => {
            *memo.entry(*id).or_insert(snapshot.signed.signer == *owner)
        }
        Ok(Some(Held::Shared(state))) => state.identity.may_publish(owner),
        _ => false,
    }
}

/// The keys a peer's state of a repository with maintainers names: its creator and every
/// maintainer of the versions offered (unchecked: a seed adopts only after the sync
/// verifies, and a block only refuses).
pub(super) fn offered_keys(state: &(PeerId, guts_protocol::SharedState)) -> Vec<VerifyingKey> {
    let (_, state) = state;
    let mut keys = vec![state.genesis.maintainers[0]];
    for v in &state.versions {
        keys.extend(v.doc.maintainers.iter().copied());
    }
    keys
}
