//! A hostile peer speaking the protocol serves bad data: nothing it sends is kept, no
//! ref moves on its word, it is penalized, and the honest holder still serves the fetch.

use std::path::PathBuf;
use std::time::Duration;

use guts_node::api::types::SyncOutcome;
use guts_protocol::wire::{PackResponse, SyncResponse};
use guts_protocol::{NetworkName, ObjectId, RepositoryId, SignedRefs};
use guts_storage::Repositories;
use guts_tests::cluster::{TestNode, import};
use guts_tests::eventually_async;
use guts_tests::git::{WorkRepo, fsck, refs};
use guts_tests::peer::{Answer, HostilePeer, Script};

/// What the hostile peer does this round, and the penalty the victim should give it.
enum Misdeed {
    CorruptPack,
    PackMissingObjects,
    PackOfOtherObjects,
    ForgedSnapshot,
    OlderSequence,
    OversizedAnswer,
}

impl Misdeed {
    fn penalty(&self) -> &'static str {
        match self {
            Misdeed::OlderSequence => "stale",
            Misdeed::OversizedAnswer => "oversized",
            _ => "bad_data",
        }
    }
}

fn pack(
    repos: &Repositories,
    id: &RepositoryId,
    wants: &[ObjectId],
    haves: &[ObjectId],
) -> (u32, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut count = 0;
    repos
        .build_pack(id, wants, haves, &mut |n| count = n as u32, &mut |c| {
            bytes.extend_from_slice(c);
            true
        })
        .expect("build pack");
    (count, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_from_a_hostile_peer_is_refused_and_the_honest_holder_serves() {
    guts_tests::init_logs();
    let owner = TestNode::start(|_| {}).await;
    let boot = owner.addr.clone();
    // The victim does not follow: it syncs only when told, so each round is ours.
    let victim = TestNode::start(|c| c.net.bootstrap = vec![boot.clone()]).await;
    let owner_store = Repositories::new(owner.data_dir());
    let victim_store = Repositories::new(victim.data_dir());
    let work = WorkRepo::with_history("target");
    let decoy = WorkRepo::with_history("decoy");
    // Its own history, so none of its objects are the target's.
    decoy.commit(
        "refs/heads/main",
        &[("decoy", b"decoy\n".as_slice())],
        "decoy",
    );
    decoy.commit(
        "refs/heads/feature",
        &[("decoy2", b"decoy\n".as_slice())],
        "decoy",
    );
    let v1 = decoy.repo.refname_to_id("refs/heads/main").unwrap();
    decoy
        .repo
        .reference("refs/tags/v1", v1, true, "decoy")
        .unwrap();
    decoy
        .repo
        .reference("refs/tags/v0", v1, true, "decoy")
        .unwrap();
    let decoy_dir = tempfile::tempdir().unwrap();
    let decoy_store = Repositories::new(decoy_dir.path());
    let decoy_snapshot = decoy_store
        .import(
            decoy.path(),
            None,
            &ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        )
        .unwrap()
        .snapshot;
    let network = NetworkName::default_network();
    let mut history: Vec<SignedRefs> = Vec::new();

    let misdeeds = [
        Misdeed::CorruptPack,
        Misdeed::PackMissingObjects,
        Misdeed::PackOfOtherObjects,
        Misdeed::ForgedSnapshot,
        Misdeed::OlderSequence,
        Misdeed::OversizedAnswer,
    ];
    for (round, misdeed) in misdeeds.iter().enumerate() {
        // The owner moves on: snapshot `round + 1`.
        work.commit(
            "refs/heads/main",
            &[("round", format!("{round}\n").as_bytes())],
            "round",
        );
        let id = import(&owner.handle, work.path()).await;
        let snapshot = owner_store.signed_refs(&id).unwrap().unwrap();
        history.push(snapshot.clone());
        let wants = victim_store.wants(&snapshot).unwrap();
        let haves = victim_store.haves(&id).unwrap();
        let held_before = victim_store.signed_refs(&id).unwrap();

        let genuine = Answer::Message(SyncResponse::Refs(Box::new(snapshot.clone())));
        let script = match misdeed {
            Misdeed::CorruptPack => {
                let (n, mut bytes) = pack(&owner_store, &id, &wants, &haves);
                let at = bytes.len() / 2;
                bytes[at] ^= 0x55;
                Script {
                    refs: genuine,
                    pack: Some((PackResponse::Pack { objects: n }, bytes)),
                    pace: None,
                }
            }
            Misdeed::PackMissingObjects => {
                // A valid pack, built as if the victim already had everything.
                let all: Vec<ObjectId> = snapshot.refs.values().copied().collect();
                let (n, bytes) = pack(&owner_store, &id, &[], &all);
                Script {
                    refs: genuine,
                    pack: Some((PackResponse::Pack { objects: n }, bytes)),
                    pace: None,
                }
            }
            Misdeed::PackOfOtherObjects => {
                let decoy_wants: Vec<ObjectId> = decoy_snapshot.refs.values().copied().collect();
                let (n, bytes) = pack(
                    &decoy_store,
                    &decoy_snapshot.repository(),
                    &decoy_wants,
                    &[],
                );
                Script {
                    refs: genuine,
                    pack: Some((PackResponse::Pack { objects: n }, bytes)),
                    pace: None,
                }
            }
            Misdeed::ForgedSnapshot => {
                // Another key signs refs of its own choosing and claims the repository.
                let mut forged = SignedRefs::sign(
                    &ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
                    snapshot.signed.header.name.clone(),
                    snapshot.sequence() + 100,
                    None,
                    decoy_snapshot.refs.clone(),
                )
                .unwrap();
                forged.signed.header.repository = id;
                Script {
                    refs: Answer::Message(SyncResponse::Refs(Box::new(forged))),
                    pack: None,
                    pace: None,
                }
            }
            Misdeed::OlderSequence => {
                // A genuine snapshot, but older than the one the victim holds.
                let older = history[round - 2].clone();
                Script {
                    refs: Answer::Message(SyncResponse::Refs(Box::new(older))),
                    pack: None,
                    pace: None,
                }
            }
            Misdeed::OversizedAnswer => {
                // A frame claiming 64 MiB: refused before a byte of it is read.
                let mut raw = (64u32 << 20).to_be_bytes().to_vec();
                raw.extend([1u8; 64]);
                Script {
                    refs: Answer::Raw(raw),
                    pack: None,
                    pace: None,
                }
            }
        };

        let hostile = HostilePeer::spawn(&network, script);
        hostile.connect(&victim.addr);
        let hostile_id = hostile.peer_id();
        eventually_async(
            Duration::from_secs(10),
            "the hostile peer connected",
            || async {
                let peers = victim.handle.peers().await.map_err(|e| e.to_string())?;
                if peers.iter().any(|p| p.peer_id == hostile_id.to_string()) {
                    Ok(())
                } else {
                    Err("not yet".into())
                }
            },
        )
        .await;
        let before = victim.handle.status().await.unwrap().connections;
        let (penalties_before, banned_before) =
            (before.penalties[misdeed.penalty()], before.banned_peers);

        let outcome = victim
            .handle
            .sync(id, Some(hostile_id), None)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the honest holder should have served: {e}"));
        match outcome {
            SyncOutcome::Updated { sequence, from, .. } => {
                assert_eq!(sequence, snapshot.sequence(), "round {round}");
                assert_eq!(
                    from,
                    owner.handle.peer_id().to_string(),
                    "round {round}: served by the owner"
                );
            }
            other => panic!("round {round}: {other:?}"),
        }
        // The hostile peer itself paid: bad data (weight 100) bans it at once, the lighter
        // penalties leave it connected with a negative score. The honest owner is not blamed.
        let peers = victim.handle.peers().await.unwrap();
        let score = |id: String| peers.iter().find(|p| p.peer_id == id).map(|p| p.score);
        let hostile_score = score(hostile_id.to_string());
        if misdeed.penalty() == "bad_data" {
            // The ban is counted (and the score reset) before the swarm has closed the
            // connection: wait for the close.
            eventually_async(
                Duration::from_secs(10),
                &format!("round {round}: the hostile peer banned and gone"),
                || async {
                    let peers = victim.handle.peers().await.map_err(|e| e.to_string())?;
                    let still = peers.iter().any(|p| p.peer_id == hostile_id.to_string());
                    let status = victim.handle.status().await.map_err(|e| e.to_string())?;
                    let banned = status.connections.banned_peers;
                    if !still && banned > banned_before {
                        Ok(())
                    } else {
                        Err(format!("connected: {still}, {banned} banned"))
                    }
                },
            )
            .await;
        } else {
            assert!(
                hostile_score.is_some_and(|s| s < 0.0),
                "round {round}: the hostile peer's score is {hostile_score:?}"
            );
        }
        assert_eq!(
            score(owner.handle.peer_id().to_string()),
            Some(0.0),
            "round {round}: the owner was blamed"
        );
        let status = victim.handle.status().await.unwrap();
        assert!(
            status.connections.penalties[misdeed.penalty()] > penalties_before,
            "round {round}: no {} penalty: {:?}",
            misdeed.penalty(),
            status.connections.penalties
        );
        let path = PathBuf::from(
            victim
                .handle
                .repository(id)
                .await
                .unwrap()
                .unwrap()
                .summary
                .path,
        );
        assert_eq!(
            refs(&path),
            refs(work.path()),
            "round {round}: refs are the owner's"
        );
        assert_eq!(victim_store.signed_refs(&id).unwrap().unwrap(), snapshot);
        assert_ne!(victim_store.signed_refs(&id).unwrap(), held_before);
        fsck(&path);
        let leftovers: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("guts-quarantine-")
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "round {round}: quarantine left behind"
        );
        // None of the decoy's objects made it in.
        let victim_git = git2::Repository::open_bare(&path).unwrap();
        for target in decoy_snapshot.refs.values() {
            let oid = git2::Oid::from_bytes(&target.0).unwrap();
            assert!(
                victim_git.find_object(oid, None).is_err(),
                "round {round}: decoy object {target} was kept"
            );
        }
    }
    owner.shutdown().await;
    victim.shutdown().await;
}
