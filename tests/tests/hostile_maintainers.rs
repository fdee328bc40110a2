//! A hostile holder of a repository with maintainers offers identity versions and views
//! no honest node would: a view under a forged signature with a far future sequence, a
//! version signed by a removed maintainer, a version whose signature is forged, a replayed
//! older view, a view of a removed maintainer. Nothing of it is taken, forgeries cost the
//! peer, and what may be honest lag (an older view) costs nothing.

use std::time::Duration;

use ed25519_dalek::{Signature, SigningKey};
use guts_node::api::types::SyncOutcome;
use guts_protocol::wire::SyncResponse;
use guts_protocol::{RepositoryState, SharedState, SignedRefs, SignedVersion};
use guts_storage::{Held, Repositories};
use guts_tests::cluster::{TestNode, import};
use guts_tests::eventually_async;
use guts_tests::git::WorkRepo;
use guts_tests::peer::{Answer, HostilePeer, Script};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn state_of(store: &Repositories, id: &guts_protocol::RepositoryId) -> RepositoryState {
    match store.held(id).unwrap().unwrap() {
        Held::Shared(state) => state,
        Held::Owner(_) => panic!("the repository has maintainers"),
    }
}

/// Flips a bit of `signature`: it no longer verifies.
fn forge(signature: &Signature) -> Signature {
    let mut bytes = signature.to_bytes();
    bytes[5] ^= 0x10;
    Signature::from_bytes(&bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_versions_and_views_are_refused_and_cost_their_sender() {
    guts_tests::init_logs();
    let owner = TestNode::start(|_| {}).await;
    let boot = owner.addr.clone();
    let victim = TestNode::start(|c| c.net.bootstrap = vec![boot.clone()]).await;
    let owner_store = Repositories::new(owner.data_dir());
    let victim_store = Repositories::new(victim.data_dir());
    let work = WorkRepo::with_history("shared");
    let id = import(&owner.handle, work.path()).await;

    // Maintainers: the owner, key 2 and key 3 (threshold 1); key 2 publishes views 1
    // and 2 of the owner's refs; then the owner removes key 3.
    let me = owner_store.signed_refs(&id).unwrap().unwrap().signed.signer;
    let (k2, k3) = (key(2), key(3));
    owner
        .handle
        .propose(id, vec![me, k2.verifying_key(), k3.verifying_key()], 1)
        .await
        .unwrap();
    let refs = state_of(&owner_store, &id)
        .views
        .of(&me)
        .unwrap()
        .refs
        .clone();
    let name: guts_protocol::RepoName = "shared".parse().unwrap();
    let view = |k: &SigningKey, seq: u64| {
        SignedRefs::sign_view(k, id, name.clone(), seq, None, refs.clone()).unwrap()
    };
    let genesis = state_of(&owner_store, &id).identity.genesis().clone();
    let k2_views = [view(&k2, 1), view(&k2, 2)];
    owner_store
        .accept_shared(
            &id,
            SharedState {
                genesis: genesis.clone(),
                versions: Vec::new(),
                views: k2_views.to_vec(),
            },
            None,
            &mut |_| {},
        )
        .unwrap();
    owner
        .handle
        .propose(id, vec![me, k2.verifying_key()], 1)
        .await
        .unwrap();
    victim
        .handle
        .sync(id, Some(owner.handle.peer_id()), None)
        .await
        .unwrap();
    let held = state_of(&victim_store, &id);
    assert_eq!(held.identity.current().version, 3);
    assert_eq!(held.views.of(&k2.verifying_key()).unwrap().sequence(), 2);
    let current = held.identity.current().clone();
    let honest = held.shared();

    // Each misdeed rides on an otherwise honest state; the bool: whether it is a forgery.
    let with = |versions: Vec<SignedVersion>, views: Vec<SignedRefs>| {
        let mut s = honest.clone();
        s.versions.extend(versions);
        s.views
            .retain(|v| !views.iter().any(|w| w.signed.signer == v.signed.signer));
        s.views.extend(views);
        s
    };
    let mut future = view(&k2, 1000);
    future.signed.signature = forge(&future.signed.signature);
    let by_removed = SignedVersion::propose(
        current
            .next([me, k2.verifying_key(), k3.verifying_key()], 1)
            .unwrap(),
        &k3,
    );
    let mut forged_version =
        SignedVersion::propose(current.next([me, k3.verifying_key()], 1).unwrap(), &k2);
    forged_version.signatures[0].1 = forge(&forged_version.signatures[0].1);
    let misdeeds = [
        (
            "a forged view far in the future",
            with(vec![], vec![future]),
            true,
        ),
        (
            "a version signed by a removed key",
            with(vec![by_removed], vec![]),
            true,
        ),
        (
            "a version under a forged signature",
            with(vec![forged_version], vec![]),
            true,
        ),
        (
            "a replayed older view",
            with(vec![], vec![k2_views[0].clone()]),
            false,
        ),
        (
            "a removed key's view",
            with(vec![], vec![view(&k3, 7)]),
            false,
        ),
    ];
    for (what, offered, forgery) in misdeeds {
        let hostile = HostilePeer::spawn(
            &guts_protocol::NetworkName::default_network(),
            Script {
                refs: Answer::Message(SyncResponse::State(Box::new(offered))),
                pack: None,
                pace: None,
            },
        );
        hostile.connect(&victim.addr);
        let hostile_id = hostile.peer_id();
        eventually_async(
            Duration::from_secs(10),
            "the hostile peer connected",
            || async {
                let peers = victim.handle.peers().await.map_err(|e| e.to_string())?;
                peers
                    .iter()
                    .any(|p| p.peer_id == hostile_id.to_string())
                    .then_some(())
                    .ok_or_else(|| "not yet".to_owned())
            },
        )
        .await;
        let before = victim.handle.status().await.unwrap().connections.penalties["bad_data"];
        let outcome = victim.handle.sync(id, Some(hostile_id), None).await;
        assert!(
            matches!(outcome, Ok(SyncOutcome::UpToDate { .. })),
            "{what}: {outcome:?}"
        );
        let after = state_of(&victim_store, &id);
        assert_eq!(after.identity.current(), &current, "{what}");
        assert_eq!(
            after.identity.versions().len(),
            2,
            "{what}: nothing new kept"
        );
        assert_eq!(
            after.views.of(&k2.verifying_key()).unwrap().sequence(),
            2,
            "{what}"
        );
        assert!(after.views.of(&k3.verifying_key()).is_none(), "{what}");
        let penalties = victim.handle.status().await.unwrap().connections.penalties["bad_data"];
        assert_eq!(penalties > before, forgery, "{what}: penalized?");
    }
}
