//! Only who belongs gets in: the control API's token, `Host` and `Origin` checks, clients
//! that refuse impostors, and private networks (swarm key, allow-list).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guts_node::api::types::auth::{self, Token};
use guts_node::api::types::{RepoDetail, RepoSummary};
use guts_tests::eventually;
use guts_tests::git::WorkRepo;
use guts_tests::process::{
    GutsNode, HttpResponse, NodeSpec, git_against, guts, guts_bin, header_value, http,
};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A node holding one imported repository: the node, the repository's id and its path.
fn node_with_repo(dir: &Path) -> (GutsNode, WorkRepo, RepoSummary) {
    let node = NodeSpec::loopback(dir).spawn();
    let work = WorkRepo::with_history("demo");
    let repo = node.import(work.path());
    (node, work, repo)
}

fn request(
    node: &GutsNode,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    http(node.api(), method, path, headers, body).unwrap()
}

fn error_text(r: &HttpResponse) -> String {
    serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("not a JSON error body: {r:?}"))
}

#[test]
fn the_api_refuses_requests_without_the_token_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, work, repo) = node_with_repo(&tmp.path().join("a"));
    let id = repo.id.clone();
    let repo_dir = PathBuf::from(&repo.path);
    let victim = tmp.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "precious").unwrap();
    let before_repos: Vec<RepoSummary> = node.client_json("repo list").unwrap();
    let before_dir = entries(&repo_dir);

    let host = node.api().to_string();
    let token = node.token();
    let bearer = format!("Bearer {token}");
    let wrong = format!("Bearer {}", Token::generate().unwrap().to_hex());
    let import = serde_json::json!({"path": work.path(), "name": "evil"}).to_string();
    let push = serde_json::json!({
        "area": victim,
        "updates": [{"ref": "refs/heads/main", "new": null, "force": true}],
    })
    .to_string();
    let endpoints: Vec<(&str, String, String)> = vec![
        (
            "POST",
            "/api/v1/connect".into(),
            r#"{"address":"/ip4/127.0.0.1/tcp/1"}"#.into(),
        ),
        ("POST", "/api/v1/repos/import".into(), import),
        (
            "POST",
            "/api/v1/repos/init".into(),
            r#"{"name":"evil"}"#.into(),
        ),
        ("POST", format!("/api/v1/repos/{id}/push-area"), "".into()),
        ("POST", format!("/api/v1/repos/{id}/push"), push),
        ("POST", format!("/api/v1/repos/{id}/follow"), "".into()),
        ("POST", format!("/api/v1/repos/{id}/sync"), "{}".into()),
        ("GET", "/api/v1/status".into(), "".into()),
        ("GET", "/api/v1/peers".into(), "".into()),
        ("GET", "/api/v1/repos".into(), "".into()),
        ("GET", "/api/v1/routing-table".into(), "".into()),
        ("GET", format!("/api/v1/repos/{id}"), "".into()),
    ];
    for (method, path, body) in &endpoints {
        let what = format!("{method} {path}");
        let r = request(&node, method, path, &[("Host", &host)], body);
        assert_eq!(r.code, 401, "{what} without a token: {r:?}");
        assert!(error_text(&r).contains("API token"), "{what}: {r:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"guts\""));
        let r = request(
            &node,
            method,
            path,
            &[("Host", &host), ("Authorization", &wrong)],
            body,
        );
        assert_eq!(r.code, 401, "{what} with a wrong token: {r:?}");
        assert!(error_text(&r).contains("wrong API token"), "{what}: {r:?}");
        // The right token does not help a web page or a rebound name.
        let port = node.api().port();
        for foreign in [
            format!("evil.example:{port}"),
            format!("localhost:{}", port + 1),
        ] {
            let r = request(
                &node,
                method,
                path,
                &[("Host", &foreign), ("Authorization", &bearer)],
                body,
            );
            assert_eq!(r.code, 403, "{what} with Host {foreign}: {r:?}");
            assert!(error_text(&r).contains(&foreign), "{what}: {r:?}");
        }
        let r = request(
            &node,
            method,
            path,
            &[
                ("Host", &host),
                ("Authorization", &bearer),
                ("Origin", "http://evil.example"),
            ],
            body,
        );
        assert_eq!(r.code, 403, "{what} with an Origin: {r:?}");
        assert!(error_text(&r).contains("Origin"), "{what}: {r:?}");
    }
    let after: Vec<RepoSummary> = node.client_json("repo list").unwrap();
    assert_eq!(after, before_repos, "no repository was created or changed");
    assert_eq!(entries(&repo_dir), before_dir, "no push area was created");
    assert_eq!(
        std::fs::read_to_string(victim.join("keep")).unwrap(),
        "precious"
    );

    // The same requests pass with the token and the API's own address (so the refusals
    // above are the guard's doing), and the open endpoints stay open.
    let r = request(
        &node,
        "GET",
        "/api/v1/status",
        &[("Host", &host), ("Authorization", &bearer)],
        "",
    );
    assert_eq!(r.code, 200, "{r:?}");
    let r = request(
        &node,
        "GET",
        "/api/v1/status",
        &[
            ("Host", &format!("localhost:{}", node.api().port())),
            ("Authorization", &bearer),
        ],
        "",
    );
    assert_eq!(r.code, 200, "localhost on the API's port: {r:?}");
    let r = request(&node, "GET", "/health", &[("Host", &host)], "");
    assert_eq!((r.code, r.body.trim()), (200, "ok"));
    let r = request(&node, "GET", "/metrics", &[("Host", &host)], "");
    assert_eq!(r.code, 200, "metrics are open on loopback: {r:?}");

    // A push area path that climbs out with `..` is refused, and nothing is removed.
    let r = request(
        &node,
        "POST",
        &format!("/api/v1/repos/{id}/push-area"),
        &[("Host", &host), ("Authorization", &bearer)],
        "{}",
    );
    assert_eq!(r.code, 200, "{r:?}");
    let area: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let area = area["path"].as_str().unwrap().to_owned();
    let decoy = tmp.path().join("guts-push-0123456789abcdef");
    std::fs::create_dir(&decoy).unwrap();
    let climbing = format!("{area}/../../../../../../../..{}", decoy.display());
    let body = serde_json::json!({"area": climbing, "updates": []}).to_string();
    let r = request(
        &node,
        "POST",
        &format!("/api/v1/repos/{id}/push"),
        &[("Host", &host), ("Authorization", &bearer)],
        &body,
    );
    assert_eq!(r.code, 400, "{r:?}");
    assert!(error_text(&r).contains("not a push area"), "{r:?}");
    assert!(decoy.exists(), "the refused push removed nothing");
    let after: Vec<RepoSummary> = node.client_json("repo list").unwrap();
    assert_eq!(after, before_repos);
}

#[cfg(unix)]
#[test]
fn the_token_file_is_private_fresh_at_each_start_and_removed_at_stop() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join(auth::TOKEN_FILE);
    let stale = Token::generate().unwrap().to_hex();
    std::fs::write(&file, format!("{stale}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut node = NodeSpec::loopback(&dir).spawn();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_ne!(node.token(), stale, "a fresh token at start");
    let log = node.log_text();
    assert!(
        log.contains("was readable by other users (mode 644)"),
        "the node warns about the loose file it replaced:\n{log}"
    );
    // The CLI works with no setup beyond being the node's user (the data dir).
    let out = node.client(["status"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Loosened while the node runs: the client refuses it, naming the file.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = node.client(["status"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&file.display().to_string()) && err.contains("mode 640"),
        "{err}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A token the node does not hold (as after a restart elsewhere) is no use.
    let out = Command::new(guts_bin())
        .args(["status", "--api", &node.api().to_string()])
        .env("GUTS_API_TOKEN", Token::generate().unwrap().to_hex())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("could not prove"), "{}", stderr(&out));
    // ... while the node's own one, given by value, works from anywhere.
    let out = Command::new(guts_bin())
        .args(["status", "--api", &node.api().to_string()])
        .env("GUTS_API_TOKEN", node.token())
        .env("GUTS_DATA_DIR", tmp.path().join("elsewhere"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = node.client(["api-token"]);
    assert_eq!(stdout(&printed).trim(), node.token());

    node.stop();
    assert!(!file.exists(), "the token goes with the node");
}

/// A plain HTTP server standing in for a node: it answers `routes` (path → JSON body),
/// 404 otherwise, and records every request. With `token` it also proves it holds that
/// token, as a node does (to stand in for a node that lies about paths).
struct FakeApi {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    fn start(routes: Vec<(String, String)>, token: Option<Token>) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                seen.lock().unwrap().push(head.clone());
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let header = |name: &str| header_value(&head, name);
                let proof = match (&token, header(auth::NONCE_HEADER), header("host")) {
                    (Some(t), Some(nonce), Some(host)) => {
                        format!("{}: {}\r\n", auth::PROOF_HEADER, t.proof(nonce, host))
                    }
                    _ => String::new(),
                };
                let (status, body) = match routes.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => ("200 OK", body.clone()),
                    None if path == "/health" => ("200 OK", "ok\n".to_owned()),
                    None => ("404 Not Found", r#"{"error":"no such thing"}"#.to_owned()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{proof}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeApi { addr, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Runs `git <args>` in `dir` against the API at `api` with the data dir `data_dir`.
fn git_with(dir: &Path, api: SocketAddr, data_dir: &Path, args: &[&str]) -> Output {
    git_against(dir, api, data_dir).args(args).output().unwrap()
}

#[test]
fn clients_refuse_an_impostor_on_the_port_and_send_it_no_token() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, _work, repo) = node_with_repo(&tmp.path().join("a"));
    let detail = stdout(&node.client(["repo", "show", &repo.id, "--json"]));
    let status = stdout(&node.client(["status", "--json"]));
    let token = node.token();
    // The node dies without cleaning up (its token file stays), and another program
    // answers where clients look for it, with the node's own answers replayed.
    node.stop_with("KILL", Duration::from_secs(5));
    assert_eq!(node.token(), token, "a killed node leaves its token file");
    let fake = FakeApi::start(
        vec![
            ("/api/v1/status".into(), status),
            (format!("/api/v1/repos/{}", repo.id), detail),
        ],
        None,
    );
    let out = git_with(
        tmp.path(),
        fake.addr,
        node.data_dir(),
        &["clone", &repo.url, "clone"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("could not prove") && err.contains(&fake.addr.to_string()),
        "{err}"
    );
    assert!(!tmp.path().join("clone").join(".git").exists());
    let out = Command::new(guts_bin())
        .args(["repo", "list", "--api", &fake.addr.to_string()])
        .env("GUTS_DATA_DIR", node.data_dir())
        .env_remove("GUTS_API_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("could not prove"), "{}", stderr(&out));
    let requests = fake.requests();
    assert!(!requests.is_empty(), "the clients did ask the impostor");
    for r in &requests {
        assert!(
            !r.contains(&token) && !r.to_ascii_lowercase().contains("authorization"),
            "a client sent its credential to a program that could not prove it is the node:\n{r}"
        );
    }
}

#[test]
fn the_helper_takes_no_path_outside_the_nodes_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, _work, repo) = node_with_repo(&tmp.path().join("a"));
    let status = stdout(&node.client(["status", "--json"]));
    let mut detail: RepoDetail =
        serde_json::from_str(&stdout(&node.client(["repo", "show", &repo.id, "--json"]))).unwrap();
    node.stop();
    // A node (or whatever holds its token) that names a real repository outside its
    // data dir, by way of `..` from inside it.
    let data_dir = node.data_dir().to_owned();
    let (token, _) = auth::write_token_file(&data_dir).unwrap();
    let outside = tmp.path().join("outside.git");
    std::fs::rename(&repo.path, &outside).unwrap();
    detail.summary.path = format!("{}/../outside.git", data_dir.display());
    let fake = FakeApi::start(
        vec![
            ("/api/v1/status".into(), status.clone()),
            (
                format!("/api/v1/repos/{}", repo.id),
                serde_json::to_string(&detail).unwrap(),
            ),
        ],
        Some(token),
    );
    let out = git_with(
        tmp.path(),
        fake.addr,
        &data_dir,
        &["clone", &repo.url, "c1"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("outside its data dir"), "{err}");
    assert!(!tmp.path().join("c1").join(".git").exists());
    let out = Command::new(guts_bin())
        .args(["clone", &repo.id])
        .arg(tmp.path().join("c2"))
        .args(["--api", &fake.addr.to_string()])
        .env("GUTS_DATA_DIR", &data_dir)
        .env_remove("GUTS_API_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("outside its data dir"),
        "{}",
        stderr(&out)
    );
    // The same answer naming the path inside the data dir is taken: the refusal above
    // is about where the path leads.
    std::fs::rename(&outside, &repo.path).unwrap();
    detail.summary.path = repo.path.clone();
    let (token, _) = auth::write_token_file(&data_dir).unwrap();
    // guts clone is git clone guts://, so git-remote-guts asks for the status too.
    let fake = FakeApi::start(
        vec![
            ("/api/v1/status".into(), status),
            (
                format!("/api/v1/repos/{}", repo.id),
                serde_json::to_string(&detail).unwrap(),
            ),
        ],
        Some(token),
    );
    let out = Command::new(guts_bin())
        .args(["clone", &repo.id])
        .arg(tmp.path().join("c3"))
        .args(["--api", &fake.addr.to_string()])
        .env("GUTS_DATA_DIR", &data_dir)
        .env_remove("GUTS_API_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(tmp.path().join("c3").join("README.md").exists());
}

#[test]
fn text_from_peers_is_escaped_before_it_reaches_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeSpec::loopback(&tmp.path().join("a")).spawn();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let network = guts_protocol::NetworkName::default_network();
    let agent = "guts/0.1.0 (mdns-tag: guts)\x1b]0;pwned\x07\x1b[2J\u{202e}";
    let mut peer = runtime.block_on(guts_tests::peer::RawPeer::with_agent(&network, agent));
    let peer_id = peer.peer_id().to_string();
    let _inside = runtime.enter();
    peer.dial(&node.tcp_addr().parse().unwrap());
    runtime.spawn(async move {
        use futures::StreamExt;
        loop {
            peer.swarm.select_next_some().await;
        }
    });
    eventually(
        Duration::from_secs(20),
        "the node to identify the peer",
        || {
            let peers = node.peers();
            match peers.iter().find(|p| p.peer_id == peer_id) {
                Some(p) if p.agent_version.as_deref() == Some(agent) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    let text = stdout(&node.client(["peers"]));
    assert!(
        !text.contains('\x1b') && !text.contains('\x07') && !text.contains('\u{202e}'),
        "{text:?}"
    );
    assert!(
        text.contains("\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{202e}"),
        "{text}"
    );
}

/// A fresh swarm key file from `guts swarm-key`.
fn swarm_key(path: &Path) -> PathBuf {
    let out = guts(&["swarm-key"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"),
        "{text}"
    );
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

fn private(dir: &Path, key: Option<&Path>) -> NodeSpec {
    // Outsiders' handshakes fail by timing out: keep that short.
    let spec = NodeSpec::loopback(dir)
        .without_quic()
        .args(["--connection-timeout", "3s"]);
    match key {
        Some(k) => spec.args(["--swarm-key", k.to_str().unwrap()]),
        None => spec,
    }
}

#[test]
fn a_private_network_admits_only_nodes_with_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = swarm_key(&tmp.path().join("swarm.key"));
    let other_key = swarm_key(&tmp.path().join("other.key"));
    let a = private(&tmp.path().join("a"), Some(&key)).spawn();
    let a_addr = a.tcp_addr();
    let b = private(&tmp.path().join("b"), Some(&key))
        .args(["--bootstrap", &a_addr])
        .spawn();
    let a_id = a.status().peer_id;
    let b_id = b.status().peer_id;
    let status = a.status();
    assert!(
        status.listen_addresses.iter().all(|l| !l.contains("quic")),
        "TCP only"
    );
    assert!(status.private_network && status.allowed_peers.is_none());
    let text = stdout(&a.client(["status"]));
    assert!(text.contains("private network (swarm key)"), "{text}");

    // Members connect and replicate.
    let work = WorkRepo::with_history("demo");
    let id = a.import(work.path()).id;
    eventually(Duration::from_secs(20), "b to connect to a", || {
        if b.peers().iter().any(|p| p.peer_id == a_id) {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    });
    let out = b.client(["repo", "sync", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let held: RepoDetail = b.client_json(&format!("repo show {id}")).unwrap();
    assert_eq!(held.refs, guts_tests::git::refs(work.path()));

    // Outsiders, with another key or none, never complete a connection either way.
    let c = private(&tmp.path().join("c"), Some(&other_key))
        .args(["--bootstrap", &a_addr])
        .spawn();
    let d = private(&tmp.path().join("d"), None)
        .args(["--bootstrap", &a_addr])
        .spawn();
    for outsider in [&c, &d] {
        let out = outsider.client(["connect", &a_addr]);
        assert!(!out.status.success(), "an outsider connected");
        // Both are told why it may be: the keyed one asks about the key, the keyless
        // one that the peer may be in a private network.
        assert!(stderr(&out).contains("swarm key"), "{}", stderr(&out));
        let out = a.client(["connect", &outsider.tcp_addr()]);
        assert!(!out.status.success(), "a member connected to an outsider");
        assert!(stderr(&out).contains("same swarm key"), "{}", stderr(&out));
        let status = outsider.status();
        assert_eq!(status.connected_peers, 0);
        assert_eq!(status.routing_table_size, 0, "no peer id learned");
        assert!(outsider.peers().is_empty());
    }
    let a_peers: Vec<String> = a.peers().into_iter().map(|p| p.peer_id).collect();
    assert_eq!(a_peers, vec![b_id]);
    assert_eq!(a.status().routing_table_size, 1);
}

#[test]
fn private_network_settings_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let key = swarm_key(&tmp.path().join("swarm.key"));
    let k = key.to_str().unwrap();
    let quic = "/ip4/127.0.0.1/udp/9/quic-v1";
    for args in [
        vec!["--listen", quic],
        vec!["--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", quic],
    ] {
        let out = guts(&[&["node", "--swarm-key", k][..], &args, &["--print-config"]].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(quic) && err.contains("swarm_key"), "{err}");
    }
    // Built-in listen addresses lose their QUIC half instead.
    let out = guts(&["node", "--swarm-key", k, "--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = stdout(&out);
    assert!(
        config.contains("/tcp/9000") && !config.contains("quic"),
        "{config}"
    );

    let bad = tmp.path().join("bad.key");
    for (text, says) in [
        ("not a key\n", "three lines"),
        ("/key/swarm/psk/1.0.0/\n/base64/\nabcd\n", "/base16/"),
        ("/key/swarm/psk/1.0.0/\n/base16/\nabcd\n", "64 hex digits"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = guts(&[
            "node",
            "--swarm-key",
            bad.to_str().unwrap(),
            "--print-config",
        ]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(
            err.contains(&bad.display().to_string()) && err.contains(says),
            "{err}"
        );
    }
    let missing = tmp.path().join("missing.key");
    let out = guts(&[
        "node",
        "--swarm-key",
        missing.to_str().unwrap(),
        "--print-config",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&missing.display().to_string()));

    let out = guts(&["node", "--allow-peer", "not-a-peer-id", "--print-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not-a-peer-id"), "{}", stderr(&out));
    let list = tmp.path().join("peers.txt");
    std::fs::write(&list, "# friends\n\nnot-a-peer\n").unwrap();
    let out = guts(&[
        "node",
        "--allow-peers-file",
        list.to_str().unwrap(),
        "--print-config",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:3", list.display())), "{err}");
}
