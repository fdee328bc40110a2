//! The API's error answers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::NodeError;
use guts_api::ErrorBody;

/// An error answer: a status code and `{"error": "..."}`.
pub(crate) struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        use guts_storage::StorageError as S;
        let code = match &e {
            NodeError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::RemoveOwned(_) => StatusCode::CONFLICT,
            NodeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            NodeError::Policy(crate::seeding::PolicyError::Invalid { .. }) => {
                StatusCode::BAD_REQUEST
            }
            NodeError::NotFound(_) => StatusCode::NOT_FOUND,
            NodeError::NotAllowed(_) => StatusCode::FORBIDDEN,
            NodeError::Storage(S::NoBranch { .. } | S::Change(_) | S::MissingObject { .. }) => {
                StatusCode::BAD_REQUEST
            }
            NodeError::Dial { .. } => StatusCode::BAD_GATEWAY,
            NodeError::Storage(
                S::NotAGitRepository { .. }
                | S::NothingToImport { .. }
                | S::BadName { .. }
                | S::BadStaging(_)
                | S::BadObject { .. },
            ) => StatusCode::BAD_REQUEST,
            NodeError::Storage(S::Identity(_)) => StatusCode::BAD_REQUEST,
            NodeError::Storage(S::NotOwner { .. } | S::NotMaintainer { .. }) => {
                StatusCode::FORBIDDEN
            }
            NodeError::Storage(S::HasMaintainers(_)) => StatusCode::CONFLICT,
            NodeError::Storage(S::UnknownRepository(_)) => StatusCode::NOT_FOUND,
            NodeError::Storage(S::AlreadyExists(_) | S::BehindNetwork { .. }) => {
                StatusCode::CONFLICT
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}
