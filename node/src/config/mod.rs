//! Node configuration: built-in defaults, a TOML file, flags and `GUTS_*` variables, and
//! validation.
//!
//! Each part of the node owns its section ([`NetSettings`], [`Limits`], [`Replication`]);
//! [`Config`] composes them. A setting is one field there: its doc comment is its help,
//! its name is its TOML key and flag, and its section's `Default` gives its default. The
//! binary layers flags over a file read here ([`Config::update_from_arg_matches`] touches
//! only the flags given), then calls [`Config::validate`].

pub mod error;
pub mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use guts_protocol::NetworkName;
use serde::{Deserialize, Serialize};

pub use crate::connection_manager::settings::Limits;
pub use crate::network::settings::{
    DEFAULT_PORT, DhtMode, NetSettings, default_listen_addrs, new_swarm_key,
};
pub use crate::sync::settings::{Replicate, Replication};
pub use error::ConfigError;
pub use guts_api::default_data_dir;
pub use values::{
    LogFormat, parse_api_addr, parse_bool, parse_duration, parse_http_addr, parse_ip_net,
    parse_multiaddr, parse_on_off, parse_peer_id,
};

use values::{api_addr, http_addr};

/// Default control API address: loopback only.
pub const DEFAULT_API: &str = guts_api::DEFAULT_API_ADDR;

/// Everything a node needs to start.
///
/// Its `Deserialize` reads the node's own keys only: read files with
/// [`Config::from_toml`], which reads every section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct Config {
    /// Data dir: the identity and the repositories.
    #[arg(long, env = "GUTS_DATA_DIR", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Share data_dir with other nodes (the replicas of a scaled compose service): each
    /// takes the first `node-N` subdirectory no running node holds.
    #[arg(long, env = "GUTS_DATA_SLOTS", value_name = "BOOL", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub data_slots: bool,
    /// Network name, carried in every protocol name: nodes of different networks never
    /// talk.
    #[arg(long, env = "GUTS_NETWORK", value_name = "NAME")]
    pub network: NetworkName,
    /// Interval of the one-line status log.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "GUTS_STATUS_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub status_interval: Duration,
    /// Local control API address, or off for no API.
    #[serde(with = "api_addr")]
    #[arg(long, env = "GUTS_API", value_name = "ADDR|off", value_parser = parse_api_addr)]
    pub api: ::std::option::Option<SocketAddr>,
    /// Serve git over HTTP, read-only, on this address (stock git clones and fetches
    /// public repositories from it), or off.
    #[serde(with = "http_addr")]
    #[arg(long, env = "GUTS_HTTP", value_name = "ADDR|off", value_parser = parse_http_addr)]
    pub http: ::std::option::Option<SocketAddr>,
    /// Take `git push` over HTTP from whoever presents the control API's token (as the
    /// password): the node's own key signs, as with git-remote-guts. Needs --http and
    /// --api; put TLS in front of a public address.
    #[arg(long, env = "GUTS_HTTP_PUSH", value_name = "on|off", action = clap::ArgAction::Set, value_parser = parse_on_off)]
    pub http_push: bool,
    /// Log format: text or json.
    #[arg(long, env = "GUTS_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// Listening, bootstrap, discovery and private network settings.
    #[serde(flatten, skip_deserializing)]
    #[command(flatten)]
    pub net: NetSettings,
    /// What the connection manager allows.
    #[serde(flatten, skip_deserializing)]
    #[command(flatten)]
    pub connections: Limits,
    /// Which repositories the node keeps, and what it accepts from peers.
    #[serde(flatten, skip_deserializing)]
    #[command(flatten)]
    pub replication: Replication,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            data_slots: false,
            network: NetworkName::default_network(),
            status_interval: Duration::from_secs(30),
            api: Some(DEFAULT_API.parse().expect("valid default API address")),
            http: None,
            http_push: false,
            log_format: LogFormat::Text,
            net: NetSettings::default(),
            connections: Limits::default(),
            replication: Replication::default(),
        }
    }
}

impl Config {
    /// Reads a TOML config file; keys it omits keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; keys it omits keep their defaults, keys no section knows are
    /// errors.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        // Each section reads its own keys from the whole text: serde's flatten would lose
        // the key and line of every error.
        fn read<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
        }
        let config = Config {
            net: read(text)?,
            connections: read(text)?,
            replication: read(text)?,
            ..read(text)?
        };
        let given: toml::Table = read(text)?;
        let known = config.to_table();
        if let Some(key) = given.keys().find(|k| !known.contains_key(*k)) {
            return Err(format!(
                "unknown key `{key}`: `guts node --print-config` lists every key"
            ));
        }
        Ok(config)
    }

    /// Every key with its value; keys whose value is unset (`None`) are left out.
    fn to_table(&self) -> toml::Table {
        toml::Table::try_from(self).unwrap_or_default()
    }

    /// The config as TOML, as `--print-config` shows it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Checks values that parse but cannot work, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.net.validate()?;
        self.connections.validate()?;
        self.replication.validate()?;
        if self.http_push && (self.http.is_none() || self.api.is_none()) {
            return Err(ConfigError::Inconsistent(
                "http_push = on takes pushes with the control API's token on the HTTP endpoint: it needs both http and api set (not off)".into(),
            ));
        }
        error::not_zero(&[("status_interval", self.status_interval)])
    }

    /// With a swarm key, the built-in listen addresses become TCP only and mDNS is off
    /// (see [`NetSettings::apply_private_defaults`]).
    pub fn apply_private_defaults(&mut self) {
        self.net.apply_private_defaults();
    }

    /// Adds every setting to `cmd` as a flag that is never required (the file or the
    /// default fills what is not given: see [`Config::update_from_arg_matches`]), each
    /// help ending in the default.
    pub fn add_flags(cmd: clap::Command) -> clap::Command {
        use clap::Args;
        help_with_defaults(Config::augment_args_for_update(cmd))
    }
}

/// Adds each setting's default to its flag's help, from [`Config::default`], so the help
/// and the defaults cannot disagree.
fn help_with_defaults(cmd: clap::Command) -> clap::Command {
    let defaults = Config::default().to_table();
    let ids: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    ids.into_iter().fold(cmd, |cmd, id| {
        let Some(mut value) = defaults.get(&id).and_then(shown_default) else {
            return cmd;
        };
        cmd.mut_arg(&id, |arg| {
            let on_off = arg
                .get_value_names()
                .is_some_and(|names| names.iter().any(|n| n.as_str() == "on|off"));
            if on_off {
                value = if value == "true" { "on" } else { "off" }.to_owned();
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let help = format!("{help} [default: {value}]");
            match arg.get_long_help().map(|h| h.to_string()) {
                Some(long) => arg
                    .help(help)
                    .long_help(format!("{long}\n\n[default: {value}]")),
                None => arg.help(help),
            }
        })
    })
}

/// A default as a user would type it; `None` for an empty list.
fn shown_default(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Array(items) if items.is_empty() => None,
        toml::Value::Array(items) => Some(
            items
                .iter()
                .filter_map(shown_default)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(Config::from_toml(&config.to_toml()).unwrap(), config);
        assert_eq!(config.api.unwrap().to_string(), DEFAULT_API);
        assert!(config.api.unwrap().ip().is_loopback());
    }

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let config = Config::from_toml(
            "network = \"lab\"\nbootstrap = [\"/dns4/boot/tcp/9000\"]\nping_interval = \"5s\"\n\
             max_connections = 7\nmax_followed = 9\n",
        )
        .unwrap();
        assert_eq!(config.network.as_str(), "lab");
        assert_eq!(config.net.ping_interval, Duration::from_secs(5));
        assert_eq!(config.connections.max_connections, 7);
        assert_eq!(config.replication.max_followed, 9);
        assert_eq!(
            config.net.connection_timeout,
            Config::default().net.connection_timeout
        );
        assert_eq!(
            config.connections.low_watermark,
            Limits::default().low_watermark
        );
    }

    #[test]
    fn file_errors_name_the_bad_value() {
        let err = Config::from_toml("bootstrap = [\"/ip4/1.2.3/tcp/1\"]").unwrap_err();
        assert!(err.contains("/ip4/1.2.3/tcp/1"), "{err}");
        let err = Config::from_toml("network = \"Bad Name\"").unwrap_err();
        assert!(err.contains("Bad Name"), "{err}");
        let err = Config::from_toml("dht_mode = \"sometimes\"").unwrap_err();
        assert!(err.contains("sometimes"), "{err}");
        let err = Config::from_toml("listn = []").unwrap_err();
        assert!(err.contains("`listn`"), "{err}");
        let err = Config::from_toml("ping_interval = \"soon\"").unwrap_err();
        assert!(err.contains("ping_interval"), "{err}");
        // A section's key and line survive in its errors.
        let err = Config::from_toml("\nmax_connections = \"many\"").unwrap_err();
        assert!(
            err.contains("max_connections") && err.contains("line 2"),
            "{err}"
        );
        let err = Config::from_toml("max_followed = -1").unwrap_err();
        assert!(err.contains("max_followed"), "{err}");
    }

    #[test]
    fn api_off_survives_a_round_trip() {
        let config = Config {
            api: None,
            ..Config::default()
        };
        assert!(config.to_toml().contains("api = \"off\""));
        assert_eq!(Config::from_toml(&config.to_toml()).unwrap().api, None);
        let err = Config::from_toml("api = \"localhost\"").unwrap_err();
        assert!(err.contains("localhost"), "{err}");
    }

    #[test]
    fn a_relay_circuit_past_what_libp2p_takes_is_refused_by_name() {
        // libp2p's relay panics on a circuit duration past u32 seconds.
        let config = Config::from_toml("relay_circuit_duration = \"200days\"").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("relay_circuit_duration"), "{err}");
        assert!(err.contains("100 days"), "{err}");
        let config = Config::from_toml("relay_circuit_duration = \"0s\"").unwrap();
        assert!(config.validate().is_err());
        let config =
            Config::from_toml("relay_circuit_duration = \"1h\"\nrelay_circuit_bytes = \"0\"")
                .unwrap();
        config.validate().unwrap();
        assert_eq!(config.net.relay_circuit_bytes.as_u64(), 0);
    }

    #[test]
    fn every_section_is_validated() {
        let mut config = Config::default();
        config.net.ping_interval = Duration::ZERO;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("ping_interval"), "{err}");
        let mut config = Config::default();
        config.connections.max_peers_per_ip = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("max_peers_per_ip"), "{err}");
        let mut config = Config::default();
        config.replication.max_streams_per_peer = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("max_streams_per_peer"), "{err}");
        let config = Config {
            status_interval: Duration::ZERO,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("status_interval"), "{err}");
    }

    #[test]
    fn blocked_keys_are_checked_and_make_the_change_policy() {
        let good = key_hex(1);
        let config = Config::from_toml(&format!(
            "blocked_keys = [\"{good}\"]\nmax_objects_per_key = 3\n"
        ))
        .unwrap();
        config.validate().unwrap();
        let policy = config.replication.change_policy();
        assert_eq!(policy.max_objects_per_key, 3);
        assert_eq!(
            policy.blocked.iter().map(hex::encode).collect::<Vec<_>>(),
            [good]
        );
        // Not a key: named, in the file and on the command line.
        let mut config = Config::default();
        config.replication.blocked_keys = vec![key_hex(2), "nonsense".into()];
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("blocked_keys") && err.contains("nonsense"),
            "{err}"
        );
        let err = crate::sync::settings::parse_key("12ab").unwrap_err();
        assert!(err.contains("\"12ab\""), "{err}");
        let mut config = Config::default();
        config.replication.max_changes_per_key = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("max_changes_per_key"), "{err}");
    }

    fn key_hex(seed: u8) -> String {
        hex::encode(
            ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .as_bytes(),
        )
    }

    /// Flags the command line names replace the file's values; the rest stay.
    #[test]
    fn flags_update_only_what_they_name() {
        use clap::{Args, FromArgMatches};
        let cmd = Config::augment_args_for_update(clap::Command::new("node"));
        let matches = cmd
            .try_get_matches_from([
                "node",
                "--max-connections",
                "300",
                "--mdns",
                "off",
                "--api",
                "off",
            ])
            .unwrap();
        let mut config =
            Config::from_toml("max_connections = 400\nhigh_watermark = 200\n").unwrap();
        config.update_from_arg_matches(&matches).unwrap();
        assert_eq!(config.connections.max_connections, 300);
        assert_eq!(config.connections.high_watermark, 200);
        assert!(!config.net.mdns);
        assert_eq!(config.api, None);
        assert_eq!(config.replication, Replication::default());
    }

    /// Every flag's help names the default `Config::default` holds.
    #[test]
    fn help_shows_the_defaults() {
        let cmd = Config::add_flags(clap::Command::new("node"));
        let help = |id: &str| {
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_help().unwrap().to_string()
        };
        assert!(
            help("max_connections").ends_with("[default: 160]"),
            "{}",
            help("max_connections")
        );
        assert!(
            help("ping_interval").ends_with("[default: 30s]"),
            "{}",
            help("ping_interval")
        );
        assert!(help("replicate").ends_with("[default: followed]"));
        assert!(help("mdns").ends_with("[default: on]"), "{}", help("mdns"));
        assert!(
            !help("bootstrap").contains("[default"),
            "{}",
            help("bootstrap")
        );
    }
}
