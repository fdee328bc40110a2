//! The local HTTP control API: health, Prometheus metrics, status, peers, connect.

pub mod types;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::parse_multiaddr;
use crate::error::NodeError;
use crate::handle::NodeHandle;
use types::{ConnectRequest, ConnectResponse, ErrorBody};

#[derive(Clone)]
struct ApiState {
    node: NodeHandle,
    registry: Arc<Registry>,
}

/// The running API server.
pub(crate) struct Server {
    local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(
        addr: SocketAddr,
        node: NodeHandle,
        registry: Arc<Registry>,
    ) -> Result<Server, NodeError> {
        if !addr.ip().is_loopback() {
            tracing::warn!(
                "the control API listens on {addr}, which is not loopback: anyone who can reach it can control this node"
            );
        }
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
            .with_state(ApiState { node, registry });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!("control API failed: {e}");
            }
        });
        tracing::info!("control API on http://{local_addr}");
        Ok(Server {
            local_addr,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// An error answer: a status code and `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let code = match e {
            NodeError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Dial { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

/// 200 while the event loop answers.
async fn health(State(s): State<ApiState>) -> Result<&'static str, ApiError> {
    s.node.status().await?;
    Ok("ok\n")
}

async fn metrics(State(s): State<ApiState>) -> Result<Response, ApiError> {
    // Asking for the status refreshes the gauges.
    s.node.status().await?;
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
    body: Result<Json<ConnectRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ConnectResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let addr = parse_multiaddr(&req.address).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let peer = s.node.connect(addr).await?;
    Ok(Json(ConnectResponse {
        peer_id: peer.to_string(),
    }))
}
