//! Asking holders for their signed refs of a repository: who offers which verified
//! snapshot newer than ours, and why each other holder offered none.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use guts_protocol::RepositoryId;
use guts_protocol::refs::RefsHeader;
use guts_protocol::wire::SyncResponse;
use libp2p::PeerId;

use super::Engine;
use super::policy::RefsRound;
use crate::connection_manager::Penalty;
use crate::identity::peer_of_owner;
use crate::network::RequestError;

/// Holders asked for refs at once.
const REFS_FANOUT: usize = 6;
/// How long other holders may still answer once one has.
const REFS_GRACE: Duration = Duration::from_secs(1);

impl Engine {
    /// Asks `peers` for their refs of `id`; adds to `round` the snapshots that verify and
    /// are newer than `held` (and are not a second version of a sequence seen already),
    /// and why each other peer offered none. Peers that send something bad are
    /// penalized. The round ends once the owner's own node, or a holder of the sequence
    /// `announced` (when above 0), has answered, and `prefer` (a peer the caller named) too.
    pub(super) async fn ask_refs(
        &self,
        id: &RepositoryId,
        peers: &[PeerId],
        held_header: Option<&RefsHeader>,
        prefer: Option<PeerId>,
        announced: u64,
        round: &mut RefsRound,
    ) {
        let held = held_header.map_or(0, |h| h.sequence);
        let mut asks = FuturesUnordered::new();
        let mut unanswered: HashSet<PeerId> = HashSet::new();
        // Once one holder has answered, the rest get REFS_GRACE: a holder that went away
        // (its dial waits for the connection timeout) must not hold every sync up.
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut newest_heard = false;
        // A peer named by the caller is heard out: `--from` means "try this one".
        let mut awaited = prefer.filter(|p| peers.contains(p));
        for chunk in peers.chunks(REFS_FANOUT) {
            if deadline.is_some_and(|d| d <= tokio::time::Instant::now()) {
                break;
            }
            for peer in chunk {
                unanswered.insert(*peer);
                let client = self.inner.client.clone();
                let (peer, id) = (*peer, *id);
                asks.push(async move { (peer, client.get_refs(peer, id).await) });
            }
            loop {
                let next = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, asks.next()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    },
                    None => asks.next().await,
                };
                let Some((peer, answer)) = next else { break };
                unanswered.remove(&peer);
                let mut miss = |why: String| round.misses.push((peer, why));
                if awaited == Some(peer) {
                    awaited = None;
                    if newest_heard {
                        deadline = Some(tokio::time::Instant::now());
                    }
                }
                // Visibility aside, a private repository's state is judged as any other.
                let answer = answer.map(|a| match a {
                    SyncResponse::StateV2(v2) => {
                        SyncResponse::State(Box::new(guts_protocol::SharedState::from(*v2)))
                    }
                    other => other,
                });
                match answer {
                    Ok(SyncResponse::Refs(snapshot)) => {
                        let snapshot = *snapshot;
                        if snapshot.repository() != *id {
                            self.inner.client.penalize(peer, Penalty::BadData);
                            miss("answered with another repository's refs".into());
                            continue;
                        }
                        if let Err(e) = snapshot.verify() {
                            tracing::info!(%peer, repository = %id, "refused snapshot: {e}");
                            self.inner.client.penalize(peer, Penalty::BadData);
                            miss(format!("sent refs that do not verify: {e}"));
                            continue;
                        }
                        round.heard = true;
                        // The owner's own node holds the newest snapshot there is: no
                        // need to wait for anyone else (but a peer the caller named).
                        newest_heard |= peer_of_owner(&snapshot.signed.signer) == Some(peer)
                            || (announced > held && snapshot.sequence() >= announced);
                        if newest_heard && awaited.is_none() {
                            deadline = Some(tokio::time::Instant::now());
                        } else {
                            deadline
                                .get_or_insert_with(|| tokio::time::Instant::now() + REFS_GRACE);
                        }
                        if self
                            .inner
                            .ledger
                            .observe(&snapshot.signed.header, peer, held_header)
                        {
                            // The owner signed this sequence twice: the peer is not at
                            // fault, and the version seen first stays.
                            miss(format!(
                                "offered a second version of sequence {}",
                                snapshot.sequence()
                            ));
                        } else if snapshot.sequence() < held {
                            // Older than what we hold: a rollback attempt, or a peer far
                            // behind; a light penalty that fades either way.
                            tracing::info!(%peer, repository = %id, offered = snapshot.sequence(), held, "refused an older snapshot");
                            self.inner.client.penalize(peer, Penalty::Stale);
                        } else {
                            self.note_holder(*id, peer);
                            if snapshot.sequence() > held {
                                round.offers.push((peer, snapshot));
                            }
                        }
                    }
                    Ok(SyncResponse::State(state)) => {
                        let state = *state;
                        if state.genesis.repository != *id {
                            self.inner.client.penalize(peer, Penalty::BadData);
                            miss("answered with another repository's identity".into());
                            continue;
                        }
                        // Judged against what is held once the round is over: a view is
                        // not newer or older as a whole, each key's is.
                        round.heard = true;
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + REFS_GRACE);
                        self.note_holder(*id, peer);
                        round.states.push((peer, state));
                    }
                    Ok(SyncResponse::NotFound) => miss("does not hold it".into()),
                    Ok(SyncResponse::RateLimited) => {
                        miss("busy (rate-limited)".into());
                        round.busy = true;
                    }
                    Ok(SyncResponse::Repositories(_)) => {
                        self.inner.client.penalize(peer, Penalty::BadData);
                        miss("answered with a repository list".into());
                    }
                    Ok(
                        SyncResponse::Changes(_)
                        | SyncResponse::Forks(_)
                        | SyncResponse::Noted
                        | SyncResponse::StateV2(_),
                    ) => {
                        self.inner.client.penalize(peer, Penalty::BadData);
                        miss("answered with something else than refs".into());
                    }
                    Err(RequestError::Misbehaved { penalty, reason }) => {
                        tracing::info!(%peer, repository = %id, "bad refs answer: {reason}");
                        self.inner.client.penalize(peer, penalty);
                        miss(format!("bad answer: {reason}"));
                    }
                    Err(RequestError::Failed(reason)) => {
                        tracing::debug!(%peer, repository = %id, "no refs answer: {reason}");
                        self.inner.holders.record(id, peer, None);
                        miss(format!("unreachable: {reason}"));
                        round.busy = true;
                    }
                }
            }
        }
        for peer in peers.iter().filter(|p| unanswered.contains(p)) {
            round
                .misses
                .push((*peer, "no answer before another holder's".into()));
        }
    }
}
