//! `guts node`: settings from flags, then `GUTS_*` environment variables, then a TOML
//! file, then built-in defaults; then run until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use guts_node::config::{parse_ip_net, parse_multiaddr, parse_peer_id};
use guts_node::{Config, DhtMode, LogFormat, Multiaddr, Node, NodeError, PeerId};
use guts_protocol::NetworkName;

use crate::{EXIT_USAGE, logging};

/// How long a clean shutdown may take before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Flags of `guts node`. Each also reads the `GUTS_*` variable shown in `--help`; a flag
/// that is not given leaves the config file's value (or the default) in place.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// TOML config file (any key left out keeps its default) [default:
    /// ~/.config/guts/config.toml, if it exists].
    #[arg(long, env = "GUTS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Data dir: identity and repositories [default: ~/.local/share/guts].
    #[arg(long, env = "GUTS_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Share --data-dir with other nodes (e.g. the replicas of a scaled compose service):
    /// use its first `node-N` subdirectory no running node holds.
    #[arg(long, env = "GUTS_DATA_SLOTS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    data_slots: Option<bool>,
    /// Network name; nodes of different networks never talk [default: guts].
    #[arg(long, env = "GUTS_NETWORK", value_name = "NAME")]
    network: Option<NetworkName>,
    /// Listen multiaddr, repeatable [default: /ip4/0.0.0.0/tcp/9000, /ip4/0.0.0.0/udp/9000/quic-v1, and IPv6 alike].
    #[arg(long = "listen", env = "GUTS_LISTEN", value_name = "MULTIADDR", value_delimiter = ',', value_parser = parse_multiaddr)]
    listen: Vec<Multiaddr>,
    /// Bootstrap peer multiaddr, repeatable, with or without /p2p/<peer-id>.
    #[arg(long = "bootstrap", env = "GUTS_BOOTSTRAP", value_name = "MULTIADDR", value_delimiter = ',', value_parser = parse_multiaddr)]
    bootstrap: Vec<Multiaddr>,
    /// Address other nodes can reach this one at, repeatable.
    #[arg(long = "external-address", env = "GUTS_EXTERNAL_ADDRESS", value_name = "MULTIADDR", value_delimiter = ',', value_parser = parse_multiaddr)]
    external_addresses: Vec<Multiaddr>,
    /// mDNS discovery on the LAN: on or off [default: on].
    #[arg(long, env = "GUTS_MDNS", value_name = "on|off", value_parser = parse_on_off)]
    mdns: Option<bool>,
    /// Keep only mDNS-found peers with this tag [default: guts].
    #[arg(long, env = "GUTS_MDNS_SERVICE_TAG", value_name = "TAG")]
    mdns_service_tag: Option<String>,
    /// Kademlia mode: client, server or auto [default: server].
    #[arg(long, env = "GUTS_DHT_MODE", value_name = "MODE")]
    dht_mode: Option<DhtMode>,
    /// Act as a circuit relay for other nodes.
    #[arg(long, env = "GUTS_RELAY_SERVER", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    relay_server: Option<bool>,
    /// Interval between pings, e.g. 30s [default: 30s].
    #[arg(long, env = "GUTS_PING_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    ping_interval: Option<Duration>,
    /// Time allowed to set up a connection [default: 5s].
    #[arg(long, env = "GUTS_CONNECTION_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    connection_timeout: Option<Duration>,
    /// Close connections no protocol uses after this long [default: 60s].
    #[arg(long, env = "GUTS_IDLE_CONNECTION_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    idle_connection_timeout: Option<Duration>,
    /// Interval of the one-line status log [default: 30s].
    #[arg(long, env = "GUTS_STATUS_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    status_interval: Option<Duration>,
    /// Control API address, or "off" [default: 127.0.0.1:9080].
    #[arg(long, env = "GUTS_API", value_name = "ADDR|off", value_parser = parse_api)]
    api: Option<ApiSetting>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "GUTS_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Private network key file (IPFS swarm.key format; `guts swarm-key` makes one):
    /// only nodes with the same key can connect. TCP only.
    #[arg(
        long,
        env = "GUTS_SWARM_KEY",
        value_name = "FILE",
        help_heading = "Private networks"
    )]
    swarm_key: Option<PathBuf>,
    /// Admit only this peer, repeatable (with --allow-peers-file: only those listed).
    #[arg(long = "allow-peer", env = "GUTS_ALLOW_PEERS", value_name = "PEERID", value_delimiter = ',', value_parser = parse_peer_id, help_heading = "Private networks")]
    allow_peers: Vec<PeerId>,
    /// File of peer ids to admit, one per line (`#` comments).
    #[arg(
        long,
        env = "GUTS_ALLOW_PEERS_FILE",
        value_name = "FILE",
        help_heading = "Private networks"
    )]
    allow_peers_file: Option<PathBuf>,

    /// Hard cap on established connections [default: 160].
    #[arg(
        long,
        env = "GUTS_MAX_CONNECTIONS",
        value_name = "N",
        help_heading = "Connection limits"
    )]
    max_connections: Option<u32>,
    /// Hard cap on inbound connections in their handshake [default: 64].
    #[arg(
        long,
        env = "GUTS_MAX_PENDING_INBOUND",
        value_name = "N",
        help_heading = "Connection limits"
    )]
    max_pending_inbound: Option<u32>,
    /// Hard cap on connections to one peer [default: 2].
    #[arg(
        long,
        env = "GUTS_MAX_CONNECTIONS_PER_PEER",
        value_name = "N",
        help_heading = "Connection limits"
    )]
    max_connections_per_peer: Option<u32>,
    /// Inbound connections accepted from one IP [default: 3].
    #[arg(
        long,
        env = "GUTS_MAX_PEERS_PER_IP",
        value_name = "N",
        help_heading = "Connection limits"
    )]
    max_peers_per_ip: Option<u32>,
    /// IP or network exempt from --max-peers-per-ip, repeatable (loopback always is).
    #[arg(long = "per-ip-allow", env = "GUTS_PER_IP_ALLOW", value_name = "IP|CIDR", value_delimiter = ',', value_parser = parse_ip_net, help_heading = "Connection limits")]
    per_ip_allow: Vec<ipnet::IpNet>,
    /// IPv6 addresses sharing this many leading bits count as one IP in every per-IP
    /// limit [default: 64].
    #[arg(
        long,
        env = "GUTS_IPV6_PREFIX",
        value_name = "BITS",
        help_heading = "Connection limits"
    )]
    ipv6_prefix: Option<u8>,
    /// Dial more peers below this many [default: 32].
    #[arg(
        long,
        env = "GUTS_LOW_WATERMARK",
        value_name = "N",
        help_heading = "Connection limits"
    )]
    low_watermark: Option<u32>,
    /// Trim to the low watermark above this many peers [default: 128].
    #[arg(
        long,
        env = "GUTS_HIGH_WATERMARK",
        value_name = "N",
        help_heading = "Connection limits"
    )]
    high_watermark: Option<u32>,
    /// Connection manager heartbeat [default: 10s].
    #[arg(long, env = "GUTS_TRIM_INTERVAL", value_name = "DURATION", value_parser = parse_duration, help_heading = "Connection limits")]
    trim_interval: Option<Duration>,
    /// New connections are not trimmed before this age [default: 20s].
    #[arg(long, env = "GUTS_TRIM_GRACE_PERIOD", value_name = "DURATION", value_parser = parse_duration, help_heading = "Connection limits")]
    trim_grace_period: Option<Duration>,
    /// Dials started per second [default: 5].
    #[arg(
        long,
        env = "GUTS_DIALS_PER_SECOND",
        value_name = "N",
        help_heading = "Connection limits"
    )]
    dials_per_second: Option<u32>,
    /// Dials in flight at once [default: 10].
    #[arg(
        long,
        env = "GUTS_MAX_CONCURRENT_DIALS",
        value_name = "N",
        help_heading = "Connection limits"
    )]
    max_concurrent_dials: Option<u32>,
    /// DHT queries in flight at once [default: 16].
    #[arg(
        long,
        env = "GUTS_MAX_CONCURRENT_DHT_QUERIES",
        value_name = "N",
        help_heading = "Connection limits"
    )]
    max_concurrent_dht_queries: Option<u32>,
    /// Requests per peer per second on each protocol [default: 20].
    #[arg(
        long,
        env = "GUTS_REQUESTS_PER_SECOND_PER_PEER",
        value_name = "N",
        help_heading = "Connection limits"
    )]
    requests_per_second_per_peer: Option<u32>,
    /// Score at which a peer is banned [default: -100].
    #[arg(
        long,
        env = "GUTS_BAN_THRESHOLD",
        value_name = "SCORE",
        allow_negative_numbers = true,
        help_heading = "Connection limits"
    )]
    ban_threshold: Option<f64>,
    /// How long a banned peer is refused [default: 1h].
    #[arg(long, env = "GUTS_BAN_DURATION", value_name = "DURATION", value_parser = parse_duration, help_heading = "Connection limits")]
    ban_duration: Option<Duration>,
    /// Which repositories to keep copies of: followed or all [default: followed].
    #[arg(
        long,
        env = "GUTS_REPLICATE",
        value_name = "MODE",
        help_heading = "Replication"
    )]
    replicate: Option<guts_node::Replicate>,
    /// How often followed repositories are checked against their holders [default: 60s].
    #[arg(long, env = "GUTS_ANTI_ENTROPY_INTERVAL", value_name = "DURATION", value_parser = parse_duration, help_heading = "Replication")]
    anti_entropy_interval: Option<Duration>,
    /// Abandon a transfer that sends nothing for this long [default: 30s].
    #[arg(long, env = "GUTS_TRANSFER_STALL_TIMEOUT", value_name = "DURATION", value_parser = parse_duration, help_heading = "Replication")]
    transfer_stall_timeout: Option<Duration>,
    /// Largest pack accepted in one fetch, e.g. 512MiB [default: 4GiB].
    #[arg(
        long,
        env = "GUTS_MAX_PACK_SIZE",
        value_name = "SIZE",
        help_heading = "Replication"
    )]
    max_pack_size: Option<bytesize::ByteSize>,
    /// Slowest a pack transfer may move per second once its first stall timeout has
    /// passed, e.g. 64KiB; 0 turns it off [default: 16KiB].
    #[arg(
        long,
        env = "GUTS_MIN_TRANSFER_RATE",
        value_name = "SIZE",
        help_heading = "Replication"
    )]
    min_transfer_rate: Option<bytesize::ByteSize>,
    /// Packs sent at once [default: 8].
    #[arg(
        long,
        env = "GUTS_MAX_CONCURRENT_TRANSFERS",
        value_name = "N",
        help_heading = "Replication"
    )]
    max_concurrent_transfers: Option<u32>,
    /// Disk other owners' repositories may take here, e.g. 50GiB; 0: no limit [default: 0].
    #[arg(
        long,
        env = "GUTS_MAX_STORAGE",
        value_name = "SIZE",
        help_heading = "Replication"
    )]
    max_storage: Option<bytesize::ByteSize>,
    /// Disk one owner's repositories may take here; 0: a quarter of --max-storage
    /// [default: 0].
    #[arg(
        long,
        env = "GUTS_MAX_STORAGE_PER_OWNER",
        value_name = "SIZE",
        help_heading = "Replication"
    )]
    max_storage_per_owner: Option<bytesize::ByteSize>,
    /// Pack streams one peer may have open at once [default: 8].
    #[arg(
        long,
        env = "GUTS_MAX_STREAMS_PER_PEER",
        value_name = "N",
        help_heading = "Replication"
    )]
    max_streams_per_peer: Option<u32>,
    /// With --replicate all: repositories adopted per hour [default: 600].
    #[arg(
        long,
        env = "GUTS_MAX_ADOPTIONS_PER_HOUR",
        value_name = "N",
        help_heading = "Replication"
    )]
    max_adoptions_per_hour: Option<u32>,
    /// With --replicate all: adopt nothing more once this many are followed [default: 10000].
    #[arg(
        long,
        env = "GUTS_MAX_FOLLOWED",
        value_name = "N",
        help_heading = "Replication"
    )]
    max_followed: Option<u32>,
    /// Announcements accepted per owner key per minute [default: 60].
    #[arg(
        long,
        env = "GUTS_OWNER_ANNOUNCEMENTS_PER_MINUTE",
        value_name = "N",
        help_heading = "Replication"
    )]
    owner_announcements_per_minute: Option<u32>,
    /// Largest object a received pack may hold, inflated, e.g. 1GiB [default: 512MiB].
    #[arg(
        long,
        env = "GUTS_MAX_OBJECT_SIZE",
        value_name = "SIZE",
        help_heading = "Replication"
    )]
    max_object_size: Option<bytesize::ByteSize>,
    /// How many times its wire bytes a received pack may inflate to [default: 1000].
    #[arg(
        long,
        env = "GUTS_MAX_INFLATION_RATIO",
        value_name = "N",
        help_heading = "Replication"
    )]
    max_inflation_ratio: Option<u64>,
    /// Deepest nesting of trees a repository may have [default: 4096].
    #[arg(
        long,
        env = "GUTS_MAX_TREE_DEPTH",
        value_name = "N",
        help_heading = "Replication"
    )]
    max_tree_depth: Option<u32>,
    /// Most objects one received pack may announce [default: 20000000].
    #[arg(
        long,
        env = "GUTS_MAX_PACK_OBJECTS",
        value_name = "N",
        help_heading = "Replication"
    )]
    max_pack_objects: Option<u32>,
    /// Penalties halve over this time [default: 10m].
    #[arg(long, env = "GUTS_SCORE_HALF_LIFE", value_name = "DURATION", value_parser = parse_duration, help_heading = "Connection limits")]
    score_half_life: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct ApiSetting(Option<SocketAddr>);

impl NodeArgs {
    /// The effective config (these flags over the file over the defaults), and the file
    /// read, if any.
    fn config(&self) -> Result<(Config, Option<PathBuf>), guts_node::ConfigError> {
        let file = self
            .config
            .clone()
            .or_else(guts_api::settings::default_config_file);
        let mut c = match &file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        // Each flag given replaces the config field of the same name.
        macro_rules! overlay {
            (options: $($field:ident),*; lists: $($list:ident),*) => {
                $(if let Some(v) = &self.$field { c.$field = v.clone(); })*
                $(if !self.$list.is_empty() { c.$list = self.$list.clone(); })*
            };
        }
        overlay!(
            options: data_dir, data_slots, network, mdns, mdns_service_tag, dht_mode, relay_server,
                ping_interval, connection_timeout, idle_connection_timeout, status_interval,
                log_format, max_connections, max_pending_inbound, max_connections_per_peer,
                max_peers_per_ip, ipv6_prefix, low_watermark, high_watermark, trim_interval,
                trim_grace_period, dials_per_second, max_concurrent_dials,
                max_concurrent_dht_queries, requests_per_second_per_peer, ban_threshold,
                ban_duration, score_half_life, replicate, anti_entropy_interval,
                transfer_stall_timeout, max_pack_size, min_transfer_rate, max_concurrent_transfers,
                max_streams_per_peer, max_storage, max_storage_per_owner,
                max_adoptions_per_hour, max_followed,
                owner_announcements_per_minute,
                max_tree_depth, max_pack_objects, max_object_size, max_inflation_ratio;
            lists: listen, bootstrap, external_addresses, per_ip_allow, allow_peers
        );
        if let Some(ApiSetting(v)) = self.api {
            c.api = v;
        }
        if let Some(path) = &self.swarm_key {
            c.swarm_key = Some(path.clone());
        }
        if let Some(path) = &self.allow_peers_file {
            c.allow_peers_file = Some(path.clone());
        }
        c.apply_private_defaults();
        c.validate()?;
        Ok((c, file))
    }
}

pub fn run(args: NodeArgs) -> ExitCode {
    let (config, file) = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.print_config {
        if let Some(file) = &file {
            println!("# read from {}", file.display());
        }
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    logging::init(config.log_format);
    if let Some(file) = &file {
        tracing::info!("settings from {}", file.display());
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_until_signal(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(NodeError::Config(e)) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_until_signal(config: Config) -> Result<(), NodeError> {
    let node = Node::start(config).await?;
    let signal = wait_for_signal().await;
    tracing::info!("{signal}: shutting down");
    tokio::select! {
        _ = node.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("shutdown took longer than {}s; exiting anyway", SHUTDOWN_GRACE.as_secs());
        }
        second = wait_for_signal() => tracing::warn!("{second} again: exiting now"),
    }
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    parse_on_off(s).map_err(|_| format!("expected true or false, got {s:?}"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 500ms, 30s, 5m"))
}

fn parse_api(s: &str) -> Result<ApiSetting, String> {
    guts_node::config::parse_api_addr(s).map(ApiSetting)
}
