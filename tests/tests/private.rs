//! Private repositories on real nodes: the peer a repository allows replicates it; a peer
//! hearing every gossip topic and a DHT server beside its holder learn nothing of it; a
//! stranger that asks its holder for everything (refs, changes, forks, the repository
//! list, its objects) is answered exactly as for an id the node never heard of; a peer
//! whose key is disallowed gets nothing new, from the maintainer or from another allowed
//! holder that heard of the removal.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use guts_node::api::types::{RepoDetail, RepoSummary};
use guts_protocol::wire::{PackRequest, PackResponse, SyncRequest, SyncResponse};
use guts_protocol::{NetworkName, ObjectId, RepositoryId};
use guts_tests::peer::{DhtPeer, GossipListener, RawPeer, StreamPeer, sync_response};
use guts_tests::process::{GutsNode, NodeSpec};
use guts_tests::{eventually, eventually_async};

const WAIT: Duration = Duration::from_secs(60);

fn ok(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn spawn(dir: &Path, bootstrap: Option<&GutsNode>) -> GutsNode {
    let mut spec = NodeSpec::loopback(dir).args(["--anti-entropy-interval", "1s"]);
    if let Some(b) = bootstrap {
        spec = spec.args(["--bootstrap", &b.tcp_addr()]);
    }
    spec.spawn()
}

fn main_on(node: &GutsNode, id: &str) -> Option<String> {
    let d: RepoDetail = node.client_json(&format!("repo show {id}")).ok()?;
    d.refs.get("refs/heads/main").cloned()
}

fn commit(node: &GutsNode, dir: &Path, file: &str) -> String {
    std::fs::write(dir.join(file), file).unwrap();
    ok(node.git(dir, &["add", file]), "git add");
    ok(node.git(dir, &["commit", "-q", "-m", file]), "git commit");
    ok(node.git(dir, &["rev-parse", "HEAD"]), "git rev-parse")
}

/// Whether any of `messages` holds `bytes`.
fn mentions(messages: &[Vec<u8>], bytes: &[u8]) -> bool {
    messages
        .iter()
        .any(|m| m.windows(bytes.len()).any(|w| w == bytes))
}

/// What a stranger gets from `node` for `id`, asking everything a peer may ask.
async fn what_a_stranger_gets(node: &GutsNode, id: RepositoryId, commit: ObjectId) -> Vec<String> {
    let network = NetworkName::default_network();
    let addr: libp2p::Multiaddr = node.tcp_addr().parse().unwrap();
    let node_id: libp2p::PeerId = node.status().peer_id.parse().unwrap();
    let mut raw = RawPeer::new(&network).await;
    raw.dial(&addr);
    let mut seen = Vec::new();
    for request in [
        SyncRequest::GetRefs { repository: id },
        SyncRequest::GetChanges { repository: id },
        SyncRequest::GetForks {
            repository: id,
            known: vec![],
        },
        SyncRequest::ListRepositories,
    ] {
        raw.request(&node_id, request.clone());
        let answer = raw
            .run_until(WAIT, "an answer", |e| sync_response(e).cloned())
            .await;
        seen.push(match answer {
            SyncResponse::NotFound => "not found".to_owned(),
            SyncResponse::Repositories(ids) if !ids.contains(&id) => "not listed".to_owned(),
            other => format!("{request:?} answered {other:?}"),
        });
    }
    let stranger = StreamPeer::spawn(&network);
    stranger.connect(&addr);
    let request = PackRequest {
        repository: id,
        wants: vec![commit],
        haves: vec![],
    };
    let mut stream = eventually_async(WAIT, "a pack stream", || async {
        stranger.request_pack(node_id, &request).await.map_err(|e| {
            stranger.connect(&addr);
            e.to_string()
        })
    })
    .await;
    seen.push(match StreamPeer::read_pack_header(&mut stream).await {
        Ok(PackResponse::NotFound) => "not found".to_owned(),
        other => format!("pack answered {other:?}"),
    });
    seen
}

#[test]
fn a_private_repository_reaches_the_peer_it_allows_and_no_one_else() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = spawn(&root.join("a"), None);
    let b = spawn(&root.join("b"), Some(&a));
    let c = spawn(&root.join("c"), Some(&a));
    let d = spawn(&root.join("d"), Some(&a));
    let b_key = b.status().key;
    let d_key = d.status().key;

    // Beside A, a peer that hears every gossip topic and a DHT server A may tell it
    // provides something: what anyone on the network learns. A public repository shows
    // they hear what there is to hear.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_runtime = rt.enter();
    let network = NetworkName::default_network();
    let listener = GossipListener::spawn(&network);
    let dht = DhtPeer::spawn(&network);
    let a_addr: libp2p::Multiaddr = a.tcp_addr().parse().unwrap();
    listener.connect(&a_addr);
    // A tells providers to the peers in its routing table: the DHT server must be one.
    let in_table = |n: usize| {
        eventually(WAIT, &format!("{n} peers in A's routing table"), || {
            let size = a.status().routing_table_size;
            (size >= n).then_some(()).ok_or(format!("{size}"))
        })
    };
    in_table(3);
    dht.connect(&a_addr);
    in_table(4);
    let heard_of = |name: &str| {
        let open: RepoSummary = a.client_json(&format!("repo init {name}")).unwrap();
        let open: RepositoryId = open.id.parse().unwrap();
        eventually(WAIT, &format!("{name} heard and provided"), || {
            let heard = mentions(&listener.heard(), open.as_bytes());
            let provided = dht.provided_keys().contains(&open.provider_key());
            (heard && provided)
                .then_some(())
                .ok_or(format!("heard {heard}, provided {provided}"))
        });
    };
    heard_of("open");

    let created: RepoSummary = a
        .client_json(&format!("repo init secret --allow {b_key} --allow {d_key}"))
        .unwrap();
    let (id, url) = (created.id.clone(), created.url.clone());

    let alice = root.join("alice");
    std::fs::create_dir(&alice).unwrap();
    ok(a.git(&alice, &["init", "-q", "-b", "main"]), "git init");
    for (k, v) in [("user.name", "alice"), ("user.email", "a@example.com")] {
        ok(a.git(&alice, &["config", k, v]), "git config");
    }
    let first = commit(&a, &alice, "README");
    ok(
        a.git(&alice, &["remote", "add", "origin", &url]),
        "git remote",
    );
    ok(a.git(&alice, &["push", "-q", "origin", "main"]), "git push");

    // B and D, allowed, follow it and are told by A directly: they get it.
    for (who, node) in [("B", &b), ("D", &d)] {
        node.client_ok(&["repo", "follow", &id]);
        eventually(WAIT, &format!("main on {who}"), || {
            match main_on(node, &id) {
                Some(m) if m == first => Ok(()),
                other => Err(format!("main at {other:?}")),
            }
        });
    }
    let shown = b.client_ok(&["repo", "maintainers", &id]);
    assert!(
        shown.contains("private: seen by the maintainers and 2 allowed key(s)"),
        "{shown}"
    );

    // C follows it too, and asks A by name: answered as for a repository A lacks.
    c.client_ok(&["repo", "follow", &id]);
    let a_peer = a.status().peer_id;
    let refused = c.client(["repo", "sync", &id, "--from", &a_peer]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "C synced a private repository");
    assert!(said.contains("does not hold it"), "{said}");
    assert_eq!(main_on(&c, &id), None);

    // Nothing of it was gossiped or provided, while a public repository created since is.
    heard_of("open-again");
    let repository: RepositoryId = id.parse().unwrap();
    assert!(!mentions(&listener.heard(), repository.as_bytes()));
    assert!(!dht.provided_keys().contains(&repository.provider_key()));

    // A stranger that asks A everything learns nothing, objects included.
    let commit_id = ObjectId(
        git2::Oid::from_str(&first)
            .unwrap()
            .as_bytes()
            .try_into()
            .unwrap(),
    );
    let seen = rt.block_on(what_a_stranger_gets(&a, repository, commit_id));
    assert_eq!(
        seen,
        [
            "not found",
            "not found",
            "not found",
            "not listed",
            "not found"
        ]
    );
    // Exactly what an id A has never heard of gets: nothing tells "private" from "not held".
    let unknown = rt.block_on(what_a_stranger_gets(
        &a,
        RepositoryId::from_bytes([7; 20]),
        ObjectId([7; 20]),
    ));
    assert_eq!(seen, unknown);
    // B holds it too, and answers strangers the same.
    let seen = rt.block_on(what_a_stranger_gets(&b, repository, commit_id));
    assert_eq!(
        seen,
        [
            "not found",
            "not found",
            "not found",
            "not listed",
            "not found"
        ]
    );

    // A disallows B and pushes again. D, still allowed, is told and takes both; then B,
    // asking A or D by name, is told nothing new by either.
    a.client_ok(&["repo", "propose", &id, "--disallow", &b_key]);
    let second = commit(&a, &alice, "SECOND");
    ok(a.git(&alice, &["push", "-q", "origin", "main"]), "git push");
    eventually(WAIT, "the second commit on D", || match main_on(&d, &id) {
        Some(m) if m == second => Ok(()),
        other => Err(format!("main at {other:?}")),
    });
    let d_peer = d.status().peer_id;
    for (who, holder) in [("A", &a_peer), ("D", &d_peer)] {
        let refused = b.client(["repo", "sync", &id, "--from", holder]);
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success(),
            "B synced from {who} after its removal: {said}"
        );
        assert!(said.contains("does not hold it"), "{who}: {said}");
    }
    assert_eq!(main_on(&b, &id), Some(first));
}

/// Every object in every git repository under `dir` (the store, opened forms, push
/// areas), with its content, as git reads them: compressed and packed ones included.
fn objects_under(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("objects").is_dir() && d.join("HEAD").is_file() {
            let out = std::process::Command::new("git")
                .args(["cat-file", "--batch-all-objects", "--batch"])
                .env("GIT_DIR", &d)
                .output()
                .unwrap();
            assert!(out.status.success(), "git cat-file in {}", d.display());
            all.extend(out.stdout);
        }
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    all
}

/// Every file's raw bytes under `dir`.
fn files_under(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => all.extend(std::fs::read(entry.path()).unwrap_or_default()),
                _ => {}
            }
        }
    }
    all
}

#[test]
fn an_encrypted_repository_is_seeded_by_a_node_that_cannot_read_it() {
    const SECRET: &str = "launch code 0000: no seeder may hold this line in clear\n";
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut a = spawn(&root.join("a"), None);
    let d = spawn(&root.join("d"), Some(&a));
    let (b_dir, b_key) = {
        // B's key, known before B runs: its node starts only once A is gone.
        let b = spawn(&root.join("b"), Some(&d));
        let key = b.status().key;
        drop(b);
        (root.join("b"), key)
    };
    let d_key = d.status().key;
    let created: RepoSummary = a
        .client_json(&format!(
            "repo init vault --encrypted --allow {b_key} --seeder {d_key}"
        ))
        .unwrap();
    let (id, url) = (created.id.clone(), created.url.clone());
    let shown = a.client_ok(&["repo", "maintainers", &id]);
    assert!(
        shown.contains("encrypted: read by the maintainers and 1 key(s), seeded by 1 more"),
        "{shown}"
    );

    let alice = root.join("alice");
    std::fs::create_dir(&alice).unwrap();
    ok(a.git(&alice, &["init", "-q", "-b", "main"]), "git init");
    for (k, v) in [("user.name", "alice"), ("user.email", "a@example.com")] {
        ok(a.git(&alice, &["config", k, v]), "git config");
    }
    std::fs::write(alice.join("plan.txt"), SECRET).unwrap();
    ok(a.git(&alice, &["add", "plan.txt"]), "git add");
    ok(a.git(&alice, &["commit", "-q", "-m", "plan"]), "git commit");
    let first = ok(a.git(&alice, &["rev-parse", "HEAD"]), "git rev-parse");
    let blob = ok(
        a.git(&alice, &["rev-parse", "HEAD:plan.txt"]),
        "git rev-parse",
    );
    ok(
        a.git(&alice, &["remote", "add", "origin", &url]),
        "git remote",
    );
    ok(a.git(&alice, &["push", "-q", "origin", "main"]), "git push");
    assert_eq!(
        main_on(&a, &id),
        Some(first.clone()),
        "A reads what it pushed"
    );

    // D seeds it: told by A, it takes the sealed form and nothing else.
    d.client_ok(&["repo", "follow", &id]);
    let sealed = eventually(WAIT, "the sealed form on D", || {
        let detail: RepoDetail = d.client_json(&format!("repo show {id}"))?;
        detail
            .refs
            .get(guts_storage::SEALED_REF)
            .cloned()
            .ok_or(format!("refs {:?}", detail.refs))
    });
    let detail: RepoDetail = d.client_json(&format!("repo show {id}")).unwrap();
    assert_eq!(
        detail.refs.len(),
        1,
        "D sees only the sealed ref: {:?}",
        detail.refs
    );

    // A goes away; B, allowed to read, gets it from D alone and reads it with plain git.
    a.stop();
    let b = spawn(&b_dir, Some(&d));
    b.client_ok(&["repo", "follow", &id]);
    let d_peer = d.status().peer_id;
    eventually(WAIT, "main on B, from D", || {
        let _ = b.client(["repo", "sync", &id, "--from", &d_peer]);
        match main_on(&b, &id) {
            Some(m) if m == first => Ok(()),
            other => Err(format!("main at {other:?}")),
        }
    });
    let clone = root.join("bob");
    ok(b.git(root, &["clone", "-q", &url, "bob"]), "git clone on B");
    assert_eq!(
        std::fs::read_to_string(clone.join("plan.txt")).unwrap(),
        SECRET
    );

    // D's disk holds no plaintext: not in any file as written, not in any object git can
    // read there, not the blob by name. B's, which reads it, does (the scan finds it).
    let d_data = d.data_dir().to_path_buf();
    assert!(!mentions(&[files_under(&d_data)], SECRET.as_bytes()));
    assert!(!mentions(&[objects_under(&d_data)], SECRET.as_bytes()));
    let d_objects = objects_under(&d_data);
    assert!(!mentions(std::slice::from_ref(&d_objects), blob.as_bytes()));
    let raw_blob = git2::Oid::from_str(&blob).unwrap().as_bytes().to_vec();
    assert!(
        !mentions(&[d_objects], &raw_blob),
        "a tree on D names the blob"
    );
    assert!(mentions(&[objects_under(b.data_dir())], SECRET.as_bytes()));
    // And D still serves only ciphertext: its sealed tip is what B took.
    let on_b: RepoDetail = b.client_json(&format!("repo show {id}")).unwrap();
    assert!(on_b.refs.contains_key("refs/heads/main"), "{:?}", on_b.refs);
    assert!(!sealed.is_empty());
}
