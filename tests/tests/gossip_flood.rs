//! A stranger speaking gossipsub by hand. Before, the node kept up to 100 topics each peer
//! said it subscribed to (libp2p's default filter), names of up to 16 KiB each: 1.6 MB
//! a peer, hundreds of MB for a node full of such peers. Now it takes subscriptions to
//! its own topic only.

use std::time::Duration;

use guts_protocol::NetworkName;
use guts_tests::peer::StreamPeer;
use guts_tests::process::NodeSpec;
use guts_tests::raw_frames::{gossipsub_protocol, subscribe_rpc};
use guts_tests::{eventually, eventually_async};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_to_topics_the_node_does_not_use_are_not_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeSpec::loopback(&tmp.path().join("a")).spawn();
    let network = NetworkName::default_network();
    let stranger = StreamPeer::spawn(&network);
    let stranger_id = stranger.peer_id().to_string();
    stranger.accept(gossipsub_protocol(&network));
    stranger.connect(&node.tcp_addr().parse().unwrap());
    eventually(Duration::from_secs(10), "the stranger connected", || {
        if node.peers().iter().any(|p| p.peer_id == stranger_id) {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    let node_id: libp2p::PeerId = node.status().peer_id.parse().unwrap();

    // One RPC (libp2p's gossipsub reads at most 16 KiB at once) naming one topic of
    // 8,000 bytes, 40 of 150 and the node's own last: when that one is seen, all were.
    let mut topics: Vec<String> = vec!["x".repeat(8000)];
    topics.extend((0..40).map(|i| format!("{i:0>150}")));
    let own = network.announce_topic();
    topics.push(own.clone());
    let frame = subscribe_rpc(topics.iter().map(String::as_str));
    assert!(frame.len() < 16 * 1024);
    let _stream = eventually_async(Duration::from_secs(10), "a gossipsub stream", || async {
        stranger
            .raw_stream(node_id, gossipsub_protocol(&network), &frame)
            .await
            .map_err(|e| e.to_string())
    })
    .await;

    let subscribed = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("peer subscribed") && l.contains(&stranger_id))
            .map(str::to_owned)
            .collect()
    };
    eventually(
        Duration::from_secs(20),
        "the node to see the stranger subscribe to its topic",
        || {
            let seen = subscribed(&node.log_text());
            if seen.iter().any(|l| l.contains(&format!("topic={own}"))) {
                Ok(())
            } else {
                Err(format!("{} subscriptions seen", seen.len()))
            }
        },
    );
    let seen = subscribed(&node.log_text());
    assert_eq!(
        seen.len(),
        1,
        "only its own topic: {:?}",
        &seen[..seen.len().min(3)]
    );
    let (code, _) = guts_tests::process::http_get(node.api(), "/health").unwrap();
    assert_eq!(code, 200, "the node is alive");
}
