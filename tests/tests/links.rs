//! Replication over a bad link: 10 Mbit/s, 2 % loss each way, 100 ms round trip, and a
//! partition that heals (namespace hosts; needs root).

use std::time::{Duration, Instant};

use guts_node::api::types::RepoSummary;
use guts_tests::eventually;
use guts_tests::git::{Synthetic, fsck, refs};
use guts_tests::link::{BadLink, Shape};
use guts_tests::process::{GutsNode, NodeSpec};

/// Node `host` of the link listening on its loopback only: the other host can reach it
/// only through the proxy (so through the delay), and it cannot dial the other.
fn node(link: &BadLink, host: usize, dir: &std::path::Path, extra: &[&str]) -> GutsNode {
    let mut spec = NodeSpec::on_lan(&link.lan, host, &dir.join(format!("n{host}")));
    spec.args = ["--listen", "/ip4/127.0.0.1/tcp/9000", "--mdns", "off"]
        .map(String::from)
        .to_vec();
    spec.args.extend(extra.iter().map(|s| s.to_string()));
    spec.spawn()
}

fn held(node: &GutsNode, id: &str) -> Option<RepoSummary> {
    let repos: Vec<RepoSummary> = node.client_json("repo list").ok()?;
    repos.into_iter().find(|r| r.id == id)
}

#[test]
fn replication_completes_over_a_slow_lossy_distant_link_and_after_a_partition() {
    let mut link = BadLink::new(Shape {
        rate_mbit: 10,
        loss: 0.02,
        rtt: Duration::from_millis(100),
    });
    let tmp = tempfile::tempdir().unwrap();
    let owner = node(&link, 0, tmp.path(), &[]);
    let proxy = link.proxy(9100, 9000);
    let (ip, port) = proxy.split_once(':').expect("ip:port");
    let bootstrap = format!("/ip4/{ip}/tcp/{port}");
    let replica = node(
        &link,
        1,
        tmp.path(),
        &[
            "--bootstrap",
            &bootstrap,
            "--replicate",
            "all",
            "--anti-entropy-interval",
            "5s",
        ],
    );

    // About 1 MiB that does not compress (four 256 KiB binaries) and a history around it.
    let work = Synthetic {
        commits: 40,
        text_files: 20,
        binary_every: 10,
        binary_size: 256 << 10,
        seed: 7,
    }
    .build("link");
    let out = owner.client(["repo", "import", work.path().to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = imported["repository"]["id"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let copy = eventually(
        Duration::from_secs(150),
        "the replica to hold the repository over the bad link",
        || match held(&replica, &id) {
            Some(r) if r.sequence == 1 => Ok(r),
            other => Err(format!("{other:?}")),
        },
    );
    eprintln!(
        "replicated over 10 Mbit/s, 2% loss, 100 ms RTT in {:?}",
        started.elapsed()
    );
    let path = std::path::PathBuf::from(&copy.path);
    assert_eq!(refs(&path), refs(work.path()));
    fsck(&path);

    // The replica is cut off while the owner moves on.
    link.lan.set_link(1, false);
    work.commit(
        "refs/heads/main",
        &[("NEWS", b"while the link was down\n".as_slice())],
        "news",
    );
    let out = owner.client(["repo", "import", work.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(held(&owner, &id).map(|r| r.sequence), Some(2));
    assert_eq!(
        held(&replica, &id).map(|r| r.sequence),
        Some(1),
        "the replica got the new snapshot through a cut link"
    );

    // The partition heals: the replica catches up by itself.
    link.lan.set_link(1, true);
    eventually(
        Duration::from_secs(120),
        "the replica to catch up once the link is back",
        || match held(&replica, &id) {
            Some(r) if r.sequence == 2 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(refs(&path), refs(work.path()));
    fsck(&path);
}
