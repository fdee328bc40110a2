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
}
