//! The node's public HTTP endpoint, off unless `--http` names an address: git's smart
//! HTTP protocol, so stock git clones and fetches a repository this node holds
//! (`git clone http://HOST:PORT/<id>`), and a web view of the node and those repositories
//! at the same URLs. Reading needs nothing, and a private repository is answered exactly
//! as one this node does not hold; a push (`--http-push`, off by default) needs the
//! control API's token and nothing else here does.

mod git;
mod push;
mod web;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use guts_protocol::RepositoryId;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::api::listener;
use crate::error::NodeError;
use crate::handle::NodeHandle;
use crate::store::Store;

/// Connections served at once; more are closed as they are accepted.
const MAX_CONNECTIONS: usize = 256;
/// Connections served at once from one IP address: a host holding many open (slowly
/// sending, or not reading) leaves the other slots to everyone else.
const MAX_CONNECTIONS_PER_IP: usize = 16;
/// Requests one IP may start per second, on average (bursts of twice as many): a peer's
/// sync requests are held to the same.
const REQUESTS_PER_IP_PER_SECOND: u32 = 20;
/// How long one answer (a whole pack) may take before it is cut off.
const DEADLINE: Duration = Duration::from_secs(600);

/// What the endpoint's handlers share.
#[derive(Clone)]
struct HttpState {
    node: NodeHandle,
    local_addr: SocketAddr,
    store: Store,
    /// One permit per `git upload-pack` running: the same bound as transfers to peers.
    transfers: Arc<Semaphore>,
    per_ip: Arc<DefaultKeyedRateLimiter<std::net::IpAddr>>,
    /// The control API's token, if pushes are taken (`--http-push`).
    push_token: Option<guts_api::auth::Token>,
}

/// The running endpoint.
pub(crate) struct Server {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `addr` and serves the repositories in `store`, at most `max_transfers` packs
    /// at once; pushes are taken from whoever presents `push_token`, if given.
    pub(crate) async fn start(
        addr: SocketAddr,
        node: NodeHandle,
        store: Store,
        max_transfers: usize,
        push_token: Option<guts_api::auth::Token>,
    ) -> Result<Server, NodeError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Http { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| NodeError::Http { addr, source })?;
        let rate = NonZeroU32::new(REQUESTS_PER_IP_PER_SECOND).expect("a positive rate");
        let burst = NonZeroU32::new(2 * REQUESTS_PER_IP_PER_SECOND).expect("a positive burst");
        let state = HttpState {
            node,
            local_addr,
            store,
            transfers: Arc::new(Semaphore::new(max_transfers.max(1))),
            per_ip: Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
            push_token,
        };
        let state_pushes = state.push_token.is_some();
        let app = Router::new()
            .route("/{repo}/info/refs", get(git::info_refs))
            .route("/{repo}/git-upload-pack", post(git::upload_pack_request))
            .route("/{repo}/git-receive-pack", post(push::receive))
            .route("/", get(web::node))
            .route("/{repo}", get(web::repository))
            .route("/{repo}/log/{*rest}", get(web::log))
            .route("/{repo}/commit/{commit}", get(web::commit))
            .route("/{repo}/{kind}", get(web::collab_list))
            .route("/{repo}/{kind}/{*rest}", get(web::browse))
            .fallback(git::not_found)
            .with_state(state);
        let stop = watch::Sender::new(false);
        let task = tokio::spawn(listener::serve(
            listener,
            app,
            stop.subscribe(),
            listener::Bounds {
                what: "git over HTTP",
                max_connections: MAX_CONNECTIONS,
                per_ip: Some(MAX_CONNECTIONS_PER_IP),
            },
        ));
        if state_pushes {
            tracing::info!(
                "git over HTTP on http://{local_addr} (pushes with the API token), and its web view"
            );
        } else {
            tracing::info!("git over HTTP on http://{local_addr} (read-only), and its web view");
        }
        Ok(Server {
            local_addr,
            stop,
            task,
        })
    }

    /// The address it listens on.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting; answers under way finish.
    pub(crate) async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Whether `remote`'s IP is over its request rate: answered 429.
fn limited(state: &HttpState, remote: SocketAddr) -> Option<Response> {
    state.per_ip.check_key(&remote.ip()).is_err().then(|| {
        let mut r = plain(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests; slow down\n",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    })
}

/// The repository id a URL's first segment names: `<id>` or `<id>.git`.
fn repo_id(repo: &str) -> Option<RepositoryId> {
    repo.strip_suffix(".git").unwrap_or(repo).parse().ok()
}

/// The id of `repo` (`<id>` or `<id>.git`) if this node holds it and it is public.
async fn public_id(state: &HttpState, repo: &str) -> Option<RepositoryId> {
    let id = repo_id(repo)?;
    let public = state
        .store
        .run(move |repos| -> Result<bool, guts_storage::StorageError> {
            Ok(repos.visible_to(&id, None)? && repos.held(&id)?.is_some())
        })
        .await;
    matches!(public, Ok(Ok(true))).then_some(id)
}

/// The published copy of `repo` (`<id>` or `<id>.git`: its canonical refs and signed
/// record, see [`guts_storage::Repositories::published`]) if this node holds it and it is
/// public.
async fn served(state: &HttpState, repo: &str) -> Option<PathBuf> {
    let id = repo_id(repo)?;
    let published = state
        .store
        .run(
            move |repos| -> Result<Option<PathBuf>, guts_storage::StorageError> {
                if !repos.visible_to(&id, None)? {
                    return Ok(None);
                }
                repos.published(&id)
            },
        )
        .await;
    match published {
        Ok(Ok(dir)) => dir,
        Ok(Err(e)) => {
            tracing::warn!(repository = %id, "cannot publish for git over HTTP: {e}");
            None
        }
        Err(_) => None,
    }
}

/// The one answer for an id that is unknown, private or not a repository id.
fn missing() -> Response {
    web::not_found("No such repository here.")
}

/// A push while pushes are off: refused, naming the ways that work.
fn read_only() -> Response {
    plain(
        StatusCode::FORBIDDEN,
        "this endpoint is read-only: push with git-remote-guts (guts://<id>) on the node's machine, or run the node with --http-push on\n",
    )
}

/// A plain-text answer.
fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_owned(),
    )
        .into_response()
}
