//! Patches and issues: list and show them, and make changes (`POST .../changes`).

use axum::Json;
use axum::extract::{Path, Query, State};
use guts_api::collab::{ChangeRequest, ChangeResponse, EventReport, IssueReport, PatchReport};

use super::body::JsonBody;
use super::error::ApiError;
use super::state::ApiState;
use super::{parse_id, types};

/// `?since=SECONDS&repo=ID`.
#[derive(serde::Deserialize)]
pub(super) struct EventsQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    repo: Option<String>,
}

pub(super) async fn events(
    State(s): State<ApiState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<EventReport>>, ApiError> {
    let repo = q.repo.as_deref().map(parse_id).transpose()?;
    Ok(Json(s.node.events(repo, q.since).await?))
}

pub(super) async fn issues(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<IssueReport>>, ApiError> {
    Ok(Json(s.node.issues(parse_id(&id)?).await?))
}

pub(super) async fn issue(
    State(s): State<ApiState>,
    Path((id, which)): Path<(String, String)>,
) -> Result<Json<IssueReport>, ApiError> {
    Ok(Json(s.node.issue(parse_id(&id)?, which).await?))
}

pub(super) async fn patches(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<PatchReport>>, ApiError> {
    Ok(Json(s.node.patches(parse_id(&id)?).await?))
}

pub(super) async fn patch(
    State(s): State<ApiState>,
    Path((id, which)): Path<(String, String)>,
) -> Result<Json<PatchReport>, ApiError> {
    Ok(Json(s.node.patch(parse_id(&id)?, which).await?))
}

pub(super) async fn change(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ChangeRequest>,
) -> Result<Json<ChangeResponse>, ApiError> {
    Ok(Json(s.node.change(parse_id(&id)?, request).await?))
}

pub(super) async fn contribution_area(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<types::PushAreaResponse>, ApiError> {
    let path = s.node.contribution_area(parse_id(&id)?).await?;
    Ok(Json(types::PushAreaResponse {
        path: path.display().to_string(),
    }))
}
