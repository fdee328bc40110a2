//! Commands that talk to a running node through its control API.

use std::cell::OnceCell;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use guts_api::auth::{self, Token};
use guts_api::{ApiAddress, settings};
use guts_api::{
    ConnectRequest, ConnectResponse, Direction, ErrorBody, PeerReport, StatusReport, SyncOutcome,
    SyncProgress, SyncRequestBody,
};
use guts_protocol::RepositoryId;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::terminal::{safe, safe_lines};

/// Timeout for long operations (imports, fetches).
pub const SLOW: Duration = Duration::from_secs(3600);

/// Where the node's control API is, and where its token is.
#[derive(Args, Debug, Clone, Default)]
pub struct ApiArgs {
    /// The node's control API: HOST:PORT or http://HOST:PORT [default: the config file's
    /// `api`, else 127.0.0.1:9080].
    #[arg(long, env = "GUTS_API", value_name = "ADDR")]
    api: Option<ApiAddress>,
    /// The node's data dir, where it writes its API token [default: the config file's
    /// `data_dir`, else the platform data dir, as for `guts node`]. GUTS_API_TOKEN, if
    /// set, is used instead.
    #[arg(long, env = "GUTS_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The node's config file, read for its `api` and `data_dir` [default:
    /// ~/.config/guts/config.toml, if it exists].
    #[arg(long, env = "GUTS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ApiArgs {
    /// `GUTS_API`, `GUTS_DATA_DIR` and `GUTS_CONFIG` (for programs git runs, which take
    /// no flags).
    pub fn from_env() -> anyhow::Result<Self> {
        let api = match std::env::var("GUTS_API") {
            Ok(v) => Some(v.parse().context("GUTS_API")?),
            Err(_) => None,
        };
        Ok(ApiArgs {
            api,
            data_dir: std::env::var_os("GUTS_DATA_DIR").map(PathBuf::from),
            config: std::env::var_os("GUTS_CONFIG").map(PathBuf::from),
        })
    }

    /// The address and data dir: flags and variables first, then the config file.
    pub fn resolve(&self) -> anyhow::Result<Endpoint> {
        let file = match self.config.clone().or_else(settings::default_config_file) {
            Some(path) => Some((settings::read_file_settings(&path)?, path)),
            None => None,
        };
        let from_file = file.as_ref().map(|(f, _)| f.clone()).unwrap_or_default();
        let api = match (&self.api, from_file.api) {
            (Some(a), _) => a.clone(),
            (None, Some(Some(a))) => settings::connectable(a),
            (None, Some(None)) => bail!(
                "{} says api = \"off\": that node has no control API; give --api for another",
                file.map(|(_, p)| p.display().to_string())
                    .unwrap_or_default()
            ),
            (None, None) => guts_api::DEFAULT_API_ADDR.parse()?,
        };
        Ok(Endpoint {
            api,
            data_dir: self.data_dir.clone().or(from_file.data_dir),
        })
    }
}

/// A node's control API address and, if known, its data dir.
#[derive(Debug, Clone)]
pub struct Endpoint {
    api: ApiAddress,
    data_dir: Option<PathBuf>,
}

impl Endpoint {
    /// The API address.
    pub fn api(&self) -> &ApiAddress {
        &self.api
    }

    /// The data dir named, or the default one.
    fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(guts_api::default_data_dir)
    }
}

/// A token this client may hold for the node, and where it came from.
struct Candidate {
    token: Token,
    /// The file, or the environment variable.
    source: String,
    /// The node's data dir, when the token came from a file in it.
    dir: Option<PathBuf>,
}

/// The token the node proved it holds.
struct Credential {
    token: Token,
    dir: Option<PathBuf>,
}

/// A client of one node's control API. Before it sends the token it has the node prove
/// it holds it (see [`guts_api::auth`]), and it checks that proof on every answer.
pub struct Client {
    endpoint: Endpoint,
    agent: ureq::Agent,
    credential: OnceCell<Credential>,
}

impl Client {
    /// A client of the node `args` name (flags, variables, config file), answering
    /// within `timeout`.
    pub fn new(args: &ApiArgs, timeout: Duration) -> anyhow::Result<Self> {
        Self::with_timeout(args, Some(timeout))
    }

    /// A client whose requests may take as long as the node keeps answering (a followed
    /// log), or `timeout` at most.
    pub fn with_timeout(args: &ApiArgs, timeout: Option<Duration>) -> anyhow::Result<Self> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(timeout)
            .build()
            .into();
        Ok(Client {
            endpoint: args.resolve()?,
            agent,
            credential: OnceCell::new(),
        })
    }

    /// The API address.
    pub fn addr(&self) -> &ApiAddress {
        &self.endpoint.api
    }

    /// The node's endpoint, for programs this client starts (git and its helper).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The node's data dir: where the token that it proved it holds was found, or the
    /// one named (or the default) when the token came from `GUTS_API_TOKEN`. Paths the
    /// node gives this client must lie inside it.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(self
            .credential()?
            .dir
            .clone()
            .unwrap_or_else(|| self.endpoint.data_dir()))
    }

    /// `path` from the node, resolved (no `..`, no links), once it is known to lie inside
    /// the node's data dir: git runs on it, so a node (or whatever answered) cannot point
    /// this helper anywhere else. Callers read and write the node's store directly, so the
    /// node must share this machine's filesystem (not, say, run in a container).
    pub fn local_path(&self, path: &str) -> anyhow::Result<PathBuf> {
        let data_dir = self.data_dir()?;
        let resolved = std::fs::canonicalize(path).map_err(|_| {
            anyhow!(
                "the node at {} keeps this repository at {}, which this machine cannot see; \
                 git-remote-guts needs a node on the same filesystem (a node in a container: run \
                 `guts repo sync` / `guts repo import` inside it instead)",
                self.endpoint.api,
                safe(path)
            )
        })?;
        let root = std::fs::canonicalize(&data_dir)
            .with_context(|| format!("resolving the node's data dir {}", data_dir.display()))?;
        if !resolved.starts_with(&root) {
            bail!(
                "the node at {} named {} as the repository's path, which is outside its data dir {}; refused",
                self.endpoint.api,
                safe(path),
                root.display()
            );
        }
        Ok(resolved)
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send_authorized(self.agent.get(self.url(path)), |r| r.call())?;
        self.decode(response)
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send_authorized(self.agent.delete(self.url(path)), |r| r.call())?;
        self.decode(response)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self.send_post(path, body)?;
        self.decode(response)
    }

    /// GETs `path` and returns the answer's lines as they arrive (JSON lines).
    pub fn get_lines(
        &self,
        path: &str,
    ) -> anyhow::Result<impl Iterator<Item = std::io::Result<String>> + use<>> {
        let response = self.send_authorized(self.agent.get(self.url(path)), |r| r.call())?;
        self.lines(response)
    }

    /// POSTs `body` and returns the answer's lines as they arrive (JSON lines).
    pub fn post_lines<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<impl Iterator<Item = std::io::Result<String>> + use<B>> {
        let response = self.send_post(path, body)?;
        self.lines(response)
    }

    fn lines(
        &self,
        response: ureq::http::Response<ureq::Body>,
    ) -> anyhow::Result<impl Iterator<Item = std::io::Result<String>> + use<>> {
        use std::io::BufRead;
        if !response.status().is_success() {
            return Err(self
                .decode::<serde_json::Value>(response)
                .err()
                .unwrap_or_else(|| anyhow!("unexpected answer")));
        }
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        Ok(reader.lines())
    }

    fn send_post<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        self.send_authorized(self.agent.post(self.url(path)), |r| r.send_json(body))
    }

    /// Sends `request` (with `send`) carrying the token and a fresh nonce, once the node
    /// has proved it holds the token; the answer, once it proves it comes from the node
    /// (every answer must: the program on the port may have changed since).
    fn send_authorized<K>(
        &self,
        request: ureq::RequestBuilder<K>,
        send: impl FnOnce(
            ureq::RequestBuilder<K>,
        ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let credential = self.credential()?;
        let nonce = auth::nonce()?;
        let request = request
            .header(
                "Authorization",
                format!("Bearer {}", credential.token.to_hex()),
            )
            .header(auth::NONCE_HEADER, &nonce);
        let response = send(request).map_err(|e| self.unreachable(e))?;
        let proved = proof(&response)
            .is_some_and(|p| credential.token.verify_proof(&nonce, &self.host(), p));
        if !proved {
            bail!(
                "the answer from {} carries no valid proof that it comes from the node; ignored",
                self.endpoint.api
            )
        }
        Ok(response)
    }

    /// GETs an open plain-text path (`/health`) without the token; the body on success.
    pub fn get_open_text(&self, path: &str) -> anyhow::Result<String> {
        let mut response = self
            .agent
            .get(self.url(path))
            .call()
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        if !status.is_success() {
            bail!(
                "the node at {} answered {path} with HTTP {status}: {}",
                self.endpoint.api,
                safe(body.trim())
            );
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.api.url())
    }

    /// The `Host` ureq sends, which the node's proof covers.
    fn host(&self) -> String {
        self.endpoint.api.to_string()
    }

    fn credential(&self) -> anyhow::Result<&Credential> {
        if let Some(c) = self.credential.get() {
            return Ok(c);
        }
        let found = self.handshake()?;
        Ok(self.credential.get_or_init(|| found))
    }

    /// Finds which of the tokens this client can read the node at the address holds,
    /// by a challenge on the open `/health` endpoint: no token is sent to a program that
    /// cannot prove it has it.
    fn handshake(&self) -> anyhow::Result<Credential> {
        // Ask first: "no node here" is the likelier story than a missing token.
        let nonce = auth::nonce()?;
        let mut response = self
            .agent
            .get(self.url("/health"))
            .header(auth::NONCE_HEADER, &nonce)
            .call()
            .map_err(|e| self.unreachable(e))?;
        let (candidates, problems) = self.candidates()?;
        if candidates.is_empty() {
            if let Some(problem) = problems.into_iter().next() {
                return Err(problem);
            }
            let dir = self.endpoint.data_dir();
            bail!(
                "no API token in {} (looked for {}): is a node running with this data dir? \
                 Start one with `guts node`; run this as the node's user, or point --data-dir / \
                 GUTS_DATA_DIR at its data dir ({} for a node whose data dir is elsewhere)",
                dir.display(),
                auth::token_path(&dir).display(),
                auth::TOKEN_ENV
            );
        }
        if let Some(proof) = proof(&response)
            && let Some(c) = candidates
                .iter()
                .find(|c| c.token.verify_proof(&nonce, &self.host(), proof))
        {
            return Ok(Credential {
                token: c.token.clone(),
                dir: c.dir.clone(),
            });
        }
        if !response.status().is_success()
            && let Ok(body) = response.body_mut().read_json::<ErrorBody>()
        {
            bail!(
                "the node at {} refused: {}",
                self.endpoint.api,
                safe(&body.error)
            );
        }
        let sources: Vec<&str> = candidates.iter().map(|c| c.source.as_str()).collect();
        let mut message = format!(
            "whatever answers at {} could not prove it holds the API token in {}, so it is \
             not that node (it may have restarted with a new token, or another program has \
             the port); nothing was sent to it",
            self.endpoint.api,
            sources.join(", ")
        );
        for problem in problems {
            message.push_str(&format!("; also: {problem:#}"));
        }
        Err(anyhow!(message))
    }

    /// Tokens to try: `GUTS_API_TOKEN`, or the token files of the data dir (and of its
    /// `node-N` slots, for nodes that share one). Files that cannot be used are returned
    /// as problems, reported if nothing else works.
    fn candidates(&self) -> anyhow::Result<(Vec<Candidate>, Vec<anyhow::Error>)> {
        if let Ok(value) = std::env::var(auth::TOKEN_ENV) {
            let token = Token::parse(&value, auth::TOKEN_ENV)?;
            let source = auth::TOKEN_ENV.to_owned();
            return Ok((
                vec![Candidate {
                    token,
                    source,
                    dir: None,
                }],
                vec![],
            ));
        }
        let dir = self.endpoint.data_dir();
        let mut dirs = vec![dir.clone()];
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut slots: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("node-"))
                .map(|e| e.path())
                .collect();
            slots.sort();
            dirs.extend(slots);
        }
        let (mut found, mut problems) = (Vec::new(), Vec::new());
        for dir in dirs {
            let path = auth::token_path(&dir);
            match auth::read_token_file(&path) {
                Ok(token) => found.push(Candidate {
                    token,
                    source: path.display().to_string(),
                    dir: Some(dir),
                }),
                Err(auth::AuthError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e @ auth::AuthError::Io { .. }) => problems.push(anyhow!(
                    "{e} (run this as the node's user, or set {})",
                    auth::TOKEN_ENV
                )),
                Err(e) => problems.push(e.into()),
            }
        }
        Ok((found, problems))
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
                    self.endpoint.api
                )
            });
        }
        let message = response
            .body_mut()
            .read_json::<ErrorBody>()
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(anyhow!(safe(&message).into_owned()))
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        let addr = &self.endpoint.api;
        match e {
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                let why = match e {
                    ureq::Error::Io(io) => io.to_string(),
                    other => other.to_string(),
                };
                anyhow!(
                    "no node at {addr} ({why}); start one with `guts node`, or point --api / GUTS_API at a running node"
                )
            }
            ureq::Error::Timeout(_) => anyhow!("the node at {addr} did not answer in time"),
            other => anyhow!("cannot talk to the node at {addr}: {other}"),
        }
    }
}

/// The node's proof header on `response`, if any.
fn proof(response: &ureq::http::Response<ureq::Body>) -> Option<&str> {
    response
        .headers()
        .get(auth::PROOF_HEADER)
        .and_then(|p| p.to_str().ok())
}

/// Prints the token of the node at the API address (the one it proves it holds), for a
/// client elsewhere (`GUTS_API_TOKEN`), e.g. on the host of a node in a container.
pub fn api_token(args: &ApiArgs, json: bool) -> anyhow::Result<()> {
    let client = Client::new(args, Duration::from_secs(10))?;
    let token = client.credential()?.token.to_hex();
    if json {
        return print_json(&serde_json::json!({ "token": token }));
    }
    println!("{token}");
    Ok(())
}

/// Succeeds only while the node's event loop answers: for container healthchecks.
pub fn health(args: &ApiArgs, json: bool) -> anyhow::Result<()> {
    let body = Client::new(args, Duration::from_secs(5))?.get_open_text("/health")?;
    if json {
        return print_json(&serde_json::json!({ "health": body.trim() }));
    }
    print!("{body}");
    Ok(())
}

pub fn status(args: &ApiArgs, json: bool) -> anyhow::Result<()> {
    let status: StatusReport = Client::new(args, Duration::from_secs(10))?.get("/api/v1/status")?;
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
    line(
        &mut out,
        "relay server:",
        if status.relay_server { "on" } else { "off" },
    );
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
        Client::new(args, Duration::from_secs(10))?.get("/api/v1/peers")?;
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
    Ok(())
}

/// `address` is a multiaddr the caller has already parsed (and so checked).
pub fn connect(args: &ApiArgs, address: &str, json: bool) -> anyhow::Result<()> {
    // The node bounds the dial by its connection timeout; leave room for that.
    let client = Client::new(args, Duration::from_secs(60))?;
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
    let client = Client::with_timeout(args, timeout)?;
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

/// Prints `value` as pretty JSON: what every client command prints with `--json`.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Whether a sync prints its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Progress and the outcome on stderr.
    Shown,
    /// Nothing but failures (`git clone --quiet`).
    Quiet,
}

/// Runs a sync on the node, printing progress and the outcome on stderr the way git
/// does (stdout may be git's protocol channel); returns the outcome.
pub fn sync(
    client: &Client,
    id: &RepositoryId,
    from: Option<String>,
    progress: Progress,
) -> anyhow::Result<SyncOutcome> {
    let lines = client.post_lines(
        &format!("/api/v1/repos/{id}/sync"),
        &SyncRequestBody { prefer: from },
    )?;
    let tty = std::io::stderr().is_terminal();
    let mut shown = std::io::stderr();
    let mut sink = std::io::sink();
    let err: &mut dyn std::io::Write = match progress {
        Progress::Shown => &mut shown,
        Progress::Quiet => &mut sink,
    };
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
                        let _ = writeln!(err, "guts://{id} is up to date (sequence {sequence})");
                    }
                    SyncOutcome::Updated {
                        sequence,
                        from,
                        objects,
                        bytes,
                        millis,
                    } => {
                        let _ = writeln!(
                            err,
                            "guts://{id} updated to sequence {sequence} from {from}: {objects} objects, {} in {:.1}s",
                            bytesize::ByteSize::b(*bytes).display().iec(),
                            *millis as f64 / 1000.0
                        );
                    }
                }
                return Ok(outcome);
            }
            SyncProgress::Failed { error } => {
                if tty {
                    let _ = writeln!(err);
                }
                bail!("{}", safe_lines(&error));
            }
        }
    }
    Err(anyhow!("the node ended the sync without an outcome"))
}
