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
    assert!(text.contains("connection_timeout = \"10s\""), "{text}");
    assert!(text.contains("api = \"127.0.0.1:9080\""), "{text}");
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
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
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
    // Backoff: the announced retry delays grow.
    for delay in ["retrying in 1s", "retrying in 2s", "retrying in 4s"] {
        assert!(log.contains(delay), "no {delay:?} in:\n{log}");
    }
    let status = node.status();
    assert!(
        status
            .bootstrap
            .iter()
            .all(|b| b.state.starts_with("retrying") || b.state == "dialing"),
        "{status:?}"
    );
}
