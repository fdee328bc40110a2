//! The local HTTP control API: health, Prometheus metrics, status, peers, connect,
//! repositories. Everything but `/health` needs the node's token ([`guard`]).

mod body;
mod collab;
mod error;
mod guard;
pub(crate) mod listener;
mod logs;
mod state;

/// The JSON bodies, from their own crate (re-exported for the node's embedders).
pub use guts_api as types;

use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use guts_protocol::{RepoName, RepositoryId};

use crate::config::parse_multiaddr;
use crate::error::NodeError;
use crate::handle::NodeHandle;
use body::JsonBody;
use error::ApiError;
use state::ApiState;
use types::{ConnectRequest, ConnectResponse};

/// The running API server.
pub(crate) struct Server {
    local_addr: SocketAddr,
    token_file: PathBuf,
    token: guts_api::auth::Token,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `addr` and writes a fresh token to `data_dir`.
    pub async fn start(
        addr: SocketAddr,
        data_dir: &FsPath,
        node: NodeHandle,
        registry: Arc<Registry>,
    ) -> Result<Server, NodeError> {
        if !addr.ip().is_loopback() {
            tracing::warn!(
                "the control API listens on {addr}, which is not loopback: anyone who can reach it and holds the token in {} can control this node",
                guts_api::auth::token_path(data_dir).display()
            );
        }
        let stop = watch::Sender::new(false);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Api { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| NodeError::Api { addr, source })?;
        let app = Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .route("/api/v1/status", get(status))
            .route("/api/v1/peers", get(peers))
            .route("/api/v1/routing-table", get(routing_table))
            .route("/api/v1/connect", post(connect))
            .route("/api/v1/logs", get(logs::logs))
            .route("/api/v1/repos", get(repos))
            .route("/api/v1/repos/import", post(import))
            .route("/api/v1/repos/init", post(init))
            .route("/api/v1/repos/{id}/push-area", post(push_area))
            .route("/api/v1/repos/{id}/push", post(push))
            .route("/api/v1/repos/{id}", get(repo).delete(remove))
            .route("/api/v1/repos/{id}/follow", post(follow))
            .route("/api/v1/repos/{id}/unfollow", post(unfollow))
            .route("/api/v1/repos/{id}/sync", post(sync))
            .route("/api/v1/repos/{id}/maintainers", post(propose))
            .route("/api/v1/repos/{id}/maintainers/accept", post(accept))
            .route("/api/v1/policy", get(policy).post(change_policy))
            .route("/api/v1/mirrors", get(mirrors).post(add_mirror))
            .route("/api/v1/mirrors/{id}", axum::routing::delete(remove_mirror))
            .route("/api/v1/mirrors/{id}/sync", post(sync_mirror))
            .route("/api/v1/events", get(collab::events))
            .route("/api/v1/repos/{id}/issues", get(collab::issues))
            .route("/api/v1/repos/{id}/issues/{issue}", get(collab::issue))
            .route("/api/v1/repos/{id}/patches", get(collab::patches))
            .route("/api/v1/repos/{id}/patches/{patch}", get(collab::patch))
            .route("/api/v1/repos/{id}/changes", post(collab::change))
            .route(
                "/api/v1/repos/{id}/contribution-area",
                post(collab::contribution_area),
            )
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(ApiState {
                node,
                registry,
                stopping: stop.subscribe(),
            });
        let (token, loose) = guts_api::auth::write_token_file(data_dir)?;
        let token_file = guts_api::auth::token_path(data_dir);
        if let Some(mode) = loose {
            tracing::warn!(
                "{} was readable by other users (mode {mode:o}); replaced it with a fresh token, mode 600",
                token_file.display()
            );
        }
        let app = app
            .layer(axum::extract::DefaultBodyLimit::max(body::MAX_BODY))
            .layer(axum::middleware::from_fn_with_state(
                guard::Guard::new(token.clone(), local_addr),
                guard::guard,
            ));
        let task = tokio::spawn(listener::serve(
            listener,
            app,
            stop.subscribe(),
            listener::Bounds {
                what: "control API",
                max_connections: listener::MAX_CONNECTIONS,
                // Every client runs on this machine (or the host of its container).
                per_ip: None,
            },
        ));
        tracing::info!(
            "control API on http://{local_addr} (token in {})",
            token_file.display()
        );
        Ok(Server {
            local_addr,
            token_file,
            token,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The token clients present.
    pub fn token(&self) -> &guts_api::auth::Token {
        &self.token
    }

    /// Stops serving and removes the token file (unless a newer node rewrote it), so
    /// clients say "no node" rather than "wrong token".
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
        let ours = guts_api::auth::read_token_file(&self.token_file).is_ok_and(|t| t == self.token);
        if ours {
            let _ = std::fs::remove_file(&self.token_file);
        }
    }
}

/// Unknown paths answer in the API's error shape, naming what was asked.
async fn not_found(request: axum::extract::Request) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {} {} (see the Control API section of docs/api.md)",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: axum::extract::Request) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {} (see docs/api.md)",
            request.uri().path(),
            request.method()
        ),
    )
}

fn bad_request(message: impl ToString) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.to_string())
}

fn parse_id(id: &str) -> Result<RepositoryId, ApiError> {
    id.parse().map_err(bad_request)
}

/// 200 while the event loop answers.
async fn health(State(s): State<ApiState>) -> Result<&'static str, ApiError> {
    s.node.status().await?;
    Ok("ok\n")
}

async fn metrics(State(s): State<ApiState>) -> Result<Response, ApiError> {
    s.node.refresh_metrics().await?;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &s.registry)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn status(State(s): State<ApiState>) -> Result<Json<types::StatusReport>, ApiError> {
    Ok(Json(s.node.status().await?))
}

async fn peers(State(s): State<ApiState>) -> Result<Json<Vec<types::PeerReport>>, ApiError> {
    Ok(Json(s.node.peers().await?))
}

async fn routing_table(State(s): State<ApiState>) -> Result<Json<Vec<String>>, ApiError> {
    let peers = s.node.routing_table().await?;
    Ok(Json(peers.iter().map(|p| p.to_string()).collect()))
}

async fn connect(
    State(s): State<ApiState>,
    JsonBody(req): JsonBody<ConnectRequest>,
) -> Result<Json<ConnectResponse>, ApiError> {
    let addr = parse_multiaddr(&req.address).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let peer = s.node.connect(addr).await?;
    Ok(Json(ConnectResponse {
        peer_id: peer.to_string(),
    }))
}

async fn repos(State(s): State<ApiState>) -> Result<Json<Vec<types::RepoSummary>>, ApiError> {
    Ok(Json(s.node.repositories().await?))
}

async fn import(
    State(s): State<ApiState>,
    JsonBody(req): JsonBody<types::ImportRequest>,
) -> Result<Json<types::ImportResponse>, ApiError> {
    let name = match req.name.as_deref() {
        Some(n) => Some(n.parse::<RepoName>().map_err(bad_request)?),
        None => None,
    };
    let source = guts_storage::ImportSource::parse(&req.path);
    if let guts_storage::ImportSource::Local(path) | guts_storage::ImportSource::Bundle(path) =
        &source
        && !path.is_absolute()
    {
        return Err(bad_request(format!(
            "path {:?} is relative; the node needs an absolute path (or a URL)",
            req.path
        )));
    }
    let (repository, changed) = s.node.import_from(source, name).await?;
    Ok(Json(types::ImportResponse {
        repository,
        changed,
    }))
}

async fn repo(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<types::RepoDetail>, ApiError> {
    let id = parse_id(&id)?;
    match s.node.repository(id).await? {
        Some(detail) => Ok(Json(detail)),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("repository {id} is not on this node; `guts repo follow {id}` fetches it"),
        )),
    }
}

async fn policy(State(s): State<ApiState>) -> Json<guts_api::seeding::PolicyReport> {
    Json(s.node.policy().await)
}

async fn change_policy(
    State(s): State<ApiState>,
    JsonBody(req): JsonBody<guts_api::seeding::PolicyRequest>,
) -> Result<Json<guts_api::seeding::PolicyReport>, ApiError> {
    Ok(Json(s.node.change_policy(req).await?))
}

async fn mirrors(State(s): State<ApiState>) -> Json<Vec<guts_api::mirrors::MirrorReport>> {
    Json(s.node.mirrors())
}

async fn add_mirror(
    State(s): State<ApiState>,
    JsonBody(req): JsonBody<guts_api::mirrors::MirrorRequest>,
) -> Result<Json<guts_api::mirrors::MirrorReport>, ApiError> {
    let name = req
        .name
        .map(|n| n.parse::<guts_protocol::RepoName>())
        .transpose()
        .map_err(bad_request)?;
    let every = req
        .every
        .map(|e| {
            humantime::parse_duration(&e).map_err(|err| {
                NodeError::BadRequest(format!("every {e:?}: {err} (e.g. 30s, 10m, 1h)"))
            })
        })
        .transpose()?;
    Ok(Json(s.node.add_mirror(req.upstream, name, every).await?))
}

async fn sync_mirror(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<guts_api::mirrors::MirrorReport>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(s.node.sync_mirror(id).await?))
}

async fn remove_mirror(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let removed = s.node.remove_mirror(id).await?;
    Ok(Json(
        serde_json::json!({ "repository": id.to_string(), "was_mirror": removed }),
    ))
}

async fn follow(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let added = s.node.follow(id).await?;
    Ok(Json(
        serde_json::json!({ "repository": id.to_string(), "newly_followed": added }),
    ))
}

async fn unfollow(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let was = s.node.unfollow(id).await?;
    Ok(Json(
        serde_json::json!({ "repository": id.to_string(), "was_followed": was }),
    ))
}

/// `?force=true` to remove a repository this node owns.
#[derive(serde::Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

async fn remove(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<RemoveQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    if !s.node.remove(id, q.force).await? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("repository {id} is not on this node"),
        ));
    }
    Ok(Json(
        serde_json::json!({ "repository": id.to_string(), "removed": true }),
    ))
}

/// Runs a sync and streams its progress as JSON lines; the last line is `done` or
/// `failed`.
async fn sync(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<types::SyncRequestBody>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let prefer = match body.prefer {
        Some(p) => Some(
            p.parse::<libp2p::PeerId>()
                .map_err(|e| bad_request(format!("invalid peer id {p:?}: {e}")))?,
        ),
        None => None,
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let node = s.node.clone();
    tokio::spawn(async move {
        let result = node.sync(id, prefer, Some(tx.clone())).await;
        match result {
            // Once patches and issues are in too: whoever waits for `done` may read them.
            Ok(outcome) => {
                let _ = tx.send(types::SyncProgress::Done(outcome));
            }
            Err(e) => {
                let _ = tx.send(types::SyncProgress::Failed {
                    error: e.to_string(),
                });
            }
        }
    });
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}

async fn init(
    State(s): State<ApiState>,
    JsonBody(req): JsonBody<types::InitRequest>,
) -> Result<Json<types::RepoSummary>, ApiError> {
    let name: RepoName = req.name.parse().map_err(bad_request)?;
    let visibility = match (req.private, req.seeders) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(bad_request(
                "seeders are for an encrypted repository, which is private: name its readers too (an empty list for none)",
            ));
        }
        (Some(allow), None) => Some(guts_protocol::Visibility::private(parse_keys(&allow)?)),
        (Some(readers), Some(seeders)) => Some(guts_protocol::Visibility::sealed(
            parse_keys(&readers)?,
            parse_keys(&seeders)?,
        )),
    };
    Ok(Json(s.node.init_repo_with(name, visibility).await?))
}

/// Hex keys from a request, the first bad one named.
fn parse_keys(keys: &[String]) -> Result<Vec<ed25519_dalek::VerifyingKey>, ApiError> {
    keys.iter()
        .map(|k| crate::maintainers::parse_key(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad_request)
}

async fn propose(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<types::ProposeRequest>,
) -> Result<Json<types::ProposalReport>, ApiError> {
    let id = parse_id(&id)?;
    let maintainers = req
        .maintainers
        .iter()
        .map(|k| crate::maintainers::parse_key(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad_request)?;
    let visibility = match req.visibility {
        None => None,
        Some(types::VisibilityBody::Public) => Some(guts_protocol::Visibility::Public),
        Some(types::VisibilityBody::Private { allow }) => {
            Some(guts_protocol::Visibility::private(parse_keys(&allow)?))
        }
        Some(types::VisibilityBody::Encrypted { readers, seeders }) => Some(
            guts_protocol::Visibility::sealed(parse_keys(&readers)?, parse_keys(&seeders)?),
        ),
    };
    Ok(Json(
        s.node
            .propose_with(id, maintainers, req.threshold, visibility)
            .await?,
    ))
}

async fn accept(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<types::AcceptRequest>,
) -> Result<Json<types::ProposalReport>, ApiError> {
    let id = parse_id(&id)?;
    let version = req
        .version
        .parse::<guts_protocol::VersionId>()
        .map_err(bad_request)?;
    Ok(Json(s.node.accept(id, version).await?))
}

async fn push_area(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<types::PushAreaResponse>, ApiError> {
    let id = parse_id(&id)?;
    let path = s.node.push_area(id).await?;
    Ok(Json(types::PushAreaResponse {
        path: path.display().to_string(),
    }))
}

async fn push(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<types::PushRequest>,
) -> Result<Json<types::PushResponse>, ApiError> {
    let id = parse_id(&id)?;
    let mut updates = Vec::new();
    for u in req.updates {
        let new = match u.new {
            Some(hex) => Some(
                hex.parse::<guts_protocol::ObjectId>()
                    .map_err(bad_request)?,
            ),
            None => None,
        };
        updates.push(guts_storage::RefUpdate {
            name: u.ref_name,
            new,
            force: u.force,
        });
    }
    let pushed = s
        .node
        .push(id, std::path::PathBuf::from(req.area), updates)
        .await?;
    Ok(Json(types::PushResponse {
        sequence: pushed.snapshot.sequence(),
        changed: pushed.changed,
        view: pushed.shared,
        fork: pushed.fork,
        results: pushed
            .results
            .into_iter()
            .map(|(ref_name, r)| types::PushResult {
                ref_name,
                error: r.err(),
            })
            .collect(),
    }))
}
