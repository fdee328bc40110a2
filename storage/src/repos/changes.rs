//! Collaborative objects in the store: patches, issues and moderation as graphs of
//! signed changes (see `guts-cob`).
//!
//! Each change is a commit of the one form `guts-cob` gives it, kept reachable by one ref
//! per tip of its object: `refs/cobs/<object>/<tip>`. Changes from peers come in through
//! the same quarantine and checks as a snapshot's objects; then each new change is read,
//! its signature and its commit form checked, and it must follow changes of its own
//! object. Only then do the objects move in and the tip refs move. What this node's
//! policy leaves out (a blocked key, a key past its quota) is not referenced, and goes at
//! the next repack.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use git2::{ObjectType, Oid, Repository};
use guts_cob::change::MAX_CHANGE_SIZE;
use guts_cob::git_form::CHANGE_FILE;
use guts_cob::{ChangeId, GitHasher, GitKind, Graph, SignedChange};
use guts_protocol::wire::ChangeTip;
use guts_protocol::{ObjectId, RepositoryId};

use super::ingest::{Objects, index_objects};
use super::packed_refs::{remove_loose_refs, write_packed_refs};
use super::verify::check_targets;
use super::{PackStats, Repositories, git, object_id, oid, read_quarantine};
use crate::StorageError;

/// Where the tips of each object's changes are: `refs/cobs/<object>/<tip>`.
pub const CHANGES_PREFIX: &str = "refs/cobs/";

/// git's own object hash, from libgit2 (SHA-1 with collision detection).
pub struct GitObjectHasher;

impl GitHasher for GitObjectHasher {
    fn hash(&self, kind: GitKind, body: &[u8]) -> ObjectId {
        let kind = match kind {
            GitKind::Blob => ObjectType::Blob,
            GitKind::Tree => ObjectType::Tree,
            GitKind::Commit => ObjectType::Commit,
        };
        let id = Oid::hash_object(kind, body).expect("libgit2 hashes any bytes of a known type");
        object_id(id)
    }
}

pub use super::ChangePolicy;

/// What [`Repositories::accept_changes`] did.
#[derive(Debug, Default)]
pub struct ChangesAccepted {
    /// The changes taken, in replay order.
    pub taken: Vec<ChangeId>,
    /// The objects they belong to.
    pub objects: BTreeSet<ChangeId>,
    /// Changes left out by this node's policy, and why (no fault of the sender's).
    pub left_out: Vec<(ChangeId, String)>,
    /// The pack received.
    pub stats: PackStats,
}

/// Why a commit's change cannot be read.
#[derive(Debug)]
enum Unreadable {
    /// A change of a format a newer release writes: no fault of the sender's.
    Newer(u8),
    /// Not a change.
    Bad(String),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Newer(found) => write!(
                f,
                "change format {found}, written by a newer release: this build reads format {}",
                guts_cob::change::CHANGE_FORMAT
            ),
            Unreadable::Bad(why) => f.write_str(why),
        }
    }
}

impl From<String> for Unreadable {
    fn from(why: String) -> Self {
        Unreadable::Bad(why)
    }
}

/// Reads the change in commit `id`; what is wrong, if it is not one.
fn read_change(repo: &Repository, id: ObjectId) -> Result<SignedChange, Unreadable> {
    let commit = repo
        .find_commit(oid(&id))
        .map_err(|_| "not a commit".to_owned())?;
    let tree = commit.tree().map_err(|e| format!("its tree: {e}"))?;
    let entry = tree
        .get_name(CHANGE_FILE)
        .ok_or_else(|| format!("its tree has no `{CHANGE_FILE}` file"))?;
    let odb = repo.odb().map_err(|e| e.to_string())?;
    // The size first: a peer's "change" may be any blob.
    let (size, kind) = odb
        .read_header(entry.id())
        .map_err(|e| format!("its change blob: {e}"))?;
    if kind != ObjectType::Blob || size > MAX_CHANGE_SIZE {
        return Err(Unreadable::Bad(format!(
            "its change is a {kind} of {size} bytes; a change is a blob of at most {MAX_CHANGE_SIZE}"
        )));
    }
    let blob = odb
        .read(entry.id())
        .map_err(|e| format!("its change blob: {e}"))?;
    SignedChange::decode(blob.data()).map_err(|e| match e {
        guts_cob::ChangeError::UnknownFormat { found }
            if found > guts_cob::change::CHANGE_FORMAT =>
        {
            Unreadable::Newer(found)
        }
        e => Unreadable::Bad(e.to_string()),
    })
}

/// The tip refs of `repo`, by object.
fn tips_by_object(repo: &Repository) -> Result<BTreeMap<ChangeId, Vec<ChangeId>>, StorageError> {
    let mut tips: BTreeMap<ChangeId, Vec<ChangeId>> = BTreeMap::new();
    for r in repo
        .references_glob(&format!("{CHANGES_PREFIX}*"))
        .map_err(git("listing change refs"))?
        .flatten()
    {
        let Ok(name) = r.name() else { continue };
        let mut parts = name[CHANGES_PREFIX.len()..].split('/');
        if let (Some(object), Some(tip), None) = (parts.next(), parts.next(), parts.next())
            && let (Ok(object), Ok(tip)) = (object.parse(), tip.parse())
        {
            tips.entry(object).or_default().push(tip);
        }
    }
    Ok(tips)
}

/// Reads every change reachable from `tips` into `graph` (changes this store took, so
/// checked then; read again only to replay).
fn load(
    repo: &Repository,
    tips: impl IntoIterator<Item = ChangeId>,
    graph: &mut Graph,
) -> Result<(), StorageError> {
    let mut stack: Vec<ChangeId> = tips.into_iter().collect();
    while let Some(id) = stack.pop() {
        if graph.contains(&id) {
            continue;
        }
        let change = read_change(repo, id).map_err(|reason| StorageError::Corrupt {
            path: repo.path().to_owned(),
            reason: format!("change {id}: {reason}"),
        })?;
        stack.extend(change.change.parents.iter().copied());
        graph.insert(id, change.change);
    }
    Ok(())
}

/// Rewrites the tip refs: one per change of `graph` (in replay order) no other follows.
fn write_tips(repo: &Repository, graph: &Graph) -> Result<(), StorageError> {
    let order = graph.order();
    let mut followed = BTreeSet::new();
    for id in &order {
        if let Some(c) = graph.get(id) {
            followed.extend(c.parents.iter().copied());
        }
    }
    let mut refs = BTreeMap::new();
    for id in order.iter().filter(|id| !followed.contains(*id)) {
        if let Some(c) = graph.get(id) {
            refs.insert(format!("{CHANGES_PREFIX}{}/{id}", c.object_id(*id)), *id);
        }
    }
    write_packed_refs(repo.path(), &[CHANGES_PREFIX], &refs)?;
    remove_loose_refs(repo.path(), &[CHANGES_PREFIX])
}

impl Repositories {
    /// The tips of every object of `id`'s, by object (none if the repository is not held).
    pub fn change_tips(
        &self,
        id: &RepositoryId,
    ) -> Result<BTreeMap<ChangeId, Vec<ChangeId>>, StorageError> {
        match Repository::open_bare(self.path(id)) {
            Ok(repo) => tips_by_object(&repo),
            Err(_) => Ok(BTreeMap::new()),
        }
    }

    /// The tips of `id`'s objects with their objects and authors: what a peer is told.
    pub fn change_tip_list(&self, id: &RepositoryId) -> Result<Vec<ChangeTip>, StorageError> {
        let Ok(repo) = Repository::open_bare(self.path(id)) else {
            return Err(StorageError::UnknownRepository(*id));
        };
        let mut out = Vec::new();
        for (object, tips) in tips_by_object(&repo)? {
            for tip in tips {
                let change = read_change(&repo, tip).map_err(|reason| StorageError::Corrupt {
                    path: repo.path().to_owned(),
                    reason: format!("change {tip}: {reason}"),
                })?;
                out.push(ChangeTip {
                    change: tip,
                    object,
                    author: change.change.author,
                });
            }
        }
        Ok(out)
    }

    /// The tips to offer a peer of `id`'s changes when this node blocks `blocked`: the
    /// newest changes no blocked key's change precedes, so a blocked key's changes held
    /// from before it was blocked never travel as another's ancestors. With no block
    /// list, [`Self::change_tip_list`].
    pub fn change_tips_without(
        &self,
        id: &RepositoryId,
        blocked: &BTreeSet<[u8; 32]>,
    ) -> Result<Vec<ChangeTip>, StorageError> {
        if blocked.is_empty() {
            return self.change_tip_list(id);
        }
        let graph = self.changes(id)?;
        // Replay order puts parents first: one pass marks every descendant.
        let mut tainted: BTreeSet<ChangeId> = BTreeSet::new();
        let mut followed: BTreeSet<ChangeId> = BTreeSet::new();
        let order = graph.order();
        for c in &order {
            let Some(change) = graph.get(c) else { continue };
            if blocked.contains(change.author.as_bytes())
                || change.parents.iter().any(|p| tainted.contains(p))
            {
                tainted.insert(*c);
            } else {
                followed.extend(change.parents.iter().copied());
            }
        }
        Ok(order
            .iter()
            .filter(|c| !tainted.contains(*c) && !followed.contains(*c))
            .filter_map(|c| {
                let change = graph.get(c)?;
                Some(ChangeTip {
                    change: *c,
                    object: change.object_id(*c),
                    author: change.author,
                })
            })
            .collect())
    }

    /// Every change of `id` this node holds.
    pub fn changes(&self, id: &RepositoryId) -> Result<Graph, StorageError> {
        let mut graph = Graph::new();
        let Ok(repo) = Repository::open_bare(self.path(id)) else {
            return Err(StorageError::UnknownRepository(*id));
        };
        load(
            &repo,
            tips_by_object(&repo)?.into_values().flatten(),
            &mut graph,
        )?;
        Ok(graph)
    }

    /// The changes of `id`'s moderation records alone (hidden keys, contributions on or
    /// off): one read per object rather than every patch's and issue's changes.
    pub fn moderation_changes(&self, id: &RepositoryId) -> Result<Graph, StorageError> {
        let Ok(repo) = Repository::open_bare(self.path(id)) else {
            return Err(StorageError::UnknownRepository(*id));
        };
        let mut graph = Graph::new();
        for (object, tips) in tips_by_object(&repo)? {
            let root = read_change(&repo, object).map_err(|reason| StorageError::Corrupt {
                path: repo.path().to_owned(),
                reason: format!("change {object}: {reason}"),
            })?;
            if root.change.opens() == Some(guts_cob::Kind::Moderation) {
                load(&repo, tips, &mut graph)?;
            }
        }
        Ok(graph)
    }

    /// Every object this node holds whole of `id` and may serve: the record's targets,
    /// the changes' tips and the forks' refs. `None` if it does not hold `id`.
    pub fn servable(&self, id: &RepositoryId) -> Result<Option<Vec<ObjectId>>, StorageError> {
        let Some(held) = self.held(id)? else {
            return Ok(None);
        };
        let mut all = held.targets();
        all.extend(self.change_tips(id)?.into_values().flatten());
        all.extend(self.fork_targets(id)?);
        all.sort_unstable();
        all.dedup();
        Ok(Some(all))
    }

    /// Stores a change this node's key signed; its parents must be held and the commit
    /// its action names present.
    pub fn write_change(
        &self,
        id: &RepositoryId,
        signed: &SignedChange,
    ) -> Result<ChangeId, StorageError> {
        let lock = self.lock(id);
        let _guard = self.write(id, &lock)?;
        let repo = Repository::open_bare(self.path(id))
            .map_err(|_| StorageError::UnknownRepository(*id))?;
        signed.verify().map_err(StorageError::Change)?;
        let mut graph = Graph::new();
        load(
            &repo,
            tips_by_object(&repo)?.into_values().flatten(),
            &mut graph,
        )?;
        for parent in &signed.change.parents {
            if !graph.contains(parent) {
                return Err(StorageError::MissingObject {
                    repository: *id,
                    object: *parent,
                });
            }
        }
        if let Some(related) = signed.change.action.related()
            && repo.find_commit(oid(&related)).is_err()
        {
            return Err(StorageError::MissingObject {
                repository: *id,
                object: related,
            });
        }
        let form = signed.git_form(&GitObjectHasher);
        let odb = repo.odb().map_err(git("opening the object database"))?;
        odb.write(ObjectType::Blob, &form.blob)
            .and_then(|_| odb.write(ObjectType::Tree, &form.tree))
            .and_then(|_| odb.write(ObjectType::Commit, &form.commit))
            .map_err(git("writing a change"))?;
        graph.insert(form.id, signed.change.clone());
        if !graph.order().contains(&form.id) {
            return Err(StorageError::Change(guts_cob::ChangeError::Malformed {
                author: hex::encode(signed.change.author.as_bytes()),
                reason: format!(
                    "{} does not fit the object it names",
                    signed.change.action.name()
                ),
            }));
        }
        write_tips(&repo, &graph)?;
        Ok(form.id)
    }

    /// Takes the changes a peer offered as `offered` tips, with the objects of `pack`
    /// (streamed, quarantined and indexed as a snapshot's are). Every new change must be
    /// signed by its author, in its one commit form, and follow changes of its object,
    /// or nothing is taken; `policy` then leaves out blocked keys and keys past their
    /// quota (and what follows their changes), which is no fault of the sender's.
    /// `maintainers` are exempt from quotas. Blocking.
    pub fn accept_changes(
        &self,
        id: &RepositoryId,
        offered: &[ChangeId],
        pack: Option<&mut dyn Iterator<Item = io::Result<Vec<u8>>>>,
        policy: &ChangePolicy,
        maintainers: &dyn Fn(&ed25519_dalek::VerifyingKey) -> bool,
        progress: &mut dyn FnMut(PackStats),
    ) -> Result<ChangesAccepted, StorageError> {
        let lock = self.lock(id);
        let _guard = self.write(id, &lock)?;
        let repo = Repository::open_bare(self.path(id))
            .map_err(|_| StorageError::UnknownRepository(*id))?;
        let held_tips = tips_by_object(&repo)?;
        let mut graph = Graph::new();
        load(&repo, held_tips.values().flatten().copied(), &mut graph)?;

        let objects = match pack {
            Some(chunks) => Objects::Stream(chunks, super::packer::Fsck::Strict),
            None => Objects::Held,
        };
        let (quarantine, stats) = index_objects(self, &repo, id, objects, progress)?;
        if let Some(q) = &quarantine {
            read_quarantine(&repo, q.dir())?;
        }
        let mut known: Vec<Oid> = self
            .servable(id)?
            .unwrap_or_default()
            .iter()
            .map(oid)
            .collect();
        known.sort_unstable();
        check_targets(
            &repo,
            quarantine.as_ref().map(|q| q.dir()),
            *id,
            offered,
            &known,
            stats.objects,
            &self.limits,
        )?;

        // The new changes, each checked on its own.
        let bad = |change: ChangeId, reason: String| StorageError::BadChange {
            repository: *id,
            change,
            reason,
        };
        let mut new = Graph::new();
        // Changes a newer release wrote, and why they wait: whatever follows them waits
        // too, until this node reads their format.
        let mut newer: Vec<(ChangeId, String)> = Vec::new();
        let mut stack: Vec<ChangeId> = offered.to_vec();
        while let Some(c) = stack.pop() {
            if graph.contains(&c) || new.contains(&c) || newer.iter().any(|(n, _)| *n == c) {
                continue;
            }
            let signed = match read_change(&repo, c) {
                Ok(signed) => signed,
                Err(e @ Unreadable::Newer(_)) => {
                    newer.push((c, e.to_string()));
                    continue;
                }
                Err(e) => return Err(bad(c, e.to_string())),
            };
            signed.verify().map_err(|e| bad(c, e.to_string()))?;
            signed
                .check_commit(c, &GitObjectHasher)
                .map_err(|e| bad(c, e.to_string()))?;
            if signed.change.repository != *id {
                return Err(bad(
                    c,
                    format!("it is a change of {}", signed.change.repository),
                ));
            }
            stack.extend(signed.change.parents.iter().copied());
            new.insert(c, signed.change);
        }
        let mut all = graph.clone();
        for (c, change) in new.iter() {
            all.insert(c, change.clone());
        }
        let order = all.order();
        let placed: BTreeSet<&ChangeId> = order.iter().collect();
        let mut waiting: BTreeSet<ChangeId> = newer.iter().map(|(c, _)| *c).collect();
        loop {
            let more: Vec<ChangeId> = new
                .iter()
                .filter(|(c, change)| {
                    !placed.contains(c)
                        && !waiting.contains(c)
                        && change.parents.iter().any(|p| waiting.contains(p))
                })
                .map(|(c, _)| c)
                .collect();
            if more.is_empty() {
                break;
            }
            waiting.extend(more);
        }
        if let Some((c, change)) = new
            .iter()
            .find(|(c, _)| !placed.contains(c) && !waiting.contains(c))
        {
            return Err(bad(
                c,
                format!(
                    "{} follows a change that is not there or not of its object",
                    change.action.name()
                ),
            ));
        }

        // The maintainers may have turned contributions off (with what came now, too).
        let identity = self
            .held(id)?
            .ok_or(StorageError::UnknownRepository(*id))?
            .into_state()
            .identity
            .current()
            .clone();
        let closed =
            policy.maintainers_only || guts_cob::Moderation::replay(&all, &identity).closed;

        // This node's policy, in replay order, so a quota keeps the earliest.
        let mut objects_of: BTreeMap<[u8; 32], usize> = BTreeMap::new();
        let mut changes_of: BTreeMap<[u8; 32], usize> = BTreeMap::new();
        // Counting needs no order: every held change was placed when it was taken.
        for (_, change) in graph.iter() {
            *changes_of.entry(*change.author.as_bytes()).or_default() += 1;
            if change.opens().is_some() {
                *objects_of.entry(*change.author.as_bytes()).or_default() += 1;
            }
        }
        let mut accepted = ChangesAccepted {
            stats,
            ..ChangesAccepted::default()
        };
        for c in &waiting {
            let why = match newer.iter().find(|(n, _)| n == c) {
                Some((_, why)) => why.clone(),
                None => "it follows a change of a newer release's format".to_owned(),
            };
            accepted.left_out.push((*c, why));
        }
        let mut dropped: BTreeSet<ChangeId> = BTreeSet::new();
        let mut kept = graph;
        for c in order.iter().filter(|c| new.contains(c)) {
            let Some(change) = new.get(c) else { continue };
            let author = *change.author.as_bytes();
            let exempt = maintainers(&change.author);
            let why = if change.parents.iter().any(|p| dropped.contains(p)) {
                Some("it follows a change left out".to_owned())
            } else if policy.blocked.contains(&author) {
                Some(format!(
                    "its author {} is blocked here",
                    hex::encode(author)
                ))
            } else if !exempt && closed {
                Some(format!(
                    "contributions to {id} are off: only its maintainers' changes are kept"
                ))
            } else if !exempt
                && change.opens().is_some()
                && objects_of.get(&author).copied().unwrap_or(0) >= policy.max_objects_per_key
            {
                Some(format!(
                    "its author {} opened {} objects here already, the most one key may",
                    hex::encode(author),
                    policy.max_objects_per_key
                ))
            } else if !exempt
                && changes_of.get(&author).copied().unwrap_or(0) >= policy.max_changes_per_key
            {
                Some(format!(
                    "its author {} made {} changes here already, the most one key may",
                    hex::encode(author),
                    policy.max_changes_per_key
                ))
            } else {
                None
            };
            match why {
                Some(why) => {
                    dropped.insert(*c);
                    accepted.left_out.push((*c, why));
                }
                None => {
                    *changes_of.entry(author).or_default() += 1;
                    if change.opens().is_some() {
                        *objects_of.entry(author).or_default() += 1;
                    }
                    accepted.objects.insert(change.object_id(*c));
                    accepted.taken.push(*c);
                    kept.insert(*c, change.clone());
                }
            }
        }
        if accepted.taken.is_empty() {
            return Ok(accepted);
        }
        if let Some(q) = quarantine {
            q.promote(&self.path(id).join("objects").join("pack"))?;
        }
        self.forget_clean_pack(id)?;
        write_tips(&repo, &kept)?;
        Ok(accepted)
    }
}
