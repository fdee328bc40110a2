//! Contributors' forks: pushed by a key that maintains nothing, taken by another store
//! with their objects, held to the node's policy, refused when forged, kept by a repack.

use guts_cob::{Action, Change, SignedChange};
use guts_protocol::{ForkLimits, RepositoryId, SignedRefs};

use super::changes::ChangePolicy;
use super::test_support::{Fixture, fsck, git_refs, key, push_to as push, store};
use super::{Repositories, object_id};
use crate::{StorageError, fork_ref};

const MAIN: &str = "refs/heads/main";

/// Sends `from`'s forks of `id` to `to` with the objects `to` lacks.
fn replicate(
    from: &Repositories,
    to: &Repositories,
    id: &RepositoryId,
    policy: &ChangePolicy,
) -> Result<super::forks::ForksAccepted, StorageError> {
    let forks: Vec<SignedRefs> = from.forks(id).unwrap().iter().cloned().collect();
    offer(from, to, id, forks, policy)
}

fn offer(
    from: &Repositories,
    to: &Repositories,
    id: &RepositoryId,
    forks: Vec<SignedRefs>,
    policy: &ChangePolicy,
) -> Result<super::forks::ForksAccepted, StorageError> {
    let mut targets: Vec<_> = forks
        .iter()
        .flat_map(|f| f.refs.values().copied())
        .collect();
    targets.sort();
    targets.dedup();
    let wants = to.missing(id, &targets).unwrap();
    let mut chunks = Vec::new();
    if !wants.is_empty() {
        from.build_pack(id, &wants, &to.haves(id).unwrap(), &mut |_| {}, &mut |c| {
            chunks.push(c.to_vec());
            true
        })
        .unwrap();
    }
    let mut it = chunks.into_iter().map(Ok);
    to.accept_forks(id, forks, Some(&mut it), policy, &mut |_| {})
}

/// An owner's repository on two stores: the owner's and a replica.
fn two_stores() -> (
    Fixture,
    (tempfile::TempDir, Repositories),
    (tempfile::TempDir, Repositories),
    RepositoryId,
) {
    let fx = Fixture::new();
    let (d1, origin) = store();
    let imported = origin.import(fx.path(), None, &key(1)).unwrap().snapshot;
    let (d2, replica) = store();
    let chunks = super::test_support::pack_for(&origin, &replica, &imported);
    super::test_support::accept(&replica, &imported, chunks).unwrap();
    let id = imported.repository();
    (fx, (d1, origin), (d2, replica), id)
}

#[test]
fn a_contributors_push_makes_a_fork_that_another_store_takes_with_its_objects() {
    let (fx, (_d1, origin), (_d2, replica), id) = two_stores();
    let main = fx.repo.refname_to_id(MAIN).unwrap();
    let work = fx.commit("refs/heads/work", &[("NEW", "contribution\n")], &[main]);

    let pushed = push(&origin, &fx, &id, &key(2), "refs/heads/work", work).unwrap();
    assert!(pushed.fork && pushed.changed && !pushed.shared);
    assert_eq!(pushed.snapshot.sequence(), 1);
    // The owner's refs did not move; the fork is under its own prefix.
    let refs = git_refs(&origin, &id);
    assert!(!refs.contains_key("refs/heads/work"));
    let name = "refs/heads/work".parse().unwrap();
    assert_eq!(
        refs.get(&fork_ref(&key(2).verifying_key(), &name)),
        Some(&work)
    );
    assert!(matches!(
        origin.held(&id).unwrap().unwrap(),
        crate::Held::Owner(_)
    ));

    let taken = replicate(&origin, &replica, &id, &ChangePolicy::default()).unwrap();
    assert_eq!(taken.taken, vec![(key(2).verifying_key(), 1)]);
    assert!(taken.stats.objects > 0);
    assert_eq!(git_refs(&replica, &id), git_refs(&origin, &id));
    assert_eq!(replica.forks(&id).unwrap(), origin.forks(&id).unwrap());
    fsck(&replica.path(&id));
    // Nothing new the second time; a repack keeps the fork's objects.
    assert!(
        replicate(&origin, &replica, &id, &ChangePolicy::default())
            .unwrap()
            .taken
            .is_empty()
    );
    replica.repack(&id).unwrap();
    fsck(&replica.path(&id));
    assert!(replica.missing(&id, &[object_id(work)]).unwrap().is_empty());

    // The next push moves the fork on; the owner's own push is no fork.
    let more = fx.commit("refs/heads/work", &[("NEW", "more\n")], &[work]);
    let next = push(&origin, &fx, &id, &key(2), "refs/heads/work", more).unwrap();
    assert_eq!(next.snapshot.sequence(), 2);
    let own = fx.commit(MAIN, &[("README", "owner\n")], &[main]);
    assert!(!push(&origin, &fx, &id, &key(1), MAIN, own).unwrap().fork);
}

#[test]
fn the_nodes_policy_decides_which_forks_it_keeps() {
    let (fx, (_d1, origin), (_d2, replica), id) = two_stores();
    let main = fx.repo.refname_to_id(MAIN).unwrap();
    for seed in [2, 3, 4] {
        let c = fx.commit(
            &format!("refs/heads/f{seed}"),
            &[("F", &format!("{seed}\n"))],
            &[main],
        );
        push(&origin, &fx, &id, &key(seed), "refs/heads/f", c).unwrap();
    }
    let mut policy = ChangePolicy {
        forks: ForkLimits {
            max_forks: 2,
            max_refs: 8,
        },
        ..ChangePolicy::default()
    };
    policy.blocked.insert(key(3).verifying_key().to_bytes());
    let taken = replicate(&origin, &replica, &id, &policy).unwrap();
    let keys: Vec<_> = taken.taken.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, [key(2).verifying_key(), key(4).verifying_key()]);
    assert!(
        taken.left_out[0].1.contains("blocked"),
        "{:?}",
        taken.left_out
    );
    // Full: a fifth key's fork is left out, no fault of the sender's.
    let c = fx.commit("refs/heads/f5", &[("F", "5\n")], &[main]);
    push(&origin, &fx, &id, &key(5), "refs/heads/f", c).unwrap();
    let taken = replicate(&origin, &replica, &id, &policy).unwrap();
    assert!(taken.taken.is_empty());
    assert!(
        taken
            .left_out
            .iter()
            .any(|(_, why)| why.contains("2 forks")),
        "{:?}",
        taken.left_out
    );
}

#[test]
fn a_forged_fork_is_the_senders_fault_and_changes_nothing() {
    let (fx, (_d1, origin), (_d2, replica), id) = two_stores();
    let main = fx.repo.refname_to_id(MAIN).unwrap();
    let c = fx.commit("refs/heads/f", &[("F", "x\n")], &[main]);
    push(&origin, &fx, &id, &key(2), "refs/heads/f", c).unwrap();
    let mut forged: Vec<SignedRefs> = origin.forks(&id).unwrap().iter().cloned().collect();
    forged[0].signed.signer = key(3).verifying_key();
    let err = offer(&origin, &replica, &id, forged, &ChangePolicy::default()).unwrap_err();
    assert!(err.is_peer_fault(), "{err}");
    assert!(replica.forks(&id).unwrap().is_empty());
    assert!(
        !git_refs(&replica, &id)
            .keys()
            .any(|r| r.starts_with(crate::FORKS_PREFIX))
    );
}

#[test]
fn with_contributions_off_no_fork_is_pushed_or_taken() {
    let (fx, (_d1, origin), (_d2, replica), id) = two_stores();
    let main = fx.repo.refname_to_id(MAIN).unwrap();
    let c = fx.commit("refs/heads/f", &[("F", "x\n")], &[main]);
    push(&origin, &fx, &id, &key(2), "refs/heads/f", c).unwrap();
    // The owner turns contributions off on the replica.
    let off = SignedChange::sign(
        Change {
            repository: id,
            object: None,
            parents: vec![],
            author: key(1).verifying_key(),
            timestamp: 1_700_000_000,
            action: Action::OpenModeration,
        },
        &key(1),
    )
    .unwrap();
    let opened = replica.write_change(&id, &off).unwrap();
    let close = SignedChange::sign(
        Change {
            repository: id,
            object: Some(opened),
            parents: vec![opened],
            author: key(1).verifying_key(),
            timestamp: 1_700_000_001,
            action: Action::Hide {
                key: guts_cob::everyone(),
            },
        },
        &key(1),
    )
    .unwrap();
    replica.write_change(&id, &close).unwrap();
    let taken = replicate(&origin, &replica, &id, &ChangePolicy::default()).unwrap();
    assert!(taken.taken.is_empty());
    assert!(
        taken.left_out[0].1.contains("contributions"),
        "{:?}",
        taken.left_out
    );
    let err = replica.create_staging(&id, &key(2)).unwrap_err();
    assert!(err.to_string().contains("contributions are off"), "{err}");
}
