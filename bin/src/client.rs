//! Commands that talk to a running node through its control API.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use guts_api::{
    ConnectRequest, ConnectResponse, Direction, ErrorBody, PeerReport, StatusReport, SyncOutcome,
    SyncProgress, SyncRequestBody,
};
use guts_protocol::RepositoryId;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Timeout for long operations (imports, fetches).
pub const SLOW: Duration = Duration::from_secs(3600);

/// Where the node's control API is.
#[derive(Args, Debug)]
pub struct ApiArgs {
    /// The node's control API address.
    #[arg(long, env = "GUTS_API", value_name = "ADDR", default_value = guts_api::DEFAULT_API_ADDR)]
    api: SocketAddr,
}

impl ApiArgs {
    /// The API address.
    pub fn addr(&self) -> SocketAddr {
        self.api
    }

    /// The API address from `GUTS_API`, or the default (for programs git runs, which
    /// take no flags).
    pub fn from_env() -> anyhow::Result<Self> {
        let api = match std::env::var("GUTS_API") {
            Ok(v) => v
                .parse()
                .map_err(|_| anyhow!("GUTS_API={v:?} is not an address like 127.0.0.1:9080"))?,
            Err(_) => guts_api::DEFAULT_API_ADDR.parse()?,
        };
        Ok(ApiArgs { api })
    }
}

/// A client of one node's control API.
pub struct Client {
    addr: SocketAddr,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(args: &ApiArgs, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(Some(timeout))
            .build()
            .into();
        Client {
            addr: args.api,
            agent,
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self
            .agent
            .get(format!("http://{}{path}", self.addr))
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.decode(response)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self
            .agent
            .post(format!("http://{}{path}", self.addr))
            .send_json(body)
            .map_err(|e| self.unreachable(e))?;
        self.decode(response)
    }

    /// POSTs `body` and returns the answer's lines as they arrive (JSON lines).
    pub fn post_lines<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<impl Iterator<Item = std::io::Result<String>> + use<B>> {
        use std::io::BufRead;
        let response = self
            .agent
            .post(format!("http://{}{path}", self.addr))
            .send_json(body)
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(self
                .decode::<serde_json::Value>(response)
                .err()
                .unwrap_or_else(|| anyhow!("unexpected answer")));
        }
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        Ok(reader.lines())
    }

    /// GETs a plain-text path; the body on success.
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let mut response = self
            .agent
            .get(format!("http://{}{path}", self.addr))
            .call()
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        if !status.is_success() {
            bail!(
                "the node at {} answered {path} with HTTP {status}: {}",
                self.addr,
                body.trim()
            );
        }
        Ok(body)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> anyhow::Result<T> {
        let status = response.status();
        if status.is_success() {
            return response.body_mut().read_json().with_context(|| {
                format!(
                    "the node at {} sent an answer this client cannot read",
                    self.addr
                )
            });
        }
        let message = response
            .body_mut()
            .read_json::<ErrorBody>()
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(anyhow!(message))
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        match e {
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                let why = match e {
                    ureq::Error::Io(io) => io.to_string(),
                    other => other.to_string(),
                };
                anyhow!(
                    "no node at {} ({why}); start one with `guts node`, or point --api / GUTS_API at a running node",
                    self.addr
                )
            }
            ureq::Error::Timeout(_) => anyhow!("the node at {} did not answer in time", self.addr),
            other => anyhow!("cannot talk to the node at {}: {other}", self.addr),
        }
    }
}

/// Succeeds only while the node's event loop answers: for container healthchecks.
pub fn health(args: &ApiArgs) -> anyhow::Result<()> {
    let body = Client::new(args, Duration::from_secs(5)).get_text("/health")?;
    print!("{body}");
    Ok(())
}

pub fn status(args: &ApiArgs, json: bool) -> anyhow::Result<()> {
    let status: StatusReport = Client::new(args, Duration::from_secs(10)).get("/api/v1/status")?;
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
    line(
        &mut out,
        "uptime:",
        &humantime::format_duration(Duration::from_secs(status.uptime_secs)).to_string(),
    );
    list(&mut out, "listening:", &status.listen_addresses);
    list(&mut out, "external:", &status.external_addresses);
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
    line(
        &mut out,
        "relay server:",
        if status.relay_server { "on" } else { "off" },
    );
    let bootstrap: Vec<String> = status
        .bootstrap
        .iter()
        .map(|b| format!("{} ({})", b.address, b.state))
        .collect();
    list(&mut out, "bootstrap:", &bootstrap);
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
    let peers: Vec<PeerReport> = Client::new(args, Duration::from_secs(10)).get("/api/v1/peers")?;
    if json {
        return print_json(&peers);
    }
    if peers.is_empty() {
        println!("no connected peers");
        return Ok(());
    }
    println!(
        "{:<54} {:<4} {:>9} {:>8} {:>7}  {:<28} ADDRESS",
        "PEER", "DIR", "RTT", "UP", "SCORE", "AGENT"
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
            "{:<54} {:<4} {:>9} {:>8} {:>7.1}  {:<28} {}",
            format!("{}{mark}", p.peer_id),
            dir,
            rtt,
            up,
            p.score,
            p.agent_version.as_deref().unwrap_or("-"),
            p.addresses.first().map(String::as_str).unwrap_or("-"),
        );
    }
    if peers.iter().any(|p| p.protected) {
        println!("(* protected: kept connected)");
    }
    Ok(())
}

/// `address` is a multiaddr the caller has already parsed (and so checked).
pub fn connect(args: &ApiArgs, address: &str) -> anyhow::Result<()> {
    // The node bounds the dial by its connection timeout; leave room for that.
    let client = Client::new(args, Duration::from_secs(60));
    let reply: ConnectResponse = client.post(
        "/api/v1/connect",
        &ConnectRequest {
            address: address.to_string(),
        },
    )?;
    if reply.peer_id.is_empty() {
        bail!("the node did not say which peer it connected to");
    }
    println!("connected to {}", reply.peer_id);
    Ok(())
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs a sync on the node, printing progress and the outcome on stderr the way git
/// does (stdout may be git's protocol channel); returns the outcome.
pub fn sync(api: &ApiArgs, id: &RepositoryId, from: Option<String>) -> anyhow::Result<SyncOutcome> {
    let client = Client::new(api, SLOW);
    let lines = client.post_lines(
        &format!("/api/v1/repos/{id}/sync"),
        &SyncRequestBody { prefer: from },
    )?;
    let tty = std::io::stderr().is_terminal();
    let mut err = std::io::stderr();
    for line in lines {
        let line = line.context("the node stopped answering")?;
        if line.trim().is_empty() {
            continue;
        }
        let event: SyncProgress = serde_json::from_str(&line)
            .with_context(|| format!("unexpected line from the node: {line}"))?;
        match event {
            SyncProgress::Holders { asked } => {
                let _ = writeln!(err, "Asking {asked} holder(s) for refs");
            }
            SyncProgress::Refs { sequence } => {
                let _ = writeln!(err, "Fetching snapshot {sequence}");
            }
            SyncProgress::Receiving {
                objects,
                total,
                bytes,
            } => {
                let pct = (objects * 100).checked_div(total).unwrap_or(100);
                let text = format!(
                    "Receiving objects: {pct:3}% ({objects}/{total}), {}",
                    bytesize::ByteSize::b(bytes).display().iec()
                );
                if tty {
                    let _ = write!(err, "\r{text}");
                } else if objects == total {
                    let _ = writeln!(err, "{text}");
                }
            }
            SyncProgress::Done(outcome) => {
                if tty {
                    let _ = writeln!(err);
                }
                match &outcome {
                    SyncOutcome::UpToDate { sequence } => {
                        eprintln!("guts://{id} is up to date (sequence {sequence})")
                    }
                    SyncOutcome::Updated {
                        sequence,
                        from,
                        objects,
                        bytes,
                        millis,
                    } => eprintln!(
                        "guts://{id} updated to sequence {sequence} from {from}: {objects} objects, {} in {:.1}s",
                        bytesize::ByteSize::b(*bytes).display().iec(),
                        *millis as f64 / 1000.0
                    ),
                }
                return Ok(outcome);
            }
            SyncProgress::Failed { error } => {
                if tty {
                    let _ = writeln!(err);
                }
                bail!("{error}");
            }
        }
    }
    Err(anyhow!("the node ended the sync without an outcome"))
}
