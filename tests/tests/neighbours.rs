//! What another user of the machine, or a host of the LAN, can do to a node: hold its
//! control API's connections, prepare its data dir, learn of a private node by mDNS, or
//! make the node's git run a command of an imported repository's choosing.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use guts_tests::eventually;
use guts_tests::netns::Lan;
use guts_tests::process::{NodeSpec, guts};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Before: every connection to the API was kept however idle, so a thousand of them
/// took a node held to 1,024 files out of descriptors and `guts status` timed out.
#[test]
fn idle_connections_to_the_api_neither_exhaust_the_node_nor_lock_out_its_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeSpec::loopback(&tmp.path().join("a"))
        .open_files_limit(1024)
        .spawn();
    let api = node.api();
    // Idle: connected, never a byte sent.
    let idle: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect(api).ok())
        .collect();
    assert!(idle.len() > 900, "{} connections", idle.len());
    let open = || {
        std::fs::read_dir(format!("/proc/{}/fd", node.pid()))
            .unwrap()
            .count()
    };
    // The node holds at most its cap of them; the rest it closed as it accepted them,
    // and the held ones close once no request head arrives in time.
    eventually(Duration::from_secs(20), "the owner's guts status", || {
        let out = node.client(["status"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(stderr(&out))
        }
    });
    assert!(open() < 500, "{} descriptors open", open());
    drop(idle);
}

#[test]
fn a_data_dir_or_key_another_user_could_have_prepared_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Owned by another user (nobody): needs root, as CI has.
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let out = Command::new("chown")
        .args(["65534:65534", theirs.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chown (root needed): {}",
        stderr(&out)
    );
    let node_in = |dir: &Path| {
        guts(&[
            "node",
            "--data-dir",
            dir.to_str().unwrap(),
            "--api",
            "off",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--mdns",
            "off",
        ])
    };
    let out = node_in(&theirs);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("theirs") && err.contains("uid 65534") && err.contains("chown"),
        "{err}"
    );
    assert!(
        !theirs.join("identity.key").exists(),
        "nothing written there"
    );

    // Writable by everyone.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = node_in(&open);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("chmod go-w"), "{}", stderr(&out));
    let out = guts(&["id", "--create", "--data-dir", open.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "guts id is refused too");

    // An identity key others can read: refused, naming the fix, and left as it is.
    let mine = tmp.path().join("mine");
    let out = guts(&["id", "--create", "--data-dir", mine.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = mine.join("identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::read(&key).unwrap();
    let out = node_in(&mine);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("identity.key") && err.contains("chmod 600"),
        "{err}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

/// Before: mDNS answered for a node in a private network, telling every LAN host its
/// peer id and addresses.
#[test]
fn a_private_node_is_not_found_by_mdns() {
    let lan = Lan::new(3);
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("swarm.key");
    let out = guts(&["swarm-key"]);
    std::fs::write(&key, &out.stdout).unwrap();
    let private = NodeSpec::on_lan(&lan, 0, &tmp.path().join("p"))
        .without_quic()
        .args(["--swarm-key", key.to_str().unwrap()])
        .spawn();
    let private_id = private.status().peer_id;
    assert!(!private.status().mdns, "mDNS off in a private network");
    let observer = NodeSpec::on_lan(&lan, 1, &tmp.path().join("o")).spawn();
    let other = NodeSpec::on_lan(&lan, 2, &tmp.path().join("q")).spawn();
    let other_id = other.status().peer_id;
    // mDNS works on this LAN: the observer finds the open node...
    eventually(
        Duration::from_secs(30),
        "the observer to find q by mDNS",
        || {
            let log = observer.log_text();
            if log
                .lines()
                .any(|l| l.contains("found by mDNS") && l.contains(&other_id))
            {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    );
    // ...and in all that time learned nothing of the private one.
    let log = observer.log_text();
    assert!(!log.contains(&private_id), "{log}");
}

/// Before: the node ran git in an imported repository with that repository's config in
/// force: a partial clone's lazy fetch ran its `remote.origin.uploadpack` command.
#[test]
fn an_imported_repositorys_config_runs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "T")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "T")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    };
    let origin = tmp.path().join("origin");
    std::fs::create_dir(&origin).unwrap();
    git(&origin, &["init", "-q", "-b", "main"]);
    std::fs::write(origin.join("big.txt"), "blob the clone leaves out\n").unwrap();
    git(&origin, &["add", "big.txt"]);
    git(&origin, &["commit", "-qm", "one"]);
    git(&origin, &["config", "uploadpack.allowFilter", "true"]);
    // A partial clone: the blob stays behind, to be fetched lazily on first use.
    let clone = tmp.path().join("clone");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--no-checkout",
            "--filter=blob:none",
            &format!("file://{}", origin.display()),
            clone.to_str().unwrap(),
        ],
    );
    let marker = tmp.path().join("ran");
    let script = tmp.path().join("evil.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch {}\nexec git-upload-pack \"$@\"\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    git(
        &clone,
        &[
            "config",
            "remote.origin.uploadpack",
            script.to_str().unwrap(),
        ],
    );
    git(
        &clone,
        &["config", "core.fsmonitor", script.to_str().unwrap()],
    );

    let node = NodeSpec::loopback(&tmp.path().join("a")).spawn();
    let out = node.client(["repo", "import", clone.to_str().unwrap()]);
    assert!(
        !marker.exists(),
        "the node's git ran the repository's command"
    );
    // The blob is missing and nothing fetched it: the import fails, saying so.
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}
