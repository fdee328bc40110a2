//! Fetching mirrors: when each is due, and on demand, as the node's handle does it.

use std::time::Duration;

use guts_api::collab::{ActionBody, ChangeRequest};
use guts_api::mirrors::MirrorReport;
use guts_protocol::{RepoName, RepositoryId};

use super::list::{DEFAULT_EVERY, MIN_EVERY, Mirror, Mirrors, now};
use crate::error::NodeError;
use crate::handle::NodeHandle;

/// How often the background task looks for mirrors due.
const TICK: Duration = Duration::from_secs(1);
/// Background fetches at once: each is a git fetch and an import, and a node mirroring
/// many upstreams must not run them all together.
const FETCHES_AT_ONCE: usize = 4;

/// Fetches each mirror when it is due, until the node stops.
pub(crate) fn start(handle: NodeHandle, mut stop: tokio::sync::watch::Receiver<bool>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(FETCHES_AT_ONCE));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            for id in handle.mirrors.due(now()) {
                let handle = handle.clone();
                let slots = slots.clone();
                tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let _ = handle.fetch_mirror(id).await;
                });
            }
        }
    });
}

impl NodeHandle {
    /// Starts mirroring `upstream` as the repository `name` (by default the upstream's
    /// last path part), fetched every `every`: fetched and signed now (an error leaves
    /// nothing behind), its contributions turned off.
    pub async fn add_mirror(
        &self,
        upstream: String,
        name: Option<RepoName>,
        every: Option<Duration>,
    ) -> Result<MirrorReport, NodeError> {
        let name = match name {
            Some(n) => n,
            None => guts_storage::ImportSource::parse(&upstream)
                .default_name()
                .ok_or_else(|| {
                    NodeError::BadRequest(format!(
                        "no repository name can be made from {upstream:?}: give one"
                    ))
                })?,
        };
        let every = every.unwrap_or(DEFAULT_EVERY).max(MIN_EVERY);
        let id = self.import_mirror(&upstream, name.clone()).await?.0;
        self.change(
            id,
            ChangeRequest {
                object: None,
                area: None,
                action: ActionBody::SetContributions { open: false },
            },
        )
        .await?;
        let mirror = Mirror {
            id,
            name,
            upstream,
            every,
            last: Some((now(), Ok(true))),
            running: false,
        };
        let report = Mirrors::report(&mirror);
        self.mirrors.lock().insert(id, mirror);
        self.mirrors.save()?;
        Ok(report)
    }

    /// The mirrors, and how each one's last fetch went.
    pub fn mirrors(&self) -> Vec<MirrorReport> {
        self.mirrors.lock().values().map(Mirrors::report).collect()
    }

    /// Fetches mirror `id` now (waiting for a fetch under way to end first).
    pub async fn sync_mirror(&self, id: RepositoryId) -> Result<MirrorReport, NodeError> {
        loop {
            {
                let mut list = self.mirrors.lock();
                let m = list
                    .get_mut(&id)
                    .ok_or_else(|| NodeError::NotFound(format!("{id} is not a mirror here")))?;
                if !m.running {
                    m.running = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.fetch_mirror(id).await
    }

    /// Stops mirroring `id` (the repository stays, with contributions off); whether it
    /// was a mirror.
    pub async fn remove_mirror(&self, id: RepositoryId) -> Result<bool, NodeError> {
        let Some(m) = self.mirrors.lock().remove(&id) else {
            return Ok(false);
        };
        self.mirrors.save()?;
        let name = m.name.clone();
        self.store
            .run(move |repos| repos.forget_mirror(&name))
            .await??;
        Ok(true)
    }

    /// One fetch of mirror `id`, marked running by the caller.
    async fn fetch_mirror(&self, id: RepositoryId) -> Result<MirrorReport, NodeError> {
        let Some((upstream, name)) = self
            .mirrors
            .lock()
            .get(&id)
            .map(|m| (m.upstream.clone(), m.name.clone()))
        else {
            return Err(NodeError::NotFound(format!("{id} is not a mirror here")));
        };
        let result = self.import_mirror(&upstream, name).await;
        let outcome = match &result {
            Ok((_, changed)) => Ok(*changed),
            Err(e) => {
                tracing::warn!(repository = %id, upstream, "mirror fetch failed: {e}");
                Err(e.to_string())
            }
        };
        if let Ok(true) = outcome {
            tracing::info!(repository = %id, upstream, "mirror updated from its upstream");
        }
        let mut list = self.mirrors.lock();
        let Some(m) = list.get_mut(&id) else {
            return Err(NodeError::NotFound(format!("{id} is not a mirror here")));
        };
        m.running = false;
        m.last = Some((now(), outcome));
        let report = Mirrors::report(m);
        drop(list);
        result.map(|_| report)
    }

    /// Fetches `upstream` into the mirror's copy and signs it as `name`: its id, and
    /// whether a new snapshot was signed.
    async fn import_mirror(
        &self,
        upstream: &str,
        name: RepoName,
    ) -> Result<(RepositoryId, bool), NodeError> {
        let imported = self.author.import_mirror(upstream.to_owned(), name).await?;
        Ok((imported.snapshot.repository(), imported.changed))
    }
}
