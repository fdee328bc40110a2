//! Replication settings: which repositories this node keeps, how it fetches them and what
//! it accepts from peers. One field each is a TOML key, a `guts node` flag and a `GUTS_*`
//! variable.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::config::error::{ConfigError, at_least_one, not_zero};
use crate::config::values::parse_duration;

/// Which repositories a node replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Replicate {
    /// Those it owns or follows (`guts repo follow`).
    Followed,
    /// Every repository it hears announced.
    All,
}

/// How this node replicates repositories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
#[command(next_help_heading = "Replication")]
pub struct Replication {
    /// Which repositories to keep copies of: followed (those this node owns or follows) or
    /// all (every repository it hears announced).
    #[arg(long, env = "GUTS_REPLICATE", value_name = "MODE")]
    pub replicate: Replicate,
    /// How often followed repositories are checked against their holders, so a node that
    /// missed announcements (offline, partitioned) catches up.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "GUTS_ANTI_ENTROPY_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub anti_entropy_interval: Duration,
    /// A pack transfer that sends nothing for this long is abandoned for another holder.
    #[serde(with = "humantime_serde")]
    #[arg(long, env = "GUTS_TRANSFER_STALL_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub transfer_stall_timeout: Duration,
    /// Largest pack this node accepts in one fetch, e.g. 512MiB.
    #[arg(long, env = "GUTS_MAX_PACK_SIZE", value_name = "SIZE")]
    pub max_pack_size: ByteSize,
    /// Slowest a pack transfer may move, per second of waiting on the peer, once its first
    /// transfer stall timeout has passed (both directions), e.g. 64KiB; 0 turns it off.
    #[arg(long, env = "GUTS_MIN_TRANSFER_RATE", value_name = "SIZE")]
    pub min_transfer_rate: ByteSize,
    /// Packs this node sends at once (more requests are answered "busy").
    #[arg(long, env = "GUTS_MAX_CONCURRENT_TRANSFERS", value_name = "N")]
    pub max_concurrent_transfers: u32,
    /// Disk other owners' repositories may take on this node, in all, e.g. 50GiB; 0: no
    /// limit.
    #[arg(long, env = "GUTS_MAX_STORAGE", value_name = "SIZE")]
    pub max_storage: ByteSize,
    /// Disk one owner's repositories may take on this node; 0: a quarter of max_storage
    /// (no limit if that is 0 too).
    #[arg(long, env = "GUTS_MAX_STORAGE_PER_OWNER", value_name = "SIZE")]
    pub max_storage_per_owner: ByteSize,
    /// Pack streams one peer may have open to this node at once (more are closed).
    #[arg(long, env = "GUTS_MAX_STREAMS_PER_PEER", value_name = "N")]
    pub max_streams_per_peer: u32,
    /// With replicate all: repositories adopted from announcements or peers' lists per
    /// hour (a burst of this many, refilling over the hour).
    #[arg(long, env = "GUTS_MAX_ADOPTIONS_PER_HOUR", value_name = "N")]
    pub max_adoptions_per_hour: u32,
    /// With replicate all: no more adoptions once this many repositories are followed
    /// (explicit follows still work).
    #[arg(long, env = "GUTS_MAX_FOLLOWED", value_name = "N")]
    pub max_followed: u32,
    /// Announcements accepted per owner key per minute; more are ignored (not relayed).
    #[arg(long, env = "GUTS_OWNER_ANNOUNCEMENTS_PER_MINUTE", value_name = "N")]
    pub owner_announcements_per_minute: u32,
    /// Deepest nesting of trees a repository may have (git's core.maxTreeDepth).
    #[arg(long, env = "GUTS_MAX_TREE_DEPTH", value_name = "N")]
    pub max_tree_depth: u32,
    /// Most objects one received pack may announce.
    #[arg(long, env = "GUTS_MAX_PACK_OBJECTS", value_name = "N")]
    pub max_pack_objects: u32,
    /// Largest object (or delta) a received pack may hold, inflated, e.g. 1GiB.
    #[arg(long, env = "GUTS_MAX_OBJECT_SIZE", value_name = "SIZE")]
    pub max_object_size: ByteSize,
    /// How many times its wire bytes a received pack may inflate to (past 1 GiB).
    #[arg(long, env = "GUTS_MAX_INFLATION_RATIO", value_name = "N")]
    pub max_inflation_ratio: u64,
    /// Keys (hex) whose patches, issues and comments this node neither stores, shows,
    /// serves nor relays, repeatable.
    #[arg(long = "block-key", env = "GUTS_BLOCKED_KEYS", value_name = "KEY", value_delimiter = ',', value_parser = parse_key)]
    pub blocked_keys: Vec<String>,
    /// Patches and issues one key other than a maintainer may open in one repository
    /// here; more are not kept.
    #[arg(long, env = "GUTS_MAX_OBJECTS_PER_KEY", value_name = "N")]
    pub max_objects_per_key: u32,
    /// Changes (comments, reviews, revisions...) one key other than a maintainer may make
    /// in one repository here; more are not kept.
    #[arg(long, env = "GUTS_MAX_CHANGES_PER_KEY", value_name = "N")]
    pub max_changes_per_key: u32,
    /// Contributors' forks of one repository kept here (0: none); the first come keep
    /// their place.
    #[arg(long, env = "GUTS_MAX_FORKS", value_name = "N")]
    pub max_forks: u32,
    /// Refs one contributor's fork may hold to be kept here.
    #[arg(long, env = "GUTS_MAX_REFS_PER_FORK", value_name = "N")]
    pub max_refs_per_fork: u32,
}

/// Parses a key (64 hex digits), naming the bad value.
pub fn parse_key(text: &str) -> Result<String, String> {
    crate::maintainers::parse_key(text).map(|k| hex::encode(k.as_bytes()))
}

impl Default for Replication {
    fn default() -> Self {
        let store = guts_storage::Limits::default();
        let changes = guts_storage::ChangePolicy::default();
        Replication {
            replicate: Replicate::Followed,
            anti_entropy_interval: Duration::from_secs(60),
            transfer_stall_timeout: Duration::from_secs(30),
            max_pack_size: ByteSize::gib(4),
            min_transfer_rate: ByteSize::kib(16),
            max_concurrent_transfers: 8,
            max_storage: ByteSize::b(0),
            max_storage_per_owner: ByteSize::b(0),
            max_streams_per_peer: 8,
            max_adoptions_per_hour: 600,
            max_followed: 10_000,
            owner_announcements_per_minute: 60,
            max_tree_depth: store.max_tree_depth as u32,
            max_pack_objects: store.max_pack_objects,
            max_object_size: ByteSize::b(store.max_object_size),
            max_inflation_ratio: store.max_inflation_ratio,
            blocked_keys: Vec::new(),
            max_objects_per_key: changes.max_objects_per_key as u32,
            max_changes_per_key: changes.max_changes_per_key as u32,
            max_forks: changes.forks.max_forks as u32,
            max_refs_per_fork: changes.forks.max_refs as u32,
        }
    }
}

impl Replication {
    /// The storage quota per owner in effect (see `max_storage_per_owner`).
    pub fn storage_per_owner(&self) -> u64 {
        match self.max_storage_per_owner.as_u64() {
            0 => self.max_storage.as_u64() / 4,
            n => n,
        }
    }

    /// The limits storage checks every repository's data against.
    pub fn storage_limits(&self) -> guts_storage::Limits {
        guts_storage::Limits {
            max_tree_depth: self.max_tree_depth as usize,
            max_pack_objects: self.max_pack_objects,
            max_object_size: self.max_object_size.as_u64(),
            max_inflation_ratio: self.max_inflation_ratio,
        }
    }

    /// What this node keeps of other keys' patches, issues and forks.
    pub fn change_policy(&self) -> guts_storage::ChangePolicy {
        guts_storage::ChangePolicy {
            blocked: self
                .blocked_keys
                .iter()
                .filter_map(|k| crate::maintainers::parse_key(k).ok())
                .map(|k| k.to_bytes())
                .collect(),
            max_objects_per_key: self.max_objects_per_key as usize,
            max_changes_per_key: self.max_changes_per_key as usize,
            forks: guts_protocol::ForkLimits {
                max_forks: self.max_forks as usize,
                max_refs: self.max_refs_per_fork as usize,
            },
            maintainers_only: false,
        }
    }

    /// Values that parse but cannot work, naming the first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least_one(&[
            (
                "max_concurrent_transfers",
                self.max_concurrent_transfers.into(),
            ),
            ("max_tree_depth", self.max_tree_depth.into()),
            ("max_pack_objects", self.max_pack_objects.into()),
            ("max_adoptions_per_hour", self.max_adoptions_per_hour.into()),
            ("max_streams_per_peer", self.max_streams_per_peer.into()),
            ("max_objects_per_key", self.max_objects_per_key.into()),
            ("max_changes_per_key", self.max_changes_per_key.into()),
            ("max_refs_per_fork", self.max_refs_per_fork.into()),
            (
                "owner_announcements_per_minute",
                self.owner_announcements_per_minute.into(),
            ),
        ])?;
        for (field, size) in [
            ("max_pack_size", self.max_pack_size),
            ("max_object_size", self.max_object_size),
        ] {
            if size.as_u64() < 1024 {
                return Err(ConfigError::invalid(field, size, "must be at least 1 KiB"));
            }
        }
        for (field, value, most) in [
            ("max_forks", self.max_forks, guts_protocol::forks::MAX_FORKS),
            (
                "max_refs_per_fork",
                self.max_refs_per_fork,
                guts_protocol::forks::MAX_FORK_REFS,
            ),
        ] {
            if value as usize > most {
                return Err(ConfigError::invalid(
                    field,
                    value,
                    format!("at most {most}"),
                ));
            }
        }
        for key in &self.blocked_keys {
            parse_key(key).map_err(|why| ConfigError::invalid("blocked_keys", key, why))?;
        }
        not_zero(&[
            ("anti_entropy_interval", self.anti_entropy_interval),
            ("transfer_stall_timeout", self.transfer_stall_timeout),
        ])
    }
}
