//! `guts verify`: whether a clone's refs are what a repository's maintainers signed,
//! judged offline from the signed record that travels with the clone (a node publishes
//! it under [`RECORD_REF`], with the maintainers' views under `refs/guts/views/`).
//!
//! The record is judged as a node judges one from a peer (every signature, the identity
//! chain, the id derived from the first version); the canonical refs are computed from
//! its views with the clone's own commits, and each ref the clone took from the remote is
//! compared with them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::{ErrorCode, Repository};
use guts_protocol::record::{self, RECORD_REF, RecordError};
use guts_protocol::{ObjectId, RefName, RepoName, RepositoryId, RepositoryState};

use crate::repos::held::GitAncestry;

/// Where a published copy keeps each maintainer's view: `refs/guts/views/<key hex>/`.
pub const PUBLISHED_VIEWS_PREFIX: &str = "refs/guts/views/";

/// Why a clone cannot be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum CloneCheckError {
    /// Not a git repository (git's own reason).
    #[error("{path}: not a git repository git can open: {reason}")]
    NotARepository {
        /// Where.
        path: PathBuf,
        /// libgit2's reason (an ownership refusal says so).
        reason: String,
    },
    /// The named remote does not exist.
    #[error("no remote named {0:?} in this repository")]
    NoSuchRemote(String),
    /// The record was not fetched.
    #[error(
        "no signed record in this clone ({RECORD_REF} was not fetched); fetch it once with\n  git fetch {remote} '+refs/guts/*:refs/guts/*'\nor clone with\n  git clone -c remote.origin.fetch='+refs/guts/*:refs/guts/*' URL"
    )]
    NoRecord {
        /// The remote to fetch it from.
        remote: String,
    },
    /// The record's bytes are not a record.
    #[error("{local} is not a readable record: {source}")]
    BadRecord {
        /// The local ref it was read from.
        local: String,
        /// Why.
        source: RecordError,
    },
    /// The record's first version is malformed: it proves nothing.
    #[error("the record's identity is malformed: {0}")]
    BadIdentity(String),
    /// Reading the clone failed.
    #[error("reading the clone: {0}")]
    Git(#[from] git2::Error),
}

/// How one ref of the clone compares with the signed refs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// At the target the maintainers signed.
    Matches,
    /// Elsewhere than the signed target.
    Differs,
    /// A ref taken from the remote that no signed ref names.
    NotSigned,
    /// Signed, but this clone did not take it (a single-branch clone): not a failure.
    NotFetched,
}

/// One ref, by its name in the repository.
#[derive(Debug, Clone)]
pub struct RefCheck {
    /// Its name in the repository (`refs/heads/main`).
    pub name: String,
    /// Its name in the clone (`refs/remotes/origin/main`), if the clone has it.
    pub local: Option<String>,
    /// What the maintainers signed.
    pub signed: Option<ObjectId>,
    /// What the clone has.
    pub found: Option<ObjectId>,
    /// The comparison.
    pub verdict: Verdict,
}

/// The outcome of checking a clone.
#[derive(Debug, Clone)]
pub struct CloneCheck {
    /// The remote whose refs were checked, if the clone has one.
    pub remote: Option<String>,
    /// Its URL.
    pub url: Option<String>,
    /// The repository the record is of.
    pub repository: RepositoryId,
    /// Its name.
    pub name: RepoName,
    /// The identity version in effect.
    pub version: u64,
    /// How many maintainers it names.
    pub maintainers: usize,
    /// How many must agree.
    pub threshold: u16,
    /// The id in the remote's URL, if it names one.
    pub url_id: Option<RepositoryId>,
    /// Items of the record refused (a forged signature, a broken chain): any is a failure.
    pub refused: Vec<String>,
    /// Every ref signed or taken, by name.
    pub refs: Vec<RefCheck>,
    /// The branch the maintainers name as HEAD.
    pub head: Option<RefName>,
}

impl CloneCheck {
    /// Whether the clone is exactly what was signed, as far as it took it: every ref
    /// taken matches, nothing in the record was refused, and the URL's id (if any) is
    /// the record's.
    pub fn passed(&self) -> bool {
        self.refused.is_empty()
            && self.url_id.is_none_or(|id| id == self.repository)
            && self
                .refs
                .iter()
                .all(|r| matches!(r.verdict, Verdict::Matches | Verdict::NotFetched))
    }
}

/// Checks the clone at `path` against the record fetched from `remote` (by default its
/// only remote, or `origin`; a clone with no remote, e.g. a copied mirror, is read with
/// refs named as in the repository).
pub fn check_clone(path: &Path, remote: Option<&str>) -> Result<CloneCheck, CloneCheckError> {
    let repo = Repository::open(path).map_err(|e| CloneCheckError::NotARepository {
        path: path.to_owned(),
        reason: e.message().to_owned(),
    })?;
    let remote = pick_remote(&repo, remote)?;
    let mapping = Mapping::of(&repo, remote.as_deref())?;
    let remote_name = remote.clone().unwrap_or_else(|| "origin".into());

    let local_record = mapping.local(RECORD_REF);
    let blob = match repo
        .find_reference(&local_record)
        .and_then(|r| r.peel_to_blob())
    {
        Ok(b) => b,
        Err(e) if e.code() == ErrorCode::NotFound => {
            return Err(CloneCheckError::NoRecord {
                remote: remote_name,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let shared = record::decode(blob.content()).map_err(|source| CloneCheckError::BadRecord {
        local: local_record.clone(),
        source,
    })?;
    let (state, merged) = RepositoryState::from_peer(shared)
        .map_err(|e| CloneCheckError::BadIdentity(e.to_string()))?;
    let canonical = state.canonical(&GitAncestry(&repo));
    let identity = state.identity.current();

    let mut refs: BTreeMap<String, RefCheck> = BTreeMap::new();
    for (name, target) in &canonical.refs {
        let local = mapping.local(name.as_str());
        let found = target_of(&repo, &local);
        let verdict = match found {
            None => Verdict::NotFetched,
            Some(f) if f == *target => Verdict::Matches,
            Some(_) => Verdict::Differs,
        };
        refs.insert(
            name.as_str().to_owned(),
            RefCheck {
                name: name.as_str().to_owned(),
                local: found.map(|_| local),
                signed: Some(*target),
                found,
                verdict,
            },
        );
    }
    // Refs the clone took from the remote that nothing signed.
    for reference in repo.references()?.flatten() {
        let (Ok(local), Some(found)) = (reference.name(), reference.target()) else {
            continue;
        };
        let Some(name) = mapping.remote(local) else {
            continue;
        };
        let checked = name.starts_with("refs/heads/") || name.starts_with("refs/tags/");
        if checked && !refs.contains_key(&name) {
            refs.insert(
                name.clone(),
                RefCheck {
                    name,
                    local: Some(local.to_owned()),
                    signed: None,
                    found: Some(crate::repos::object_id(found)),
                    verdict: Verdict::NotSigned,
                },
            );
        }
    }

    let url = remote
        .as_deref()
        .and_then(|r| repo.find_remote(r).ok())
        .and_then(|r| r.url().ok().map(str::to_owned));
    Ok(CloneCheck {
        url_id: url.as_deref().and_then(id_in_url),
        url,
        remote,
        repository: state.identity.repository(),
        name: identity.name.clone(),
        version: identity.version,
        maintainers: identity.maintainers.len(),
        threshold: identity.threshold,
        refused: merged.refused.iter().map(ToString::to_string).collect(),
        refs: refs.into_values().collect(),
        head: canonical.head,
    })
}

/// The remote asked for, else the clone's only remote, else `origin` if it has one;
/// `None` for a clone without remotes.
fn pick_remote(repo: &Repository, asked: Option<&str>) -> Result<Option<String>, CloneCheckError> {
    let names: Vec<String> = repo
        .remotes()?
        .iter()
        .flatten()
        .flatten()
        .map(str::to_owned)
        .collect();
    if let Some(asked) = asked {
        return if names.iter().any(|n| n == asked) {
            Ok(Some(asked.to_owned()))
        } else {
            Err(CloneCheckError::NoSuchRemote(asked.to_owned()))
        };
    }
    Ok(match names.as_slice() {
        [only] => Some(only.clone()),
        _ => names.iter().find(|n| *n == "origin").cloned(),
    })
}

/// Where the remote's refs are in the clone: its fetch refspecs (tags that no refspec
/// places are where git's tag following puts them, under their own names).
struct Mapping {
    /// (source pattern, destination pattern) of each fetch refspec.
    specs: Vec<(String, String)>,
}

impl Mapping {
    fn of(repo: &Repository, remote: Option<&str>) -> Result<Mapping, CloneCheckError> {
        let mut specs = Vec::new();
        if let Some(remote) = remote {
            let remote = repo.find_remote(remote)?;
            for spec in remote.refspecs() {
                if spec.direction() != git2::Direction::Fetch {
                    continue;
                }
                if let (Ok(src), Ok(dst)) = (spec.src(), spec.dst()) {
                    specs.push((src.to_owned(), dst.to_owned()));
                }
            }
        }
        Ok(Mapping { specs })
    }

    /// The clone's name for the remote's ref `name`.
    fn local(&self, name: &str) -> String {
        self.specs
            .iter()
            .find_map(|(src, dst)| apply(src, dst, name))
            .unwrap_or_else(|| name.to_owned())
    }

    /// The remote's name for the clone's ref `local`, if it came from the remote: a
    /// refspec places it, or (with no refspec for tags, or no remote) it is a tag or, in
    /// a clone without remotes, anything.
    fn remote(&self, local: &str) -> Option<String> {
        if let Some(name) = self
            .specs
            .iter()
            .find_map(|(src, dst)| apply(dst, src, local))
        {
            return Some(name);
        }
        let placed_elsewhere = self
            .specs
            .iter()
            .any(|(src, _)| apply(src, src, local).is_some());
        let tag = local.starts_with("refs/tags/");
        ((self.specs.is_empty() || tag) && !placed_elsewhere).then(|| local.to_owned())
    }
}

/// `name` through a refspec side `from` (a name, or a pattern with one `*`) to `to`.
fn apply(from: &str, to: &str, name: &str) -> Option<String> {
    match from.split_once('*') {
        None => (from == name).then(|| to.to_owned()),
        Some((before, after)) => {
            let middle = name.strip_prefix(before)?.strip_suffix(after)?;
            Some(to.replacen('*', middle, 1))
        }
    }
}

/// A ref's direct target, if the clone has it.
fn target_of(repo: &Repository, name: &str) -> Option<ObjectId> {
    repo.find_reference(name)
        .ok()?
        .target()
        .map(crate::repos::object_id)
}

/// The repository id a URL ends with (`http://host/<id>`, `guts://<id>`, `.../<id>.git`).
fn id_in_url(url: &str) -> Option<RepositoryId> {
    let last = url.trim_end_matches('/').rsplit(['/', ':']).next()?;
    last.strip_suffix(".git").unwrap_or(last).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refspecs_place_names_both_ways() {
        let m = Mapping {
            specs: vec![
                ("refs/heads/*".into(), "refs/remotes/origin/*".into()),
                ("refs/guts/*".into(), "refs/guts/*".into()),
            ],
        };
        assert_eq!(m.local("refs/heads/main"), "refs/remotes/origin/main");
        assert_eq!(m.local(RECORD_REF), RECORD_REF);
        assert_eq!(m.local("refs/tags/v1"), "refs/tags/v1");
        assert_eq!(
            m.remote("refs/remotes/origin/dev").as_deref(),
            Some("refs/heads/dev")
        );
        assert_eq!(m.remote("refs/tags/v1").as_deref(), Some("refs/tags/v1"));
        // The user's own branch was not taken from the remote.
        assert_eq!(m.remote("refs/heads/main"), None);
        let mirror = Mapping {
            specs: vec![("refs/*".into(), "refs/*".into())],
        };
        assert_eq!(
            mirror.remote("refs/heads/x").as_deref(),
            Some("refs/heads/x")
        );
    }

    #[test]
    fn the_id_is_the_urls_last_part() {
        let id = RepositoryId::from_bytes([7; 20]);
        for url in [
            format!("http://host:9280/{id}"),
            format!("http://host/{id}.git/"),
            format!("guts://{id}"),
        ] {
            assert_eq!(id_in_url(&url), Some(id), "{url}");
        }
        assert_eq!(id_in_url("https://example.com/some/project.git"), None);
    }
}
