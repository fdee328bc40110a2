//! Authoring by the node's owner: importing a local git repository, creating an empty
//! one, and pushes through a staging area; each signs a new snapshot.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use ed25519_dalek::SigningKey;
use git2::Repository;
use guts_protocol::refs::Refs;
use guts_protocol::{ObjectId, RefName, RepoName, RepositoryId, SignedRefs};

use super::packer::{Fsck, pack_objects};
use super::verify::check_snapshot;
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
        let _guard = self.write(&lock)?;

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

        let previous = self.signed_refs(&id)?;
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
    /// objects it needs taken from `src` (as a pack, through the verified path), or, when
    /// `indexed` names an objects directory holding them in packs git indexed, from
    /// those packs where they are. The caller holds the repository's lock.
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
        let id = snapshot.repository();
        let wants = self.wants(&snapshot)?;
        if wants.is_empty() {
            self.accept_locked(&snapshot, None, &mut |_| {})?;
            return Ok(snapshot);
        }
        if let Some(objects) = indexed {
            self.accept_indexed_locked(&snapshot, previous, objects)?;
            return Ok(snapshot);
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
            let accepted =
                self.accept_locked_as(&snapshot, Some(&mut chunks), Fsck::StoreOnly, &mut |_| {});
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
                .map(|p| p.refs.values().map(oid).collect())
                .unwrap_or_default();
            check_snapshot(&src, None, &snapshot, &known, 0, &self.limits)?;
            return Err(e);
        }
        accepted?;
        if from_tips_alone {
            // Built from the snapshot's tips alone: if it is the only pack, it holds
            // exactly what the snapshot reaches and may be sent as it is.
            self.record_clean_pack(&id)?;
        }
        Ok(snapshot)
    }

    /// Creates an empty repository `name` owned by `key` (a snapshot with no refs).
    pub fn init(&self, name: RepoName, key: &SigningKey) -> Result<SignedRefs, StorageError> {
        let id = RepositoryId::derive(key.verifying_key().as_bytes(), &name);
        let lock = self.lock(&id);
        let _guard = self.write(&lock)?;
        if self.signed_refs(&id)?.is_some() {
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
        let snapshot = self
            .signed_refs(id)?
            .ok_or(StorageError::UnknownRepository(*id))?;
        check_owner(&snapshot, key)?;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| StorageError::Randomness(e.to_string()))?;
        let path = self
            .path(id)
            .join(format!("{PUSH_PREFIX}{}", hex::encode(random)));
        let staging = Repository::init_bare(&path).map_err(git("creating a push area"))?;
        let alternates = path.join("objects").join("info").join("alternates");
        let objects = self.path(id).join("objects");
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
    fn is_staging_of(&self, id: &RepositoryId, staging: &Path) -> bool {
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
        let _guard = self.write(&lock)?;
        let previous = self
            .signed_refs(id)?
            .ok_or(StorageError::UnknownRepository(*id))?;
        check_owner(&previous, key)?;
        let src = Repository::open_bare(staging).map_err(git("opening the push area"))?;
        let mut refs = previous.refs.clone();
        let mut results = Vec::new();
        for update in updates {
            let outcome = apply_update(&src, &mut refs, update);
            results.push((update.name.clone(), outcome));
        }
        let mut head = previous
            .signed
            .header
            .head
            .clone()
            .filter(|h| refs.contains_key(h));
        if head.is_none() {
            head = ["refs/heads/main", "refs/heads/master"]
                .iter()
                .filter_map(|n| n.parse::<RefName>().ok())
                .find(|n| refs.contains_key(n))
                .or_else(|| {
                    refs.keys()
                        .find(|n| n.as_str().starts_with("refs/heads/"))
                        .cloned()
                });
        }
        if refs == previous.refs && head == previous.signed.header.head {
            return Ok(Pushed {
                snapshot: previous,
                results,
                changed: false,
            });
        }
        let name = previous.signed.header.name.clone();
        // git's index-pack indexed the pushed pack (every object hashed, thin packs
        // completed): checked in place, not packed and indexed again. Loose objects
        // (put there by anything else that writes into the area) go the packing way.
        let objects = staging.join("objects");
        let indexed = packs_only(&objects).then_some(objects.as_path());
        let snapshot = self.publish(src, indexed, key, name, refs, head, Some(&previous))?;
        Ok(Pushed {
            snapshot,
            results,
            changed: true,
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

/// Judges one pushed ref update against `refs` (updating them if accepted).
fn apply_update(src: &Repository, refs: &mut Refs, update: &RefUpdate) -> Result<(), String> {
    let name: RefName = update
        .name
        .parse()
        .map_err(|e: guts_protocol::ids::NameError| e.to_string())?;
    let Some(new) = update.new else {
        return match refs.remove(&name) {
            Some(_) => Ok(()),
            None => Err("no such ref".into()),
        };
    };
    if src.find_object(oid(&new), None).is_err() {
        return Err(format!("object {new} was not received"));
    }
    if let Some(old) = refs.get(&name).copied()
        && old != new
        && !update.force
    {
        if name.as_str().starts_with("refs/tags/") {
            return Err("tag already exists (push with --force to move it)".into());
        }
        let peel = |o: &ObjectId| {
            src.find_object(oid(o), None)
                .and_then(|o| o.peel_to_commit())
                .map(|c| c.id())
        };
        let fast_forward = match (peel(&old), peel(&new)) {
            (Ok(old), Ok(new)) => src.graph_descendant_of(new, old).unwrap_or(false),
            _ => false,
        };
        if !fast_forward {
            return Err("non-fast-forward (push with --force to overwrite)".into());
        }
    }
    refs.insert(name, new);
    Ok(())
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
mod tests {
    use git2::Repository;

    use crate::StorageError;
    use crate::repos::test_support::{Fixture, fsck, key, store};

    #[test]
    fn import_signs_branches_tags_and_head() {
        let fx = Fixture::new();
        let (_d, repos) = store();
        let imported = repos.import(fx.path(), None, &key(1)).unwrap();
        assert!(imported.changed);
        let s = imported.snapshot;
        s.verify().unwrap();
        assert_eq!(s.sequence(), 1);
        assert_eq!(s.signed.header.name.as_str(), "demo");
        let names: Vec<&str> = s.refs.keys().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "refs/heads/feature",
                "refs/heads/main",
                "refs/tags/v0",
                "refs/tags/v1"
            ]
        );
        assert_eq!(
            s.signed.header.head.as_ref().unwrap().as_str(),
            "refs/heads/main"
        );
        assert_eq!(repos.list().unwrap(), vec![s.repository()]);
        assert_eq!(repos.signed_refs(&s.repository()).unwrap().unwrap(), s);
        fsck(&repos.path(&s.repository()));
        // Nothing changed: no new snapshot.
        assert!(!repos.import(fx.path(), None, &key(1)).unwrap().changed);
        // A new commit: sequence 2.
        let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
        fx.commit("refs/heads/main", &[("README", "more\n")], &[main]);
        let again = repos.import(fx.path(), None, &key(1)).unwrap();
        assert!(again.changed);
        assert_eq!(again.snapshot.sequence(), 2);
    }

    #[test]
    fn import_errors_name_the_path() {
        let (_d, repos) = store();
        let dir = tempfile::tempdir().unwrap();
        let err = repos.import(dir.path(), None, &key(1)).unwrap_err();
        assert!(
            matches!(err, StorageError::NotAGitRepository { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&dir.path().display().to_string()));
        let empty = Repository::init(dir.path().join("empty")).unwrap();
        let err = repos
            .import(empty.workdir().unwrap(), None, &key(1))
            .unwrap_err();
        assert!(matches!(err, StorageError::NothingToImport { .. }), "{err}");
    }

    #[test]
    fn only_a_push_area_of_the_repository_is_taken_or_removed() {
        let fx = Fixture::new();
        let (_d, repos) = store();
        let id = repos
            .import(fx.path(), None, &key(1))
            .unwrap()
            .snapshot
            .repository();
        let area = repos.create_staging(&id, &key(1)).unwrap();
        let repo = repos.path(&id);
        // A victim directory beside the store, named like a push area.
        let victim = repo.parent().unwrap().join("guts-push-00112233aabbccdd");
        std::fs::create_dir_all(&victim).unwrap();
        let name = area.file_name().unwrap().to_owned();
        let link = repo.join("guts-push-ffffffffffffffff");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        for bad in [
            repo.join("..").join("guts-push-00112233aabbccdd"),
            repo.join(&name)
                .join("..")
                .join("..")
                .join("guts-push-00112233aabbccdd"),
            area.join(".").join("..").join(&name),
            repo.join("guts-push-nothex"),
            repo.join("objects"),
            victim.clone(),
            link.clone(),
        ] {
            let err = repos.push(&id, &bad, &[], &key(1)).unwrap_err();
            assert!(
                matches!(err, StorageError::BadStaging(_)),
                "{}: {err}",
                bad.display()
            );
        }
        assert!(victim.exists(), "a refused push removes nothing");
        assert!(area.exists());
        repos.push(&id, &area, &[], &key(1)).unwrap();
        assert!(!area.exists(), "a push removes its own area");
    }

    /// Runs `git push` from the fixture into `area` with git keeping what it receives as
    /// a pack (as it does for any push of 100 objects or more); returns the area's packs.
    /// `spec` is one refspec or several separated by spaces.
    fn git_push(fx: &Fixture, area: &std::path::Path, spec: &str) -> Vec<String> {
        let out = std::process::Command::new("git")
            .args(["push", "--quiet", "--force", "--no-verify"])
            .arg("--receive-pack=git -c receive.unpackLimit=1 receive-pack")
            .arg(area)
            .args(spec.split_whitespace())
            .current_dir(fx.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut packs: Vec<String> = std::fs::read_dir(area.join("objects/pack"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".pack"))
            .collect();
        packs.sort();
        packs
    }

    #[test]
    fn a_pushed_pack_is_checked_and_kept_where_git_indexed_it() {
        let fx = Fixture::new();
        let (_d, repos) = store();
        let id = repos
            .import(fx.path(), None, &key(1))
            .unwrap()
            .snapshot
            .repository();
        let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
        let new = fx.commit("refs/heads/main", &[("README", "pushed\n")], &[main]);
        let update = crate::RefUpdate {
            name: "refs/heads/main".into(),
            new: Some(crate::repos::object_id(new)),
            force: false,
        };

        // A pack whose last entry (a blob: git writes commits first) no longer inflates:
        // the commit still reads, so the refusal is the in-place check's. Nothing is
        // kept, nothing signed.
        let area = repos.create_staging(&id, &key(1)).unwrap();
        let packs = git_push(&fx, &area, &format!("{new}:refs/heads/main"));
        assert_eq!(packs.len(), 1, "git kept a pack");
        let pack = area.join("objects/pack").join(&packs[0]);
        let mut bytes = std::fs::read(&pack).unwrap();
        // Just before the 20-byte trailer: the last entry's zlib checksum.
        let last = bytes.len() - 21;
        bytes[last] ^= 0xff;
        std::fs::set_permissions(&pack, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        std::fs::write(&pack, bytes).unwrap();
        let before = std::fs::read_dir(repos.path(&id).join("objects/pack"))
            .unwrap()
            .count();
        let err = repos
            .push(&id, &area, std::slice::from_ref(&update), &key(1))
            .unwrap_err();
        assert!(matches!(err, StorageError::BadPack(_)), "{err}");
        assert_eq!(repos.signed_refs(&id).unwrap().unwrap().sequence(), 1);
        assert_eq!(
            std::fs::read_dir(repos.path(&id).join("objects/pack"))
                .unwrap()
                .count(),
            before
        );

        // The same push intact: its pack is checked where it is and moved in as it is.
        let area = repos.create_staging(&id, &key(1)).unwrap();
        let packs = git_push(&fx, &area, &format!("{new}:refs/heads/main"));
        let pushed = repos.push(&id, &area, &[update], &key(1)).unwrap();
        assert!(pushed.changed);
        assert_eq!(pushed.snapshot.sequence(), 2);
        assert!(
            repos
                .path(&id)
                .join("objects/pack")
                .join(&packs[0])
                .is_file(),
            "the pack git indexed is the one kept"
        );
        fsck(&repos.path(&id));
    }

    /// The object ids in a pack, as git's own index-pack reads them.
    fn pack_ids(pack: &[u8]) -> std::collections::HashSet<git2::Oid> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.pack");
        std::fs::write(&file, pack).unwrap();
        let indexed = std::process::Command::new("git")
            .args(["index-pack"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(indexed.status.success(), "{indexed:?}");
        let idx = std::fs::File::open(file.with_extension("idx")).unwrap();
        let listed = std::process::Command::new("git")
            .arg("show-index")
            .stdin(idx)
            .output()
            .unwrap();
        String::from_utf8(listed.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn objects_of_refused_updates_are_never_served() {
        let fx = Fixture::new();
        let (_d, repos) = store();
        let id = repos
            .init("pushed".parse().unwrap(), &key(1))
            .unwrap()
            .repository();
        let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
        // A commit only a refused update reaches: a ref outside heads and tags.
        let secret = fx.commit(
            "refs/heads/secret",
            &[("secret", "do not pass on\n")],
            &[main],
        );
        let update = |name: &str, new: git2::Oid| crate::RefUpdate {
            name: name.into(),
            new: Some(crate::repos::object_id(new)),
            force: false,
        };
        let area = repos.create_staging(&id, &key(1)).unwrap();
        // One push, one pack, holding both.
        let packs = git_push(
            &fx,
            &area,
            &format!("{main}:refs/heads/main {secret}:refs/notes/secret"),
        );
        assert_eq!(packs.len(), 1);
        let pushed = repos
            .push(
                &id,
                &area,
                &[
                    update("refs/heads/main", main),
                    update("refs/notes/secret", secret),
                ],
                &key(1),
            )
            .unwrap();
        assert!(pushed.results[0].1.is_ok());
        assert!(pushed.results[1].1.is_err(), "{:?}", pushed.results);

        // A requester with nothing asks for everything the snapshot names.
        let wants: Vec<_> = pushed.snapshot.refs.values().copied().collect();
        let mut served = Vec::new();
        repos
            .build_pack(&id, &wants, &[], &mut |_| {}, &mut |c| {
                served.extend_from_slice(c);
                true
            })
            .unwrap();
        let ids = pack_ids(&served);
        assert!(ids.contains(&main));
        assert!(!ids.contains(&secret), "a refused commit was served");

        // After a repack the one pack is clean, and sent as it is.
        repos.repack(&id).unwrap();
        let stored = std::fs::read(repos.packs(&id).unwrap().pop().unwrap()).unwrap();
        assert!(
            !pack_ids(&stored).contains(&secret),
            "a repack keeps only what is reached"
        );
        let mut again = Vec::new();
        repos
            .build_pack(&id, &wants, &[], &mut |_| {}, &mut |c| {
                again.extend_from_slice(c);
                true
            })
            .unwrap();
        assert_eq!(again, stored, "the clean pack is sent as it is");
    }

    #[test]
    fn nothing_is_signed_at_or_below_a_sequence_seen_on_the_network() {
        let fx = Fixture::new();
        let (_d, repos) = store();
        let first = repos.import(fx.path(), None, &key(1)).unwrap().snapshot;
        let id = first.repository();
        // Another machine with this key signed sequence 2 (the node heard of it).
        let repos = repos.with_seen_elsewhere(move |r| (*r == id).then_some(2));
        let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
        fx.commit("refs/heads/main", &[("README", "diverged\n")], &[main]);
        let err = repos.import(fx.path(), None, &key(1)).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::BehindNetwork {
                    held: 1,
                    network: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("guts repo sync"), "{err}");
        assert_eq!(
            repos.signed_refs(&id).unwrap().unwrap(),
            first,
            "nothing signed"
        );
        let area = repos.create_staging(&id, &key(1)).unwrap();
        let delete = crate::RefUpdate {
            name: "refs/tags/v0".into(),
            new: None,
            force: true,
        };
        let err = repos.push(&id, &area, &[delete], &key(1)).unwrap_err();
        assert!(matches!(err, StorageError::BehindNetwork { .. }), "{err}");
        let fresh = repos.with_seen_elsewhere(|_| Some(1));
        let err = fresh.init("other".parse().unwrap(), &key(1)).unwrap_err();
        assert!(
            matches!(err, StorageError::BehindNetwork { held: 0, .. }),
            "{err}"
        );
    }
}
