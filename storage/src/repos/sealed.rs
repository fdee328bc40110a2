//! Encrypted repositories in the store (see [`guts_protocol::sealed`]).
//!
//! Every node keeps the sealed form as the repository itself: its canonical
//! [`SEALED_REF`] is a chain of commits whose blobs are ciphertext (`keys`, the key ring;
//! `manifest`, the real refs; `packs/<n>/<part>`, the real objects), so replication,
//! verification and serving are those of any repository, and a seeder without the key
//! keeps and serves it like one. A reader also keeps the opened form beside it
//! (`opened/`, a bare repository of the real objects and refs) that git and the API read,
//! brought up to date whenever a newer sealed commit is taken. A maintainer's push goes
//! into the opened form and is sealed: a pack of what is new, the manifest, and a new
//! epoch whenever the readers changed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use git2::{FileMode, Oid, Repository, Signature, Time};
use guts_protocol::refs::Refs;
use guts_protocol::sealed::{KeyRing, Manifest, PART_SIZE, RepoKey, SealError, epoch_of};
use guts_protocol::{RefName, RepositoryId, RepositoryState};

use super::packer::{Fsck, GitIndexer, pack_objects};
use super::ref_updates::{apply_update, choose_head};
use super::{Pushed, RefUpdate, Repositories, git, object_id, oid};
use crate::StorageError;

/// The ref that holds an encrypted repository's sealed form.
pub const SEALED_REF: &str = "refs/heads/sealed";
/// The opened form, inside the repository's directory.
const OPENED_DIR: &str = "opened";
/// In the opened form: the sealed commit it was last brought to, and how many packs of
/// it are indexed (`<hex> <count>`).
const OPENED_FILE: &str = "guts-opened";

/// What one sealed commit holds, its blobs still sealed.
struct SealedCommit {
    commit: Oid,
    tree: Oid,
    ring: KeyRing,
    manifest: Vec<u8>,
}

impl Repositories {
    /// Lets this store open the encrypted repositories `key` reads (the node's key).
    pub fn with_reader(mut self, key: SigningKey) -> Self {
        self.reader = Some(Arc::new(key));
        self
    }

    /// Where the opened form of encrypted repository `id` is (there only on a reader).
    pub fn opened_path(&self, id: &RepositoryId) -> PathBuf {
        self.path(id).join(OPENED_DIR)
    }

    /// The real refs and HEAD of encrypted repository `id`, if this node has opened it.
    pub fn opened_refs(
        &self,
        id: &RepositoryId,
    ) -> Result<Option<(Refs, Option<RefName>)>, StorageError> {
        let path = self.opened_path(id);
        if !path.join(OPENED_FILE).is_file() {
            return Ok(None);
        }
        let repo = Repository::open_bare(&path).map_err(git("opening the opened form"))?;
        let mut refs = Refs::new();
        for reference in repo.references().map_err(git("listing opened refs"))? {
            let reference = reference.map_err(git("reading an opened ref"))?;
            if let (Ok(name), Some(target)) = (reference.name(), reference.target())
                && let Ok(name) = name.parse::<RefName>()
            {
                refs.insert(name, object_id(target));
            }
        }
        let head = repo
            .find_reference("HEAD")
            .ok()
            .and_then(|h| {
                h.symbolic_target()
                    .ok()
                    .flatten()
                    .and_then(|t| t.parse().ok())
            })
            .filter(|h| refs.contains_key(h));
        Ok(Some((refs, head)))
    }

    /// Brings the opened form of `state`'s repository up to its sealed tip, when it is
    /// encrypted and this node reads it. The caller holds the lock.
    pub(super) fn open_sealed_locked(&self, state: &RepositoryState) -> Result<(), StorageError> {
        match self.reader.clone() {
            Some(me) => self.open_with(state, &me),
            None => Ok(()),
        }
    }

    /// Brings the opened form up to date for a push by `key` (a maintainer), creating it
    /// before the first: a push area borrows its objects.
    pub(super) fn opened_for_push(
        &self,
        state: &RepositoryState,
        key: &SigningKey,
    ) -> Result<PathBuf, StorageError> {
        let id = state.identity.repository();
        let lock = self.lock(&id);
        let _guard = self.write(&id, &lock)?;
        self.open_with(state, key)?;
        let opened = self.opened_path(&id);
        open_or_init(&opened)?;
        Ok(opened)
    }

    /// [`Self::open_sealed_locked`] with `me` as the reader.
    fn open_with(&self, state: &RepositoryState, me: &SigningKey) -> Result<(), StorageError> {
        // A seeder, or a reader since removed: what it opened before it keeps, what is
        // sealed after its removal it has no key to.
        let current = state.identity.current();
        if !current.is_sealed() || !current.may_read(&me.verifying_key()) {
            return Ok(());
        }
        let id = state.identity.repository();
        let store = Repository::open_bare(self.path(&id)).map_err(git("opening the store"))?;
        let Some(sealed) = read_tip(&store, &id)? else {
            return Ok(());
        };
        let opened = self.opened_path(&id);
        let (done, packs_done) = read_opened_file(&opened);
        if done == Some(sealed.commit) {
            return Ok(());
        }
        let keys = match sealed.ring.keys_for(me) {
            Ok(keys) => keys,
            // A seeder keeps the ciphertext; a reader removed before any epoch it could
            // read has nothing to open either.
            Err(SealError::NotAReader) => return Ok(()),
            Err(e) => return Err(sealed_error(&id, e)),
        };
        let manifest = open_manifest(&id, &keys, &sealed.manifest)?;
        let repo = open_or_init(&opened)?;
        for n in packs_done.min(manifest.packs)..manifest.packs {
            let parts = pack_parts(&store, &id, sealed.tree, n)?;
            let mut indexer = GitIndexer::start(&opened, &opened.join("objects"), Fsck::Strict)?;
            for (i, part) in parts.iter().enumerate() {
                let blob = store
                    .find_blob(*part)
                    .map_err(git("reading a sealed part"))?;
                let place = format!("packs/{n}/{i}");
                let key = epoch_key(&id, &keys, &place, blob.content())?;
                let plain = key
                    .open(&place, blob.content())
                    .map_err(|e| sealed_error(&id, e))?;
                indexer.write(&plain)?;
            }
            indexer.finish()?;
        }
        set_refs(&repo, &id, &manifest)?;
        write_opened_file(&opened, sealed.commit, manifest.packs)
    }

    /// A maintainer's push to encrypted repository `state`: the updates move the real refs
    /// in the opened form, what is new is sealed into the next sealed commit, and that
    /// moves `key`'s view like any push. The caller holds the lock; `staging` is the push
    /// area (its objects borrowed from the opened form).
    pub(super) fn push_sealed_locked(
        &self,
        state: RepositoryState,
        staging: &Path,
        updates: &[RefUpdate],
        key: &SigningKey,
    ) -> Result<Pushed, StorageError> {
        let id = state.identity.repository();
        self.open_with(&state, key)?;
        let store = Repository::open_bare(self.path(&id)).map_err(git("opening the store"))?;
        let tip = read_tip(&store, &id)?;
        let (mut ring, keys, old) = match &tip {
            Some(sealed) => {
                let keys = sealed
                    .ring
                    .keys_for(key)
                    .map_err(|e| sealed_error(&id, e))?;
                let manifest = open_manifest(&id, &keys, &sealed.manifest)?;
                (sealed.ring.clone(), keys, manifest)
            }
            None => (KeyRing::default(), BTreeMap::new(), Manifest::default()),
        };
        let src = Repository::open_bare(staging).map_err(git("opening the push area"))?;
        let mut refs = old.refs.clone();
        let results: Vec<_> = updates
            .iter()
            .map(|u| (u.name.clone(), apply_update(&src, &mut refs, u)))
            .collect();
        let head = choose_head(old.head.clone(), &refs);
        let own = state.views.of(&key.verifying_key()).cloned();
        if let Some(view) = &own
            && refs == old.refs
            && head == old.head
        {
            return Ok(Pushed {
                snapshot: view.clone(),
                shared: true,
                results,
                changed: false,
                fork: false,
            });
        }
        let opened = self.opened_path(&id);
        open_or_init(&opened)?;
        copy_objects(&staging.join("objects"), &opened.join("objects"))?;
        // A new epoch whenever the readers are not the current one's.
        let readers = state.identity.current().readers();
        let (epoch, epoch_key) = match ring.current() {
            Some(e) if e.readers() == readers => {
                let key = keys.get(&e.number).cloned().ok_or_else(|| {
                    sealed_error(
                        &id,
                        SealError::UnknownEpoch {
                            what: "the current epoch".into(),
                            epoch: e.number,
                        },
                    )
                })?;
                (e.number, key)
            }
            current => {
                let previous = current.and_then(|e| keys.get(&e.number));
                ring.rotate(&readers, previous)
                    .map_err(|e| sealed_error(&id, e))?
            }
        };
        let area = self.new_area_borrowing(&id, &self.path(&id).join("objects"))?;
        let result = (|| {
            let out = Repository::open_bare(&area).map_err(git("opening a sealing area"))?;
            let wants: Vec<Oid> = refs.values().map(oid).collect();
            let haves: Vec<Oid> = old.refs.values().map(oid).collect();
            let mut parts = Vec::new();
            let mut buffer = Vec::new();
            let mut count = 0;
            let mut failed = None;
            let packs = old.packs;
            let mut flush = |buffer: &mut Vec<u8>, parts: &mut Vec<Oid>| {
                let place = format!("packs/{packs}/{}", parts.len());
                let blob = epoch_key
                    .seal(epoch, &place, buffer)
                    .map_err(|e| sealed_error(&id, e))
                    .and_then(|b| out.blob(&b).map_err(git("writing a sealed part")));
                buffer.clear();
                match blob {
                    Ok(b) => parts.push(b),
                    Err(e) => failed = Some(e),
                }
            };
            pack_objects(
                &opened,
                &wants,
                &haves,
                false,
                self.limits.max_tree_depth,
                &mut |n| count = n,
                &mut |chunk| {
                    buffer.extend_from_slice(chunk);
                    while buffer.len() >= PART_SIZE {
                        let rest = buffer.split_off(PART_SIZE);
                        flush(&mut buffer, &mut parts);
                        buffer = rest;
                    }
                    true
                },
            )?;
            if count > 0 {
                flush(&mut buffer, &mut parts);
            }
            if let Some(e) = failed {
                return Err(e);
            }
            let manifest = Manifest {
                refs: refs.clone(),
                head: head.clone(),
                packs: packs + u32::from(count > 0),
            };
            let commit = write_commit(
                &out,
                &store,
                &id,
                tip.as_ref(),
                &ring,
                &epoch_key.seal(epoch, "manifest", &manifest.encode()),
                (count > 0).then_some((packs, parts.as_slice())),
            )?;
            Ok((commit, manifest))
        })();
        let (commit, manifest) = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = fs::remove_dir_all(&area);
                return Err(e);
            }
        };
        let out = Repository::open_bare(&area).map_err(git("opening a sealing area"))?;
        let update = RefUpdate {
            name: SEALED_REF.into(),
            new: Some(object_id(commit)),
            force: false,
        };
        let pushed = self.push_view_locked(state, out, None, &[update], key);
        let _ = fs::remove_dir_all(&area);
        let pushed = pushed?;
        if let Some((_, Err(reason))) = pushed.results.first() {
            return Err(sealed_error_text(
                &id,
                format!("the sealed commit: {reason}"),
            ));
        }
        let repo = open_or_init(&opened)?;
        set_refs(&repo, &id, &manifest)?;
        write_opened_file(&opened, commit, manifest.packs)?;
        Ok(Pushed { results, ..pushed })
    }
}

fn sealed_error(id: &RepositoryId, e: SealError) -> StorageError {
    sealed_error_text(id, e.to_string())
}

fn sealed_error_text(id: &RepositoryId, reason: String) -> StorageError {
    StorageError::Sealed {
        repository: *id,
        reason,
    }
}

/// The sealed commit at the tip, with its key ring and sealed manifest.
fn read_tip(store: &Repository, id: &RepositoryId) -> Result<Option<SealedCommit>, StorageError> {
    let Ok(commit) = store.refname_to_id(SEALED_REF) else {
        return Ok(None);
    };
    let tree = store
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(git("reading the sealed commit"))?;
    let blob = |name: &str| -> Result<Vec<u8>, StorageError> {
        let entry = tree
            .get_name(name)
            .ok_or_else(|| sealed_error_text(id, format!("the sealed commit has no {name}")))?;
        let blob = store
            .find_blob(entry.id())
            .map_err(git(format!("reading the sealed {name}")))?;
        Ok(blob.content().to_vec())
    };
    let ring = KeyRing::decode(&blob("keys")?).map_err(|e| sealed_error(id, e))?;
    Ok(Some(SealedCommit {
        commit,
        tree: tree.id(),
        ring,
        manifest: blob("manifest")?,
    }))
}

fn epoch_key<'a>(
    id: &RepositoryId,
    keys: &'a BTreeMap<u32, RepoKey>,
    place: &str,
    blob: &[u8],
) -> Result<&'a RepoKey, StorageError> {
    let epoch = epoch_of(place, blob).map_err(|e| sealed_error(id, e))?;
    keys.get(&epoch).ok_or_else(|| {
        sealed_error(
            id,
            SealError::UnknownEpoch {
                what: place.to_owned(),
                epoch,
            },
        )
    })
}

fn open_manifest(
    id: &RepositoryId,
    keys: &BTreeMap<u32, RepoKey>,
    sealed: &[u8],
) -> Result<Manifest, StorageError> {
    let key = epoch_key(id, keys, "manifest", sealed)?;
    let plain = key
        .open("manifest", sealed)
        .map_err(|e| sealed_error(id, e))?;
    Manifest::decode(&plain).map_err(|e| sealed_error(id, e))
}

/// The sealed parts of pack `n`, in order.
fn pack_parts(
    store: &Repository,
    id: &RepositoryId,
    tree: Oid,
    n: u32,
) -> Result<Vec<Oid>, StorageError> {
    let missing = || {
        sealed_error_text(
            id,
            format!("the manifest names pack {n}, which is not there"),
        )
    };
    let tree = store
        .find_tree(tree)
        .map_err(git("reading the sealed tree"))?;
    let packs = tree.get_name("packs").ok_or_else(missing)?;
    let packs = store
        .find_tree(packs.id())
        .map_err(git("reading the sealed packs"))?;
    let pack = packs.get_name(&n.to_string()).ok_or_else(missing)?;
    let pack = store
        .find_tree(pack.id())
        .map_err(git("reading a sealed pack"))?;
    let mut parts: Vec<(u32, Oid)> = pack
        .iter()
        .filter_map(|e| Some((e.name().ok()?.parse().ok()?, e.id())))
        .collect();
    parts.sort();
    if parts.iter().enumerate().any(|(i, (n, _))| *n as usize != i) || parts.is_empty() {
        return Err(sealed_error_text(
            id,
            format!("pack {n}'s parts are not numbered 0 on"),
        ));
    }
    Ok(parts.into_iter().map(|(_, o)| o).collect())
}

/// Writes the next sealed commit into `out`: the tip's tree (read from `store`) with the
/// key ring, the manifest and pack `n`'s parts, if any.
fn write_commit(
    out: &Repository,
    store: &Repository,
    id: &RepositoryId,
    tip: Option<&SealedCommit>,
    ring: &KeyRing,
    manifest: &Result<Vec<u8>, SealError>,
    pack: Option<(u32, &[Oid])>,
) -> Result<Oid, StorageError> {
    let manifest = manifest
        .as_ref()
        .map_err(|e| sealed_error_text(id, e.to_string()))?;
    let old = tip
        .map(|t| store.find_tree(t.tree))
        .transpose()
        .map_err(git("reading the sealed tree"))?;
    let old_packs = old
        .as_ref()
        .and_then(|t| t.get_name("packs").map(|e| e.id()))
        .map(|o| store.find_tree(o))
        .transpose()
        .map_err(git("reading the sealed packs"))?;
    let mut packs = out
        .treebuilder(old_packs.as_ref())
        .map_err(git("building the sealed packs"))?;
    if let Some((n, parts)) = pack {
        let mut one = out
            .treebuilder(None)
            .map_err(git("building a sealed pack"))?;
        for (i, part) in parts.iter().enumerate() {
            one.insert(i.to_string(), *part, FileMode::Blob.into())
                .map_err(git("building a sealed pack"))?;
        }
        let one = one.write().map_err(git("writing a sealed pack"))?;
        packs
            .insert(n.to_string(), one, FileMode::Tree.into())
            .map_err(git("building the sealed packs"))?;
    }
    let packs = packs.write().map_err(git("writing the sealed packs"))?;
    let mut tree = out
        .treebuilder(None)
        .map_err(git("building the sealed tree"))?;
    let keys = out
        .blob(&ring.encode())
        .map_err(git("writing the key ring"))?;
    let manifest = out.blob(manifest).map_err(git("writing the manifest"))?;
    for (name, oid, mode) in [
        ("keys", keys, FileMode::Blob),
        ("manifest", manifest, FileMode::Blob),
        ("packs", packs, FileMode::Tree),
    ] {
        tree.insert(name, oid, mode.into())
            .map_err(git("building the sealed tree"))?;
    }
    let tree = tree.write().map_err(git("writing the sealed tree"))?;
    let tree = out
        .find_tree(tree)
        .map_err(git("reading the sealed tree"))?;
    // No names or times: the sealed form says nothing of who pushed when.
    let who = Signature::new("guts", "guts@sealed", &Time::new(0, 0))
        .map_err(git("naming the sealed commit"))?;
    let parent = tip
        .map(|t| out.find_commit(t.commit))
        .transpose()
        .map_err(git("reading the sealed tip"))?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    out.commit(None, &who, &who, "sealed", &tree, &parents)
        .map_err(git("writing the sealed commit"))
}

fn open_or_init(path: &Path) -> Result<Repository, StorageError> {
    if path.join("HEAD").is_file() {
        Repository::open_bare(path).map_err(git("opening the opened form"))
    } else {
        Repository::init_bare(path).map_err(git("creating the opened form"))
    }
}

/// Moves the opened form's refs to `manifest`'s: every target checked present first.
fn set_refs(repo: &Repository, id: &RepositoryId, manifest: &Manifest) -> Result<(), StorageError> {
    for (name, target) in &manifest.refs {
        if repo.find_object(oid(target), None).is_err() {
            return Err(sealed_error_text(
                id,
                format!("the manifest's {name} is at {target}, which no pack holds"),
            ));
        }
    }
    let existing: Vec<String> = repo
        .references()
        .map_err(git("listing opened refs"))?
        .flatten()
        .filter_map(|r| r.name().ok().map(str::to_owned))
        .collect();
    for name in existing {
        if !manifest.refs.keys().any(|n| n.as_str() == name)
            && let Ok(mut r) = repo.find_reference(&name)
        {
            r.delete().map_err(git("removing an opened ref"))?;
        }
    }
    for (name, target) in &manifest.refs {
        repo.reference(name.as_str(), oid(target), true, "guts: opened")
            .map_err(git("moving an opened ref"))?;
    }
    if let Some(head) = &manifest.head {
        repo.set_head(head.as_str())
            .map_err(git("setting the opened HEAD"))?;
    }
    Ok(())
}

fn read_opened_file(opened: &Path) -> (Option<Oid>, u32) {
    let text = fs::read_to_string(opened.join(OPENED_FILE)).unwrap_or_default();
    let mut words = text.split_whitespace();
    let commit = words.next().and_then(|w| Oid::from_str(w).ok());
    let packs = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    match commit {
        Some(c) => (Some(c), packs),
        None => (None, 0),
    }
}

fn write_opened_file(opened: &Path, commit: Oid, packs: u32) -> Result<(), StorageError> {
    let path = opened.join(OPENED_FILE);
    let tmp = opened.join(format!("{OPENED_FILE}.tmp"));
    fs::write(&tmp, format!("{commit} {packs}\n"))
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|source| StorageError::Write { path, source })
}

/// Copies the objects a push left in `from` (packs with their indexes, loose objects)
/// into `into`. Objects are named by their content, so one already there is the same.
fn copy_objects(from: &Path, into: &Path) -> Result<(), StorageError> {
    let Ok(entries) = fs::read_dir(from) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_loose = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if name != "pack" && !is_loose {
            continue;
        }
        let target = into.join(&name);
        fs::create_dir_all(&target).map_err(|source| StorageError::Write {
            path: target.clone(),
            source,
        })?;
        let Ok(files) = fs::read_dir(entry.path()) else {
            continue;
        };
        // Indexes last, so no reader finds an index before its pack.
        let mut files: Vec<_> = files.flatten().map(|f| f.path()).collect();
        files.sort_by_key(|f| f.extension().is_some_and(|e| e == "idx"));
        for file in files {
            let Some(file_name) = file.file_name() else {
                continue;
            };
            let dest = target.join(file_name);
            if dest.exists() {
                continue;
            }
            fs::hard_link(&file, &dest)
                .or_else(|_| fs::copy(&file, &dest).map(|_| ()))
                .map_err(|source| StorageError::Write { path: dest, source })?;
        }
    }
    Ok(())
}
