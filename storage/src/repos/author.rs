//! Authoring by the node's owner: importing a local git repository, creating an empty
//! one, and pushes through a staging area; each signs a new snapshot.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use ed25519_dalek::SigningKey;
use git2::Repository;
use guts_protocol::refs::Refs;
use guts_protocol::{ObjectId, RefName, RepoName, RepositoryId, SignedRefs};

use super::held::Held;
use super::ingest::Objects;
use super::packer::{Fsck, pack_objects};
use super::ref_updates::{apply_update, choose_head};
use super::verify::check_targets;
use super::{Imported, PUSH_PREFIX, Pushed, RefUpdate, Repositories, git, object_id, oid};
use crate::StorageError;

impl Repositories {
    /// Makes the local git repository at `source` a repository owned by `key`: its
    /// branches and tags are signed as a new snapshot (sequence one higher than the last,
    /// if it was imported before) and the objects they need come in as a pack built from
    /// `source`, through the same verified path as a fetch from a peer. Nothing changes
    /// if its refs are those of the current snapshot.
    pub fn import(
        &self,
        source: &Path,
        name: Option<RepoName>,
        key: &SigningKey,
    ) -> Result<Imported, StorageError> {
        // libgit2's reason is the useful part: "could not find repository", or that
        // the directory's owner is not this user (git's safe.directory rule).
        let not_git = |e: git2::Error| StorageError::NotAGitRepository {
            path: source.to_owned(),
            reason: e.message().to_owned(),
        };
        let src = Repository::open(source).map_err(not_git)?;
        let name = match name {
            Some(n) => n,
            None => default_name(source, &src)?,
        };
        let id = RepositoryId::derive(key.verifying_key().as_bytes(), &name);
        let lock = self.lock(&id);
        let _guard = self.write(&id, &lock)?;

        let mut refs = Refs::new();
        let mut skipped = Vec::new();
        for glob in ["refs/heads/*", "refs/tags/*"] {
            for reference in src.references_glob(glob).map_err(git("listing refs"))? {
                let reference = reference.map_err(git("listing refs"))?;
                let Ok(full) = reference.name().map(str::to_owned) else {
                    continue;
                };
                let Some(target) = reference.resolve().ok().and_then(|r| r.target()) else {
                    continue;
                };
                match full.parse::<RefName>() {
                    Ok(name) => {
                        refs.insert(name, object_id(target));
                    }
                    Err(_) => skipped.push(full),
                }
            }
        }
        if !skipped.is_empty() {
            tracing::warn!(
                ?skipped,
                "refs with names git accepts but Guts does not were left out"
            );
        }
        if refs.is_empty() {
            return Err(StorageError::NothingToImport {
                path: source.to_owned(),
            });
        }
        let head = src
            .find_reference("HEAD")
            .ok()
            .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_owned))
            .and_then(|t| t.parse::<RefName>().ok())
            .filter(|h| refs.contains_key(h))
            .or_else(|| {
                ["refs/heads/main", "refs/heads/master"]
                    .iter()
                    .filter_map(|n| n.parse::<RefName>().ok())
                    .find(|n| refs.contains_key(n))
            });

        let previous = match self.held(&id)? {
            Some(Held::Shared(_)) => return Err(StorageError::HasMaintainers(id)),
            Some(Held::Owner(snapshot)) => Some(snapshot),
            None => None,
        };
        if let Some(prev) = &previous
            && prev.refs == refs
            && prev.signed.header.head == head
        {
            return Ok(Imported {
                snapshot: prev.clone(),
                changed: false,
            });
        }
        let snapshot = self.publish(src, None, key, name, refs, head, previous.as_ref())?;
        Ok(Imported {
            snapshot,
            changed: true,
        })
    }

    /// Signs the next snapshot of `name` with `refs` and `head`, and applies it with the
    /// objects it needs from `src` (see [`Self::publish_record`]). The caller holds the
    /// repository's lock.
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        src: Repository,
        indexed: Option<&Path>,
        key: &SigningKey,
        name: RepoName,
        refs: Refs,
        head: Option<RefName>,
        previous: Option<&SignedRefs>,
    ) -> Result<SignedRefs, StorageError> {
        let sequence = previous.map_or(1, |p| p.sequence() + 1);
        self.check_not_behind(
            &RepositoryId::derive(key.verifying_key().as_bytes(), &name),
            sequence,
        )?;
        let snapshot = SignedRefs::sign(key, name, sequence, head, refs)?;
        fail::fail_point!("import-signed");
        let previous = previous.cloned().map(Held::Owner);
        self.publish_record(
            src,
            indexed,
            &Held::Owner(snapshot.clone()),
            previous.as_ref(),
        )?;
        Ok(snapshot)
    }

    /// Applies `record`, just signed here, with the objects it needs taken from `src` (as
    /// a pack, through the verified path), or, when `indexed` names an objects directory
    /// holding them in packs git indexed, from those packs where they are. The caller
    /// holds the repository's lock.
    pub(super) fn publish_record(
        &self,
        src: Repository,
        indexed: Option<&Path>,
        record: &Held,
        previous: Option<&Held>,
    ) -> Result<(), StorageError> {
        let id = record.repository();
        let wants = self.missing(&id, &record.targets())?;
        let created = !self.path(&id).exists();
        let result = self.publish_objects(src, indexed, record, previous, wants);
        if result.is_err() && created {
            // Nothing of a failed first publication is kept.
            let _ = fs::remove_dir_all(self.path(&id));
        }
        result
    }

    fn publish_objects(
        &self,
        src: Repository,
        indexed: Option<&Path>,
        record: &Held,
        previous: Option<&Held>,
        wants: Vec<ObjectId>,
    ) -> Result<(), StorageError> {
        let id = record.repository();
        if wants.is_empty() {
            self.accept_inner(record, previous, Objects::Held, &mut |_| {})?;
            return Ok(());
        }
        if let Some(objects) = indexed {
            self.accept_inner(record, previous, Objects::Indexed(objects), &mut |_| {})?;
            return Ok(());
        }
        // What the store holds and the source has too: git leaves those objects out and
        // makes deltas against them (the store's indexer completes the thin pack).
        let src_odb = src.odb().map_err(git("opening the object database"))?;
        let haves: Vec<git2::Oid> = self
            .haves(&id)?
            .iter()
            .map(oid)
            .filter(|h| src_odb.exists(*h))
            .collect();
        let wants: Vec<git2::Oid> = wants.iter().map(oid).collect();
        let from_tips_alone = haves.is_empty();
        let git_dir = src.path().to_owned();
        drop(src_odb);
        // git writes the pack on one thread while the indexer reads it on this one,
        // through a bounded channel: the pack is never held whole.
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(16);
        let accepted = std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                let sink_tx = tx.clone();
                let (thin, depth) = (!haves.is_empty(), self.limits.max_tree_depth);
                let result = pack_objects(
                    &git_dir,
                    &wants,
                    &haves,
                    thin,
                    depth,
                    &mut |_| {},
                    &mut |chunk| sink_tx.send(Ok(chunk.to_vec())).is_ok(),
                );
                if let Err(e) = &result {
                    let _ = tx.send(Err(io::Error::other(e.to_string())));
                }
                result
            });
            let mut chunks = rx.into_iter();
            let accepted = self.accept_inner(
                record,
                previous,
                Objects::Stream(&mut chunks, Fsck::StoreOnly),
                &mut |_| {},
            );
            // Closing the channel unblocks the writer if the indexer stopped early.
            drop(chunks);
            let written = writer.join().unwrap_or(Err(StorageError::Aborted));
            match (accepted, written) {
                (_, Err(e @ StorageError::PackObjects { .. })) => Err(e),
                (accepted, written) => accepted.and(written.map(|_| ())),
            }
        });
        // The store checked everything git sent. When git itself gave up (it refuses
        // trees deeper than its core.maxTreeDepth, for one), the source is checked here
        // for an error that names the rule and the object; else git's own words stand.
        if let Err(e @ StorageError::PackObjects { .. }) = accepted {
            let known: Vec<git2::Oid> = previous
                .map(|p| p.targets().iter().map(oid).collect())
                .unwrap_or_default();
            check_targets(&src, None, id, &record.targets(), &known, 0, &self.limits)?;
            return Err(e);
        }
        accepted?;
        if from_tips_alone {
            // Built from the record's tips alone: if it is the only pack, it holds
            // exactly what the record reaches and may be sent as it is.
            self.record_clean_pack(&id)?;
        }
        Ok(())
    }

    /// Creates an empty repository `name` owned by `key` (a snapshot with no refs).
    pub fn init(&self, name: RepoName, key: &SigningKey) -> Result<SignedRefs, StorageError> {
        let id = RepositoryId::derive(key.verifying_key().as_bytes(), &name);
        let lock = self.lock(&id);
        let _guard = self.write(&id, &lock)?;
        if self.held(&id)?.is_some() {
            return Err(StorageError::AlreadyExists(id));
        }
        self.check_not_behind(&id, 1)?;
        let snapshot = SignedRefs::sign(key, name, 1, None, Refs::new())?;
        self.accept_locked(&snapshot, None, &mut |_| {})?;
        Ok(snapshot)
    }

    /// Creates a bare repository where a push can put its objects before they are
    /// checked: it borrows the repository's objects (git alternates), so a push sends
    /// only what is new. Refused unless `key` owns the repository.
    pub fn create_staging(
        &self,
        id: &RepositoryId,
        key: &SigningKey,
    ) -> Result<PathBuf, StorageError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::Closed);
        }
        let state = self
            .held(id)?
            .ok_or(StorageError::UnknownRepository(*id))?
            .into_state();
        let me = key.verifying_key();
        if state.identity.current().is_sealed() {
            // A fork would be a second sealed form; contributions to an encrypted
            // repository go as patches among its readers.
            if !state.identity.may_publish(&me) {
                return Err(StorageError::ForkRefused {
                    repository: *id,
                    reason: "it is encrypted: only its maintainers push to it".into(),
                });
            }
            let opened = self.opened_for_push(&state, key)?;
            return self.new_area_borrowing(id, &opened.join("objects"));
        }
        // Anyone else pushes to a fork of its own, unless the node or the maintainers
        // take none from it.
        if !state.identity.may_publish(&me) {
            if self.policy().blocked.contains(me.as_bytes()) {
                return Err(StorageError::ForkRefused {
                    repository: *id,
                    reason: "its key is blocked here".into(),
                });
            }
            if self.contributions_closed(id, &state.identity)? {
                return Err(StorageError::ForkRefused {
                    repository: *id,
                    reason: "contributions are off: only its maintainers publish".into(),
                });
            }
        }
        self.new_area(id)
    }

    /// A push area for `id`, with no check of who pushes (see [`Self::create_staging`]).
    pub(super) fn new_area(&self, id: &RepositoryId) -> Result<PathBuf, StorageError> {
        self.new_area_borrowing(id, &self.path(id).join("objects"))
    }

    /// A push area for `id` that borrows the objects in `objects`.
    pub(super) fn new_area_borrowing(
        &self,
        id: &RepositoryId,
        objects: &Path,
    ) -> Result<PathBuf, StorageError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| StorageError::Randomness(e.to_string()))?;
        let path = self
            .path(id)
            .join(format!("{PUSH_PREFIX}{}", hex::encode(random)));
        let staging = Repository::init_bare(&path).map_err(git("creating a push area"))?;
        let alternates = path.join("objects").join("info").join("alternates");
        fs::write(&alternates, format!("{}\n", objects.display())).map_err(|source| {
            StorageError::Write {
                path: alternates,
                source,
            }
        })?;
        // The pusher's git sees the current refs through the alternate and sends only
        // what is missing; the staging repository needs no refs of its own.
        drop(staging);
        Ok(path)
    }

    /// Applies a push: the objects are in `staging` (from [`Self::create_staging`]), the
    /// updates say which refs move. Each update is judged on its own (fast-forward
    /// unless forced, deletes allowed); the accepted ones become one new snapshot. The
    /// staging repository is removed whatever happens.
    pub fn push(
        &self,
        id: &RepositoryId,
        staging: &Path,
        updates: &[RefUpdate],
        key: &SigningKey,
    ) -> Result<Pushed, StorageError> {
        if !self.is_staging_of(id, staging) {
            return Err(StorageError::BadStaging(staging.to_owned()));
        }
        let result = self.push_inner(id, staging, updates, key);
        fail::fail_point!("push-applied");
        let _ = fs::remove_dir_all(staging);
        result
    }

    /// Whether `staging` is a push area [`Self::create_staging`] made for `id`: named
    /// like one, directly in the repository's directory, a real directory (no symlink)
    /// and still there once every `..` and link is resolved. The path comes from the API,
    /// and a push removes it afterwards, so nothing else may pass.
    pub(super) fn is_staging_of(&self, id: &RepositoryId, staging: &Path) -> bool {
        let repo = self.path(id);
        let named = staging
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| {
                n.strip_prefix(PUSH_PREFIX)
                    .is_some_and(|r| r.len() == 16 && r.bytes().all(|b| b.is_ascii_hexdigit()))
            });
        let plain = staging.components().all(|c| {
            matches!(
                c,
                Component::RootDir | Component::Prefix(_) | Component::Normal(_)
            )
        });
        if !(named && plain && staging.parent() == Some(repo.as_path())) {
            return false;
        }
        let is_dir = fs::symlink_metadata(staging).is_ok_and(|m| m.file_type().is_dir());
        let resolved = match (fs::canonicalize(staging), fs::canonicalize(&repo)) {
            (Ok(s), Ok(r)) => s.parent() == Some(r.as_path()),
            _ => false,
        };
        is_dir && resolved
    }

    fn push_inner(
        &self,
        id: &RepositoryId,
        staging: &Path,
        updates: &[RefUpdate],
        key: &SigningKey,
    ) -> Result<Pushed, StorageError> {
        let lock = self.lock(id);
        let _guard = self.write(id, &lock)?;
        let held = self.held(id)?.ok_or(StorageError::UnknownRepository(*id))?;
        let src = Repository::open_bare(staging).map_err(git("opening the push area"))?;
        // git's index-pack indexed the pushed pack (every object hashed, thin packs
        // completed): checked in place, not packed and indexed again. Loose objects
        // (put there by anything else that writes into the area) go the packing way.
        let objects = staging.join("objects");
        let indexed = packs_only(&objects).then_some(objects.as_path());
        if !held
            .clone()
            .into_state()
            .identity
            .may_publish(&key.verifying_key())
        {
            let policy = self.policy();
            return self.push_fork_locked(id, &src, updates, key, &policy);
        }
        let previous = match held {
            Held::Owner(snapshot) => snapshot,
            Held::Shared(state) if state.identity.current().is_sealed() => {
                drop(src);
                return self.push_sealed_locked(state, staging, updates, key);
            }
            Held::Shared(state) => {
                return self.push_view_locked(state, src, indexed, updates, key);
            }
        };
        check_owner(&previous, key)?;
        let mut refs = previous.refs.clone();
        let mut results = Vec::new();
        for update in updates {
            let outcome = apply_update(&src, &mut refs, update);
            results.push((update.name.clone(), outcome));
        }
        let head = choose_head(previous.signed.header.head.clone(), &refs);
        if refs == previous.refs && head == previous.signed.header.head {
            return Ok(Pushed {
                snapshot: previous,
                shared: false,
                results,
                changed: false,
                fork: false,
            });
        }
        let name = previous.signed.header.name.clone();
        let snapshot = self.publish(src, indexed, key, name, refs, head, Some(&previous))?;
        Ok(Pushed {
            snapshot,
            shared: false,
            results,
            changed: true,
            fork: false,
        })
    }
}

/// Whether the objects directory `objects` holds its objects only in packs, each with
/// its index (no loose objects, nothing half-written), and at least one pack.
fn packs_only(objects: &Path) -> bool {
    let Ok(entries) = fs::read_dir(objects) else {
        return false;
    };
    let mut packs = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name == "pack" {
            let Ok(files) = fs::read_dir(&path) else {
                return false;
            };
            for file in files.flatten() {
                let file = file.path();
                match file.extension().and_then(|e| e.to_str()) {
                    Some("pack") if file.with_extension("idx").is_file() => packs += 1,
                    Some("idx" | "rev") => {}
                    // A pack without its index, a lock, a temporary file.
                    _ => return false,
                }
            }
        } else if name.len() == 2
            && name.bytes().all(|b| b.is_ascii_hexdigit())
            && fs::read_dir(&path).is_ok_and(|mut d| d.next().is_some())
        {
            return false;
        }
    }
    packs > 0
}

fn check_owner(snapshot: &SignedRefs, key: &SigningKey) -> Result<(), StorageError> {
    if snapshot.signed.signer == key.verifying_key() {
        return Ok(());
    }
    Err(StorageError::NotOwner {
        repository: snapshot.repository(),
        owner: hex::encode(snapshot.signed.signer.as_bytes()),
    })
}

/// The name of an imported repository when none is given: its directory's name,
/// without `.git`.
fn default_name(source: &Path, repo: &Repository) -> Result<RepoName, StorageError> {
    let dir = if repo.is_bare() {
        repo.path().to_owned()
    } else {
        repo.workdir().unwrap_or(source).to_owned()
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".git").to_owned())
        .unwrap_or_default();
    base.parse()
        .map_err(|e: guts_protocol::ids::NameError| StorageError::BadName {
            path: source.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
#[path = "author_tests.rs"]
mod tests;
