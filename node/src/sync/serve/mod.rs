//! Answering peers, off the swarm task, one file per protocol: GetRefs and ListRepositories (routed here as
//! [`Event`]s from the event loop), pack requests (streams), and gossiped announcements,
//! which are decoded, verified and compared with what this node holds before gossipsub may
//! relay them.

mod announcements;
mod changes_announcements;
mod packs;
mod requests;
mod shared_announcements;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::engine::Engine;
use super::pack::RateFloor;
use crate::metrics::{Announcements, TransferMetrics, Verdict};
use crate::network::{Client, Event, Topic};
use crate::store::Store;

/// Requests and announcements judged at once; beyond it they wait in the event queue,
/// and once that is full the event loop turns new ones away.
const CONCURRENT_ANSWERS: usize = 16;

/// What answering peers needs.
#[derive(Clone)]
pub(crate) struct Server {
    pub store: Store,
    pub client: Client,
    pub engine: Engine,
    pub metrics: TransferMetrics,
    /// A write that cannot go on for this long ends the transfer.
    pub stall: Duration,
    /// The least a requester must take in.
    pub floor: RateFloor,
    /// Announcements per owner key.
    pub owners: Arc<OwnerLimiter>,
    /// What became of announcements.
    pub announcements: Announcements,
}

/// A rate limit per owner key.
pub(crate) type OwnerLimiter = governor::DefaultKeyedRateLimiter<[u8; 32]>;

/// The limiter for `per_minute` announcements per owner key.
pub(crate) fn owner_limiter(per_minute: u32) -> Arc<OwnerLimiter> {
    let per_minute = std::num::NonZeroU32::new(per_minute).unwrap_or(std::num::NonZeroU32::MIN);
    Arc::new(governor::RateLimiter::keyed(governor::Quota::per_minute(
        per_minute,
    )))
}

impl Server {
    /// Handles the event loop's events until it stops.
    pub(crate) async fn route(self, mut events: mpsc::Receiver<Event>) {
        let answers = Arc::new(Semaphore::new(CONCURRENT_ANSWERS));
        while let Some(event) = events.recv().await {
            match event {
                Event::PeerConnected { peer, first } => {
                    // Back in touch (start, restart, a healed partition): catch up now
                    // rather than at the next anti-entropy round.
                    if first {
                        self.engine.catch_up(peer);
                    }
                }
                Event::InboundRequest {
                    peer,
                    request,
                    channel,
                } => {
                    let Ok(permit) = answers.clone().acquire_owned().await else {
                        return;
                    };
                    let server = self.clone();
                    tokio::spawn(async move {
                        let response = server.answer(peer, request).await;
                        tracing::trace!(%peer, "answered a sync request");
                        server.client.respond(channel, response);
                        drop(permit);
                    });
                }
                Event::Announcement {
                    propagation_source,
                    message_id,
                    publisher,
                    topic,
                    data,
                } => {
                    let Ok(permit) = answers.clone().acquire_owned().await else {
                        return;
                    };
                    let server = self.clone();
                    tokio::spawn(async move {
                        let (acceptance, verdict) = match topic {
                            Topic::Shared => {
                                server
                                    .judge_shared_announcement(propagation_source, publisher, &data)
                                    .await
                            }
                            Topic::Changes => {
                                server
                                    .judge_changes_announcement(
                                        propagation_source,
                                        publisher,
                                        &data,
                                    )
                                    .await
                            }
                            Topic::Refs => {
                                server
                                    .judge_announcement(propagation_source, publisher, &data)
                                    .await
                            }
                        };
                        server
                            .announcements
                            .get_or_create(&Verdict { verdict })
                            .inc();
                        server
                            .client
                            .validated(message_id, propagation_source, acceptance);
                        drop(permit);
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod test_support {
    use ed25519_dalek::SigningKey;
    use guts_protocol::SignedRefs;
    use guts_storage::Repositories;

    pub(super) fn store_with_one_repository() -> (tempfile::TempDir, Repositories, SignedRefs) {
        let dir = tempfile::tempdir().unwrap();
        let repos = Repositories::new(dir.path());
        let key = SigningKey::from_bytes(&[9; 32]);
        let snapshot = repos.init("demo".parse().unwrap(), &key).unwrap();
        (dir, repos, snapshot)
    }
}
