//! Contributors' forks in the store: each key's signed refs of a repository it does not
//! maintain (see `guts_protocol::forks`).
//!
//! The forks held are one file beside the repository's record, `guts-forks`: a format
//! byte (1) and the postcard encoding of the forks, by key. Each fork's refs are in git
//! under `refs/forks/<key hex>/`, written from that file. Releases before forks ignore
//! the file and those refs, and go on serving the canonical refs. A fork's objects come in
//! through the same quarantine, limits and checks as a snapshot's; only then do the file
//! and the refs move.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;

use ed25519_dalek::{SigningKey, VerifyingKey};
use git2::Repository;
use guts_protocol::forks::{ForkError, Forks};
use guts_protocol::refs::MAX_REFS;
use guts_protocol::views::ViewAdded;
use guts_protocol::{IdentityHistory, ObjectId, RefName, RepositoryId, SignedRefs};

use super::changes::ChangePolicy;
use super::ingest::{Objects, index_objects};
use super::packed_refs::{remove_loose_refs, write_packed_refs};
use super::ref_updates::{apply_update, choose_head};
use super::verify::check_targets;
use super::{PackStats, Pushed, RefUpdate, Repositories, oid, read_quarantine};
use crate::StorageError;
use crate::fs::write_atomically;

/// Where each fork's refs are in git: `refs/forks/<key hex>/heads/main` for a fork's
/// `refs/heads/main`.
pub const FORKS_PREFIX: &str = "refs/forks/";
/// The file of the forks held.
const FORKS_FILE: &str = "guts-forks";
/// The format byte this build writes and reads.
const FORKS_FORMAT: u8 = 1;
/// Largest forks file read: [`guts_protocol::forks::MAX_FORKS`] forks of a few hundred
/// refs.
const MAX_FORKS_FILE: u64 = 256 * 1024 * 1024;

/// What [`Repositories::accept_forks`] did.
#[derive(Debug, Default)]
pub struct ForksAccepted {
    /// The forks taken: key and sequence.
    pub taken: Vec<(VerifyingKey, u64)>,
    /// Forks left out by this node's policy or not newer, and why (no fault of the
    /// sender's).
    pub left_out: Vec<(VerifyingKey, String)>,
    /// Keys seen signing two different forks with one sequence, and that sequence.
    pub equivocations: Vec<(VerifyingKey, u64)>,
    /// The pack received.
    pub stats: PackStats,
}

/// Where `fork`'s ref `name` is in git.
pub fn fork_ref(key: &VerifyingKey, name: &RefName) -> String {
    let rest = name.as_str().strip_prefix("refs/").unwrap_or(name.as_str());
    format!("{FORKS_PREFIX}{}/{rest}", hex::encode(key.as_bytes()))
}

impl Repositories {
    /// The forks of `id` held (none if it is not held).
    pub fn forks(&self, id: &RepositoryId) -> Result<Forks, StorageError> {
        let path = self.path(id).join(FORKS_FILE);
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.clone(),
            reason,
        };
        let bytes = match fs::metadata(&path) {
            Ok(m) if m.len() > MAX_FORKS_FILE => {
                return Err(corrupt(format!(
                    "{} bytes; at most {MAX_FORKS_FILE} are read",
                    m.len()
                )));
            }
            Ok(_) => fs::read(&path).map_err(|source| StorageError::Read {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Forks::default()),
            Err(source) => return Err(StorageError::Read { path, source }),
        };
        match bytes.split_first() {
            Some((&FORKS_FORMAT, body)) => postcard::from_bytes::<Vec<SignedRefs>>(body)
                .map(Forks::restore)
                .map_err(|e| corrupt(e.to_string())),
            Some((other, _)) => Err(corrupt(format!(
                "forks format {other}: this build reads format {FORKS_FORMAT}"
            ))),
            None => Err(corrupt("empty".into())),
        }
    }

    /// Whether the maintainers of `id` turned contributions off, by the moderation
    /// changes held.
    pub fn contributions_closed(
        &self,
        id: &RepositoryId,
        identity: &IdentityHistory,
    ) -> Result<bool, StorageError> {
        let graph = self.moderation_changes(id)?;
        Ok(guts_cob::Moderation::replay(&graph, identity.current()).closed)
    }

    /// Takes the forks of `offered` that this node keeps (see [`ChangePolicy`]: not a
    /// blocked key, contributions on, within the limits on forks), with the objects of
    /// `pack`. A fork that does not verify refuses them all (the sender is at fault);
    /// one left out by policy does not. Blocking.
    pub fn accept_forks(
        &self,
        id: &RepositoryId,
        offered: Vec<SignedRefs>,
        pack: Option<&mut dyn Iterator<Item = io::Result<Vec<u8>>>>,
        policy: &ChangePolicy,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<ForksAccepted, StorageError> {
        let lock = self.lock(id);
        let _guard = self.write(id, &lock)?;
        self.accept_forks_locked(id, offered, pack, policy, progress)
    }

    fn accept_forks_locked(
        &self,
        id: &RepositoryId,
        offered: Vec<SignedRefs>,
        pack: Option<&mut dyn Iterator<Item = io::Result<Vec<u8>>>>,
        policy: &ChangePolicy,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<ForksAccepted, StorageError> {
        let identity = self
            .held(id)?
            .ok_or(StorageError::UnknownRepository(*id))?
            .into_state()
            .identity;
        let repo = Repository::open_bare(self.path(id))
            .map_err(|_| StorageError::UnknownRepository(*id))?;
        let closed = policy.maintainers_only || self.contributions_closed(id, &identity)?;
        let held = self.forks(id)?;
        let mut next = held.clone();
        let mut accepted = ForksAccepted::default();
        for fork in offered {
            let (key, sequence) = (fork.signed.signer, fork.sequence());
            if policy.blocked.contains(key.as_bytes()) {
                accepted
                    .left_out
                    .push((key, "its key is blocked here".into()));
                continue;
            }
            if closed {
                accepted.left_out.push((
                    key,
                    format!("contributions to {id} are off: only its maintainers publish"),
                ));
                continue;
            }
            match next.add(fork, &identity, &policy.forks) {
                Ok(ViewAdded::Unchanged) | Ok(ViewAdded::Equivocation { kept: false }) => {}
                Ok(ViewAdded::Equivocation { kept: true }) => {
                    accepted.equivocations.push((key, sequence));
                    accepted.taken.push((key, sequence));
                }
                Ok(_) => accepted.taken.push((key, sequence)),
                Err(e) if e.is_forged() => {
                    return Err(StorageError::BadFork {
                        repository: *id,
                        key: hex::encode(key.as_bytes()),
                        reason: e.to_string(),
                    });
                }
                Err(ForkError::Stale { .. }) => {}
                Err(e) => accepted.left_out.push((key, e.to_string())),
            }
        }
        // Only the objects of what is taken are checked and kept.
        let mut targets: Vec<ObjectId> = accepted
            .taken
            .iter()
            .filter_map(|(k, _)| next.of(k))
            .flat_map(|f| f.refs.values().copied())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let objects = match pack {
            Some(chunks) if !accepted.taken.is_empty() => {
                Objects::Stream(chunks, super::packer::Fsck::Strict)
            }
            _ => Objects::Held,
        };
        if accepted.taken.is_empty() {
            return Ok(accepted);
        }
        let (quarantine, stats) = index_objects(self, &repo, id, objects, progress)?;
        accepted.stats = stats;
        if let Some(q) = &quarantine {
            read_quarantine(&repo, q.dir())?;
        }
        let mut known: Vec<git2::Oid> = self
            .servable(id)?
            .unwrap_or_default()
            .iter()
            .map(oid)
            .collect();
        known.sort_unstable();
        targets.retain(|t| known.binary_search(&oid(t)).is_err());
        check_targets(
            &repo,
            quarantine.as_ref().map(|q| q.dir()),
            *id,
            &targets,
            &known,
            stats.objects,
            &self.limits,
        )?;
        if let Some(q) = quarantine {
            q.promote(&self.path(id).join("objects").join("pack"))?;
        }
        self.forget_clean_pack(id)?;
        self.write_forks(&repo, &next)?;
        Ok(accepted)
    }

    /// Writes the forks file, then the refs it gives.
    fn write_forks(&self, repo: &Repository, forks: &Forks) -> Result<(), StorageError> {
        let path = repo.path().join(FORKS_FILE);
        let all: Vec<&SignedRefs> = forks.iter().collect();
        let mut bytes = vec![FORKS_FORMAT];
        bytes.extend(postcard::to_allocvec(&all).expect("forks always encode"));
        write_atomically(&path, &bytes).map_err(|source| StorageError::Write {
            path: path.clone(),
            source,
        })?;
        write_fork_refs(repo, forks)
    }

    /// A push by `key`, who does not maintain `id`: the updates move its fork (empty
    /// until its first push), signed with its next sequence. The caller holds the lock;
    /// `src` is the push area, whose new objects are packed and taken as a peer's would be.
    pub(super) fn push_fork_locked(
        &self,
        id: &RepositoryId,
        src: &Repository,
        updates: &[RefUpdate],
        key: &SigningKey,
        policy: &ChangePolicy,
    ) -> Result<Pushed, StorageError> {
        let identity = self
            .held(id)?
            .ok_or(StorageError::UnknownRepository(*id))?
            .into_state()
            .identity;
        let signer = key.verifying_key();
        let own = self.forks(id)?.of(&signer).cloned();
        let (mut refs, old_head) = match &own {
            Some(f) => (f.refs.clone(), f.signed.header.head.clone()),
            None => (Default::default(), None),
        };
        let mut results = Vec::new();
        for update in updates {
            let outcome = apply_update(src, &mut refs, update);
            results.push((update.name.clone(), outcome));
        }
        let head = choose_head(old_head, &refs);
        if let Some(f) = &own
            && f.refs == refs
            && f.signed.header.head == head
        {
            return Ok(Pushed {
                snapshot: f.clone(),
                shared: false,
                fork: true,
                results,
                changed: false,
            });
        }
        if refs.len() > MAX_REFS {
            return Err(StorageError::BadFork {
                repository: *id,
                key: hex::encode(signer.as_bytes()),
                reason: format!("{} refs; at most {MAX_REFS}", refs.len()),
            });
        }
        let sequence = own.as_ref().map_or(1, |f| f.sequence() + 1);
        let name = identity.genesis().name.clone();
        let fork = SignedRefs::sign_view(key, *id, name, sequence, head, refs)?;

        // One pack of what the fork reaches and the store lacks.
        let targets: Vec<ObjectId> = fork.refs.values().copied().collect();
        let pack = self.pack_for_store(id, src, &targets)?;
        let mut chunks = std::iter::once(Ok(pack));
        let accepted = self.accept_forks_locked(
            id,
            vec![fork.clone()],
            Some(&mut chunks),
            policy,
            &mut |_| {},
        )?;
        if let Some((_, why)) = accepted.left_out.first() {
            return Err(StorageError::ForkRefused {
                repository: *id,
                reason: why.clone(),
            });
        }
        Ok(Pushed {
            snapshot: fork,
            shared: false,
            fork: true,
            results,
            changed: true,
        })
    }

    /// The refs of every fork held, for what the store may serve.
    pub(super) fn fork_targets(&self, id: &RepositoryId) -> Result<Vec<ObjectId>, StorageError> {
        Ok(self
            .forks(id)?
            .iter()
            .flat_map(|f| f.refs.values().copied())
            .collect())
    }
}

/// Points `refs/forks/` at exactly what `forks` hold.
fn write_fork_refs(repo: &Repository, forks: &Forks) -> Result<(), StorageError> {
    let mut refs: BTreeMap<String, ObjectId> = BTreeMap::new();
    for fork in forks.iter() {
        for (name, target) in &fork.refs {
            refs.insert(fork_ref(&fork.signed.signer, name), *target);
        }
    }
    write_packed_refs(repo.path(), &[FORKS_PREFIX], &refs)?;
    remove_loose_refs(repo.path(), &[FORKS_PREFIX])
}
