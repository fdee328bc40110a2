//! A contributor's patch taken with its commits, then judged merged once the owner's
//! branch holds it; a patch whose commits were not pushed is refused.

use std::collections::BTreeSet;

use guts_cob::{Action, Change, ChangeId, Lifecycle, PatchState, SignedChange};
use guts_protocol::{ObjectId, RepositoryId};

use super::changes::ChangePolicy;
use super::object_id;
use super::test_support::{Fixture, git_push, key, store};
use crate::{RefUpdate, Repositories, StorageError};

fn open_patch(id: RepositoryId, base: ObjectId, head: ObjectId) -> SignedChange {
    SignedChange::sign(
        Change {
            repository: id,
            object: None,
            parents: vec![],
            author: key(2).verifying_key(),
            timestamp: 1_700_000_000,
            action: Action::OpenPatch {
                title: "Say more".into(),
                description: "README says more".into(),
                target: "refs/heads/main".parse().unwrap(),
                base,
                head,
                draft: false,
            },
        },
        &key(2),
    )
    .unwrap()
}

fn anyone(_: &ed25519_dalek::VerifyingKey) -> bool {
    false
}

fn state_of(repos: &Repositories, id: &RepositoryId, patch: &ChangeId) -> PatchState {
    repos
        .collaboration(id, &BTreeSet::new())
        .unwrap()
        .patch(patch)
        .unwrap()
        .1
}

#[test]
fn a_contributed_patch_comes_with_its_commits_and_merges_with_the_branch() {
    let fx = Fixture::new();
    let (_d, repos) = store();
    let id = repos
        .import(fx.path(), None, &key(1))
        .unwrap()
        .snapshot
        .repository();
    let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
    let work = fx.commit("refs/heads/work", &[("README", "more\n")], &[main]);

    // Nothing pushed: the patch names a commit the store cannot have.
    let area = repos.create_contribution_area(&id).unwrap();
    let signed = open_patch(id, object_id(main), object_id(work));
    let policy = ChangePolicy::default();
    let err = repos
        .contribute(&id, &area, &signed, &policy, &anyone)
        .unwrap_err();
    assert!(
        matches!(err, StorageError::MissingObject { object, .. } if object == object_id(work)),
        "{err}"
    );
    assert!(!area.exists(), "the area goes whatever happens");

    let area = repos.create_contribution_area(&id).unwrap();
    git_push(&fx, &area, &format!("{work}:refs/heads/work"));
    let taken = repos
        .contribute(&id, &area, &signed, &policy, &anyone)
        .unwrap();
    assert_eq!(taken.taken.len(), 1);
    let patch = taken.taken[0];
    assert!(
        git2::Repository::open_bare(repos.path(&id))
            .unwrap()
            .find_commit(work)
            .is_ok(),
        "the patch's commit is in the store"
    );
    let collab = repos.collaboration(&id, &BTreeSet::new()).unwrap();
    let (p, state) = collab.patch(&patch).unwrap();
    assert_eq!(p.title, "Say more");
    assert_eq!(p.lifecycle, Lifecycle::Open);
    assert_eq!(*state, PatchState::Open);
    // A blocked author's patch is not shown.
    let blocked = [*key(2).verifying_key().as_bytes()].into();
    assert!(
        repos
            .collaboration(&id, &blocked)
            .unwrap()
            .patches
            .is_empty()
    );

    // The owner merges it: its branch now holds the commit.
    let area = repos.create_staging(&id, &key(1)).unwrap();
    let update = RefUpdate {
        name: "refs/heads/main".into(),
        new: Some(object_id(work)),
        force: false,
    };
    repos.push(&id, &area, &[update], &key(1)).unwrap();
    assert_eq!(
        state_of(&repos, &id, &patch),
        PatchState::Merged {
            revision: patch,
            head: object_id(work)
        }
    );

    // A second patch, on top of the first, is open beside it: each head judged alone.
    let more = fx.commit("refs/heads/work", &[("README", "even more\n")], &[work]);
    let area = repos.create_contribution_area(&id).unwrap();
    git_push(&fx, &area, &format!("{more}:refs/heads/work"));
    let mut second = open_patch(id, object_id(work), object_id(more));
    second.change.timestamp += 1;
    let second = SignedChange::sign(second.change, &key(2)).unwrap();
    let taken = repos
        .contribute(&id, &area, &second, &policy, &anyone)
        .unwrap();
    let second = taken.taken[0];
    assert_eq!(state_of(&repos, &id, &second), PatchState::Open);
    assert!(matches!(
        state_of(&repos, &id, &patch),
        PatchState::Merged { .. }
    ));
}

/// A peer's pack of `crafted`'s objects plus the git form of a patch (by `key(3)`) whose
/// head is `head`, offered as that patch.
fn offer_patch(
    repos: &Repositories,
    id: &RepositoryId,
    crafted: &mut guts_crafted::Crafted,
    head: git2::Oid,
) -> Result<super::changes::ChangesAccepted, StorageError> {
    let signed = SignedChange::sign(
        Change {
            repository: *id,
            object: None,
            parents: vec![],
            author: key(3).verifying_key(),
            timestamp: 1,
            action: Action::OpenPatch {
                title: "t".into(),
                description: String::new(),
                target: "refs/heads/main".parse().unwrap(),
                base: object_id(head),
                head: object_id(head),
                draft: false,
            },
        },
        &key(3),
    )
    .unwrap();
    let form = signed.git_form(&super::changes::GitObjectHasher);
    crafted.write(git2::ObjectType::Blob, &form.blob);
    crafted.write(git2::ObjectType::Tree, &form.tree);
    let change = crafted.write(git2::ObjectType::Commit, &form.commit);
    assert_eq!(object_id(change), form.id);
    let mut chunks = std::iter::once(Ok(crafted.pack()));
    repos.accept_changes(
        id,
        &[form.id],
        Some(&mut chunks),
        &ChangePolicy::default(),
        &anyone,
        &mut |_| {},
    )
}

#[test]
fn a_patch_whose_branch_breaks_the_stores_limits_is_refused_and_blames_the_sender() {
    let fx = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let repos = Repositories::new(dir.path()).with_limits(crate::Limits {
        max_tree_depth: 64,
        ..crate::Limits::default()
    });
    let id = repos
        .import(fx.path(), None, &key(1))
        .unwrap()
        .snapshot
        .repository();

    // A branch whose tree nests deeper than the store takes.
    let mut deep = guts_crafted::Crafted::new();
    let tree = deep.chain(100);
    let head = deep.commit(tree);
    let err = offer_patch(&repos, &id, &mut deep, head).unwrap_err();
    assert!(err.is_peer_fault(), "{err}");
    assert!(err.to_string().contains("deep"), "{err}");

    // A pack that is a delta bomb: refused from its first entries, whatever it claims.
    let mut chunks = std::iter::once(Ok(guts_crafted::delta_bomb(2 << 30)));
    let err = repos
        .accept_changes(
            &id,
            &[ObjectId([7; 20])],
            Some(&mut chunks),
            &ChangePolicy::default(),
            &anyone,
            &mut |_| {},
        )
        .unwrap_err();
    assert!(err.is_peer_fault(), "{err}");

    assert!(repos.change_tips(&id).unwrap().is_empty(), "nothing taken");
    assert!(
        repos
            .collaboration(&id, &BTreeSet::new())
            .unwrap()
            .patches
            .is_empty()
    );
}
