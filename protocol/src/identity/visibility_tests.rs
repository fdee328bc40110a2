//! Private versions: hashed with their allow list, signed over it, carried only by the
//! form that keeps it; public versions hash and encode as every release did.

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use super::*;
use crate::repository::{SharedState, SharedStateV2};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn history() -> IdentityHistory {
    IdentityHistory::new(IdentityDoc::genesis(
        &key(1).verifying_key(),
        "secret".parse().unwrap(),
    ))
    .unwrap()
}

fn private(h: &IdentityHistory, allowed: &[u8]) -> IdentityDoc {
    h.current()
        .next([key(1).verifying_key()], 1)
        .unwrap()
        .with_visibility(Visibility::private(
            allowed.iter().map(|s| key(*s).verifying_key()),
        ))
        .unwrap()
}

#[test]
fn a_public_version_hashes_as_format_1_always_did() {
    let h = history();
    let doc = h
        .current()
        .next([1, 2].map(|s| key(s).verifying_key()), 1)
        .unwrap();
    // What a release before visibility computes: the format-1 fields, postcard-encoded.
    let v1 = (
        "guts/identity/v1",
        (
            &doc.repository,
            &doc.name,
            doc.version,
            &doc.previous,
            &doc.maintainers,
            doc.threshold,
        ),
    );
    let expected = VersionId(Sha256::digest(postcard::to_allocvec(&v1).unwrap()).into());
    assert_eq!(doc.id(), expected);
    // And its encoding is format 1's: it decodes as public.
    let bytes = postcard::to_allocvec(&doc).unwrap();
    assert_eq!(postcard::from_bytes::<IdentityDoc>(&bytes).unwrap(), doc);
}

#[test]
fn the_allow_list_is_signed_and_decides_who_may_see() {
    let mut h = history();
    let doc = private(&h, &[3, 2, 3]);
    assert!(doc.is_private());
    let public = doc.clone().with_visibility(Visibility::Public).unwrap();
    assert_ne!(doc.id(), public.id(), "the allow list is in the hash");
    h.add(SignedVersion::propose(doc.clone(), &key(1))).unwrap();
    assert!(h.ever_private());
    for (seed, sees) in [(1, true), (2, true), (3, true), (4, false)] {
        assert_eq!(h.may_see(&key(seed).verifying_key()), sees, "key {seed}");
    }
    // Someone who swaps the allow list breaks the maintainer's signature.
    let mut tampered = SignedVersion::propose(private(&history(), &[2]), &key(1));
    tampered.doc.visibility = Visibility::private([key(4).verifying_key()]);
    let err = history().add(tampered).unwrap_err();
    assert!(matches!(err, IdentityError::Unsigned { .. }), "{err}");

    // Revoking: the next version without key 2.
    let next = private(&h, &[3]);
    h.add(SignedVersion::propose(next, &key(1))).unwrap();
    assert!(!h.may_see(&key(2).verifying_key()));
    assert!(h.may_see(&key(3).verifying_key()));
}

#[test]
fn visibility_travels_only_in_the_form_that_carries_it() {
    let mut h = history();
    let doc = private(&h, &[2]);
    h.add(SignedVersion::propose(doc, &key(1))).unwrap();
    let state = SharedState {
        genesis: h.genesis().clone(),
        versions: h.versions().into_iter().cloned().collect(),
        views: vec![],
    };
    assert!(state.ever_private());
    // Format 2 keeps it: the history rebuilt from it is the same.
    let v2: SharedStateV2 =
        postcard::from_bytes(&postcard::to_allocvec(&SharedStateV2::from(&state)).unwrap())
            .unwrap();
    let back = SharedState::from(v2);
    let mut again = IdentityHistory::new(back.genesis.clone()).unwrap();
    for v in back.versions {
        again.add(v).unwrap();
    }
    assert_eq!(again.current(), h.current());
    assert!(!again.may_see(&key(4).verifying_key()));
    // Format 1 drops it, and the version no longer matches its signature: which is why a
    // private history never goes in that form.
    let v1: SharedState = postcard::from_bytes(&postcard::to_allocvec(&state).unwrap()).unwrap();
    let err = history().add(v1.versions[0].clone()).unwrap_err();
    assert!(matches!(err, IdentityError::Unsigned { .. }), "{err}");
}

#[test]
fn a_version_one_is_public_and_allow_lists_are_bounded() {
    let genesis = IdentityDoc::genesis(&key(1).verifying_key(), "secret".parse().unwrap());
    let err = genesis
        .clone()
        .with_visibility(Visibility::private([key(2).verifying_key()]))
        .unwrap_err();
    assert!(err.to_string().contains("version 1 must be"), "{err}");
    let many = (0..=MAX_ALLOWED as u32).map(|i| {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&i.to_le_bytes());
        SigningKey::from_bytes(&seed).verifying_key()
    });
    let err = genesis
        .next([key(1).verifying_key()], 1)
        .unwrap()
        .with_visibility(Visibility::private(many))
        .unwrap_err();
    assert!(err.to_string().contains("allowed keys"), "{err}");
}

#[test]
fn encryption_is_chosen_once_and_splits_readers_from_seeders() {
    let mut h = history();
    let sealed = |h: &IdentityHistory, readers: &[u8]| {
        h.current()
            .next([key(1).verifying_key()], 1)
            .unwrap()
            .with_visibility(Visibility::sealed(
                readers.iter().map(|s| key(*s).verifying_key()),
                [key(4).verifying_key()],
            ))
            .unwrap()
    };
    let doc = sealed(&h, &[2]);
    h.add(SignedVersion::propose(doc, &key(1))).unwrap();
    let current = h.current();
    assert!(current.is_private() && current.is_sealed());
    for (seed, sees, reads) in [
        (1, true, true),
        (2, true, true),
        (4, true, false),
        (3, false, false),
    ] {
        let k = key(seed).verifying_key();
        assert_eq!(
            (current.may_see(&k), current.may_read(&k)),
            (sees, reads),
            "key {seed}"
        );
    }
    assert_eq!(current.readers().len(), 2, "the maintainer and the reader");
    assert_eq!(
        current.visibility.allowed().len(),
        2,
        "the reader and the seeder"
    );
    // Removing a reader keeps it encrypted; dropping encryption is refused.
    let doc = sealed(&h, &[]);
    h.add(SignedVersion::propose(doc, &key(1))).unwrap();
    let open = private(&h, &[2]);
    let err = h.add(SignedVersion::propose(open, &key(1))).unwrap_err();
    assert!(err.to_string().contains("encryption is chosen"), "{err}");
}
