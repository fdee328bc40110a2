//! One cell of the NAT matrix: two nodes on the built-in settings, each behind a router of
//! some behaviour (or on the public side), and a relay on the public side whose operator
//! lets circuits carry data. The fetching node connects to the holder (through the relay
//! when the holder is behind NAT) and replicates a repository from it; the cell reports
//! the path the objects took and how long it all took. Shared by the `nat_matrix` tests
//! and the `nat` benchmark. Needs root.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use guts_node::api::types::{RepoSummary, StatusReport, SyncOutcome};

use crate::git::{Noise, WorkRepo, refs};
use crate::nat::{NatNet, RouterBehaviour};
use crate::process::{GutsNode, NodeSpec};
use crate::wait::eventually;

/// Where one node of a pair sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Behind a NAT router behaving so.
    Behind(RouterBehaviour),
    /// On the public side, dialable.
    Public,
}

impl Side {
    /// Every kind of side, for the matrix.
    pub const ALL: [Side; 4] = [
        Side::Behind(RouterBehaviour::SilentDrop),
        Side::Behind(RouterBehaviour::Reject),
        Side::Behind(RouterBehaviour::Symmetric),
        Side::Public,
    ];
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Side::Behind(b) => write!(f, "{b}"),
            Side::Public => f.write_str("public"),
        }
    }
}

/// The path the objects took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathTaken {
    /// A direct connection: dialled, or punched through the NATs.
    Direct,
    /// Through the relay.
    Relayed,
}

impl fmt::Display for PathTaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathTaken::Direct => "direct",
            PathTaken::Relayed => "relayed",
        })
    }
}

/// The path a pair should take: direct when either side is public or neither NAT maps
/// per destination (hole punching crosses those), through the relay otherwise.
pub fn expected_path(holder: Side, fetcher: Side) -> PathTaken {
    let symmetric = |s: Side| s == Side::Behind(RouterBehaviour::Symmetric);
    if holder == Side::Public || fetcher == Side::Public {
        PathTaken::Direct
    } else if symmetric(holder) || symmetric(fetcher) {
        PathTaken::Relayed
    } else {
        PathTaken::Direct
    }
}

/// What one run of a cell saw.
#[derive(Debug, Clone)]
pub struct CellRun {
    pub path: PathTaken,
    /// From the fetcher's dial of the holder to the repository replicated. The
    /// repository is 0.5 MiB on namespace links, so its transfer takes milliseconds: this
    /// is the time to a path (dialled, punched, or hole punching given up) and the first
    /// byte, to within those.
    pub to_replicated: Duration,
    /// The two nodes' logs, for a path that was not the one expected.
    pub logs: String,
}

/// A node in namespace `ns` on the built-in listen addresses (TCP and QUIC on port 9000),
/// plus `args`.
pub fn node(ns: &str, dir: &Path, args: &[&str]) -> GutsNode {
    let mut spec = NodeSpec::loopback(dir);
    spec.netns = Some(ns.to_owned());
    spec.args = args.iter().map(|s| s.to_string()).collect();
    spec.spawn()
}

/// A relay in namespace `ns` whose circuits carry data (no byte limit, an hour each);
/// with its bootstrap address at `ip`.
pub fn data_relay(ns: &str, ip: &str, dir: &Path) -> (GutsNode, String) {
    let relay = node(
        ns,
        dir,
        &[
            "--relay-server",
            "--relay-circuit-bytes",
            "0",
            "--relay-circuit-duration",
            "1h",
        ],
    );
    let boot = format!("/ip4/{ip}/tcp/9000/p2p/{}", relay.status().peer_id);
    (relay, boot)
}

/// The circuit address of `node`'s first active relay reservation, once it has one.
pub fn active_reservation(node: &GutsNode, within: Duration) -> String {
    eventually(within, "an active relay reservation", || {
        let s = status_of(node)?;
        s.reservations
            .iter()
            .find(|r| r.state == "active")
            .map(|r| r.address.clone())
            .ok_or_else(|| format!("{:?}", s.reservations))
    })
}

fn status_of(node: &GutsNode) -> Result<StatusReport, String> {
    node.client_json("status")
}

/// Where `side` puts a node: (namespace, public IP if public). Public hosts 1 and 2 are
/// the nodes' (0 is the relay's); NAT `nat` is the one behind which it sits otherwise.
fn place(net: &NatNet, side: Side, slot: usize) -> (String, Option<String>) {
    match side {
        Side::Public => (
            net.public_host(1 + slot).to_owned(),
            Some(net.public_ip(1 + slot)),
        ),
        Side::Behind(b) => {
            net.set_behaviour(slot, b);
            (net.nat_host(slot, 0).to_owned(), None)
        }
    }
}

/// Runs one cell once: `holder` holds the repository, `fetcher` replicates it. An error
/// says what did not happen, with the nodes' logs.
pub fn run_cell(holder: Side, fetcher: Side, within: Duration) -> Result<CellRun, String> {
    let net = NatNet::new(3, 2, 1);
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (relay, boot) = data_relay(
        net.public_host(0),
        &net.public_ip(0),
        &tmp.path().join("relay"),
    );
    let relay_id = relay.status().peer_id;
    let (holder_ns, holder_ip) = place(&net, holder, 0);
    let (fetcher_ns, _) = place(&net, fetcher, 1);
    let alice = node(
        &holder_ns,
        &tmp.path().join("holder"),
        &["--bootstrap", &boot],
    );
    let bob = node(
        &fetcher_ns,
        &tmp.path().join("fetcher"),
        &["--bootstrap", &boot],
    );
    let alice_id = alice.status().peer_id;

    // A holder behind NAT is reached through its reservation (the fetcher needs none:
    // the side that holds the circuit starts hole punching).
    let to_alice = match &holder_ip {
        Some(ip) => format!("/ip4/{ip}/tcp/9000/p2p/{alice_id}"),
        None => format!("{}/p2p/{alice_id}", active_reservation(&alice, within)),
    };

    let work = WorkRepo::with_history("matrix");
    let mut noise = Noise::new(11);
    work.commit(
        "refs/heads/main",
        &[("blob.bin", noise.bytes(512 * 1024).as_slice())],
        "incompressible, past a relay's default circuit limit",
    );
    let id = alice.import(work.path()).id;

    let started = Instant::now();
    let fail = |what: String| {
        format!(
            "{holder} holder, {fetcher} fetcher: {what}\n--- holder log ---\n{}\n--- fetcher log ---\n{}",
            alice.log_text(),
            bob.log_text()
        )
    };
    let out = bob.client(["connect", &to_alice]);
    if !out.status.success() {
        return Err(fail(format!(
            "connect: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // A sync that finds no direct connection yet, nor a relay to fall back on, fails
    // for this holder: asked again until the deadline.
    let mut last = String::new();
    let outcome = loop {
        let out = bob.client(["repo", "sync", &id, "--from", &alice_id, "--json"]);
        if out.status.success() {
            break out;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        if started.elapsed() > within {
            return Err(fail(format!("no sync within {within:?}: {last}")));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let to_replicated = started.elapsed();
    let outcome: SyncOutcome = serde_json::from_slice(&outcome.stdout)
        .map_err(|e| fail(format!("sync --json: {e}: {last}")))?;
    let via = match outcome {
        SyncOutcome::Updated { via, .. } => via,
        other => return Err(fail(format!("not updated: {other:?}"))),
    };
    let repos: Vec<RepoSummary> = bob.client_json("repo list")?;
    let copy = repos
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| fail("the fetcher holds no copy".into()))?;
    if refs(Path::new(&copy.path)) != refs(work.path()) {
        return Err(fail("the copy's refs differ".into()));
    }
    let path = match via {
        Some(relay) if relay == relay_id => PathTaken::Relayed,
        Some(other) => return Err(fail(format!("through an unknown relay {other}"))),
        None => PathTaken::Direct,
    };
    Ok(CellRun {
        path,
        to_replicated,
        logs: format!(
            "--- holder log ---\n{}\n--- fetcher log ---\n{}",
            alice.log_text(),
            bob.log_text()
        ),
    })
}
