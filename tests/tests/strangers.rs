//! A stranger cannot crash, stall or fill a node: crafted repositories (trees nested
//! 30,000 deep, entries git refuses), holders that trickle, requesters that never read,
//! requests for objects no snapshot points at. Each time the node stays healthy, the
//! stranger pays, and nothing bad is kept.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use guts_crafted::{Crafted, MODE_BLOB, MODE_TREE};
use guts_node::api::types::SyncOutcome;
use guts_protocol::wire::{PackRequest, PackResponse, SyncResponse};
use guts_protocol::{NetworkName, ObjectId, RepositoryId};
use guts_storage::Repositories;
use guts_tests::cluster::{TestNode, import};
use guts_tests::eventually_async;
use guts_tests::git::{Noise, WorkRepo};
use guts_tests::peer::{Answer, HostilePeer, Script, StreamPeer};

/// The object count a pack's header announces.
fn pack_count(pack: &[u8]) -> u32 {
    u32::from_be_bytes([pack[8], pack[9], pack[10], pack[11]])
}

async fn penalties(node: &TestNode, reason: &str) -> u64 {
    node.handle
        .status()
        .await
        .expect("the node answers")
        .connections
        .penalties[reason]
}

async fn wait_connected(node: &TestNode, peer: libp2p::PeerId) {
    eventually_async(Duration::from_secs(10), "the peer connected", || async {
        let peers = node.handle.peers().await.map_err(|e| e.to_string())?;
        if peers.iter().any(|p| p.peer_id == peer.to_string()) {
            Ok(())
        } else {
            Err(format!("{} peers", peers.len()))
        }
    })
    .await;
}

/// The value of the metric line starting with `name` (0 if absent).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A pack stream from `stranger` to `node` carrying `request` (dialling again if the
/// connection went away in between).
async fn open_pack_stream(
    stranger: &StreamPeer,
    node: &TestNode,
    request: &PackRequest,
) -> libp2p::Stream {
    eventually_async(Duration::from_secs(10), "a pack stream", || async {
        match stranger.request_pack(node.handle.peer_id(), request).await {
            Ok(stream) => Ok(stream),
            Err(e) => {
                stranger.connect(&node.addr);
                Err(e.to_string())
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_trees_from_a_peer_are_refused_and_the_node_lives() {
    guts_tests::init_logs();
    let victim = TestNode::start(|_| {}).await;
    let network = NetworkName::default_network();
    // The stranger signs with a key of its own: it is the owner of what it serves.
    let key = SigningKey::from_bytes(&[42; 32]);
    // Why each is refused: the store's own words, or git's fsck (index-pack --strict
    // sees the entries first).
    let cases: [(&str, &str); 4] = [
        ("deep", "deeper than 4096 levels"),
        ("dotgit", "hasDotgit"),
        ("dotdot", "hasDotdot"),
        ("slash", "fullPathname"),
    ];
    for (name, why) in cases {
        let mut crafted = Crafted::new();
        let root = match name {
            "deep" => crafted.chain(30_000),
            "dotgit" => {
                let hook = crafted.blob(b"#!/bin/sh\necho pwned\n");
                let hooks = crafted.tree(&[(b"post-checkout", MODE_BLOB, hook)]);
                let dotgit = crafted.tree(&[(b"hooks", MODE_TREE, hooks)]);
                crafted.tree(&[(b".Git", MODE_TREE, dotgit)])
            }
            "dotdot" => {
                let below = crafted.chain(1);
                crafted.tree(&[(b"..", MODE_TREE, below)])
            }
            _ => {
                let file = crafted.blob(b"x\n");
                crafted.tree(&[(b"a/b", MODE_BLOB, file)])
            }
        };
        let commit = crafted.commit_main(root);
        let snapshot = crafted.snapshot(&key, name, commit);
        let id = snapshot.repository();
        let pack = crafted.pack();
        let hostile = HostilePeer::spawn(
            &network,
            Script {
                refs: Answer::Message(SyncResponse::Refs(Box::new(snapshot))),
                pack: Some((
                    PackResponse::Pack {
                        objects: pack_count(&pack),
                    },
                    pack,
                )),
                pace: None,
            },
        );
        hostile.connect(&victim.addr);
        wait_connected(&victim, hostile.peer_id()).await;
        let before = penalties(&victim, "bad_data").await;

        let err = victim
            .handle
            .sync(id, Some(hostile.peer_id()), None)
            .await
            .expect_err("a crafted repository must be refused");
        assert!(err.to_string().contains(why), "{name}: refused for: {err}");
        assert!(
            penalties(&victim, "bad_data").await > before,
            "{name}: the stranger was not penalized"
        );
        assert_eq!(
            victim.handle.repository(id).await.expect("alive"),
            None,
            "{name}: nothing is kept"
        );
        let dir = victim.data_dir().join("repos").join(id.to_string());
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let leftovers: Vec<_> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("guts-quarantine-"))
                .collect();
            assert!(leftovers.is_empty(), "{name}: {leftovers:?} left behind");
        }
    }
    victim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_a_30000_deep_tree_is_refused_and_the_node_lives() {
    guts_tests::init_logs();
    let node = TestNode::start(|_| {}).await;
    let mut crafted = Crafted::new();
    let root = crafted.chain(30_000);
    crafted.commit_main(root);
    let err = node
        .handle
        .import(crafted.path().to_owned(), Some("deep".parse().unwrap()))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("deeper than 4096 levels"), "{err}");
    node.handle.status().await.expect("the node answers");
    assert!(node.handle.repositories().await.unwrap().is_empty());
    node.shutdown().await;
}

/// A repository of `mib` MiB of incompressible files, imported by `owner`.
async fn imported(owner: &TestNode, name: &str, mib: usize) -> (WorkRepo, RepositoryId) {
    let work = WorkRepo::new(name);
    let mut noise = Noise::new(7);
    let files: Vec<(String, Vec<u8>)> = (0..mib)
        .map(|i| (format!("blob{i}.bin"), noise.bytes(1 << 20)))
        .collect();
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    work.commit("refs/heads/main", &files, "big files");
    let (summary, _) = owner
        .handle
        .import(work.path().to_owned(), None)
        .await
        .expect("import");
    (work, summary.id.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_trickles_loses_to_an_honest_one() {
    guts_tests::init_logs();
    let owner = TestNode::start(|_| {}).await;
    let boot = owner.addr.clone();
    let victim = TestNode::start(|c| {
        c.net.bootstrap = vec![boot.clone()];
        c.replication.transfer_stall_timeout = Duration::from_secs(2);
        c.replication.min_transfer_rate = bytesize::ByteSize::kib(256);
    })
    .await;
    let (_work, id) = imported(&owner, "trickled", 2).await;
    let owner_store = Repositories::new(owner.data_dir());
    let snapshot = owner_store.signed_refs(&id).unwrap().unwrap();
    let mut pack = Vec::new();
    let mut count = 0;
    owner_store
        .build_pack(
            &id,
            &snapshot.refs.values().copied().collect::<Vec<ObjectId>>(),
            &[],
            &mut |n| count = n as u32,
            &mut |c| {
                pack.extend_from_slice(c);
                true
            },
        )
        .unwrap();
    // Genuine data, a byte every so often: never a stall, never done.
    let hostile = HostilePeer::spawn(
        &NetworkName::default_network(),
        Script {
            refs: Answer::Message(SyncResponse::Refs(Box::new(snapshot.clone()))),
            pack: Some((PackResponse::Pack { objects: count }, pack)),
            pace: Some((1000, Duration::from_millis(500))),
        },
    );
    hostile.connect(&victim.addr);
    wait_connected(&victim, hostile.peer_id()).await;
    let before = penalties(&victim, "too_slow").await;
    let outcome = victim
        .handle
        .sync(id, Some(hostile.peer_id()), None)
        .await
        .expect("the honest holder serves");
    match outcome {
        SyncOutcome::Updated { from, .. } => {
            assert_eq!(
                from,
                owner.handle.peer_id().to_string(),
                "served by the owner"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(penalties(&victim, "too_slow").await > before);
    owner.shutdown().await;
    victim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requesters_that_never_read_give_their_slots_back() {
    guts_tests::init_logs();
    let owner = TestNode::start(|c| {
        c.replication.max_concurrent_transfers = 2;
        c.replication.transfer_stall_timeout = Duration::from_secs(4);
    })
    .await;
    let (_work, id) = imported(&owner, "unread", 4).await;
    let snapshot = Repositories::new(owner.data_dir())
        .signed_refs(&id)
        .unwrap()
        .unwrap();
    let request = PackRequest {
        repository: id,
        wants: snapshot.refs.values().copied().collect(),
        haves: Vec::new(),
    };
    let stranger = StreamPeer::spawn(&NetworkName::default_network());
    stranger.connect(&owner.addr);
    wait_connected(&owner, stranger.peer_id()).await;
    // The honest node is up before the slots are taken: the stall timeout runs from
    // then, and a node starting on a loaded machine must not use it up.
    let boot = owner.addr.clone();
    let honest = TestNode::start(|c| c.net.bootstrap = vec![boot.clone()]).await;
    wait_connected(&owner, honest.handle.peer_id()).await;
    // Every transfer slot taken by a stream nobody reads past its header: the header
    // says the owner took the slot, so the honest node cannot get there first.
    let mut unread = Vec::new();
    for _ in 0..2 {
        let mut stream = open_pack_stream(&stranger, &owner, &request).await;
        match StreamPeer::read_pack_header(&mut stream).await {
            Ok(PackResponse::Pack { .. }) => {}
            other => panic!("the stranger's request was not served: {other:?}"),
        }
        unread.push(stream);
    }
    // First the slots are seen taken...
    eventually_async(
        Duration::from_secs(10),
        "the owner answered busy",
        || async {
            match honest
                .handle
                .sync(id, Some(owner.handle.peer_id()), None)
                .await
            {
                Err(e) if e.to_string().contains("Busy") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // ...then given back by the requester that never reads.
    let outcome = eventually_async(
        Duration::from_secs(60),
        "the honest fetch was served",
        || async {
            honest
                .handle
                .sync(id, Some(owner.handle.peer_id()), None)
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
    assert!(
        matches!(outcome, SyncOutcome::Updated { .. }),
        "{outcome:?}"
    );
    // Both stalls end at about the same moment, but the honest fetch can take the first
    // slot given back before the second penalty is counted.
    eventually_async(
        Duration::from_secs(10),
        "each unread transfer costs the stranger",
        || async {
            match penalties(&owner, "too_slow").await {
                n if n >= 2 => Ok(()),
                n => Err(format!("{n} too_slow penalties")),
            }
        },
    )
    .await;
    drop(unread);
    owner.shutdown().await;
    honest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_no_snapshot_points_at_are_not_served() {
    guts_tests::init_logs();
    let owner = TestNode::start(|_| {}).await;
    let work = WorkRepo::with_history("rewritten");
    let id = import(&owner.handle, work.path()).await;
    let old_main = work.repo.refname_to_id("refs/heads/main").unwrap();
    // A force push: main starts over from a new root; the old history is dropped.
    let new_root = {
        let sig = git2::Signature::now("T", "t@example.com").unwrap();
        let tree = {
            let mut b = work.repo.treebuilder(None).unwrap();
            let blob = work.repo.blob(b"a fresh start\n").unwrap();
            b.insert("README", blob, 0o100644).unwrap();
            b.write().unwrap()
        };
        let tree = work.repo.find_tree(tree).unwrap();
        work.repo
            .commit(None, &sig, &sig, "restart", &tree, &[])
            .unwrap()
    };
    work.repo
        .reference("refs/heads/main", new_root, true, "force")
        .unwrap();
    for name in ["refs/heads/feature", "refs/tags/v1", "refs/tags/v0"] {
        if let Ok(mut r) = work.repo.find_reference(name) {
            r.delete().unwrap();
        }
    }
    owner
        .handle
        .import(work.path().to_owned(), None)
        .await
        .unwrap();

    let stranger = StreamPeer::spawn(&NetworkName::default_network());
    stranger.connect(&owner.addr);
    wait_connected(&owner, stranger.peer_id()).await;
    let ask = |want: git2::Oid| PackRequest {
        repository: id,
        wants: vec![ObjectId(want.as_bytes().try_into().unwrap())],
        haves: Vec::new(),
    };
    let mut stream = open_pack_stream(&stranger, &owner, &ask(old_main)).await;
    match StreamPeer::read_pack_header(&mut stream).await.unwrap() {
        PackResponse::Refused(why) => assert!(why.contains("not a ref target"), "{why}"),
        other => panic!("an object the owner dropped was offered: {other:?}"),
    }
    let mut stream = open_pack_stream(&stranger, &owner, &ask(new_root)).await;
    assert!(matches!(
        StreamPeer::read_pack_header(&mut stream).await.unwrap(),
        PackResponse::Pack { .. }
    ));
    owner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_announcements_from_fresh_keys_stays_within_the_settings() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    guts_tests::init_logs();
    let victim = TestNode::start(|c| {
        c.replication.replicate = guts_node::Replicate::All;
        c.replication.max_adoptions_per_hour = 10;
        c.replication.max_followed = 1000;
        c.api = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let api = victim.node.api_addr().expect("API on");
    // 10,000 genuine announcements of new repositories, each signed by a fresh key:
    // keys cost nothing, so each one verifies.
    let messages: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let snapshot = guts_protocol::SignedRefs::sign(
                &SigningKey::from_bytes(&seed),
                format!("flood{i}").parse().unwrap(),
                1,
                None,
                Default::default(),
            )
            .unwrap();
            guts_protocol::wire::encode(&guts_protocol::wire::Announcement::of(&snapshot))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let mut probes = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = std::time::Instant::now();
                let (code, _) = guts_tests::process::http_get(api, "/health").expect("health");
                assert_eq!(code, 200);
                worst = worst.max(started.elapsed());
                probes += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (worst, probes)
        })
    };
    let flooder = guts_tests::peer::Flooder::spawn(&NetworkName::default_network(), messages);
    flooder.connect(&victim.addr);
    eventually_async(
        Duration::from_secs(120),
        "10,000 announcements published",
        || async {
            match flooder.published() {
                10_000 => Ok(()),
                n => Err(format!("{n} published")),
            }
        },
    )
    .await;
    let store = Repositories::new(victim.data_dir());
    // The flood reached the node and was judged: most of it turned away at the
    // relayer's rate, more than the adoption budget found new and genuine...
    let judged = eventually_async(Duration::from_secs(60), "the flood judged", || async {
        let (_, text) =
            guts_tests::process::http_get(api, "/metrics").map_err(|e| e.to_string())?;
        let count = |verdict: &str| {
            metric(
                &text,
                &format!("guts_announcements_total{{verdict=\"{verdict}\"}}"),
            )
        };
        let (accepted, rate) = (count("accepted"), count("relayer_rate"));
        if accepted > 10 && accepted + rate + count("busy") >= 9_000 {
            Ok((accepted, rate))
        } else {
            Err(format!(
                "{accepted} accepted, {rate} over the relayer's rate"
            ))
        }
    })
    .await;
    victim.handle.status().await.expect("alive");
    stop.store(true, Ordering::Relaxed);
    let (worst, probes) = prober.join().expect("prober");
    assert!(probes > 10, "{probes} probes");
    assert!(
        worst < Duration::from_secs(1),
        "/health took {worst:?} at worst during the flood"
    );
    // ...and adoption stopped at the budget.
    assert_eq!(
        Repositories::new(victim.data_dir()).follow_count().unwrap(),
        10,
        "adoption stays within max_adoptions_per_hour ({judged:?} accepted, over the rate)"
    );
    // Nobody serves those repositories: nothing was stored for them.
    assert!(store.list().unwrap().is_empty());
    victim.shutdown().await;
}

/// One key announcing repository after repository: past `owner_announcements_per_minute`
/// the rest are ignored, however many relayers carry them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_key_is_held_to_its_announcement_rate() {
    guts_tests::init_logs();
    let victim = TestNode::start(|c| {
        c.replication.owner_announcements_per_minute = 5;
        // The relayer's own rate must not be what stops them.
        c.connections.requests_per_second_per_peer = 10_000;
        c.api = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let api = victim.node.api_addr().expect("API on");
    let key = SigningKey::from_bytes(&[9; 32]);
    let messages: Vec<Vec<u8>> = (0..60u32)
        .map(|i| {
            let snapshot = guts_protocol::SignedRefs::sign(
                &key,
                format!("one-owner-{i}").parse().unwrap(),
                1,
                None,
                Default::default(),
            )
            .unwrap();
            guts_protocol::wire::encode(&guts_protocol::wire::Announcement::of(&snapshot))
        })
        .collect();
    let flooder = guts_tests::peer::Flooder::spawn(&NetworkName::default_network(), messages);
    flooder.connect(&victim.addr);
    let (accepted, owner_rate) = eventually_async(
        Duration::from_secs(60),
        "60 announcements judged",
        || async {
            let (_, text) =
                guts_tests::process::http_get(api, "/metrics").map_err(|e| e.to_string())?;
            let count = |verdict: &str| {
                metric(
                    &text,
                    &format!("guts_announcements_total{{verdict=\"{verdict}\"}}"),
                )
            };
            let judged = count("accepted") + count("owner_rate") + count("busy");
            if judged >= 60 {
                Ok((count("accepted"), count("owner_rate")))
            } else {
                Err(format!(
                    "{judged} judged, {} published",
                    flooder.published()
                ))
            }
        },
    )
    .await;
    // A burst of five, then one every 12 s: the test takes far less than a minute.
    assert!(
        (5..=7).contains(&accepted),
        "{accepted} accepted, {owner_rate} over the owner's rate"
    );
    assert!(owner_rate >= 50, "{owner_rate} over the owner's rate");
    victim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_bomb_is_refused_by_a_node_with_512_mib_of_address_space() {
    guts_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let node = guts_tests::process::NodeSpec::loopback(&dir.path().join("victim"))
        .address_space_limit(512 << 20)
        .spawn();
    // A few KiB that would make libgit2 allocate a 2 GiB object.
    let pack = guts_crafted::delta_bomb(2 << 30);
    assert!(pack.len() < 64 * 1024, "{} bytes", pack.len());
    let mut crafted = Crafted::new();
    let root = crafted.chain(1);
    let commit = crafted.commit_main(root);
    let snapshot = crafted.snapshot(&SigningKey::from_bytes(&[43; 32]), "bomb", commit);
    let id = snapshot.repository();
    let hostile = HostilePeer::spawn(
        &NetworkName::default_network(),
        Script {
            refs: Answer::Message(SyncResponse::Refs(Box::new(snapshot))),
            pack: Some((PackResponse::Pack { objects: 2 }, pack)),
            pace: None,
        },
    );
    hostile.connect(&node.tcp_addr().parse().unwrap());
    let hostile_id = hostile.peer_id().to_string();
    guts_tests::eventually(Duration::from_secs(10), "the stranger connected", || {
        let peers = node.peers();
        if peers.iter().any(|p| p.peer_id == hostile_id) {
            Ok(())
        } else {
            Err(format!("{} peers", peers.len()))
        }
    });
    let out = node.client(["repo", "sync", &id.to_string(), "--from", &hostile_id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the bomb was taken");
    assert!(stderr.contains("max_object_size"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    let status = node.status();
    assert!(status.connections.penalties["bad_data"] >= 1);
    let (code, _) = guts_tests::process::http_get(node.api(), "/health").unwrap();
    assert_eq!(code, 200, "the node is alive");
}

/// A process's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_streams_announcing_maximal_frames_cost_little() {
    guts_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    // No per-peer stream cap in the way: every stream reaches the frame reader.
    let node = guts_tests::process::NodeSpec::loopback(&dir.path().join("victim"))
        .address_space_limit(512 << 20)
        .args(["--max-streams-per-peer", "1000"])
        .spawn();
    let stranger = StreamPeer::spawn(&NetworkName::default_network());
    let node_addr: libp2p::Multiaddr = node.tcp_addr().parse().unwrap();
    stranger.connect(&node_addr);
    let stranger_id = stranger.peer_id().to_string();
    guts_tests::eventually(Duration::from_secs(10), "the stranger connected", || {
        if node.peers().iter().any(|p| p.peer_id == stranger_id) {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    let node_id: libp2p::PeerId = node.status().peer_id.parse().unwrap();
    let before = rss_kib(node.pid());
    // Each stream announces the largest pack request there is (4.7 MiB; 2.3 GiB for
    // all of them, four times the node's address space), then sends one byte.
    let mut prefix = (guts_protocol::wire::MAX_PACK_REQUEST_SIZE as u32)
        .to_be_bytes()
        .to_vec();
    prefix.push(0);
    let mut streams = Vec::new();
    for _ in 0..500 {
        let stream = eventually_async(Duration::from_secs(10), "a stream", || async {
            stranger
                .raw_pack_stream(node_id, &prefix)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        streams.push(stream);
    }
    // Round trips through the node, so its stream tasks have run.
    for _ in 0..10 {
        let (code, _) = guts_tests::process::http_get(node.api(), "/health").unwrap();
        assert_eq!(code, 200, "the node is alive");
    }
    let after = rss_kib(node.pid());
    assert!(
        after < before + 64 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
    drop(streams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_stay_within_the_storage_quota() {
    guts_tests::init_logs();
    let big = TestNode::start(|_| {}).await;
    let small = TestNode::start(|_| {}).await;
    let third = TestNode::start(|_| {}).await;
    let fourth = TestNode::start(|_| {}).await;
    let boot = vec![
        big.addr.clone(),
        small.addr.clone(),
        third.addr.clone(),
        fourth.addr.clone(),
    ];
    // Each owner may take 1.5 MiB, all of them 2.5 MiB.
    let victim = TestNode::start(|c| {
        c.net.bootstrap = boot.clone();
        c.replication.max_storage = bytesize::ByteSize::kib(2560);
        c.replication.max_storage_per_owner = bytesize::ByteSize::kib(1536);
    })
    .await;
    let (_big_work, big_id) = imported(&big, "big", 2).await;
    let (_small_work, small_id) = imported(&small, "small", 1).await;
    wait_connected(&victim, big.handle.peer_id()).await;
    wait_connected(&victim, small.handle.peer_id()).await;

    let err = victim
        .handle
        .sync(big_id, Some(big.handle.peer_id()), None)
        .await
        .expect_err("2 MiB from one owner is over its 1.5 MiB share");
    assert!(err.to_string().contains("storage quota"), "{err}");
    assert_eq!(victim.handle.repository(big_id).await.unwrap(), None);
    assert_eq!(
        penalties(&victim, "bad_data").await + penalties(&victim, "oversized").await,
        0,
        "a full quota is no fault of the holder"
    );

    victim
        .handle
        .sync(small_id, Some(small.handle.peer_id()), None)
        .await
        .expect("1 MiB fits");
    // A second repository of the same owner would take it past its share.
    let (_more_work, more_id) = imported(&small, "small-more", 1).await;
    let err = victim
        .handle
        .sync(more_id, Some(small.handle.peer_id()), None)
        .await
        .expect_err("over the owner's share");
    assert!(err.to_string().contains("storage quota"), "{err}");

    // A third owner's 1 MiB is within its share and the total (2 MiB held then); a
    // fourth's is within its share too, but past the total.
    let (_third_work, third_id) = imported(&third, "third", 1).await;
    wait_connected(&victim, third.handle.peer_id()).await;
    victim
        .handle
        .sync(third_id, Some(third.handle.peer_id()), None)
        .await
        .expect("a new owner's 1 MiB fits the total");
    let (_fourth_work, fourth_id) = imported(&fourth, "fourth", 1).await;
    wait_connected(&victim, fourth.handle.peer_id()).await;
    let err = victim
        .handle
        .sync(fourth_id, Some(fourth.handle.peer_id()), None)
        .await
        .expect_err("3 MiB in all is over max_storage");
    assert!(err.to_string().contains("storage quota"), "{err}");
    assert_eq!(victim.handle.repository(fourth_id).await.unwrap(), None);
    for node in [big, small, third, fourth, victim] {
        node.shutdown().await;
    }
}
