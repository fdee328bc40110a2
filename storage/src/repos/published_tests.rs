//! The published copy (what git over HTTP serves) and `guts verify` on clones of it, with
//! real stores and stock git.

use std::path::{Path, PathBuf};
use std::process::Command;

use git2::{Oid, Repository};
use guts_protocol::record::{self, RECORD_REF};

use super::test_support::{Fixture, key, push_to, store};
use crate::clone_check::{CloneCheckError, Verdict, check_clone};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `git clone` of `from` through git's pack protocol (as over HTTP), with the record's
/// refspec when `record` is set.
fn clone_of(from: &Path, into: &Path, record: bool) -> PathBuf {
    let mut args = vec!["clone", "-q", "--no-local"];
    if record {
        args.extend(["-c", "remote.origin.fetch=+refs/guts/*:refs/guts/*"]);
    }
    let from = from.to_str().unwrap();
    let to = into.to_str().unwrap();
    args.extend([from, to]);
    git(Path::new("."), &args);
    into.to_owned()
}

fn verdict(check: &crate::clone_check::CloneCheck, name: &str) -> Option<Verdict> {
    check
        .refs
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.verdict)
}

#[test]
fn a_clone_of_the_published_copy_verifies_and_a_moved_ref_does_not() {
    let fx = Fixture::new();
    let (dir, repos) = store();
    let id = repos
        .import(fx.path(), None, &key(1))
        .unwrap()
        .snapshot
        .repository();
    let published = repos.published(&id).unwrap().unwrap();
    let copy = Repository::open_bare(&published).unwrap();
    let names: Vec<String> = copy
        .references()
        .unwrap()
        .flatten()
        .map(|r| r.name().unwrap().to_owned())
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("refs/heads/")
            || n.starts_with("refs/tags/")
            || n == RECORD_REF),
        "only canonical refs and the record: {names:?}"
    );
    assert!(
        std::fs::read_dir(published.join("objects/pack"))
            .unwrap()
            .next()
            .is_none(),
        "the objects stay in the store"
    );

    let work = dir.path().join("work");
    let clone = clone_of(&published, &work, true);
    let check = check_clone(&clone, None).unwrap();
    assert!(check.passed(), "{check:#?}");
    assert_eq!(check.repository, id);
    for name in [
        "refs/heads/main",
        "refs/heads/feature",
        "refs/tags/v0",
        "refs/tags/v1",
    ] {
        assert_eq!(verdict(&check, name), Some(Verdict::Matches), "{name}");
    }

    // The user's own branches are theirs: not judged.
    let feature = git(&clone, &["rev-parse", "refs/remotes/origin/feature"]);
    git(&clone, &["reset", "-q", "--hard", &feature]);
    assert!(check_clone(&clone, None).unwrap().passed());

    // A server that moved a branch, or slipped in a tag, is caught.
    git(
        &clone,
        &["update-ref", "refs/remotes/origin/main", &feature],
    );
    git(&clone, &["tag", "evil", &feature]);
    let check = check_clone(&clone, None).unwrap();
    assert!(!check.passed());
    assert_eq!(verdict(&check, "refs/heads/main"), Some(Verdict::Differs));
    assert_eq!(verdict(&check, "refs/tags/evil"), Some(Verdict::NotSigned));
    assert_eq!(
        verdict(&check, "refs/heads/feature"),
        Some(Verdict::Matches)
    );

    // A clone without the record says how to get it.
    let plain = clone_of(&published, &dir.path().join("plain"), false);
    let err = check_clone(&plain, None).unwrap_err();
    assert!(matches!(err, CloneCheckError::NoRecord { .. }), "{err}");
    assert!(err.to_string().contains("git fetch origin"), "{err}");
    assert!(matches!(
        check_clone(&plain, Some("upstream")),
        Err(CloneCheckError::NoSuchRemote(_))
    ));
}

#[test]
fn a_record_edited_to_match_a_moved_ref_is_refused() {
    let fx = Fixture::new();
    let (dir, repos) = store();
    let id = repos
        .import(fx.path(), None, &key(1))
        .unwrap()
        .snapshot
        .repository();
    let published = repos.published(&id).unwrap().unwrap();
    let clone = clone_of(&published, &dir.path().join("work"), true);

    // The server moves main and edits the record to say so, without the owner's key.
    let repo = Repository::open(&clone).unwrap();
    let blob = repo
        .find_reference(RECORD_REF)
        .unwrap()
        .peel_to_blob()
        .unwrap();
    let mut state = record::decode(blob.content()).unwrap();
    let feature = repo.refname_to_id("refs/remotes/origin/feature").unwrap();
    state.views[0].refs.insert(
        "refs/heads/main".parse().unwrap(),
        super::object_id(feature),
    );
    let forged = repo.blob(&record::encode(&state)).unwrap();
    repo.reference(RECORD_REF, forged, true, "forged").unwrap();
    repo.reference("refs/remotes/origin/main", feature, true, "moved")
        .unwrap();

    let check = check_clone(&clone, None).unwrap();
    assert!(!check.passed());
    assert_eq!(check.refused.len(), 1, "{check:#?}");
    assert_eq!(
        verdict(&check, "refs/heads/main"),
        Some(Verdict::NotSigned),
        "with the forged view refused, nothing signs main"
    );
}

#[test]
fn maintainers_views_travel_so_the_clone_weighs_them_as_the_node_does() {
    let fx = Fixture::new();
    let (dir, repos) = store();
    let alice = key(1);
    let id = repos
        .import(fx.path(), None, &alice)
        .unwrap()
        .snapshot
        .repository();
    let first = repos.published(&id).unwrap().unwrap();
    let first_record = Repository::open_bare(&first)
        .unwrap()
        .refname_to_id(RECORD_REF)
        .unwrap();
    let keys: Vec<_> = [1u8, 2, 3]
        .iter()
        .map(|s| key(*s).verifying_key())
        .collect();
    repos.propose(&id, keys, 2, &alice).unwrap();
    repos.adopt_view(&id, &key(2)).unwrap().unwrap();
    // Alice alone moves main ahead: one of the two needed, so main stays.
    let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
    let ahead = fx.commit("refs/heads/main", &[("new", "ahead\n")], &[main]);
    push_to(&repos, &fx, &id, &alice, "refs/heads/main", ahead).unwrap();

    let published = repos.published(&id).unwrap().unwrap();
    assert_eq!(published, first, "one copy, brought up to date");
    let copy = Repository::open_bare(&published).unwrap();
    assert_ne!(copy.refname_to_id(RECORD_REF).unwrap(), first_record);
    assert!(
        copy.find_object(first_record, None).is_ok(),
        "the record a fetch under way was told of is kept a while"
    );
    assert_eq!(copy.refname_to_id("refs/heads/main").unwrap(), main);

    let clone = clone_of(&published, &dir.path().join("work"), true);
    let views = git(&clone, &["for-each-ref", "refs/guts/views/"]);
    assert_eq!(
        views.lines().count(),
        2 * 4,
        "two views of four refs: {views}"
    );
    let check = check_clone(&clone, None).unwrap();
    assert!(check.passed(), "{check:#?}");
    assert_eq!((check.maintainers, check.threshold), (3, 2));
    let signed = check
        .refs
        .iter()
        .find(|r| r.name == "refs/heads/main")
        .and_then(|r| r.signed)
        .unwrap();
    assert_eq!(Oid::from_bytes(&signed.0).unwrap(), main);
}
