//! Commands that ask a running node through its control API: status, health, peers,
//! connect, logs and api-token.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use guts_api::client::Client;
use guts_api::terminal::safe;
use guts_api::{ConnectRequest, ConnectResponse, Direction, PeerReport, StatusReport};

use crate::api_args::{ApiArgs, print_json};

/// Prints the token of the node at the API address (the one it proves it holds), for a
/// client elsewhere (`GUTS_API_TOKEN`), e.g. on the host of a node in a container.
pub fn api_token(args: &ApiArgs, json: bool) -> anyhow::Result<()> {
    let client = Client::new(&args.target(), Duration::from_secs(10))?;
    let token = client.token_hex()?;
    if json {
        return print_json(&serde_json::json!({ "token": token }));
    }
    println!("{token}");
    Ok(())
}

/// Succeeds only while the node's event loop answers: for container healthchecks.
pub fn health(args: &ApiArgs, json: bool) -> anyhow::Result<()> {
    let body = Client::new(&args.target(), Duration::from_secs(5))?.get_open_text("/health")?;
    if json {
        return print_json(&serde_json::json!({ "health": body.trim() }));
    }
    print!("{body}");
    Ok(())
}

pub fn status(args: &ApiArgs, json: bool) -> anyhow::Result<()> {
    let status: StatusReport =
        Client::new(&args.target(), Duration::from_secs(10))?.get("/api/v1/status")?;
    if json {
        return print_json(&status);
    }
    let mut out = String::new();
    let line = |out: &mut String, label: &str, value: &str| {
        let _ = writeln!(out, "{label:<14}{value}");
    };
    line(&mut out, "peer id:", &status.peer_id);
    line(&mut out, "network:", &status.network);
    line(&mut out, "version:", &status.version);
    line(&mut out, "key:", &status.key);
    if status.recovering > 0 {
        line(
            &mut out,
            "recovering:",
            &format!(
                "{} repositories still to check after a crash (in the background)",
                status.recovering
            ),
        );
    }
    line(
        &mut out,
        "uptime:",
        &humantime::format_duration(Duration::from_secs(status.uptime_secs)).to_string(),
    );
    // Observed addresses come from peers.
    let escaped = |v: &[String]| v.iter().map(|a| safe(a).into_owned()).collect::<Vec<_>>();
    list(&mut out, "listening:", &escaped(&status.listen_addresses));
    list(&mut out, "external:", &escaped(&status.external_addresses));
    line(
        &mut out,
        "peers:",
        &format!(
            "{} connected, {} in routing table, {} in the announcement mesh",
            status.connected_peers, status.routing_table_size, status.gossip_mesh_peers
        ),
    );
    line(&mut out, "dht mode:", &status.dht_mode);
    line(&mut out, "mdns:", if status.mdns { "on" } else { "off" });
    let relay = match &status.relay {
        Some(r) => {
            let bytes = match r.circuit_bytes {
                0 => "no byte limit".to_owned(),
                b => format!("{} each", bytesize::ByteSize::b(b).display().iec()),
            };
            format!(
                "on: circuits {bytes}, {} s at most; {} reservation(s) and {} circuit(s) now; \
                 {} circuits accepted, {} refused, {} cut at a limit",
                r.circuit_secs,
                r.reservations,
                r.circuits,
                r.circuits_accepted,
                r.circuits_denied,
                r.circuits_cut
            )
        }
        None if status.relay_server => "on".to_owned(),
        None => "off".to_owned(),
    };
    line(&mut out, "relay server:", &relay);
    line(&mut out, "replicate:", &status.replicate);
    let access = match (status.private_network, status.allowed_peers) {
        (false, None) => "open".to_owned(),
        (true, None) => "private network (swarm key)".to_owned(),
        (false, Some(n)) => format!("allow-list of {n} peer(s)"),
        (true, Some(n)) => format!("private network (swarm key), allow-list of {n} peer(s)"),
    };
    line(&mut out, "access:", &access);
    let bootstrap: Vec<String> = status
        .bootstrap
        .iter()
        .map(|b| match &b.resolved_from {
            Some(name) => format!("{} ({}; from {name})", b.address, b.state),
            None => format!("{} ({})", b.address, b.state),
        })
        .collect();
    list(&mut out, "bootstrap:", &bootstrap);
    line(&mut out, "reachability:", &status.reachability);
    let reservations: Vec<String> = status
        .reservations
        .iter()
        .map(|r| {
            let how = if r.automatic { "; chosen" } else { "" };
            format!("{} ({}{how})", r.address, r.state)
        })
        .collect();
    list(&mut out, "relays:", &reservations);
    let (l, c) = (&status.limits, &status.connections);
    line(
        &mut out,
        "connections:",
        &format!(
            "{} in, {} out, {} handshaking (max {}, {} per peer, {} per IP)",
            c.inbound,
            c.outbound,
            c.pending_inbound,
            l.max_connections,
            l.max_connections_per_peer,
            l.max_peers_per_ip
        ),
    );
    line(
        &mut out,
        "watermarks:",
        &format!(
            "low {}, high {} ({} peers trimmed so far)",
            l.low_watermark, l.high_watermark, c.trimmed
        ),
    );
    line(
        &mut out,
        "dials:",
        &format!(
            "{} in flight, {} queued, {} started, {} failed (max {}/s, {} at once)",
            c.dials_in_flight,
            c.dials_queued,
            c.dials_started,
            c.dials_failed,
            l.dials_per_second,
            l.max_concurrent_dials
        ),
    );
    let denied: Vec<String> = c
        .denied
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    line(
        &mut out,
        "refused:",
        &if denied.is_empty() {
            "none".to_owned()
        } else {
            denied.join(", ")
        },
    );
    line(&mut out, "banned peers:", &c.banned_peers.to_string());
    for e in &status.equivocations {
        line(
            &mut out,
            "EQUIVOCATION:",
            &format!(
                "the owner of guts://{} signed two different snapshots with sequence {} (second seen from {})",
                safe(&e.repository),
                e.sequence,
                safe(&e.peer)
            ),
        );
    }
    print!("{out}");
    Ok(())
}

fn list(out: &mut String, label: &str, items: &[String]) {
    if items.is_empty() {
        let _ = writeln!(out, "{label:<14}(none)");
    }
    for (i, item) in items.iter().enumerate() {
        let _ = writeln!(out, "{:<14}{item}", if i == 0 { label } else { "" });
    }
}

pub fn peers(args: &ApiArgs, json: bool) -> anyhow::Result<()> {
    let peers: Vec<PeerReport> =
        Client::new(&args.target(), Duration::from_secs(10))?.get("/api/v1/peers")?;
    if json {
        return print_json(&peers);
    }
    if peers.is_empty() {
        println!("no connected peers");
        return Ok(());
    }
    println!(
        "{:<54} {:<4} {:<7} {:>9} {:>8} {:>7}  {:<28} ADDRESS",
        "PEER", "DIR", "VIA", "RTT", "UP", "SCORE", "AGENT"
    );
    for p in &peers {
        let dir = match p.direction {
            Direction::Inbound => "in",
            Direction::Outbound => "out",
        };
        let rtt = p
            .last_ping_rtt_ms
            .map(|ms| format!("{ms:.1}ms"))
            .unwrap_or_else(|| "-".into());
        let up = humantime::format_duration(Duration::from_secs(p.connected_secs)).to_string();
        let mark = if p.protected { "*" } else { "" };
        println!(
            "{:<54} {:<4} {:<7} {:>9} {:>8} {:>7.1}  {:<28} {}",
            format!("{}{mark}", p.peer_id),
            dir,
            if p.relayed { "relay" } else { "direct" },
            rtt,
            up,
            p.score,
            safe(p.agent_version.as_deref().unwrap_or("-")),
            safe(p.addresses.first().map(String::as_str).unwrap_or("-")),
        );
    }
    if peers.iter().any(|p| p.protected) {
        println!("(* protected: kept connected)");
    }
    // Hole punching towards peers still reached through a relay: what was tried.
    for p in peers.iter().filter(|p| p.relayed) {
        if let Some(h) = &p.hole_punch {
            let next = h
                .next_round_secs
                .map(|s| format!("; next round in {s} s"))
                .unwrap_or_default();
            let error = h
                .last_error
                .as_deref()
                .map(|e| format!("; last: {}", safe(e)))
                .unwrap_or_default();
            println!(
                "hole punching to {}: {} round(s){error}{next}",
                p.peer_id, h.rounds
            );
        }
    }
    Ok(())
}

/// `address` is a multiaddr the caller has already parsed (and so checked).
pub fn connect(args: &ApiArgs, address: &str, json: bool) -> anyhow::Result<()> {
    // The node bounds the dial by its connection timeout; leave room for that.
    let client = Client::new(&args.target(), Duration::from_secs(60))?;
    let reply: ConnectResponse = client.post(
        "/api/v1/connect",
        &ConnectRequest {
            address: address.to_string(),
        },
    )?;
    if reply.peer_id.is_empty() {
        bail!("the node did not say which peer it connected to");
    }
    if json {
        return print_json(&reply);
    }
    println!("connected to {}", reply.peer_id);
    Ok(())
}

/// `guts logs`: the node's recent log lines, and with `follow` each new one until the
/// node stops (or this command is interrupted).
pub fn logs(args: &ApiArgs, lines: usize, follow: bool, json: bool) -> anyhow::Result<()> {
    // A followed answer stays open as long as the node runs.
    let timeout = (!follow).then_some(Duration::from_secs(30));
    let client = Client::with_timeout(&args.target(), timeout)?;
    let answer = client.get_lines(&format!("/api/v1/logs?lines={lines}&follow={follow}"))?;
    let mut out = std::io::stdout().lock();
    for line in answer {
        let line = line.context("the node stopped answering")?;
        if line.trim().is_empty() {
            continue;
        }
        if json {
            writeln!(out, "{line}")?;
            continue;
        }
        let entry: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("unexpected line from the node: {line}"))?;
        if let Some(text) = entry.get("line").and_then(|l| l.as_str()) {
            writeln!(out, "{}", safe(text))?;
        } else if let Some(n) = entry.get("skipped") {
            writeln!(out, "... {n} lines skipped (this reader fell behind)")?;
        }
        out.flush()?;
    }
    Ok(())
}
