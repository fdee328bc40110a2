//! Encrypted repositories in real stores: a maintainer's push is sealed; a seeder takes
//! and serves the ciphertext without holding a plaintext object; a reader that got it only
//! from the seeder opens it; a reader removed gets no key to what is sealed after.

use std::process::Command;

use git2::{Oid, Repository};
use guts_protocol::sealed::KeyRing;
use guts_protocol::{RepositoryId, Visibility};

use super::Repositories;
use super::sealed::SEALED_REF;
use super::test_support::git_refs;
use super::test_support::{Fixture, key, push_to, replicate, store};

const MAIN: &str = "refs/heads/main";
const SECRET: &str = "the launch code is 0000 and nobody outside may read this line\n";

fn sealed_repo(readers: &[u8], seeders: &[u8]) -> (tempfile::TempDir, Repositories, RepositoryId) {
    let (dir, repos) = store();
    let repos = repos.with_reader(key(1));
    let id = repos
        .init("vault".parse().unwrap(), &key(1))
        .unwrap()
        .repository();
    let visibility = Visibility::sealed(
        readers.iter().map(|s| key(*s).verifying_key()),
        seeders.iter().map(|s| key(*s).verifying_key()),
    );
    repos
        .propose_with(
            &id,
            vec![key(1).verifying_key()],
            1,
            Some(visibility),
            &key(1),
        )
        .unwrap();
    (dir, repos, id)
}

/// Every object in the repository at `path`, with its content.
fn all_objects(path: &std::path::Path) -> Vec<u8> {
    let out = Command::new("git")
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .current_dir(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn opened_main(repos: &Repositories, id: &RepositoryId) -> Option<Oid> {
    let (refs, _) = repos.opened_refs(id).unwrap()?;
    refs.get(&MAIN.parse().unwrap()).map(super::oid)
}

#[test]
fn a_seeder_serves_ciphertext_that_only_readers_open() {
    let fx = Fixture::new();
    let (_a, alice, id) = sealed_repo(&[2], &[4]);
    let c = fx.commit(MAIN, &[("secret.txt", SECRET)], &[]);
    let pushed = push_to(&alice, &fx, &id, &key(1), MAIN, c).unwrap();
    assert!(pushed.changed && pushed.results.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(opened_main(&alice, &id), Some(c));
    // The store itself holds only the sealed form.
    let refs = git_refs(&alice, &id);
    assert!(
        refs.contains_key(SEALED_REF) && !refs.contains_key(MAIN),
        "{refs:?}"
    );
    assert!(!contains(&all_objects(&alice.path(&id)), SECRET.as_bytes()));
    assert!(contains(
        &all_objects(&alice.opened_path(&id)),
        SECRET.as_bytes()
    ));

    // D seeds: it takes the sealed form, cannot open it, holds no plaintext object.
    let (_d, dave) = store();
    let dave = dave.with_reader(key(4));
    replicate(&alice, &dave, &id).unwrap();
    assert_eq!(dave.opened_refs(&id).unwrap(), None);
    assert!(!dave.opened_path(&id).exists());
    let on_disk = all_objects(&dave.path(&id));
    assert!(!contains(&on_disk, SECRET.as_bytes()));
    let blob = Repository::open_bare(alice.opened_path(&id))
        .unwrap()
        .revparse_single("main:secret.txt")
        .unwrap()
        .id();
    assert!(
        Repository::open_bare(dave.path(&id))
            .unwrap()
            .find_object(blob, None)
            .is_err()
    );

    // B gets it from D alone and opens it.
    let (_b, bob) = store();
    let bob = bob.with_reader(key(2));
    replicate(&dave, &bob, &id).unwrap();
    assert_eq!(opened_main(&bob, &id), Some(c));
    let opened = Repository::open_bare(bob.opened_path(&id)).unwrap();
    let text = opened.revparse_single("main:secret.txt").unwrap();
    assert_eq!(text.as_blob().unwrap().content(), SECRET.as_bytes());

    // A second push seals only what is new; B opens it from D again.
    let c2 = fx.commit(
        MAIN,
        &[("secret.txt", SECRET), ("more.txt", "more\n")],
        &[c],
    );
    push_to(&alice, &fx, &id, &key(1), MAIN, c2).unwrap();
    replicate(&alice, &dave, &id).unwrap();
    replicate(&dave, &bob, &id).unwrap();
    assert_eq!(opened_main(&bob, &id), Some(c2));
}

#[test]
fn a_removed_reader_cannot_open_what_is_sealed_after() {
    let fx = Fixture::new();
    let (_a, alice, id) = sealed_repo(&[2], &[]);
    let c = fx.commit(MAIN, &[("secret.txt", SECRET)], &[]);
    push_to(&alice, &fx, &id, &key(1), MAIN, c).unwrap();
    // Alice removes B and adds C; her next push begins a new epoch.
    alice
        .propose_with(
            &id,
            vec![key(1).verifying_key()],
            1,
            Some(Visibility::sealed([key(3).verifying_key()], [])),
            &key(1),
        )
        .unwrap();
    let c2 = fx.commit(MAIN, &[("secret.txt", "rotated\n")], &[c]);
    push_to(&alice, &fx, &id, &key(1), MAIN, c2).unwrap();

    // B, given the sealed form anyway (by a dishonest holder), holds no key to the new
    // epoch, whatever its node chooses to do.
    let (_b, bob) = store();
    let bob = bob.with_reader(key(2));
    replicate(&alice, &bob, &id).unwrap();
    assert_eq!(opened_main(&bob, &id), None);
    let held = Repository::open_bare(bob.path(&id)).unwrap();
    let tree = held
        .revparse_single(SEALED_REF)
        .unwrap()
        .peel_to_tree()
        .unwrap();
    let ring = held.find_blob(tree.get_name("keys").unwrap().id()).unwrap();
    let ring = KeyRing::decode(ring.content()).unwrap();
    let current = ring.current().unwrap().number;
    assert_eq!(
        current, 2,
        "the readers changed, so the push began an epoch"
    );
    let for_bob = ring.keys_for(&key(2)).unwrap();
    assert!(for_bob.contains_key(&1) && !for_bob.contains_key(&current));
    // C, added after the first push, reads the whole history.
    let (_c, carol) = store();
    let carol = carol.with_reader(key(3));
    replicate(&alice, &carol, &id).unwrap();
    assert_eq!(opened_main(&carol, &id), Some(c2));
    let opened = Repository::open_bare(carol.opened_path(&id)).unwrap();
    assert!(opened.find_commit(c).is_ok());
}

#[test]
fn only_maintainers_push_to_an_encrypted_repository() {
    let (_a, alice, id) = sealed_repo(&[2], &[]);
    let err = alice.create_staging(&id, &key(2)).unwrap_err();
    assert!(err.to_string().contains("encrypted"), "{err}");
}
