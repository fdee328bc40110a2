//! The repositories for async code. Every storage call blocks (libgit2, the filesystem),
//! so it runs on tokio's blocking threads: this is the one place that sends it there, and
//! the one mapping of a task that panicked or was cancelled to an error.

use std::future::Future;

use guts_storage::Repositories;

/// A storage task that panicked or was cancelled (at shutdown).
#[derive(Debug, thiserror::Error)]
#[error("a storage task failed: {0}")]
pub struct TaskFailed(#[from] tokio::task::JoinError);

/// The node's repositories, each call on a blocking thread.
#[derive(Clone)]
pub(crate) struct Store {
    repos: Repositories,
}

impl Store {
    pub(crate) fn new(repos: Repositories) -> Self {
        Store { repos }
    }

    /// The repositories themselves, for code already on a blocking thread.
    pub(crate) fn repos(&self) -> &Repositories {
        &self.repos
    }

    /// Starts `work` on a blocking thread now (not when the future is first polled, so a
    /// caller can feed it through a channel meanwhile); the future gives what it returned.
    pub(crate) fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Repositories) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, TaskFailed>> + Send + 'static {
        let repos = self.repos.clone();
        let task = tokio::task::spawn_blocking(move || work(&repos));
        async move { Ok(task.await?) }
    }

    /// Runs `work` in the background; it reports its own failures.
    pub(crate) fn spawn(&self, work: impl FnOnce(&Repositories) + Send + 'static) {
        let repos = self.repos.clone();
        tokio::task::spawn_blocking(move || work(&repos));
    }
}
