//! Putting a seeding policy in effect: what the node holds and follows is brought in line
//! with it (blocked repositories removed, seeded ones followed and fetched), the store
//! takes the new blocked keys, and peers are asked again for the repositories of seeded
//! keys.

use ed25519_dalek::VerifyingKey;
use guts_api::seeding::{PolicyReport, PolicyRequest, PolicyTarget, SeedReport};
use guts_protocol::RepositoryId;
use guts_storage::Repositories;

use super::{Decision, Scope, SeedingPolicy, Target, keys_of};
use crate::config::Replicate;
use crate::error::NodeError;
use crate::handle::NodeHandle;

/// What applying a policy changed.
#[derive(Debug, Default)]
struct Applied {
    removed: Vec<RepositoryId>,
    followed: Vec<RepositoryId>,
}

impl NodeHandle {
    /// The seeding policy in effect.
    pub async fn policy(&self) -> PolicyReport {
        report(self, &self.engine.policies().current(), Applied::default())
    }

    /// Changes the seeding policy (or reads its file again), writes it, and puts it in
    /// effect at once.
    pub async fn change_policy(&self, request: PolicyRequest) -> Result<PolicyReport, NodeError> {
        let policies = self.engine.policies().clone();
        let policy = match request {
            PolicyRequest::Reload => policies.reload()?,
            PolicyRequest::Seed {
                target,
                contributions,
            } => {
                let target = Target::parse(&target).map_err(NodeError::BadRequest)?;
                let scope: Scope = match contributions.as_deref() {
                    None => Scope::All,
                    Some(s) => s
                        .parse()
                        .map_err(|e| NodeError::BadRequest(format!("contributions {s:?}: {e}")))?,
                };
                policies.update(|p| p.seed(target, scope))?
            }
            PolicyRequest::Block { target } => {
                let target = Target::parse(&target).map_err(NodeError::BadRequest)?;
                self.refuse_own(&target).await?;
                policies.update(|p| p.block(target))?
            }
            PolicyRequest::Unseed { target } | PolicyRequest::Unblock { target } => {
                let target = Target::parse(&target).map_err(NodeError::BadRequest)?;
                policies.update(|p| {
                    p.forget(&target);
                })?
            }
        };
        let applied = self.apply_policy().await?;
        Ok(report(self, &policy, applied))
    }

    /// Reads the policy file again and applies it (SIGHUP); the policy in effect stays if
    /// the file is wrong.
    pub async fn reload_policy(&self) -> Result<PolicyReport, NodeError> {
        self.change_policy(PolicyRequest::Reload).await
    }

    /// A block of this node's own key or of a repository it maintains would remove its
    /// own work: refused, naming the way that does it on purpose.
    async fn refuse_own(&self, target: &Target) -> Result<(), NodeError> {
        let owner = self.author.owner_key();
        match target {
            Target::Key(k) if *k == owner => Err(NodeError::BadRequest(
                "that is this node's own key: its repositories are not blocked (remove one with guts repo remove --force)".into(),
            )),
            Target::Repo(id) => {
                let id = *id;
                let ours = self
                    .store
                    .run(move |repos| repos.held(&id))
                    .await??
                    .is_some_and(|held| keys_of(&held).contains(&owner));
                if ours {
                    return Err(NodeError::BadRequest(format!(
                        "{id} is this node's own (its key created or maintains it): remove it with guts repo remove --force"
                    )));
                }
                Ok(())
            }
            Target::Key(_) => Ok(()),
        }
    }

    /// Brings what is held and followed in line with the policy in effect.
    async fn apply_policy(&self) -> Result<Applied, NodeError> {
        let policies = self.engine.policies().clone();
        let policy = policies.current();
        let owner = self.author.owner_key();
        let changes = policies.changes();
        let applied = self
            .store
            .run(move |repos| {
                repos.set_policy(changes);
                bring_in_line(repos, &policy, &owner)
            })
            .await??;
        for id in &applied.removed {
            self.client.stop_providing(*id);
            tracing::info!(repository = %id, "removed: blocked by the seeding policy");
        }
        for id in &applied.followed {
            tracing::info!(repository = %id, "following: seeded by the seeding policy");
            self.engine.trigger(*id, None);
        }
        // Repositories of seeded keys this node has not heard of: peers list theirs.
        if self.engine.policies().current().seeds_keys() {
            for peer in self.client.connected_peers().await {
                self.engine.catch_up(peer);
            }
        }
        Ok(applied)
    }
}

/// Removes what `policy` blocks (never what `owner` created or maintains) and follows
/// what it seeds. Blocking.
fn bring_in_line(
    repos: &Repositories,
    policy: &SeedingPolicy,
    owner: &VerifyingKey,
) -> Result<Applied, guts_storage::StorageError> {
    let mut applied = Applied::default();
    for id in repos.list()? {
        let Some(held) = repos.held(&id)? else {
            continue;
        };
        let keys = keys_of(&held);
        match policy.decide(&id, &keys) {
            Decision::Block if keys.contains(owner) => {
                tracing::warn!(repository = %id, "blocked by the seeding policy but this node's own: kept");
            }
            Decision::Block => {
                repos.unfollow(&id)?;
                repos.remove(&id)?;
                applied.removed.push(id);
            }
            Decision::Seed(_) => {
                if repos.follow(&id)? {
                    applied.followed.push(id);
                }
            }
            Decision::Default => {}
        }
    }
    for id in repos.followed()? {
        if policy.decide(&id, &[]) == Decision::Block {
            repos.unfollow(&id)?;
        }
    }
    for id in policy.seeded_repositories() {
        if policy.decide(id, &[]) != Decision::Block && repos.follow(id)? {
            applied.followed.push(*id);
        }
    }
    Ok(applied)
}

fn report(handle: &NodeHandle, policy: &SeedingPolicy, applied: Applied) -> PolicyReport {
    let target = |t: &Target| match t {
        Target::Key(k) => PolicyTarget {
            kind: "key".into(),
            target: hex::encode(k.as_bytes()),
        },
        Target::Repo(id) => PolicyTarget {
            kind: "repo".into(),
            target: id.to_string(),
        },
    };
    let default = policy.default.unwrap_or(handle.engine.default_replicate());
    PolicyReport {
        file: handle.engine.policies().path().display().to_string(),
        default: match default {
            Replicate::All => "all",
            Replicate::Followed => "followed",
        }
        .into(),
        seed: policy
            .seed
            .iter()
            .map(|r| SeedReport {
                target: target(&r.target),
                contributions: r.contributions.to_string(),
            })
            .collect(),
        block: policy.block.iter().map(target).collect(),
        removed: applied.removed.iter().map(ToString::to_string).collect(),
        followed: applied.followed.iter().map(ToString::to_string).collect(),
    }
}
