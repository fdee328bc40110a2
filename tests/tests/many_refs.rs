//! A repository of 100,000 refs (the most a snapshot may hold), each at a commit of its
//! own: it applies on nodes held to 1,024 open files, and a stranger's pack requests of
//! the largest size against it leave the node answering.

use std::path::Path;
use std::time::{Duration, Instant};

use guts_node::api::types::RepoDetail;
use guts_protocol::wire::{PackRequest, PackResponse};
use guts_protocol::{NetworkName, ObjectId, RepositoryId};
use guts_tests::eventually_async;
use guts_tests::git::many_refs_repo;
use guts_tests::peer::StreamPeer;
use guts_tests::process::{GutsNode, NodeSpec, http_get};

/// Refs in the repository: the most a snapshot may hold.
const REFS: usize = 100_000;

fn import(node: &GutsNode, path: &Path) -> RepositoryId {
    node.import(path).id.parse().unwrap()
}

#[test]
fn a_snapshot_of_100000_refs_applies_within_1024_open_files() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("many.git");
    many_refs_repo(&source, REFS);
    let a = NodeSpec::loopback(&tmp.path().join("a"))
        .open_files_limit(1024)
        .spawn();
    let id = import(&a, &source);
    let b = NodeSpec::loopback(&tmp.path().join("b"))
        .open_files_limit(1024)
        .args(["--bootstrap", &a.tcp_addr()])
        .spawn();
    let out = b.client(["repo", "sync", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log_text()
    );
    let held: RepoDetail = b.client_json(&format!("repo show {id}")).unwrap();
    assert_eq!(held.refs.len(), REFS);
    assert_eq!(held.refs, guts_tests::git::refs(&source));
    let packed =
        std::fs::read_to_string(Path::new(&held.summary.path).join("packed-refs")).unwrap();
    // All of them in the one packed-refs file, nothing else.
    let names: Vec<&str> = packed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' ').map(|(_, name)| name))
        .collect();
    assert_eq!(names.len(), REFS);
    assert!(names.iter().all(|n| held.refs.contains_key(*n)));
}

/// Before: each want was checked against every ref, on the async runtime; 8 such requests
/// (200,000 wants x 100,000 refs) stalled `/health` for tens of seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_pack_requests_against_100000_refs_leave_the_node_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("many.git");
    many_refs_repo(&source, REFS);
    let a = NodeSpec::loopback(&tmp.path().join("a")).spawn();
    let id = import(&a, &source);
    let detail: RepoDetail = a.client_json(&format!("repo show {id}")).unwrap();
    // The target of the last ref in the snapshot's order: a scan of the refs for each
    // want finds it last.
    let last: ObjectId = detail.refs.values().last().unwrap().parse().unwrap();
    let peer = a.status().peer_id.parse().unwrap();
    let stranger = StreamPeer::spawn(&NetworkName::default_network());
    stranger.connect(&a.tcp_addr().parse().unwrap());
    let request = PackRequest {
        repository: id,
        wants: vec![last; 200_000],
        haves: Vec::new(),
    };
    let mut streams = Vec::new();
    for _ in 0..8 {
        // Each attempt bounded: a stream that never opens is retried, not waited on.
        let stream = eventually_async(Duration::from_secs(30), "a pack stream", || async {
            match tokio::time::timeout(
                Duration::from_secs(10),
                stranger.request_pack(peer, &request),
            )
            .await
            {
                Ok(sent) => sent.map_err(|e| e.to_string()),
                Err(_) => Err("no stream within 10 s".into()),
            }
        })
        .await;
        streams.push(stream);
    }
    // The node keeps answering while it judges them.
    let api = a.api();
    let worst = tokio::task::spawn_blocking(move || {
        let mut worst = Duration::ZERO;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            let asked = Instant::now();
            let (code, _) = http_get(api, "/health").expect("health");
            assert_eq!(code, 200);
            worst = worst.max(asked.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        worst
    })
    .await
    .unwrap();
    assert!(worst < Duration::from_secs(2), "/health took {worst:?}");
    // And it served them: the one target they want is the snapshot's.
    for (i, mut stream) in streams.into_iter().enumerate() {
        let header = tokio::time::timeout(
            Duration::from_secs(60),
            StreamPeer::read_pack_header(&mut stream),
        )
        .await
        .unwrap_or_else(|_| panic!("request {i}: no answer header within 60 s"));
        match header.unwrap() {
            PackResponse::Pack { objects } => assert!(objects >= 1),
            PackResponse::RateLimited | PackResponse::Busy => {}
            other => panic!("{other:?}"),
        }
    }
}
