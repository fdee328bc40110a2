//! Patches and issues as this node's user makes and reads them: each change signed with
//! the node's key, following the object's tips, checked against the same rules every
//! node replays it with (so what would be skipped is refused here, with the reason),
//! stored, and announced on the changes topic.

mod events;
mod report;
mod request;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use guts_api::collab::{ChangeRequest, ChangeResponse, IssueReport, PatchReport};
use guts_cob::{Action, Change, ChangeId, Graph, Issue, Kind, Patch, SignedChange};
use guts_protocol::wire::{ChangeTip, ChangesAnnouncement};
use guts_protocol::{ObjectId, RepositoryId};
use guts_storage::{ChangePolicy, Repositories, Standing, StorageError};

use crate::error::NodeError;
use crate::network::Client;
use crate::store::Store;

/// Makes and reads patches and issues.
#[derive(Clone)]
pub(crate) struct Collab {
    store: Store,
    key: SigningKey,
    client: Client,
    policies: crate::seeding::Policies,
}

impl Collab {
    pub(crate) fn new(
        store: Store,
        key: SigningKey,
        client: Client,
        policies: crate::seeding::Policies,
    ) -> Self {
        Collab {
            store,
            key,
            client,
            policies,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Repositories) -> Result<T, NodeError> + Send + 'static,
    ) -> Result<T, NodeError> {
        self.store.run(work).await?
    }

    /// A push area for a patch's commits.
    pub(crate) async fn area(&self, id: RepositoryId) -> Result<PathBuf, NodeError> {
        self.run(move |repos| Ok(repos.create_contribution_area(&id)?))
            .await
    }

    /// Makes the change `request` asks for, signed with this node's key, then
    /// announces it.
    pub(crate) async fn change(
        &self,
        id: RepositoryId,
        request: ChangeRequest,
    ) -> Result<ChangeResponse, NodeError> {
        let key = self.key.clone();
        let policy = self.policies.changes();
        let tip = self
            .run(move |repos| make_change(repos, id, request, &key, &policy))
            .await?;
        let local = crate::identity::peer_of_owner(&self.key.verifying_key())
            .expect("the node's own key makes a peer id");
        crate::publish::publish(
            &self.store,
            &self.client,
            local,
            id,
            crate::publish::News::Changes(ChangesAnnouncement {
                repository: id,
                tips: vec![tip],
            }),
        )
        .await;
        Ok(ChangeResponse {
            change: tip.change.to_string(),
            object: tip.object.to_string(),
        })
    }

    /// What happened to the patches and issues of `ids` (every repository held when
    /// empty) since `since`, oldest first.
    pub(crate) async fn events(
        &self,
        ids: Vec<RepositoryId>,
        since: u64,
    ) -> Result<Vec<guts_api::collab::EventReport>, NodeError> {
        let blocked = self.policies.changes().blocked;
        self.run(move |repos| {
            let ids = if ids.is_empty() { repos.list()? } else { ids };
            Ok(events::events(repos, &ids, since, &blocked)?)
        })
        .await
    }

    /// Every issue of `id`, newest first.
    pub(crate) async fn issues(&self, id: RepositoryId) -> Result<Vec<IssueReport>, NodeError> {
        let blocked = self.policies.changes().blocked;
        self.run(move |repos| {
            let c = repos.collaboration(&id, &blocked)?;
            Ok(c.issues.iter().map(report::issue).collect())
        })
        .await
    }

    /// Every patch of `id`, newest first.
    pub(crate) async fn patches(&self, id: RepositoryId) -> Result<Vec<PatchReport>, NodeError> {
        let blocked = self.policies.changes().blocked;
        self.run(move |repos| {
            let c = repos.collaboration(&id, &blocked)?;
            Ok(c.patches.iter().map(|(p, s)| report::patch(p, s)).collect())
        })
        .await
    }

    /// The issue `which` (an id or a prefix) of `id`.
    pub(crate) async fn issue(
        &self,
        id: RepositoryId,
        which: String,
    ) -> Result<IssueReport, NodeError> {
        let blocked = self.policies.changes().blocked;
        self.run(move |repos| {
            let c = repos.standing(&id, &blocked)?;
            let object = object_of(&c.graph, &which, Kind::Issue)?;
            c.issue(&object)
                .map(|i| report::issue(&i))
                .ok_or_else(|| NodeError::NotFound(format!("issue {which} is hidden here")))
        })
        .await
    }

    /// The patch `which` (an id or a prefix) of `id`.
    pub(crate) async fn patch(
        &self,
        id: RepositoryId,
        which: String,
    ) -> Result<PatchReport, NodeError> {
        let blocked = self.policies.changes().blocked;
        self.run(move |repos| {
            let c = repos.standing(&id, &blocked)?;
            let object = object_of(&c.graph, &which, Kind::Patch)?;
            let patch = c
                .patch(&object)
                .ok_or_else(|| NodeError::NotFound(format!("patch {which} is hidden here")))?;
            let state = repos.patch_state(&id, &c, &patch)?;
            Ok(report::patch(&patch, &state))
        })
        .await
    }
}

/// The object `which` names, which must be of `kind`.
fn object_of(graph: &Graph, which: &str, kind: Kind) -> Result<ChangeId, NodeError> {
    let object = request::resolve(graph, which, kind.singular())?;
    match graph.kind_of(&object) {
        Some(k) if k == kind && graph.get(&object).is_some_and(|ch| ch.object.is_none()) => {
            Ok(object)
        }
        Some(k) => Err(NodeError::BadRequest(format!(
            "{which} is not {} but {}",
            kind.with_article(),
            k.with_article()
        ))),
        None => Err(NodeError::NotFound(format!(
            "no {} {which} here",
            kind.singular()
        ))),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Builds, checks, signs and stores one change (and the moderation record first, if a
/// hide needs one). Blocking.
fn make_change(
    repos: &Repositories,
    id: RepositoryId,
    request: ChangeRequest,
    key: &SigningKey,
    policy: &ChangePolicy,
) -> Result<ChangeTip, NodeError> {
    // Authoring replays only the object it touches, not every patch and issue.
    let collab = repos.standing(&id, &policy.blocked)?;
    let me = key.verifying_key();
    if !collab.contributions && !collab.identity.is_maintainer(&me) {
        return Err(NodeError::NotAllowed(format!(
            "contributions to guts://{id} are off: only its maintainers open patches and issues there"
        )));
    }
    let (mut action, revision) = request::action(request.action, &collab.graph)?;
    let object = match (&action, request.object) {
        (Action::OpenIssue { .. } | Action::OpenPatch { .. }, None) => None,
        (Action::OpenIssue { .. } | Action::OpenPatch { .. }, Some(_)) => {
            return Err(NodeError::BadRequest(format!(
                "{} opens its own object: name none",
                action.name()
            )));
        }
        (Action::Hide { key: hidden } | Action::Unhide { key: hidden }, _) => {
            if !collab.identity.is_maintainer(&me) {
                return Err(NodeError::NotAllowed(format!(
                    "only the maintainers of guts://{id} may {}",
                    if *hidden == guts_cob::everyone() {
                        "turn contributions on or off"
                    } else {
                        "hide a key there"
                    }
                )));
            }
            Some(moderation_object(repos, id, &collab.graph, key)?)
        }
        (_, None) => {
            return Err(NodeError::BadRequest(format!(
                "{} is about a patch or an issue: name it",
                action.name()
            )));
        }
        (_, Some(which)) => Some(request::resolve(&collab.graph, &which, "patch or issue")?),
    };
    let object_kind = object.and_then(|o| collab.graph.kind_of(&o));
    if let Some(o) = object
        && collab.graph.get(&o).is_some_and(|c| c.object.is_some())
    {
        return Err(NodeError::BadRequest(format!(
            "{o} is a change within an object, not a patch or an issue"
        )));
    }
    // What the caller left to fill in: a patch's branch and base, a review's revision.
    let area = request.area.map(PathBuf::from);
    if let Some(rev) = &revision {
        let area = area.as_ref().ok_or_else(|| {
            NodeError::BadRequest(format!(
                "{} needs its commits: push them into a contribution area first",
                action.name()
            ))
        })?;
        let target = match (&rev.target, object.and_then(|o| collab.patch(&o))) {
            (Some(t), _) => t.clone(),
            (None, Some(patch)) => patch.target.clone(),
            (None, None) => default_branch(repos, &id)?,
        };
        let new_base = repos.patch_base(&id, area, &target, rev.head)?;
        match &mut action {
            Action::OpenPatch {
                target: t, base, ..
            } => {
                *t = target;
                *base = new_base;
            }
            Action::Revise { base, .. } => *base = new_base,
            _ => {}
        }
    }
    if let Action::Review { revision, .. } = &mut action
        && *revision == ObjectId([0; 20])
    {
        let patch = object
            .and_then(|o| collab.patch(&o))
            .ok_or_else(|| NodeError::BadRequest("a review is of a patch".into()))?;
        *revision = patch.latest().id;
    }
    action.check().map_err(NodeError::BadRequest)?;
    if let Some(kind) = object_kind
        && !action.fits(kind)
    {
        return Err(NodeError::BadRequest(format!(
            "{} does not apply to {}",
            action.name(),
            kind.with_article()
        )));
    }

    let mut parents = object.map(|o| collab.graph.tips(o)).unwrap_or_default();
    if let (Some(o), true) = (object, parents.is_empty()) {
        // An object just opened here (the moderation record): its opening is the tip.
        parents.push(o);
    }
    parents.sort();
    let change = Change {
        repository: id,
        object,
        parents,
        author: me,
        timestamp: now(),
        action,
    };
    let signed = SignedChange::sign(change, key).map_err(StorageError::from)?;
    let own = signed.git_form(&guts_storage::GitObjectHasher).id;
    refuse_if_skipped(&collab, own, &signed.change)?;

    match area {
        Some(area) => {
            let maintainers = collab.identity.maintainers.clone();
            let taken =
                repos.contribute(&id, &area, &signed, policy, &|k| maintainers.contains(k))?;
            if let Some((_, why)) = taken.left_out.iter().find(|(c, _)| *c == own) {
                return Err(NodeError::NotAllowed(format!("not kept: {why}")));
            }
        }
        None => {
            repos.write_change(&id, &signed)?;
        }
    }
    Ok(ChangeTip {
        change: own,
        object: signed.change.object_id(own),
        author: me,
    })
}

/// Refuses a change the replay rules would skip (a contributor labelling, an edit of
/// someone else's comment), naming why, rather than storing what no node would show.
fn refuse_if_skipped(c: &Standing, own: ChangeId, change: &Change) -> Result<(), NodeError> {
    let Some(root) = change.object else {
        return Ok(());
    };
    // The object's changes alone, with the new one.
    let mut graph = Graph::new();
    for (id, existing) in c.graph.order_of(root) {
        graph.insert(id, existing.clone());
    }
    graph.insert(own, change.clone());
    let ctx = c.context();
    let skipped = match graph.kind_of(&root) {
        Some(Kind::Issue) => Issue::replay(graph.order_of(root), &ctx).map(|i| i.skipped),
        Some(Kind::Patch) => Patch::replay(graph.order_of(root), &ctx).map(|p| p.skipped),
        _ => return Ok(()),
    };
    match skipped {
        Some(skipped) => match skipped.iter().find(|(id, _)| *id == own) {
            Some((_, why)) => Err(NodeError::NotAllowed((*why).to_owned())),
            None => Ok(()),
        },
        None => Err(NodeError::NotAllowed(
            "the object's author is hidden in this repository".into(),
        )),
    }
}

/// The repository's moderation record, opened (signed by `key`, a maintainer) if it has
/// none yet.
fn moderation_object(
    repos: &Repositories,
    id: RepositoryId,
    graph: &Graph,
    key: &SigningKey,
) -> Result<ChangeId, NodeError> {
    if let Some((object, _)) = graph.objects().find(|(_, k)| *k == Kind::Moderation) {
        return Ok(object);
    }
    let open = Change {
        repository: id,
        object: None,
        parents: vec![],
        author: key.verifying_key(),
        timestamp: now(),
        action: Action::OpenModeration,
    };
    let signed = SignedChange::sign(open, key).map_err(StorageError::from)?;
    Ok(repos.write_change(&id, &signed)?)
}

/// The branch HEAD names, or `main`.
fn default_branch(
    repos: &Repositories,
    id: &RepositoryId,
) -> Result<guts_protocol::RefName, NodeError> {
    let (_, canonical) = repos
        .canonical(id)?
        .ok_or(StorageError::UnknownRepository(*id))?;
    Ok(canonical
        .head
        .unwrap_or_else(|| "refs/heads/main".parse().expect("a valid name")))
}
