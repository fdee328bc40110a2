//! Gossip on the topic of repositories with maintainers: a maintainer's view header, a
//! contributor's fork header, or an identity version. Only a node holding the repository can tell a maintainer from
//! anyone else, so only what it can judge is relayed; news of a repository it keeps
//! triggers a sync from the publisher, which brings whatever made the news fit.

use guts_protocol::RepositoryState;
use guts_protocol::identity::VersionAdded;
use guts_protocol::wire::{self, MAX_SHARED_ANNOUNCEMENT_SIZE, SharedAnnouncement};
use guts_storage::{Held, StorageError};
use libp2p::{PeerId, gossipsub};

use super::Server;
use crate::connection_manager::Penalty;

/// What an announcement is, judged against what this node holds.
#[derive(Debug, PartialEq, Eq)]
enum Judged {
    /// Bad on its face (undecodable, a signature that does not verify): the relayer is
    /// penalized.
    Forged(String),
    /// News of something this node holds: relayed, and fetched.
    News,
    /// Nothing new, or nothing this node can judge: not relayed, no penalty.
    Ignored(&'static str),
    /// A second view of one sequence by this maintainer: reported, not relayed.
    Equivocation(ed25519_dalek::VerifyingKey, u64),
    /// It may be news this node cannot judge yet (a signer it does not know as a
    /// maintainer, a version after one it lacks): not relayed, but worth a sync.
    Unjudged,
}

impl Server {
    /// The verdict on an announcement from the shared topic (see the module docs).
    pub(super) async fn judge_shared_announcement(
        &self,
        from: PeerId,
        publisher: Option<PeerId>,
        data: &[u8],
    ) -> (gossipsub::MessageAcceptance, &'static str) {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let announcement: SharedAnnouncement =
            match wire::decode(data, MAX_SHARED_ANNOUNCEMENT_SIZE) {
                Ok(a) => a,
                Err(e) => {
                    tracing::info!(%from, "rejected announcement: {e}");
                    self.client.penalize(from, Penalty::InvalidAnnouncement);
                    return (Reject, "rejected");
                }
            };
        let id = announcement.repository();
        let rate_key = match &announcement {
            SharedAnnouncement::View(h) => *h.signer.as_bytes(),
            SharedAnnouncement::Version(_) => {
                let mut key = [0u8; 32];
                key[..20].copy_from_slice(id.as_bytes());
                key
            }
        };
        if self.owners.check_key(&rate_key).is_err() {
            return (Ignore, "owner_rate");
        }
        // Who it names: its signer, or the version's maintainers (unchecked yet: it only
        // refuses, and a seed adopts only what a sync verifies).
        let keys: Vec<ed25519_dalek::VerifyingKey> = match &announcement {
            SharedAnnouncement::View(h) => vec![h.signer],
            SharedAnnouncement::Version(v) => v.doc.maintainers.clone(),
        };
        if self.engine.decision(&id, &keys).await == crate::seeding::Decision::Block {
            return (Ignore, "blocked");
        }
        let held = self
            .store
            .run(move |repos| repos.held(&id))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let state = held.map(Held::into_state);
        let origin = publisher.unwrap_or(from);
        // A private repository is never gossiped: news of one is not passed on.
        if state
            .as_ref()
            .is_some_and(|s| s.identity.current().is_private())
        {
            return (Ignore, "private");
        }
        if let (Some(state), SharedAnnouncement::View(header)) = (&state, &announcement)
            && !state.identity.may_publish(&header.signer)
        {
            return self.judge_fork(state, header, from, origin).await;
        }
        let judged = judge(state, announcement);
        let wanted = || async { self.engine.wants(&id, &keys).await };
        match judged {
            Judged::Forged(why) => {
                tracing::info!(%from, repository = %id, "rejected announcement: {why}");
                self.client.penalize(from, Penalty::InvalidAnnouncement);
                (Reject, "rejected")
            }
            Judged::News => {
                if wanted().await {
                    self.engine.trigger_to(id, Some(origin), 0);
                }
                (Accept, "accepted")
            }
            Judged::Unjudged => {
                if wanted().await {
                    self.engine.trigger_to(id, Some(origin), 0);
                }
                (Ignore, "unjudged")
            }
            Judged::Equivocation(signer, sequence) => {
                self.engine
                    .ledger()
                    .observe_view(id, &signer, sequence, origin);
                (Ignore, "equivocation")
            }
            Judged::Ignored(why) => (Ignore, why),
        }
    }
}

impl Server {
    /// A contributor's fork moved: relayed and fetched if this node would keep it (the
    /// key not blocked, contributions on, room for its fork), else ignored. Relaying only
    /// what a node keeps bounds what a crowd of new keys can make the network carry.
    async fn judge_fork(
        &self,
        state: &RepositoryState,
        header: &guts_protocol::SignedHeader,
        from: PeerId,
        origin: PeerId,
    ) -> (gossipsub::MessageAcceptance, &'static str) {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let id = state.identity.repository();
        if let Err(e) = header.verify_signature() {
            tracing::info!(%from, repository = %id, "rejected announcement: {e}");
            self.client.penalize(from, Penalty::InvalidAnnouncement);
            return (Reject, "rejected");
        }
        let policy = self.engine.change_policy().clone();
        if policy.blocked.contains(header.signer.as_bytes()) {
            return (Ignore, "blocked");
        }
        let identity = state.identity.clone();
        let held = self
            .store
            .run(move |repos| {
                let closed = repos.contributions_closed(&id, &identity)?;
                Ok::<_, StorageError>((repos.forks(&id)?, closed))
            })
            .await
            .ok()
            .and_then(Result::ok);
        let Some((forks, closed)) = held else {
            return (Ignore, "unjudged");
        };
        if closed {
            return (Ignore, "contributions_off");
        }
        match forks.of(&header.signer) {
            Some(f) if f.sequence() >= header.sequence() => return (Ignore, "old"),
            None if forks.len() >= policy.forks.max_forks => return (Ignore, "forks_full"),
            _ => {}
        }
        // The fork's signer is a contributor: the repository's own keys decide.
        if self.engine.wants(&id, &[]).await {
            self.engine.trigger_to(id, Some(origin), 0);
        }
        (Accept, "accepted")
    }
}

/// Judges `announcement` against `held` (the repository's state here, if any).
fn judge(held: Option<RepositoryState>, announcement: SharedAnnouncement) -> Judged {
    match announcement {
        SharedAnnouncement::View(header) => {
            if let Err(e) = header.verify_signature() {
                return Judged::Forged(e.to_string());
            }
            let Some(state) = held else {
                return Judged::Ignored("unknown");
            };
            if !state.identity.may_publish(&header.signer) {
                return Judged::Unjudged;
            }
            match state.views.of(&header.signer) {
                Some(view)
                    if view.sequence() == header.sequence()
                        && view.signed.header != header.header =>
                {
                    Judged::Equivocation(header.signer, header.sequence())
                }
                Some(view) if view.sequence() >= header.sequence() => Judged::Ignored("old"),
                _ => Judged::News,
            }
        }
        SharedAnnouncement::Version(version) => {
            let Some(mut state) = held else {
                return Judged::Ignored("unknown");
            };
            match state.identity.add(version) {
                Ok(VersionAdded::Unchanged) => Judged::Ignored("old"),
                Ok(_) => Judged::News,
                Err(e) => {
                    let e = StorageError::from(e);
                    if e.is_peer_fault() {
                        Judged::Forged(e.to_string())
                    } else {
                        Judged::Unjudged
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use guts_protocol::{IdentityDoc, SignedRefs, SignedVersion};

    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn state() -> (RepositoryState, IdentityDoc) {
        let genesis = IdentityDoc::genesis(&key(1).verifying_key(), "shared".parse().unwrap());
        let mut state = RepositoryState::new(genesis.clone()).unwrap();
        let v2 = genesis
            .next([1, 2].map(|s| key(s).verifying_key()), 2)
            .unwrap();
        state
            .identity
            .add(SignedVersion::propose(v2.clone(), &key(1)))
            .unwrap();
        (state, v2)
    }

    fn view(signer: u8, sequence: u64) -> SharedAnnouncement {
        let (state, _) = state();
        let view = SignedRefs::sign_view(
            &key(signer),
            state.identity.repository(),
            "shared".parse().unwrap(),
            sequence,
            None,
            Default::default(),
        )
        .unwrap();
        SharedAnnouncement::View(Box::new(view.signed))
    }

    #[test]
    fn a_second_view_of_one_sequence_is_an_equivocation() {
        let (mut held, _) = state();
        let refs = [(
            "refs/heads/main".parse().unwrap(),
            guts_protocol::ObjectId([1; 20]),
        )];
        let first = SignedRefs::sign_view(
            &key(2),
            held.identity.repository(),
            "shared".parse().unwrap(),
            3,
            None,
            refs.into(),
        )
        .unwrap();
        held.views.add(first.clone(), &held.identity).unwrap();
        assert_eq!(
            judge(
                Some(held.clone()),
                SharedAnnouncement::View(Box::new(first.signed))
            ),
            Judged::Ignored("old")
        );
        assert_eq!(
            judge(Some(held), view(2, 3)),
            Judged::Equivocation(key(2).verifying_key(), 3)
        );
    }

    #[test]
    fn views_are_judged_by_who_signed_them_and_how_new() {
        let (held, v2) = state();
        assert_eq!(judge(Some(held.clone()), view(2, 1)), Judged::News);
        assert_eq!(judge(None, view(2, 1)), Judged::Ignored("unknown"));
        assert_eq!(judge(Some(held.clone()), view(7, 1)), Judged::Unjudged);
        let SharedAnnouncement::View(mut forged) = view(2, 5) else {
            unreachable!()
        };
        forged.header.sequence = 6;
        assert!(matches!(
            judge(Some(held.clone()), SharedAnnouncement::View(forged)),
            Judged::Forged(_)
        ));
        // A version already held is old news; one after it signed by an outsider is
        // forged; one signed by a maintainer is news.
        let again = SignedVersion::propose(v2.clone(), &key(1));
        assert_eq!(
            judge(Some(held.clone()), SharedAnnouncement::Version(again)),
            Judged::Ignored("old")
        );
        let v3 = v2.next([key(1).verifying_key()], 1).unwrap();
        assert!(matches!(
            judge(
                Some(held.clone()),
                SharedAnnouncement::Version(SignedVersion::propose(v3.clone(), &key(9)))
            ),
            Judged::Forged(_)
        ));
        assert_eq!(
            judge(
                Some(held),
                SharedAnnouncement::Version(SignedVersion::propose(v3, &key(2)))
            ),
            Judged::News
        );
    }
}
