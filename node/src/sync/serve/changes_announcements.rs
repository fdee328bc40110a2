//! Gossip on the changes topic: new tips of a repository's patches and issues.
//!
//! An announcement is not signed (each change in it is, by its author): it only says
//! where to look. So it is relayed when it names tips this node lacks of a repository
//! it holds, by authors it does not block, and those tips are fetched from the
//! publisher, where every change is checked before it is kept. A publisher that
//! announces what it cannot serve is penalized by the fetch; one that floods is held to
//! its rate.

use guts_protocol::wire::{
    self, ChangeTip, ChangesAnnouncement, MAX_ANNOUNCED_TIPS, MAX_CHANGES_ANNOUNCEMENT_SIZE,
};
use libp2p::{PeerId, gossipsub};
use sha2::Digest;

use super::Server;
use crate::connection_manager::Penalty;

impl Server {
    /// The verdict on an announcement from the changes topic (see the module docs).
    pub(super) async fn judge_changes_announcement(
        &self,
        from: PeerId,
        publisher: Option<PeerId>,
        data: &[u8],
    ) -> (gossipsub::MessageAcceptance, &'static str) {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let announcement = match decode(data) {
            Ok(a) => a,
            Err(why) => {
                tracing::info!(%from, "rejected changes announcement: {why}");
                self.client.penalize(from, Penalty::InvalidAnnouncement);
                return (Reject, "rejected");
            }
        };
        let origin = publisher.unwrap_or(from);
        // Per publisher: an unsigned announcement names no key to hold to a rate.
        let rate_key: [u8; 32] = sha2::Sha256::digest(origin.to_bytes()).into();
        if self.owners.check_key(&rate_key).is_err() {
            return (Ignore, "owner_rate");
        }
        let id = announcement.repository;
        // A repository this node blocks, or keeps without contributions: not fetched,
        // not passed on.
        let Some(policy) = self.engine.contributions_policy(&id).await else {
            return (Ignore, "policy");
        };
        let blocked = |t: &ChangeTip| policy.blocked.contains(t.author.as_bytes());
        let any_blocked = announcement.tips.iter().any(blocked);
        let tips: Vec<ChangeTip> = announcement
            .tips
            .into_iter()
            .filter(|t| !blocked(t))
            .collect();
        let changes: Vec<_> = tips.iter().map(|t| t.change).collect();
        let missing = self
            .store
            .run(move |repos| {
                // A private repository is never gossiped: news of one is not passed on.
                if repos.is_private(&id)? {
                    return Ok(Some(None));
                }
                Ok::<_, guts_storage::StorageError>(Some(match repos.held(&id)? {
                    Some(_) => Some(repos.missing(&id, &changes)?),
                    None => None,
                }))
            })
            .await
            .ok()
            .and_then(Result::ok);
        let fresh: Vec<ChangeTip> = match missing {
            Some(None) => return (Ignore, "private"),
            Some(Some(Some(missing))) => tips
                .into_iter()
                .filter(|t| missing.contains(&t.change))
                .collect(),
            // The store could not say: not relayed on a guess.
            None => return (Ignore, "store"),
            Some(Some(None)) => {
                // Not held: a followed repository is synced whole, changes with it.
                if self.engine.wants(&id, &[]).await {
                    self.engine.trigger_to(id, Some(origin), 0);
                }
                return (Ignore, "not_held");
            }
        };
        if fresh.is_empty() {
            return (Ignore, if any_blocked { "blocked" } else { "old" });
        }
        // The publisher holds the repository: later syncs ask it too.
        self.engine.note_holder(id, origin);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.sync_changes(id, origin, Some(fresh)).await {
                tracing::debug!(repository = %id, peer = %origin, "announced changes not taken: {e}");
            }
        });
        // A blocked author's news is fetched for no one and passed on to no one.
        if any_blocked {
            (Ignore, "blocked")
        } else {
            (Accept, "accepted")
        }
    }
}

/// The announcement in `data`, if it decodes and is of a size it may have.
fn decode(data: &[u8]) -> Result<ChangesAnnouncement, String> {
    let announcement: ChangesAnnouncement =
        wire::decode(data, MAX_CHANGES_ANNOUNCEMENT_SIZE).map_err(|e| e.to_string())?;
    if announcement.tips.is_empty() || announcement.tips.len() > MAX_ANNOUNCED_TIPS {
        return Err(format!(
            "{} tips: an announcement names 1 to {MAX_ANNOUNCED_TIPS}",
            announcement.tips.len()
        ));
    }
    Ok(announcement)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use guts_protocol::{ObjectId, RepositoryId};

    use super::*;

    fn tip(n: u8) -> ChangeTip {
        ChangeTip {
            change: ObjectId([n; 20]),
            object: ObjectId([n; 20]),
            author: SigningKey::from_bytes(&[n; 32]).verifying_key(),
        }
    }

    #[test]
    fn announcements_decode_within_their_bounds() {
        let id = RepositoryId::from_bytes([1; 20]);
        let good = ChangesAnnouncement {
            repository: id,
            tips: vec![tip(1), tip(2)],
        };
        assert_eq!(decode(&wire::encode(&good)).unwrap(), good);
        let empty = ChangesAnnouncement {
            repository: id,
            tips: vec![],
        };
        assert!(
            decode(&wire::encode(&empty))
                .unwrap_err()
                .contains("0 tips")
        );
        let many = ChangesAnnouncement {
            repository: id,
            tips: (0..=MAX_ANNOUNCED_TIPS as u8).map(tip).collect(),
        };
        assert!(decode(&wire::encode(&many)).is_err());
        assert!(decode(b"garbage").is_err());
    }
}
