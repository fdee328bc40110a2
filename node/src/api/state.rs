//! What every handler of the control API is given.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::handle::NodeHandle;

/// The node the API drives, its metrics, and whether the server is stopping.
#[derive(Clone)]
pub(super) struct ApiState {
    pub node: NodeHandle,
    pub registry: Arc<Registry>,
    /// True once the server stops: answers that follow something end then.
    pub stopping: watch::Receiver<bool>,
}
