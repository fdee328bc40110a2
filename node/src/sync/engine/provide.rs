//! Renewing this node's provider records, paced.
//!
//! Each provide is a Kademlia query ending in ADD_PROVIDER messages to the peers closest
//! to the key; in a small network those are the same few peers every time. All of a large
//! node's repositories at once (10,000 at start) went over those peers' Kademlia budget,
//! and they banned it. Paced, a renewal of 10,000 takes about eight minutes, under the
//! ten anti-entropy rounds between renewals; one runs at a time.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use guts_protocol::RepositoryId;

use super::Engine;

/// Time between two provides: 20 a second, each a few messages to a peer at most.
const PROVIDE_EVERY: Duration = Duration::from_millis(50);

impl Engine {
    /// Provides those of `ids` this node holds, one every [`PROVIDE_EVERY`], in a task of
    /// its own; nothing if a renewal is still under way.
    pub(super) fn provide_paced(&self, ids: Vec<RepositoryId>) {
        if self.inner.providing.swap(true, SeqCst) {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROVIDE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for id in ids {
                if !engine.holds(&id).await {
                    continue;
                }
                tick.tick().await;
                // A private repository is not provided: its allowed peers hear instead.
                crate::publish::publish(
                    &engine.inner.store,
                    &engine.inner.client,
                    engine.inner.local,
                    id,
                    crate::publish::News::Held,
                )
                .await;
            }
            engine.inner.providing.store(false, SeqCst);
        });
    }
}
