//! What a user sees when they get something wrong, through the real binary.

use std::fs;
use std::time::Duration;

use guts_tests::eventually;
use guts_tests::process::{NodeSpec, guts};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Bad flags, environment values and config files exit 2 with a message naming the value.
#[test]
fn bad_input_exits_2_naming_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let bad_file = tmp.path().join("bad.toml");
    fs::write(
        &bad_file,
        "listen = [\"/ip4/0.0.0.0/tcp/9000\"]\nbootstrap = [\"/ip4/10.0.0.1/tcpp/1\"]\n",
    )
    .unwrap();
    let typo_file = tmp.path().join("typo.toml");
    fs::write(&typo_file, "listn = []\n").unwrap();
    let missing = tmp.path().join("missing.toml");

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["node", "--data-dir", d, "--bootstrap", "/ip4/1.2.3/tcp/1"],
            "/ip4/1.2.3/tcp/1",
        ),
        (
            vec![
                "node",
                "--data-dir",
                d,
                "--bootstrap",
                "/ip4/1.2.3.4/udp/9000",
            ],
            "/ip4/1.2.3.4/udp/9000",
        ),
        (
            vec!["node", "--data-dir", d, "--listen", "/dns4/x/tcp/1"],
            "/dns4/x/tcp/1",
        ),
        (
            vec!["node", "--data-dir", d, "--external-address", "nonsense"],
            "nonsense",
        ),
        (
            vec!["node", "--data-dir", d, "--network", "Bad Net"],
            "Bad Net",
        ),
        (
            vec!["node", "--data-dir", d, "--dht-mode", "sometimes"],
            "sometimes",
        ),
        (vec!["node", "--data-dir", d, "--mdns", "maybe"], "maybe"),
        (
            vec!["node", "--data-dir", d, "--mdns-service-tag", "Has Space"],
            "Has Space",
        ),
        (
            vec!["node", "--data-dir", d, "--ping-interval", "soon"],
            "soon",
        ),
        (
            vec!["node", "--data-dir", d, "--connection-timeout", "0s"],
            "connection_timeout",
        ),
        (
            vec!["node", "--data-dir", d, "--api", "localhost"],
            "localhost",
        ),
        (vec!["node", "--data-dir", d, "--log-format", "xml"], "xml"),
        (
            vec!["node", "--data-dir", d, "--frobnicate"],
            "--frobnicate",
        ),
        (
            vec!["node", "--config", bad_file.to_str().unwrap()],
            "/ip4/10.0.0.1/tcpp/1",
        ),
        (
            vec!["node", "--config", typo_file.to_str().unwrap()],
            "listn",
        ),
        (
            vec!["node", "--config", missing.to_str().unwrap()],
            "missing.toml",
        ),
        (
            vec![
                "node",
                "--data-dir",
                d,
                "--low-watermark",
                "50",
                "--high-watermark",
                "20",
            ],
            "low_watermark (50) is above high_watermark (20)",
        ),
        (
            vec!["node", "--data-dir", d, "--max-connections", "50"],
            "high_watermark (128) is above max_connections (50)",
        ),
        (
            vec!["node", "--data-dir", d, "--max-peers-per-ip", "0"],
            "max_peers_per_ip",
        ),
        (
            vec!["node", "--data-dir", d, "--max-connections", "lots"],
            "lots",
        ),
        (
            vec!["node", "--data-dir", d, "--per-ip-allow", "10.0.0/8"],
            "10.0.0/8",
        ),
        (
            vec!["node", "--data-dir", d, "--ban-threshold", "5"],
            "ban_threshold",
        ),
        (vec!["connect", "not/a/multiaddr"], "not/a/multiaddr"),
        (vec!["status", "--api", "nowhere"], "nowhere"),
    ];
    for (args, named) in cases {
        let out = guts(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "guts {args:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(named),
            "guts {args:?} should name {named:?}: {}",
            stderr(&out)
        );
    }
    assert!(
        !dir.exists(),
        "refused configs must not create the data dir"
    );

    // The environment is checked like the flags.
    let out = std::process::Command::new(guts_tests::process::guts_bin())
        .args(["node", "--data-dir", d])
        .env("GUTS_BOOTSTRAP", "/ip4/10.0.0.1/tcp/9000,/ip9/bad")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("/ip9/bad"), "{}", stderr(&out));
}

/// Flags beat the environment, which beats the config file, which beats the defaults.
#[test]
fn settings_precedence_flags_env_file_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("guts.toml");
    fs::write(
        &file,
        "network = \"from-file\"\nping_interval = \"7s\"\ndht_mode = \"client\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(guts_tests::process::guts_bin())
        .args([
            "node",
            "--print-config",
            "--config",
            file.to_str().unwrap(),
            "--dht-mode",
            "auto",
        ])
        .env("GUTS_NETWORK", "from-env")
        .env("GUTS_DHT_MODE", "server")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("network = \"from-env\""), "{text}");
    assert!(text.contains("ping_interval = \"7s\""), "{text}");
    assert!(text.contains("dht_mode = \"auto\""), "{text}");
    assert!(text.contains("connection_timeout = \"5s\""), "{text}");
    assert!(text.contains("api = \"127.0.0.1:9080\""), "{text}");

    // List settings split on commas in the environment.
    let out = std::process::Command::new(guts_tests::process::guts_bin())
        .args(["node", "--print-config"])
        .env(
            "GUTS_BOOTSTRAP",
            "/ip4/10.0.0.1/tcp/9000,/dns4/b.example/tcp/9001",
        )
        .env("GUTS_PER_IP_ALLOW", "10.0.0.0/8,192.0.2.7")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let config = guts_node::Config::from_toml(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let bootstrap: Vec<String> = config.net.bootstrap.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        bootstrap,
        ["/ip4/10.0.0.1/tcp/9000", "/dns4/b.example/tcp/9001"]
    );
    let allow: Vec<String> = config
        .connections
        .per_ip_allow
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(allow, ["10.0.0.0/8", "192.0.2.7/32"]);
}

/// Runtime failures: a clear message, exit 1, nothing lost.
#[test]
fn runtime_failures_are_clear_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();

    // Port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let d = tmp.path().join("a");
    let out = guts(&[
        "node",
        "--data-dir",
        d.to_str().unwrap(),
        "--api",
        "off",
        "--listen",
        &listen,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&listen) && stderr(&out).contains("in use"),
        "{}",
        stderr(&out)
    );

    // API port in use.
    let api = busy.local_addr().unwrap().to_string();
    let out = guts(&[
        "node",
        "--data-dir",
        d.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        &api,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&api), "{}", stderr(&out));

    // A data dir that cannot be created (a file is in the way; root ignores permissions).
    let file = tmp.path().join("file");
    fs::write(&file, "keep me").unwrap();
    let bad_dir = file.join("data");
    let out = guts(&[
        "node",
        "--data-dir",
        bad_dir.to_str().unwrap(),
        "--api",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(bad_dir.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");

    // A corrupt identity is an error naming the file, and the file is left as it was.
    let c = tmp.path().join("corrupt");
    fs::create_dir(&c).unwrap();
    let key = c.join("identity.key");
    fs::write(&key, "secret_key = \"00\"\n").unwrap();
    for args in [
        vec![
            "node",
            "--data-dir",
            c.to_str().unwrap(),
            "--api",
            "off",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
        vec!["id", "--data-dir", c.to_str().unwrap()],
    ] {
        let out = guts(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(key.to_str().unwrap()),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
    }
    assert_eq!(fs::read_to_string(&key).unwrap(), "secret_key = \"00\"\n");

    // A data dir another node is using: exit 1 naming it, and the running node is fine.
    let shared = tmp.path().join("shared");
    let running = guts_tests::process::NodeSpec::loopback(&shared).spawn();
    let out = guts(&[
        "node",
        "--data-dir",
        shared.to_str().unwrap(),
        "--api",
        "off",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(shared.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    assert!(
        running.status().uptime_secs < 3600,
        "the running node still answers"
    );
    // Client commands take the API address from GUTS_API as well as --api.
    let out = std::process::Command::new(guts_tests::process::guts_bin())
        .args(["status", "--json"])
        .env("GUTS_API", running.api().to_string())
        .env("GUTS_DATA_DIR", &shared)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status: guts_node::api::types::StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status.peer_id, running.status().peer_id);

    // No node at the API address.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for cmd in ["status", "peers"] {
        let out = guts(&[cmd, "--api", &free.to_string()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains(&format!("no node at {free}")),
            "{}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

/// An unreachable bootstrap peer is a warning: the node runs on and keeps retrying.
#[test]
fn unreachable_bootstrap_peer_is_retried_with_backoff() {
    let tmp = tempfile::tempdir().unwrap();
    // A "peer" that takes each connection and drops it at once: every dial attempt
    // fails, and the accept times are the attempts' times.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    let attempts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = attempts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            seen.lock().unwrap().push(std::time::Instant::now());
            drop(stream);
        }
    });
    let dead_addr = format!("/ip4/127.0.0.1/tcp/{}", dead.port());
    let node = NodeSpec::loopback(&tmp.path().join("n"))
        .args([
            "--bootstrap",
            &dead_addr,
            "--bootstrap",
            "/dns4/nonexistent.invalid/tcp/9000",
        ])
        .spawn();
    eventually(
        Duration::from_secs(20),
        "three failed attempts at the dead peer",
        || {
            let warnings = node
                .log_text()
                .lines()
                .filter(|l| {
                    l.contains("WARN")
                        && l.contains("bootstrap peer unreachable")
                        && l.contains(&dead_addr)
                })
                .count();
            if warnings >= 3 {
                Ok(())
            } else {
                Err(format!("{warnings} warnings"))
            }
        },
    );
    let log = node.log_text();
    // Backoff: the announced retry delays grow...
    for delay in ["retrying in 1s", "retrying in 2s", "retrying in 4s"] {
        assert!(log.contains(delay), "no {delay:?} in:\n{log}");
    }
    // ... and so do the gaps between the attempts the peer actually saw (1 s, 2 s, 4 s).
    let times = eventually(Duration::from_secs(20), "four attempts", || {
        let times = attempts.lock().unwrap().clone();
        if times.len() >= 4 {
            Ok(times)
        } else {
            Err(format!("{} attempts", times.len()))
        }
    });
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("gaps between attempts: {gaps:?}");
    assert!(gaps[0] >= Duration::from_millis(900), "{gaps:?}");
    assert!(
        gaps[1] >= gaps[0] * 3 / 2 && gaps[2] >= gaps[1] * 3 / 2,
        "{gaps:?}"
    );
    let status = node.status();
    let state = |address: &str| {
        status
            .bootstrap
            .iter()
            .find(|b| b.address == address)
            .map(|b| b.state.clone())
            .unwrap_or_else(|| panic!("{address} not in {status:?}"))
    };
    let dead_state = state(&dead_addr);
    assert!(
        dead_state.starts_with("retrying") || dead_state == "dialing",
        "{status:?}"
    );
    // The name that resolves to nothing is looked up again, with its own backoff.
    let name_state = state("/dns4/nonexistent.invalid/tcp/9000");
    assert!(
        name_state.starts_with("not resolved: ") || name_state == "resolving",
        "{status:?}"
    );
}

/// `guts repo` errors a user can cause: one line, naming the bad value, exit 1 (exit 2 for
/// a malformed argument), and nothing changed on the node.
#[test]
fn repo_errors_are_one_line_naming_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let node = guts_tests::process::NodeSpec::loopback(&tmp.path().join("n")).spawn();
    let not_git = tmp.path().join("plain");
    fs::create_dir(&not_git).unwrap();
    let missing = tmp.path().join("missing");
    let unknown = "00000000000000000000000000000000";
    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (
            vec!["repo".into(), "show".into(), unknown.into()],
            1,
            unknown.into(),
        ),
        (
            vec!["repo".into(), "show".into(), "not-an-id".into()],
            2,
            "not-an-id".into(),
        ),
        (
            vec![
                "repo".into(),
                "import".into(),
                not_git.display().to_string(),
            ],
            1,
            not_git.display().to_string(),
        ),
        (
            vec![
                "repo".into(),
                "import".into(),
                missing.display().to_string(),
            ],
            1,
            missing.display().to_string(),
        ),
        (
            vec!["repo".into(), "init".into(), "bad name!".into()],
            1,
            "bad name!".into(),
        ),
    ];
    for (args, code, names) in cases {
        let out = node.client(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines.len() == 1 || (code == 2 && lines[0].starts_with("error:")),
            "{args:?}: not one line:\n{err}"
        );
        assert!(lines[0].contains(&names), "{args:?}: {err}");
    }
    let repos: Vec<guts_node::api::types::RepoSummary> = node.client_json("repo list").unwrap();
    assert!(repos.is_empty(), "{repos:?}");
}

/// The node builds packs with git's pack-objects: without git, an import fails in one
/// line that names the program and says what to do, and nothing is kept.
#[test]
fn an_import_without_git_says_git_is_needed() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-git");
    let node = NodeSpec::loopback(&tmp.path().join("n"))
        .env("GUTS_GIT", missing.to_str().unwrap())
        .spawn();
    let work = guts_tests::git::WorkRepo::with_history("needs-git");
    let out = node.client(["repo", "import", work.path().to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line:\n{err}");
    assert!(lines[0].contains("no-such-git"), "{err}");
    assert!(lines[0].contains("git must be installed"), "{err}");
    let repos: Vec<guts_node::api::types::RepoSummary> = node.client_json("repo list").unwrap();
    assert!(repos.is_empty(), "{repos:?}");
}
