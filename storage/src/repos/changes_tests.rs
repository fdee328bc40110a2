//! Changes in the store: written here, taken from a peer, refused when forged, left out
//! by policy, kept by a repack.

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use git2::{ObjectType, Repository};
use guts_cob::{Action, Change, ChangeId, Context, Issue, Patch, SignedChange};
use guts_protocol::{IdentityDoc, ObjectId, RepositoryId};

use super::changes::{ChangePolicy, GitObjectHasher};
use super::test_support::{Fixture, accept, key, pack_for, store};
use super::{Repositories, object_id};
use crate::StorageError;

fn change(
    repos: &Repositories,
    id: &RepositoryId,
    author: &SigningKey,
    object: Option<ChangeId>,
    action: Action,
) -> SignedChange {
    let parents = match object {
        Some(o) => {
            let mut p = repos
                .change_tips(id)
                .unwrap()
                .remove(&o)
                .unwrap_or_default();
            p.sort();
            p
        }
        None => vec![],
    };
    SignedChange::sign(
        Change {
            repository: *id,
            object,
            parents,
            author: author.verifying_key(),
            timestamp: 1_700_000_000,
            action,
        },
        author,
    )
    .unwrap()
}

fn issue(title: &str) -> Action {
    Action::OpenIssue {
        title: title.into(),
        body: "details".into(),
        labels: vec![],
    }
}

fn comment(body: &str) -> Action {
    Action::Comment {
        body: body.into(),
        reply_to: None,
    }
}

/// A store holding the fixture as `key(1)`'s repository, and a second one that fetched it.
fn two_stores(
    fx: &Fixture,
) -> (
    Vec<tempfile::TempDir>,
    Repositories,
    Repositories,
    RepositoryId,
) {
    let (d1, a) = store();
    let (d2, b) = store();
    let snapshot = a.import(fx.path(), None, &key(1)).unwrap().snapshot;
    accept(&b, &snapshot, pack_for(&a, &b, &snapshot)).unwrap();
    (vec![d1, d2], a, b, snapshot.repository())
}

/// What `to` takes of `from`'s changes, as a fetch would bring them.
fn sync(
    from: &Repositories,
    to: &Repositories,
    id: &RepositoryId,
    policy: &ChangePolicy,
) -> Result<super::changes::ChangesAccepted, StorageError> {
    let offered: Vec<ChangeId> = from
        .change_tips(id)
        .unwrap()
        .into_values()
        .flatten()
        .collect();
    let wants = to.missing(id, &offered).unwrap();
    let mut chunks = Vec::new();
    if !wants.is_empty() {
        from.build_pack(id, &wants, &to.haves(id).unwrap(), &mut |_| {}, &mut |c| {
            chunks.push(c.to_vec());
            true
        })
        .unwrap();
    }
    let mut it = chunks.into_iter().map(Ok);
    let creator = key(1).verifying_key();
    let pack: Option<&mut dyn Iterator<Item = std::io::Result<Vec<u8>>>> = if wants.is_empty() {
        None
    } else {
        Some(&mut it)
    };
    to.accept_changes(id, &offered, pack, policy, &|k| *k == creator, &mut |_| {})
}

fn identity(id: &RepositoryId, repos: &Repositories) -> IdentityDoc {
    repos
        .held(id)
        .unwrap()
        .unwrap()
        .into_state()
        .identity
        .current()
        .clone()
}

fn issues(repos: &Repositories, id: &RepositoryId) -> Vec<Issue> {
    let graph = repos.changes(id).unwrap();
    let doc = identity(id, repos);
    let none = BTreeSet::new();
    let ctx = Context {
        identity: &doc,
        silenced: &none,
    };
    graph
        .grouped()
        .into_values()
        .filter_map(|changes| Issue::replay(changes, &ctx))
        .collect()
}

#[test]
fn changes_written_here_replicate_whole_and_survive_a_repack() {
    let fx = Fixture::new();
    let (_dirs, a, b, id) = two_stores(&fx);
    let opened = a
        .write_change(&id, &change(&a, &id, &key(2), None, issue("crash")))
        .unwrap();
    a.write_change(
        &id,
        &change(&a, &id, &key(1), Some(opened), comment("confirmed")),
    )
    .unwrap();
    let feature = fx.repo.refname_to_id("refs/heads/feature").unwrap();
    let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
    let patch = a
        .write_change(
            &id,
            &change(
                &a,
                &id,
                &key(3),
                None,
                Action::OpenPatch {
                    title: "feature".into(),
                    description: "adds b".into(),
                    target: "refs/heads/main".parse().unwrap(),
                    base: object_id(main),
                    head: object_id(feature),
                    draft: false,
                },
            ),
        )
        .unwrap();
    let tips = a.change_tips(&id).unwrap();
    assert_eq!(tips.len(), 2, "one entry per object");
    assert!(tips.values().all(|t| t.len() == 1));

    let taken = sync(&a, &b, &id, &ChangePolicy::default()).unwrap();
    assert_eq!(taken.taken.len(), 3);
    assert_eq!(taken.objects, BTreeSet::from([opened, patch]));
    assert_eq!(b.change_tips(&id).unwrap(), tips);
    let on_b = issues(&b, &id);
    assert_eq!(on_b, issues(&a, &id));
    assert_eq!(on_b[0].thread.comments.len(), 2);
    // Again: nothing new.
    assert!(
        sync(&a, &b, &id, &ChangePolicy::default())
            .unwrap()
            .taken
            .is_empty()
    );

    // The patch's head travels with it, and B serves all of it on.
    let graph = b.changes(&id).unwrap();
    let doc = identity(&id, &b);
    let none = BTreeSet::new();
    let ctx = Context {
        identity: &doc,
        silenced: &none,
    };
    let p = Patch::replay(graph.order_of(patch), &ctx).unwrap();
    assert_eq!(p.latest().head, object_id(feature));
    let servable = b.servable(&id).unwrap().unwrap();
    assert!(servable.contains(&patch));

    b.repack(&id).unwrap();
    assert_eq!(
        b.changes(&id).unwrap().len(),
        3,
        "a repack keeps every change"
    );
    assert_eq!(issues(&b, &id), on_b);
}

/// Writes `signed` into `repos` as its commit, with `message` and `parents` in place of
/// its own, and returns the commit: what a forger would send.
fn forge(
    repos: &Repositories,
    id: &RepositoryId,
    signed: &SignedChange,
    message: &str,
) -> ObjectId {
    let repo = Repository::open_bare(repos.path(id)).unwrap();
    let odb = repo.odb().unwrap();
    let form = signed.git_form(&GitObjectHasher);
    odb.write(ObjectType::Blob, &form.blob).unwrap();
    let tree = odb.write(ObjectType::Tree, &form.tree).unwrap();
    let sig = git2::Signature::new(
        "guts",
        "guts@guts.invalid",
        &git2::Time::new(1_700_000_000, 0),
    )
    .unwrap();
    let commit = repo
        .commit(
            None,
            &sig,
            &sig,
            message,
            &repo.find_tree(tree).unwrap(),
            &[],
        )
        .unwrap();
    let name = format!("refs/cobs/{0}/{0}", object_id(commit));
    repo.reference(&name, commit, true, "forged").unwrap();
    object_id(commit)
}

#[test]
fn a_forged_or_foreign_change_is_refused_whole_and_blames_the_sender() {
    let fx = Fixture::new();
    let (_dirs, a, b, id) = two_stores(&fx);
    // The same signed change in a commit of another form: a second id for one action.
    let signed = change(&a, &id, &key(2), None, issue("spam"));
    let forged = forge(&a, &id, &signed, "looks innocent\n");
    let err = sync(&a, &b, &id, &ChangePolicy::default()).unwrap_err();
    assert!(err.is_peer_fault(), "{err}");
    assert!(err.to_string().contains(&forged.to_string()), "{err}");
    assert!(
        err.to_string().contains("holds a change whose commit is"),
        "{err}"
    );
    assert!(b.change_tips(&id).unwrap().is_empty());

    // A change signed by a key other than its author.
    let (_d3, c) = store();
    let snapshot = a.held(&id).unwrap();
    let super::held::Held::Owner(snapshot) = snapshot.unwrap() else {
        panic!()
    };
    accept(&c, &snapshot, pack_for(&a, &c, &snapshot)).unwrap();
    let mut stolen = change(&c, &id, &key(2), None, issue("mine"));
    stolen.signature = SignedChange::sign(
        Change {
            author: key(3).verifying_key(),
            ..stolen.change.clone()
        },
        &key(3),
    )
    .unwrap()
    .signature;
    let repo = Repository::open_bare(c.path(&id)).unwrap();
    let form = stolen.git_form(&GitObjectHasher);
    let odb = repo.odb().unwrap();
    odb.write(ObjectType::Blob, &form.blob).unwrap();
    odb.write(ObjectType::Tree, &form.tree).unwrap();
    odb.write(ObjectType::Commit, &form.commit).unwrap();
    repo.reference(
        &format!("refs/cobs/{0}/{0}", form.id),
        super::oid(&form.id),
        true,
        "x",
    )
    .unwrap();
    let err = sync(&c, &b, &id, &ChangePolicy::default()).unwrap_err();
    assert!(err.is_peer_fault());
    assert!(err.to_string().contains("not signed by that key"), "{err}");

    // A change of another repository.
    let other = RepositoryId::derive(key(9).verifying_key().as_bytes(), &"other".parse().unwrap());
    let foreign = SignedChange::sign(
        Change {
            repository: other,
            ..change(&b, &id, &key(2), None, issue("elsewhere")).change
        },
        &key(2),
    )
    .unwrap();
    let err = b.write_change(&id, &foreign);
    assert!(
        err.is_ok(),
        "writing is the author's business; taking it is the check"
    );
    let (_d4, d) = store();
    accept(&d, &snapshot, pack_for(&a, &d, &snapshot)).unwrap();
    let err = sync(&b, &d, &id, &ChangePolicy::default()).unwrap_err();
    assert!(err.to_string().contains("is a change of"), "{err}");
}

#[test]
fn blocked_keys_and_keys_past_their_quota_are_left_out_without_blame() {
    let fx = Fixture::new();
    let (_dirs, a, b, id) = two_stores(&fx);
    let spam: Vec<ChangeId> = (0..3)
        .map(|i| {
            a.write_change(
                &id,
                &change(&a, &id, &key(5), None, issue(&format!("spam {i}"))),
            )
            .unwrap()
        })
        .collect();
    let real = a
        .write_change(&id, &change(&a, &id, &key(2), None, issue("real")))
        .unwrap();
    // A reply to the blocked key's issue goes with it.
    a.write_change(&id, &change(&a, &id, &key(2), Some(spam[0]), comment("+1")))
        .unwrap();
    // The creator (a maintainer) is not held to a quota.
    for i in 0..3 {
        a.write_change(
            &id,
            &change(&a, &id, &key(1), None, issue(&format!("mine {i}"))),
        )
        .unwrap();
    }

    let policy = ChangePolicy {
        blocked: BTreeSet::from([*key(5).verifying_key().as_bytes()]),
        max_objects_per_key: 2,
        ..ChangePolicy::default()
    };
    let taken = sync(&a, &b, &id, &policy).unwrap();
    assert_eq!(taken.left_out.len(), 4, "{:?}", taken.left_out);
    assert!(
        taken
            .left_out
            .iter()
            .filter(|(_, why)| why.contains("blocked"))
            .count()
            == 3
    );
    assert!(
        taken
            .left_out
            .iter()
            .any(|(_, why)| why.contains("follows a change left out"))
    );
    let held = b.changes(&id).unwrap();
    assert!(spam.iter().all(|s| !held.contains(s)));
    assert!(held.contains(&real));
    assert_eq!(
        held.objects().count(),
        4,
        "{:?}",
        held.iter()
            .map(|(i, c)| (i, c.author, c.action.name()))
            .collect::<Vec<_>>()
    );

    let quota = ChangePolicy {
        max_objects_per_key: 1,
        ..ChangePolicy::default()
    };
    let (_d3, c) = store();
    let super::held::Held::Owner(snapshot) = a.held(&id).unwrap().unwrap() else {
        panic!()
    };
    accept(&c, &snapshot, pack_for(&a, &c, &snapshot)).unwrap();
    let taken = sync(&a, &c, &id, &quota).unwrap();
    let over: Vec<_> = taken
        .left_out
        .iter()
        .filter(|(_, w)| w.contains("opened 1 objects"))
        .collect();
    assert_eq!(over.len(), 2, "{:?}", taken.left_out);
    // One of the three by key(5), key(2)'s one, the creator's three.
    assert_eq!(c.changes(&id).unwrap().objects().count(), 1 + 1 + 3);
}

/// Writes `signed`'s objects into `repos` under its tip ref, with its blob's format byte
/// set to `format`: a change as a later release would write it. Returns its commit.
fn write_as_format(
    repos: &Repositories,
    id: &RepositoryId,
    signed: &SignedChange,
    format: u8,
) -> ObjectId {
    let repo = Repository::open_bare(repos.path(id)).unwrap();
    let odb = repo.odb().unwrap();
    let form = signed.git_form(&GitObjectHasher);
    let mut blob = form.blob.clone();
    blob[0] = format;
    let blob = odb.write(ObjectType::Blob, &blob).unwrap();
    let mut tree = b"100644 change\0".to_vec();
    tree.extend_from_slice(blob.as_bytes());
    let tree = odb.write(ObjectType::Tree, &tree).unwrap();
    let old_tree = String::from_utf8(form.commit.clone()).unwrap();
    let first = old_tree.lines().next().unwrap().to_owned();
    let commit = old_tree.replacen(&first, &format!("tree {tree}"), 1);
    let commit = odb.write(ObjectType::Commit, commit.as_bytes()).unwrap();
    let object = signed.change.object_id(object_id(commit));
    repo.reference(
        &format!("refs/cobs/{object}/{commit}"),
        commit,
        true,
        "a later release's",
    )
    .unwrap();
    object_id(commit)
}

#[test]
fn a_change_of_a_newer_format_and_what_follows_it_wait_without_blame() {
    let fx = Fixture::new();
    let (_dirs, a, b, id) = two_stores(&fx);
    let fine = change(&a, &id, &key(2), None, issue("today's"));
    let fine = a.write_change(&id, &fine).unwrap();
    let future = change(&a, &id, &key(2), None, issue("tomorrow's"));
    let future = write_as_format(&a, &id, &future, 2);
    let reply = SignedChange::sign(
        Change {
            repository: id,
            object: Some(future),
            parents: vec![future],
            author: key(3).verifying_key(),
            timestamp: 1_700_000_001,
            action: comment("on tomorrow's"),
        },
        &key(3),
    )
    .unwrap();
    let reply = write_as_format(&a, &id, &reply, guts_cob::change::CHANGE_FORMAT);

    let accepted = sync(&a, &b, &id, &ChangePolicy::default()).unwrap();
    assert_eq!(accepted.taken, vec![fine]);
    let waiting: BTreeSet<ChangeId> = accepted.left_out.iter().map(|(c, _)| *c).collect();
    assert_eq!(waiting, BTreeSet::from([future, reply]));
    let why = &accepted
        .left_out
        .iter()
        .find(|(c, _)| *c == future)
        .unwrap()
        .1;
    assert!(why.contains("change format 2"), "{why}");
    assert_eq!(issues(&b, &id).len(), 1);
}
