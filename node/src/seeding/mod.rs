//! The seeding policy: which repositories this node keeps beyond those it owns or
//! follows, which it refuses outright, and how much of their contributions it keeps.
//!
//! Rules name a repository or a key (every repository the key created or maintains).
//! A block wins over any seed: nothing of a blocked repository or key is fetched, stored,
//! served or relayed, and what was held is removed when the block is applied. A seed
//! adopts the repository as soon as the node hears of it (no adoption limits: the
//! operator named it), with its contributions scoped: all, the maintainers' only, or
//! none. Repositories no rule names follow `default` (else the node's `replicate`).
//!
//! The policy lives in a file ([`file`]) that `guts seed` / `guts block` rewrite and that
//! the node reads again on SIGHUP; [`Policies`] holds the one in effect.

mod apply;
mod file;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ed25519_dalek::VerifyingKey;
use guts_protocol::RepositoryId;
use guts_storage::{ChangePolicy, Held};

use crate::config::Replicate;

/// The policy file, in the data dir.
pub const POLICY_FILE: &str = "seeding.toml";

/// How much of a seeded repository's contributions (patches, issues, forks) is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everyone's, within the node's limits.
    All,
    /// Its maintainers' only.
    Maintainers,
    /// None: the repository's refs alone.
    None,
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Scope::All),
            "maintainers" => Ok(Scope::Maintainers),
            "none" => Ok(Scope::None),
            _ => Err("expected all, maintainers or none".into()),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::All => "all",
            Scope::Maintainers => "maintainers",
            Scope::None => "none",
        })
    }
}

/// What a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every repository this key created or maintains.
    Key(VerifyingKey),
    /// One repository.
    Repo(RepositoryId),
}

impl Target {
    fn matches(&self, id: &RepositoryId, keys: &[VerifyingKey]) -> bool {
        match self {
            Target::Key(k) => keys.contains(k),
            Target::Repo(r) => r == id,
        }
    }

    /// Reads a key (64 hex digits) or a repository id (`guts://` optional), naming the
    /// bad value.
    pub fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim();
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return crate::maintainers::parse_key(text).map(Target::Key);
        }
        text.strip_prefix("guts://")
            .unwrap_or(text)
            .parse::<RepositoryId>()
            .map(Target::Repo)
            .map_err(|e| {
                format!("{text:?} is neither a key (64 hex digits) nor a repository id: {e}")
            })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Key(k) => write!(f, "key {}", hex::encode(k.as_bytes())),
            Target::Repo(id) => write!(f, "repository {id}"),
        }
    }
}

/// A seed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What it seeds.
    pub target: Target,
    /// What of their contributions is kept.
    pub contributions: Scope,
}

/// The rules, in the file's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedingPolicy {
    /// For repositories no rule names: `None` is the node's `replicate` setting.
    pub default: Option<Replicate>,
    /// Seed rules.
    pub seed: Vec<Rule>,
    /// Blocked repositories and keys.
    pub block: Vec<Target>,
}

/// What the policy says of one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing of it here.
    Block,
    /// Kept, with this much of its contributions.
    Seed(Scope),
    /// No rule names it: the default applies.
    Default,
}

impl SeedingPolicy {
    /// The decision for repository `id`, created or maintained by `keys` (as far as
    /// known: an unknown repository is judged by its id alone).
    pub fn decide(&self, id: &RepositoryId, keys: &[VerifyingKey]) -> Decision {
        if self.block.iter().any(|t| t.matches(id, keys)) {
            return Decision::Block;
        }
        // A rule for the repository itself before one for its keys.
        let by_repo = self
            .seed
            .iter()
            .find(|r| matches!(r.target, Target::Repo(r) if r == *id));
        match by_repo.or_else(|| self.seed.iter().find(|r| r.target.matches(id, keys))) {
            Some(rule) => Decision::Seed(rule.contributions),
            None => Decision::Default,
        }
    }

    /// Whether any rule names a key: only then does a decision need the keys of what is
    /// held (reading a repository's record for every sync costs at 10,000 of them).
    pub fn names_keys(&self) -> bool {
        self.seed.iter().any(|r| matches!(r.target, Target::Key(_)))
            || self.block.iter().any(|t| matches!(t, Target::Key(_)))
    }

    /// The keys blocked.
    pub fn blocked_keys(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.block.iter().filter_map(|t| match t {
            Target::Key(k) => Some(k),
            Target::Repo(_) => None,
        })
    }

    /// The repositories seeded by id.
    pub fn seeded_repositories(&self) -> impl Iterator<Item = &RepositoryId> {
        self.seed.iter().filter_map(|r| match &r.target {
            Target::Repo(id) => Some(id),
            Target::Key(_) => None,
        })
    }

    /// Whether any rule seeds by key (peers' lists are then worth reading for them).
    pub fn seeds_keys(&self) -> bool {
        self.seed.iter().any(|r| matches!(r.target, Target::Key(_)))
    }

    /// Adds or replaces the seed rule for `target`; drops a block of it.
    pub fn seed(&mut self, target: Target, contributions: Scope) {
        self.block.retain(|t| *t != target);
        match self.seed.iter_mut().find(|r| r.target == target) {
            Some(rule) => rule.contributions = contributions,
            None => self.seed.push(Rule {
                target,
                contributions,
            }),
        }
    }

    /// Blocks `target`; drops a seed of it.
    pub fn block(&mut self, target: Target) {
        self.seed.retain(|r| r.target != target);
        if !self.block.contains(&target) {
            self.block.push(target);
        }
    }

    /// Drops any rule for `target`; whether there was one.
    pub fn forget(&mut self, target: &Target) -> bool {
        let before = self.seed.len() + self.block.len();
        self.seed.retain(|r| r.target != *target);
        self.block.retain(|t| t != target);
        before != self.seed.len() + self.block.len()
    }
}

/// The keys a held repository answers to: its creator and its maintainers now.
pub(crate) fn keys_of(held: &Held) -> Vec<VerifyingKey> {
    match held {
        Held::Owner(snapshot) => vec![snapshot.signed.signer],
        Held::Shared(state) => {
            let mut keys = vec![state.identity.genesis().maintainers[0]];
            keys.extend(state.identity.current().maintainers.iter().copied());
            keys
        }
    }
}

/// Why the policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Reading or writing it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Its text is wrong.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry and value.
        reason: String,
    },
}

/// The policy in effect, its file, and the change policy it gives with the node's
/// settings.
#[derive(Clone)]
pub(crate) struct Policies {
    path: PathBuf,
    /// The node's own settings' change policy (its `blocked_keys` among them).
    base: ChangePolicy,
    current: Arc<RwLock<Arc<SeedingPolicy>>>,
}

impl Policies {
    /// The policy in `path` (none if the file does not exist yet).
    pub(crate) fn load(path: &Path, base: ChangePolicy) -> Result<Policies, PolicyError> {
        let policy = read(path)?;
        Ok(Policies {
            path: path.to_owned(),
            base,
            current: Arc::new(RwLock::new(Arc::new(policy))),
        })
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The policy in effect.
    pub(crate) fn current(&self) -> Arc<SeedingPolicy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What is kept of contributions: the node's settings, with the policy's blocked
    /// keys added.
    pub(crate) fn changes(&self) -> ChangePolicy {
        let mut changes = self.base.clone();
        changes
            .blocked
            .extend(self.current().blocked_keys().map(|k| *k.as_bytes()));
        changes
    }

    /// Reads the file again; on an error the policy in effect stays.
    pub(crate) fn reload(&self) -> Result<Arc<SeedingPolicy>, PolicyError> {
        let policy = Arc::new(read(&self.path)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = policy.clone();
        Ok(policy)
    }

    /// Changes the policy with `edit`, writes the file, and puts it in effect.
    pub(crate) fn update(
        &self,
        edit: impl FnOnce(&mut SeedingPolicy),
    ) -> Result<Arc<SeedingPolicy>, PolicyError> {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut next = (**guard).clone();
        edit(&mut next);
        let io = |source| PolicyError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        guts_storage::write_file_atomically(&self.path, file::render(&next).as_bytes())
            .map_err(io)?;
        let next = Arc::new(next);
        *guard = next.clone();
        Ok(next)
    }
}

fn read(path: &Path) -> Result<SeedingPolicy, PolicyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => file::parse(&text).map_err(|reason| PolicyError::Invalid {
            path: path.to_owned(),
            reason,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SeedingPolicy::default()),
        Err(source) => Err(PolicyError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    fn key(seed: u8) -> VerifyingKey {
        SigningKey::from_bytes(&[seed; 32]).verifying_key()
    }

    fn id(n: u8) -> RepositoryId {
        RepositoryId::from_bytes([n; 20])
    }

    #[test]
    fn a_block_wins_a_repository_rule_comes_before_a_key_rule() {
        let mut p = SeedingPolicy::default();
        p.seed(Target::Key(key(1)), Scope::Maintainers);
        p.seed(Target::Repo(id(2)), Scope::None);
        assert_eq!(
            p.decide(&id(1), &[key(1)]),
            Decision::Seed(Scope::Maintainers)
        );
        assert_eq!(p.decide(&id(2), &[key(1)]), Decision::Seed(Scope::None));
        assert_eq!(p.decide(&id(3), &[key(3)]), Decision::Default);
        // A blocked co-maintainer blocks the repository.
        p.block(Target::Key(key(9)));
        assert_eq!(p.decide(&id(1), &[key(1), key(9)]), Decision::Block);
        p.block(Target::Repo(id(2)));
        assert_eq!(p.decide(&id(2), &[key(1)]), Decision::Block);
        assert!(
            !p.seeded_repositories().any(|r| *r == id(2)),
            "a block drops the seed"
        );
        assert!(p.forget(&Target::Repo(id(2))));
        assert_eq!(
            p.decide(&id(2), &[key(1)]),
            Decision::Seed(Scope::Maintainers)
        );
    }

    #[test]
    fn the_file_reads_back_what_was_written_and_names_bad_values() {
        let mut p = SeedingPolicy {
            default: Some(Replicate::All),
            ..SeedingPolicy::default()
        };
        p.seed(Target::Key(key(1)), Scope::Maintainers);
        p.seed(Target::Repo(id(2)), Scope::All);
        p.block(Target::Key(key(3)));
        let text = file::render(&p);
        assert!(text.starts_with("# guts seeding policy"), "{text}");
        assert_eq!(file::parse(&text).unwrap(), p);

        let bad = |text: &str| file::parse(text).unwrap_err();
        assert!(bad("version = 2").contains("version = 2"));
        assert!(bad("default = \"some\"").contains("\"some\""));
        let e = bad("[[seed]]\nkey = \"abc\"");
        assert!(e.contains("seed #1") && e.contains("\"abc\""), "{e}");
        let e = bad(&format!(
            "[[seed]]\nrepo = \"{}\"\ncontributions = \"few\"",
            id(1)
        ));
        assert!(e.contains("\"few\""), "{e}");
        assert!(bad("[[block]]\n").contains("block #1"));
        assert!(bad("[[seed]]\nkey = \"x\"\nrepo = \"y\"").contains("not both"));
        assert!(bad("sede = 1").contains("sede"), "unknown keys are named");
    }

    #[test]
    fn targets_are_told_apart_by_form() {
        let k = hex::encode(key(1).as_bytes());
        assert_eq!(Target::parse(&k), Ok(Target::Key(key(1))));
        assert_eq!(
            Target::parse(&format!("guts://{}", id(4))),
            Ok(Target::Repo(id(4)))
        );
        assert!(
            Target::parse("nonsense")
                .unwrap_err()
                .contains("\"nonsense\"")
        );
    }
}
