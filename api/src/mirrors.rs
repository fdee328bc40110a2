//! Mirrors as the API shows and makes them (`/api/v1/mirrors`).

use serde::{Deserialize, Serialize};

/// A new mirror (`POST /api/v1/mirrors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorRequest {
    /// The upstream: a URL git fetches from, or a local repository's path.
    pub upstream: String,
    /// The repository's name [default: the upstream's last path part].
    #[serde(default)]
    pub name: Option<String>,
    /// How often the upstream is fetched, e.g. "10m" [default: 10 minutes].
    #[serde(default)]
    pub every: Option<String>,
}

/// One mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorReport {
    /// The repository id.
    pub repository: String,
    /// Its name.
    pub name: String,
    /// Where it is fetched from.
    pub upstream: String,
    /// Seconds between fetches.
    pub every_secs: u64,
    /// When the last fetch ended (seconds since the epoch), if one has since the start.
    pub last_fetched: Option<u64>,
    /// Whether the last fetch signed a new snapshot (none if it failed).
    pub last_changed: Option<bool>,
    /// Why the last fetch failed.
    pub last_error: Option<String>,
}
