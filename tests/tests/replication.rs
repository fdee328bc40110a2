//! Repositories replicate between real nodes, with real repositories on disk.

use std::path::PathBuf;
use std::time::Duration;

use guts_node::NodeHandle;
use guts_node::api::types::RepoDetail;
use guts_protocol::RepositoryId;
use guts_tests::cluster::{TestNode, import};
use guts_tests::eventually_async;
use guts_tests::git::{WorkRepo, fsck, refs};

/// Waits until `node` holds `id` at `sequence` at least; returns its details.
async fn holds(node: &NodeHandle, id: RepositoryId, sequence: u64) -> RepoDetail {
    eventually_async(
        Duration::from_secs(30),
        &format!("sequence {sequence} of {id}"),
        || async {
            match node.repository(id).await.map_err(|e| e.to_string())? {
                Some(d) if d.summary.sequence >= sequence => Ok(d),
                other => Err(format!("{:?}", other.map(|d| d.summary.sequence))),
            }
        },
    )
    .await
}

async fn cluster(n: usize) -> Vec<TestNode> {
    let a = TestNode::start(|c| c.replication.anti_entropy_interval = Duration::from_secs(1)).await;
    let boot = a.addr.clone();
    let mut nodes = vec![a];
    for _ in 1..n {
        nodes.push(
            TestNode::start(|c| {
                c.net.bootstrap = vec![boot.clone()];
                c.replication.anti_entropy_interval = Duration::from_secs(1);
            })
            .await,
        );
    }
    nodes
}

/// A repository with branches, tags and merges imported on A reaches B and C with every
/// ref identical and clean under `git fsck --full`; then one new commit crosses as only
/// its new objects and reaches both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_repository_replicates_and_then_only_new_objects_cross() {
    let nodes = cluster(3).await;
    let (a, b, c) = (&nodes[0].handle, &nodes[1].handle, &nodes[2].handle);
    let work = WorkRepo::with_history("demo");
    let (summary, changed) = a.import(work.path().to_owned(), None).await.unwrap();
    assert!(changed);
    assert_eq!(summary.sequence, 1);
    let id: RepositoryId = summary.id.parse().unwrap();
    for follower in [b, c] {
        follower.follow(id).await.unwrap();
    }
    let source_refs = refs(work.path());
    for follower in [b, c] {
        let detail = holds(follower, id, 1).await;
        let path = PathBuf::from(&detail.summary.path);
        assert_eq!(refs(&path), source_refs, "every ref identical");
        assert_eq!(detail.summary.head.as_deref(), Some("refs/heads/main"));
        assert!(!detail.summary.owned);
        fsck(&path);
    }
    assert!(a.repository(id).await.unwrap().unwrap().summary.owned);

    // One new commit: a new file of a few bytes.
    let before_b = b.status().await.unwrap().transfers;
    work.commit(
        "refs/heads/main",
        &[("NEWS", b"one more\n".as_slice())],
        "news",
    );
    let (summary, changed) = a.import(work.path().to_owned(), None).await.unwrap();
    assert!(changed);
    assert_eq!(summary.sequence, 2);
    for follower in [b, c] {
        let detail = holds(follower, id, 2).await;
        let path = PathBuf::from(&detail.summary.path);
        assert_eq!(refs(&path), refs(work.path()));
        fsck(&path);
    }
    let after_b = b.status().await.unwrap().transfers;
    // A commit, its root tree and one blob; well under a kilobyte of pack.
    assert_eq!(
        after_b.fetched_objects - before_b.fetched_objects,
        3,
        "{after_b:?}"
    );
    let bytes = after_b.fetched_bytes - before_b.fetched_bytes;
    assert!(bytes < 1024, "{bytes} bytes for one small commit");
    for n in nodes {
        n.shutdown().await;
    }
}

/// With anti-entropy out of the way (an hour), a new snapshot still reaches followers:
/// the announcement alone carries it, so a dead announcement path cannot hide behind
/// the periodic check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_alone_brings_followers_a_new_snapshot() {
    let hour = Duration::from_secs(3600);
    let a = TestNode::start(|c| c.replication.anti_entropy_interval = hour).await;
    let boot = a.addr.clone();
    let mut followers = Vec::new();
    for _ in 0..2 {
        let boot = boot.clone();
        followers.push(
            TestNode::start(move |c| {
                c.net.bootstrap = vec![boot];
                c.replication.anti_entropy_interval = hour;
            })
            .await,
        );
    }
    let work = WorkRepo::with_history("news");
    let id = import(&a.handle, work.path()).await;
    for f in &followers {
        f.handle.follow(id).await.unwrap();
        f.handle.sync(id, None, None).await.unwrap();
    }
    // Announcements travel the gossip mesh: wait until it has formed.
    eventually_async(Duration::from_secs(30), "A's announcement mesh", || async {
        let n = a
            .handle
            .status()
            .await
            .map_err(|e| e.to_string())?
            .gossip_mesh_peers;
        if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n} mesh peers"))
        }
    })
    .await;
    work.commit("refs/heads/main", &[("NEWS", b"news\n".as_slice())], "news");
    let (summary, _) = a.handle.import(work.path().to_owned(), None).await.unwrap();
    assert_eq!(summary.sequence, 2);
    for f in &followers {
        let detail = holds(&f.handle, id, 2).await;
        assert_eq!(
            refs(&PathBuf::from(&detail.summary.path)),
            refs(work.path())
        );
    }
    a.shutdown().await;
    for f in followers {
        f.shutdown().await;
    }
}

/// A node that was offline while the repository changed catches up when it comes back,
/// with no announcement to tell it: anti-entropy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_catches_up_after_restart() {
    guts_tests::init_logs();
    let mut nodes = cluster(3).await;
    let work = WorkRepo::with_history("offline");
    let id = import(&nodes[0].handle, work.path()).await;
    for n in &nodes[1..] {
        n.handle.follow(id).await.unwrap();
        holds(&n.handle, id, 1).await;
    }
    let c = nodes.pop().unwrap().stop().await;

    work.commit(
        "refs/heads/main",
        &[("while-away", b"1\n".as_slice())],
        "while C was away",
    );
    work.commit(
        "refs/heads/feature",
        &[("while-away-2", b"2\n".as_slice())],
        "and on feature",
    );
    nodes[0]
        .handle
        .import(work.path().to_owned(), None)
        .await
        .unwrap();
    holds(&nodes[1].handle, id, 2).await;

    let c = c.start().await;
    let detail = holds(&c.handle, id, 2).await;
    let path = PathBuf::from(&detail.summary.path);
    assert_eq!(refs(&path), refs(work.path()));
    fsck(&path);
    c.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

/// With `replicate = all` a node fetches a repository it only heard announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_all_takes_every_announced_repository() {
    let a = TestNode::start(|_| {}).await;
    let boot = a.addr.clone();
    let all = TestNode::start(|c| {
        c.net.bootstrap = vec![boot.clone()];
        c.replication.replicate = guts_node::Replicate::All;
    })
    .await;
    let followed = TestNode::start(|c| c.net.bootstrap = vec![boot.clone()]).await;
    // Announcements need the gossip mesh: wait until both are in A's mesh, then import
    // once. Only the announcement can tell `all` in time: its list exchange with A
    // happened before the repository existed, and the next is a minute away.
    a.wait_for_peers(2, Duration::from_secs(20)).await;
    eventually_async(Duration::from_secs(30), "A's gossip mesh", || async {
        match a.handle.status().await {
            Ok(s) if s.gossip_mesh_peers >= 2 => Ok(()),
            Ok(s) => Err(format!("{} mesh peers", s.gossip_mesh_peers)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let work = WorkRepo::with_history("everyone");
    let id = import(&a.handle, work.path()).await;
    eventually_async(
        Duration::from_secs(15),
        "the replicate-all node fetched the announced repository",
        || async {
            match all.handle.repository(id).await {
                Ok(Some(d)) if d.summary.sequence > 0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    holds(&all.handle, id, 1).await;
    assert!(
        followed.handle.repository(id).await.unwrap().is_none(),
        "a followed-only node ignores it"
    );
    for n in [a, all, followed] {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn a_replicate_all_node_joining_later_adopts_what_its_peers_hold() {
    let a = TestNode::start(|_| {}).await;
    let work = WorkRepo::with_history("older");
    let (summary, _) = a.handle.import(work.path().to_owned(), None).await.unwrap();
    let id: RepositoryId = summary.id.parse().unwrap();
    // Joins after the announcement: only A's repository list can tell it.
    let boot = a.addr.clone();
    let late = TestNode::start(|c| {
        c.net.bootstrap = vec![boot];
        c.replication.replicate = guts_node::Replicate::All;
    })
    .await;
    let detail = holds(&late.handle, id, summary.sequence).await;
    assert_eq!(detail.refs, refs(work.path()));
    // A followed-only node connects, then a replicate-all control joins: once the
    // control has adopted the repository, the followed-only node has had longer to.
    let boot = a.addr.clone();
    let followed_only = TestNode::start(|c| c.net.bootstrap = vec![boot.clone()]).await;
    followed_only
        .wait_for_peers(1, Duration::from_secs(20))
        .await;
    let control = TestNode::start(|c| {
        c.net.bootstrap = vec![boot];
        c.replication.replicate = guts_node::Replicate::All;
    })
    .await;
    holds(&control.handle, id, summary.sequence).await;
    assert!(
        followed_only.handle.repository(id).await.unwrap().is_none(),
        "a followed-only node adopts nothing"
    );
    control.shutdown().await;
    for n in [a, late, followed_only] {
        n.shutdown().await;
    }
}

/// A peer too busy to answer (its request rate spent) is asked again: a node joining
/// with `replicate = all` adopts every repository it lists, though most of the first
/// asks are turned away and the next list is ten anti-entropy rounds (ten minutes) off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicate_all_node_adopts_from_a_busy_peer() {
    guts_tests::init_logs();
    let a = TestNode::start(|c| c.connections.requests_per_second_per_peer = 1).await;
    let mut held = Vec::new();
    for name in ["busy-one", "busy-two", "busy-three", "busy-four"] {
        let work = WorkRepo::with_history(name);
        let (summary, _) = a.handle.import(work.path().to_owned(), None).await.unwrap();
        held.push((
            summary.id.parse::<RepositoryId>().unwrap(),
            summary.sequence,
        ));
    }
    let boot = a.addr.clone();
    let late = TestNode::start(|c| {
        c.net.bootstrap = vec![boot];
        c.replication.replicate = guts_node::Replicate::All;
    })
    .await;
    eventually_async(
        Duration::from_secs(120),
        "every listed repository adopted",
        || async {
            let mut missing = Vec::new();
            for (id, sequence) in &held {
                match late
                    .handle
                    .repository(*id)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Some(d) if d.summary.sequence >= *sequence => {}
                    _ => missing.push(id.to_string()),
                }
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}"))
            }
        },
    )
    .await;
    late.shutdown().await;
    a.shutdown().await;
}

/// A sync does not wait on a holder that went away. The newcomer knows two holders: the
/// owner and a replica that has since gone, whose address now takes connections and never
/// answers (a dial there waits out the connection timeout: a minute here). The new
/// snapshot still arrives within seconds, from the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_does_not_wait_on_a_holder_that_went_away() {
    let (hour, minute) = (Duration::from_secs(3600), Duration::from_secs(60));
    let owner = TestNode::start(|c| c.replication.anti_entropy_interval = hour).await;
    let boot = owner.addr.clone();
    let gone = TestNode::start(|c| {
        c.net.bootstrap = vec![boot.clone()];
        c.replication.anti_entropy_interval = hour;
    })
    .await;
    let newcomer = TestNode::start(|c| {
        c.net.bootstrap = vec![boot.clone()];
        c.replication.anti_entropy_interval = hour;
        c.net.connection_timeout = minute;
    })
    .await;
    let work = WorkRepo::with_history("holders");
    let id = import(&owner.handle, work.path()).await;
    gone.handle.follow(id).await.unwrap();
    gone.handle.sync(id, None, None).await.unwrap();
    let gone_id = gone.handle.peer_id();
    newcomer.handle.connect(gone.addr.clone()).await.unwrap();
    newcomer.handle.follow(id).await.unwrap();
    for holder in [gone_id, owner.handle.peer_id()] {
        newcomer.handle.sync(id, Some(holder), None).await.unwrap();
    }
    let known = newcomer
        .handle
        .repository(id)
        .await
        .unwrap()
        .unwrap()
        .holders;
    assert_eq!(known.len(), 2, "{known:?}");

    // The replica goes; its port swallows connections without a handshake.
    let port = gone
        .addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    gone.shutdown().await;
    let silent = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let swallowed = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(1) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(70));
    });

    work.commit("refs/heads/main", &[("NEWS", b"more\n".as_slice())], "news");
    owner
        .handle
        .import(work.path().to_owned(), None)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let outcome = newcomer.handle.sync(id, None, None).await.unwrap();
    let took = started.elapsed();
    // Waiting for the gone holder would take the whole minute (the request to it fails
    // only when its dial times out).
    assert!(took < minute / 2, "the sync waited {took:?}: {outcome:?}");
    holds(&newcomer.handle, id, 2).await;
    drop(swallowed);
    for n in [owner, newcomer] {
        n.shutdown().await;
    }
}

/// A sync that reaches no holder fails and says which holders it tried and why; it never
/// reports "up to date", whether this node holds the repository or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_reaches_no_holder_fails_naming_them() {
    let hour = Duration::from_secs(3600);
    let owner = TestNode::start(|c| c.replication.anti_entropy_interval = hour).await;
    let boot = owner.addr.clone();
    let replica = TestNode::start(|c| {
        c.net.bootstrap = vec![boot.clone()];
        c.replication.anti_entropy_interval = hour;
    })
    .await;
    let fresh = TestNode::start(|c| {
        c.net.bootstrap = vec![boot.clone()];
        c.replication.anti_entropy_interval = hour;
    })
    .await;
    let work = WorkRepo::with_history("unreachable");
    let id = import(&owner.handle, work.path()).await;
    let owner_id = owner.handle.peer_id();
    replica.handle.follow(id).await.unwrap();
    replica.handle.sync(id, Some(owner_id), None).await.unwrap();
    holds(&replica.handle, id, 1).await;
    owner.shutdown().await;

    // The replica holds sequence 1, but with its only holder gone it cannot know that
    // nothing newer exists.
    let err = replica
        .handle
        .sync(id, None, None)
        .await
        .expect_err("a sync with every holder gone must fail");
    let text = err.to_string();
    assert!(
        text.contains("no holder of") && text.contains(&format!("{owner_id}: unreachable")),
        "{text}"
    );
    // A node that never held it, pointed at the gone owner once the replica is gone too:
    // the same, not "up to date (sequence 0)".
    let replica_id = replica.handle.peer_id();
    replica.shutdown().await;
    let err = fresh
        .handle
        .sync(id, Some(owner_id), None)
        .await
        .expect_err("a sync of a repository nobody served must fail");
    let text = err.to_string();
    assert!(text.contains(&format!("{owner_id}: unreachable")), "{text}");
    assert!(
        !text.contains(&replica_id.to_string())
            || text.contains(&format!("{replica_id}: unreachable")),
        "{text}"
    );
    fresh.shutdown().await;
}
