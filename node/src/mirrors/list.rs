//! The list of mirrors (`mirrors.toml`, format version 1) and how each one's last fetch
//! went.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use guts_api::mirrors::MirrorReport;
use guts_protocol::{RepoName, RepositoryId};
use serde::{Deserialize, Serialize};

use crate::error::NodeError;

/// The list, in the data dir.
pub const MIRRORS_FILE: &str = "mirrors.toml";
/// How often an upstream is fetched when no interval is given.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(600);
/// The shortest interval taken.
pub(super) const MIN_EVERY: Duration = Duration::from_secs(1);
/// The format written.
const VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    #[serde(default)]
    mirror: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    upstream: String,
    #[serde(with = "humantime_serde")]
    every: Duration,
}

/// One mirror and how its last fetch went.
#[derive(Debug, Clone)]
pub(super) struct Mirror {
    pub(super) id: RepositoryId,
    pub(super) name: RepoName,
    pub(super) upstream: String,
    pub(super) every: Duration,
    /// When its last fetch ended (seconds since the epoch), and how.
    pub(super) last: Option<(u64, Result<bool, String>)>,
    pub(super) running: bool,
}

/// The mirrors of this node.
#[derive(Clone)]
pub(crate) struct Mirrors {
    path: PathBuf,
    list: Arc<Mutex<BTreeMap<RepositoryId, Mirror>>>,
}

impl Mirrors {
    /// The list in `path` (none if the file does not exist); `owner` derives their ids.
    pub(crate) fn load(
        path: &Path,
        owner: &ed25519_dalek::VerifyingKey,
    ) -> Result<Mirrors, NodeError> {
        let bad = |reason: String| NodeError::Setup(format!("{}: {reason}", path.display()));
        let file: File = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| bad(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(bad(e.to_string())),
        };
        if !file.mirror.is_empty() && file.version != VERSION {
            return Err(bad(format!(
                "version = {}: this guts reads mirror lists of version {VERSION}",
                file.version
            )));
        }
        let mut list = BTreeMap::new();
        for entry in file.mirror {
            let name: RepoName = entry
                .name
                .parse()
                .map_err(|e| bad(format!("name = {:?}: {e}", entry.name)))?;
            let id = RepositoryId::derive(owner.as_bytes(), &name);
            list.insert(
                id,
                Mirror {
                    id,
                    name,
                    upstream: entry.upstream,
                    every: entry.every.max(MIN_EVERY),
                    last: None,
                    running: false,
                },
            );
        }
        Ok(Mirrors {
            path: path.to_owned(),
            list: Arc::new(Mutex::new(list)),
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<RepositoryId, Mirror>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the list.
    pub(super) fn save(&self) -> Result<(), NodeError> {
        let file = File {
            version: VERSION,
            mirror: self
                .lock()
                .values()
                .map(|m| Entry {
                    name: m.name.to_string(),
                    upstream: m.upstream.clone(),
                    every: m.every,
                })
                .collect(),
        };
        let text = format!(
            "# Repositories this node mirrors from an upstream (guts mirror add / remove).\n{}",
            toml::to_string_pretty(&file).unwrap_or_default()
        );
        guts_storage::write_file_atomically(&self.path, text.as_bytes())
            .map_err(|e| NodeError::Setup(format!("cannot write {}: {e}", self.path.display())))
    }

    pub(super) fn report(m: &Mirror) -> MirrorReport {
        MirrorReport {
            repository: m.id.to_string(),
            name: m.name.to_string(),
            upstream: m.upstream.clone(),
            every_secs: m.every.as_secs(),
            last_fetched: m.last.as_ref().map(|(at, _)| *at),
            last_changed: m.last.as_ref().and_then(|(_, r)| r.as_ref().ok().copied()),
            last_error: m.last.as_ref().and_then(|(_, r)| r.as_ref().err().cloned()),
        }
    }

    /// Mirrors whose fetch is due, marked running.
    pub(super) fn due(&self, now: u64) -> Vec<RepositoryId> {
        let mut list = self.lock();
        let mut due = Vec::new();
        for m in list.values_mut() {
            let next = m.last.as_ref().map_or(0, |(at, _)| at + m.every.as_secs());
            if !m.running && now >= next {
                m.running = true;
                due.push(m.id);
            }
        }
        due
    }
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
