//! The client commands as a newcomer meets them: the API address in every form the node
//! prints or people type, `--json` on every command, a closed pipe, the config file, `guts
//! id` on a mistyped path, logs, completions and man pages, unfollow and remove.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use guts_node::api::types::{RepoDetail, RepoSummary, StatusReport};
use guts_tests::eventually;
use guts_tests::git::WorkRepo;
use guts_tests::process::{GutsNode, NO_CONFIG_HOME, NodeSpec, guts, guts_bin};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `guts <args>` with only what the test gives: no `GUTS_*` from the environment, and
/// config files only where `config_home` says.
fn bare_guts(args: &[&str], config_home: &Path) -> Command {
    let mut cmd = Command::new(guts_bin());
    cmd.args(args)
        .env_remove("GUTS_API")
        .env_remove("GUTS_DATA_DIR")
        .env_remove("GUTS_CONFIG")
        .env_remove("GUTS_API_TOKEN")
        .env("XDG_CONFIG_HOME", config_home);
    cmd
}

fn node(dir: &Path) -> GutsNode {
    NodeSpec::loopback(dir).spawn()
}

#[test]
fn the_api_address_reaches_the_node_in_every_form_it_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&tmp.path().join("a"));
    let port = a.api().port();
    let peer = a.status().peer_id;
    for form in [
        format!("127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/"),
        format!("localhost:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let out = bare_guts(
            &["status", "--json", "--api", &form],
            Path::new(NO_CONFIG_HOME),
        )
        .env("GUTS_DATA_DIR", a.data_dir())
        .output()
        .unwrap();
        assert!(out.status.success(), "--api {form}: {}", stderr(&out));
        let status: StatusReport = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(status.peer_id, peer, "--api {form}");
        // GUTS_API takes the same forms.
        let out = bare_guts(&["health"], Path::new(NO_CONFIG_HOME))
            .env("GUTS_API", &form)
            .output()
            .unwrap();
        assert!(out.status.success(), "GUTS_API={form}: {}", stderr(&out));
    }
    for bad in ["https://127.0.0.1:9080", "127.0.0.1", "127.0.0.1:9080/api"] {
        let out = guts(&["status", "--api", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("{bad:?}")),
            "{}",
            stderr(&out)
        );
    }
    // The node takes the URL form too, and a name only if it is localhost.
    let out = guts(&["node", "--api", "http://localhost:9999", "--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("api = \"127.0.0.1:9999\""),
        "{}",
        stdout(&out)
    );
    let out = guts(&["node", "--api", "node.example:9080", "--print-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not on"), "{}", stderr(&out));
}

#[test]
fn every_client_command_prints_json_with_json() {
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&tmp.path().join("a"));
    let b = node(&tmp.path().join("b"));
    let json = |node: &GutsNode, args: &[&str]| -> serde_json::Value {
        let out = node.client(args.iter().copied().chain(["--json"]));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} --json: {e}: {}", stdout(&out)))
    };
    assert_eq!(json(&a, &["health"])["health"], "ok");
    let token = json(&a, &["api-token"]);
    assert_eq!(token["token"].as_str(), Some(a.token().as_str()));
    let b_addr = b.tcp_addr();
    assert_eq!(
        json(&a, &["connect", &b_addr])["peer_id"],
        b.status().peer_id.as_str()
    );
    assert!(
        json(&a, &["peers"])
            .as_array()
            .is_some_and(|p| p.len() == 1)
    );
    assert!(json(&a, &["status"])["peer_id"].is_string());
    let init = json(&a, &["repo", "init", "demo"]);
    let id = init["id"].as_str().unwrap().to_owned();
    assert_eq!(json(&a, &["repo", "list"])[0]["id"], id.as_str());
    assert_eq!(json(&a, &["repo", "show", &id])["id"], id.as_str());
    let followed = json(&b, &["repo", "follow", &id]);
    assert_eq!(followed["repository"], id.as_str());
    let synced = json(&b, &["repo", "sync", &id, "--from", &a.status().peer_id]);
    assert!(
        ["updated", "up_to_date"].contains(&synced["kind"].as_str().unwrap_or("")),
        "{synced}"
    );
    assert!(synced["sequence"].as_u64() >= Some(1), "{synced}");
    assert_eq!(json(&b, &["repo", "unfollow", &id])["was_followed"], true);
    assert_eq!(json(&b, &["repo", "remove", &id])["removed"], true);
    let logs = b.client(["logs", "-n", "3", "--json"]);
    let lines: Vec<serde_json::Value> = stdout(&logs)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l["line"].is_string()));
}

#[test]
fn a_closed_pipe_ends_a_client_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&tmp.path().join("a"));
    // The reader is gone before the client writes: `guts status | head -0`, for certain.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(guts_bin())
        .args(["status", "--api", &a.api().to_string()])
        .env("GUTS_DATA_DIR", a.data_dir())
        .env("XDG_CONFIG_HOME", NO_CONFIG_HOME)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(stderr(&out), "", "no panic, no message");
    use std::os::unix::process::ExitStatusExt;
    // Killed by SIGPIPE, as `yes | head -1` ends `yes`.
    assert_eq!(out.status.signal(), Some(13), "{:?}", out.status);
}

#[test]
fn guts_id_refuses_a_data_dir_without_an_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let typo = tmp.path().join("tpyo");
    let out = guts(&["id", "--data-dir", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("tpyo") && err.contains("--create"), "{err}");
    assert!(!typo.exists(), "nothing created on a mistyped path");

    let out = guts(&["id", "--create", "--data-dir", typo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created = stdout(&out);
    assert!(created.starts_with("12D3KooW"), "{created}");
    let out = guts(&["id", "--data-dir", typo.to_str().unwrap()]);
    assert_eq!(stdout(&out), created, "the same identity, read back");
}

#[test]
fn client_commands_find_the_node_through_its_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&tmp.path().join("a"));
    let peer = a.status().peer_id;
    let file = tmp.path().join("node.toml");
    std::fs::write(
        &file,
        format!(
            "api = \"{}\"\ndata_dir = \"{}\"\nmax_connections = 50\n",
            a.api(),
            a.data_dir().display()
        ),
    )
    .unwrap();
    let status = |cmd: &mut Command| -> Result<String, String> {
        let out = cmd.output().unwrap();
        if out.status.success() {
            let s: StatusReport = serde_json::from_slice(&out.stdout).unwrap();
            Ok(s.peer_id)
        } else {
            Err(stderr(&out))
        }
    };
    let nowhere = Path::new(NO_CONFIG_HOME);
    // Named with --config, or GUTS_CONFIG.
    let with_flag = status(&mut bare_guts(
        &["status", "--json", "--config", file.to_str().unwrap()],
        nowhere,
    ));
    assert_eq!(with_flag, Ok(peer.clone()));
    let with_env = status(bare_guts(&["status", "--json"], nowhere).env("GUTS_CONFIG", &file));
    assert_eq!(with_env, Ok(peer.clone()));
    // The default file, ~/.config/guts/config.toml.
    let home = tmp.path().join("config-home");
    std::fs::create_dir_all(home.join("guts")).unwrap();
    std::fs::copy(&file, home.join("guts/config.toml")).unwrap();
    assert_eq!(
        status(&mut bare_guts(&["status", "--json"], &home)),
        Ok(peer)
    );
    // Flags beat the file.
    let err = status(&mut bare_guts(
        &["status", "--json", "--api", "127.0.0.1:1"],
        &home,
    ))
    .unwrap_err();
    assert!(err.contains("no node at 127.0.0.1:1"), "{err}");
    // A bad file is named.
    std::fs::write(home.join("guts/config.toml"), "api = \"nowhere\"\n").unwrap();
    let err = status(&mut bare_guts(&["status"], &home)).unwrap_err();
    assert!(
        err.contains("config.toml") && err.contains("\"nowhere\""),
        "{err}"
    );
    // The node reads the default file too, and says so.
    std::fs::write(home.join("guts/config.toml"), "max_connections = 777\n").unwrap();
    let out = bare_guts(&["node", "--print-config"], &home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("max_connections = 777"), "{text}");
    assert!(
        text.starts_with("# read from ") && text.contains("config.toml"),
        "{text}"
    );
}

#[test]
fn logs_show_what_the_node_logged_and_follow_it_until_it_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = node(&tmp.path().join("a"));
    let past = a.client_ok(&["logs", "-n", "1000"]);
    assert!(past.contains("control API on http://"), "{past}");
    let mut follow = Command::new(guts_bin())
        .args(["logs", "--follow", "-n", "0", "--api", &a.api().to_string()])
        .env("GUTS_DATA_DIR", a.data_dir())
        .env("XDG_CONFIG_HOME", NO_CONFIG_HOME)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
    // Test nodes log a status line every 2 s.
    let first = lines.next().expect("a line").unwrap();
    assert!(first.contains("status peer="), "{first}");
    a.stop();
    let started = Instant::now();
    let status = eventually(Duration::from_secs(10), "guts logs -f to end", || {
        follow
            .try_wait()
            .unwrap()
            .ok_or_else(|| "still running".to_owned())
    });
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn unfollow_keeps_the_copy_and_remove_deletes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&tmp.path().join("a"));
    let b = node(&tmp.path().join("b"));
    let work = WorkRepo::with_history("demo");
    a.client_ok(&["repo", "import", work.path().to_str().unwrap()]);
    let id = a.client_json::<Vec<RepoSummary>>("repo list").unwrap()[0]
        .id
        .clone();
    b.client_ok(&["connect", &a.tcp_addr()]);
    b.client_ok(&["repo", "follow", &id]);
    b.client_ok(&["repo", "sync", &id]);
    let held: RepoDetail = b.client_json(&format!("repo show {id}")).unwrap();
    assert!(held.summary.followed && held.summary.sequence > 0);

    let text = b.client_ok(&["repo", "unfollow", &id]);
    assert!(text.contains("no longer following"), "{text}");
    let held: RepoDetail = b.client_json(&format!("repo show {id}")).unwrap();
    assert!(!held.summary.followed && held.summary.sequence > 0, "kept");
    let store = Path::new(&held.summary.path).to_owned();
    assert!(store.exists());

    b.client_ok(&["repo", "remove", &id]);
    assert!(!store.exists(), "the copy is deleted");
    let list: Vec<RepoSummary> = b.client_json("repo list").unwrap();
    assert!(list.is_empty(), "{list:?}");
    let out = b.client(["repo", "remove", &id]);
    assert!(!out.status.success() && stderr(&out).contains("not on this node"));

    // The owner's node removes its own repository only when told it means it.
    let out = a.client(["repo", "remove", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(
        a.client_json::<Vec<RepoSummary>>("repo list")
            .unwrap()
            .len(),
        1
    );
    a.client_ok(&["repo", "remove", "--force", &id]);
    assert!(
        a.client_json::<Vec<RepoSummary>>("repo list")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn completions_and_man_pages_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let out = guts(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("unfollow") && text.contains("data-dir"),
            "{shell}"
        );
    }
    let out = guts(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let out = guts(&["man"]);
    assert!(stdout(&out).contains(".TH guts 1"), "{}", stdout(&out));
    let dir = tempfile::tempdir().unwrap();
    let out = guts(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in ["guts.1", "guts-node.1", "guts-repo-sync.1", "guts-logs.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}

/// One raw HTTP/1.0 request: exactly these header lines and body.
fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let code = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_owned())
}

#[test]
fn the_api_answers_every_error_as_json_and_takes_bodies_without_a_type() {
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&tmp.path().join("a"));
    let (api, token) = (a.api(), a.token());
    let ask = |method: &str, path: &str, extra: &str, body: &str| {
        raw_http(
            api,
            &format!(
                "{method} {path} HTTP/1.0\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\
                 {extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let (code, body) = ask("GET", "/api/v1/nope", "", "");
    assert_eq!(code, 404);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("GET /api/v1/nope"),
        "{body}"
    );
    let (code, body) = ask("POST", "/api/v1/status", "", "");
    assert_eq!(code, 405);
    assert!(body.contains("\"error\""), "{body}");
    // No content type, and curl -d's form type: the body is read as JSON all the same.
    let (code, body) = ask("POST", "/api/v1/repos/init", "", r#"{"name":"plain"}"#);
    assert_eq!(code, 200, "{body}");
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let (code, body) = ask("POST", "/api/v1/repos/init", form, r#"{"name":"form"}"#);
    assert_eq!(code, 200, "{body}");
    let (code, body) = ask("POST", "/api/v1/repos/init", "", "name=x");
    assert_eq!(code, 400);
    assert!(body.contains("not the JSON this endpoint takes"), "{body}");
    let names: Vec<String> = a
        .client_json::<Vec<RepoSummary>>("repo list")
        .unwrap()
        .into_iter()
        .filter_map(|r| r.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// git refuses a repository another user owns (`safe.directory`); the node, which runs
/// libgit2 with the same rule, says so instead of "not a git repository".
#[test]
fn an_import_git_refuses_keeps_gits_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&tmp.path().join("a"));
    let work = WorkRepo::with_history("theirs");
    // Owned by nobody (65534): needs root, as CI has.
    let out = Command::new("chown")
        .args(["-R", "65534:65534", work.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chown (root needed): {}",
        stderr(&out)
    );
    let out = a.client(["repo", "import", work.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("owned by") || err.contains("owner"), "{err}");
}
