//! Gossiped announcements: decoded, verified and compared with what this node holds
//! before gossipsub may relay them; news of a repository kept here triggers a sync.

use guts_protocol::SignedHeader;
use guts_protocol::wire::{self, Announcement, MAX_ANNOUNCEMENT_SIZE};
use libp2p::{PeerId, gossipsub};

use super::Server;
use crate::connection_manager::Penalty;
use crate::seeding::Decision;

/// Owner keys remembered by the limiter before idle ones are forgotten.
const OWNERS_REMEMBERED: usize = 10_000;

impl Server {
    /// Whether gossipsub may relay an announcement: it must decode and verify (else the
    /// relaying peer is penalized), and be newer than what this node holds (else it is
    /// old news, ignored). News of a repository this node replicates triggers a sync.
    pub(super) async fn judge_announcement(
        &self,
        from: PeerId,
        publisher: Option<PeerId>,
        data: &[u8],
    ) -> (gossipsub::MessageAcceptance, &'static str) {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let header = match verified_header(data) {
            Ok(header) => header,
            Err(why) => {
                tracing::info!(%from, "rejected announcement: {why}");
                self.client.penalize(from, Penalty::InvalidAnnouncement);
                return (Reject, "rejected");
            }
        };
        if self.owners.len() > OWNERS_REMEMBERED {
            self.owners.retain_recent();
        }
        if self.owners.check_key(header.signer.as_bytes()).is_err() {
            tracing::debug!(%from, repository = %header.repository(), "over its owner's announcement rate: ignored");
            return (Ignore, "owner_rate");
        }
        let id = header.repository();
        let held = (self.store.run(move |repos| repos.signed_refs(&id)))
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten()
            .map(|s| s.signed.header);
        let origin = publisher.unwrap_or(from);
        if self
            .engine
            .ledger()
            .observe(&header.header, origin, held.as_ref())
        {
            // A second version of a sequence: not relayed, the relayer not blamed.
            return (Ignore, "equivocation");
        }
        // Nothing of a blocked repository or key is fetched or passed on.
        if self.engine.decision(&id, &[header.signer]).await == Decision::Block {
            return (Ignore, "blocked");
        }
        if !is_news(&header, held.map_or(0, |h| h.sequence)) {
            // Old news (or a replay): not relayed, no penalty.
            return (Ignore, "old");
        }
        if self.engine.wants(&id, &[header.signer]).await {
            self.engine
                .trigger_to(id, publisher, header.header.sequence);
        }
        (Accept, "accepted")
    }
}

/// The header of a gossiped announcement, if it decodes and its signature verifies.
fn verified_header(data: &[u8]) -> Result<SignedHeader, String> {
    let announcement: Announcement =
        wire::decode(data, MAX_ANNOUNCEMENT_SIZE).map_err(|e| e.to_string())?;
    let header = announcement.header().clone();
    header.verify().map_err(|e| e.to_string())?;
    Ok(header)
}

/// Whether an announcement says more than the snapshot of sequence `held` this node has.
fn is_news(header: &SignedHeader, held: u64) -> bool {
    header.sequence() > held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::serve::test_support::store_with_one_repository;

    #[test]
    fn announcements_must_decode_and_verify() {
        let (_dir, _repos, snapshot) = store_with_one_repository();
        let data = wire::encode(&Announcement::of(&snapshot));
        let header = verified_header(&data).unwrap();
        assert_eq!(header.repository(), snapshot.repository());

        assert!(verified_header(b"garbage").is_err());
        // A flipped byte breaks the decoding or the signature, unless it misses the
        // signed header (the kind of announcement is not signed and changes nothing).
        for i in 0..data.len() {
            let mut forged = data.clone();
            forged[i] ^= 0x01;
            if let Ok(h) = verified_header(&forged) {
                assert_eq!(h, header, "byte {i} flipped changes a verified header");
            }
        }
        let oversized = vec![0u8; MAX_ANNOUNCEMENT_SIZE + 1];
        assert!(verified_header(&oversized).unwrap_err().contains("limit"));
    }

    #[test]
    fn only_newer_sequences_are_news() {
        let (_dir, _repos, snapshot) = store_with_one_repository();
        let header = snapshot.signed.clone();
        let seq = header.sequence();
        assert!(is_news(&header, seq - 1));
        assert!(!is_news(&header, seq));
        assert!(!is_news(&header, seq + 1));
    }
}
